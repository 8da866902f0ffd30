"""Recognizers: one per entity type, each a candidate pattern backed by a validator where one
exists, with context words that raise or lower its confidence.

A recognizer proposes candidates with a regular expression, then keeps those its validator
accepts: Luhn and issuer prefixes for cards, country length and mod-97 for IBANs, a real date
for Danish CPR numbers, issued areas and groups for US SSNs (python-stdnum), numbering plans for
phone numbers (Google's libphonenumber, through ``phonenumbers``), the address itself for IPs.
The score says how sure it is; words just before a candidate ("tlf", "SSN", "order no.") move
it up or down, and the policy sets the threshold each entity must reach.

Entity types: EMAIL, PHONE, CREDIT_CARD, IBAN, US_SSN, DK_CPR, IP_ADDRESS, SECRET (with a
subtype), and PERSON, LOCATION, ORGANIZATION from an optional NER backend.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import phonenumbers
from stdnum import iban as stdnum_iban
from stdnum import luhn
from stdnum.dk import cpr
from stdnum.us import ssn

ENTITIES = ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "US_SSN", "DK_CPR", "IP_ADDRESS", "SECRET",
            "PERSON", "LOCATION", "ORGANIZATION")
NER_ENTITIES = ("PERSON", "LOCATION", "ORGANIZATION")
CONTEXT_WINDOW = 48  # characters before a candidate that context words are looked for in
CONTEXT_WORDS = 3  # words before a candidate where context words count ("social security no.")
NEGATIVE_WORDS = 2  # … and where words against it count ("ordre nr.", "ISBN"): only the nearest
CONTEXT_BOOST = 0.35
CONTEXT_PENALTY = 0.45


@dataclass(frozen=True, slots=True)
class Finding:
    type: str
    start: int  # character offsets into the text
    end: int
    score: float
    subtype: str | None = None

    def as_dict(self) -> dict[str, object]:
        found: dict[str, object] = {"type": self.type, "start": self.start, "end": self.end,
                                    "score": round(self.score, 2)}
        if self.subtype is not None:
            found["subtype"] = self.subtype
        return found


# A validator looks at the matched value and answers with a score, or None to reject it.
Validator = Callable[[str, "re.Match[str]"], float | None]


class Scan:
    """A text being scanned: lower-cased once, and where its digits, ``@`` and ``:`` are, once.
    Most recognizers only need to look near those: a 4 KiB prompt of prose is scanned in a few
    small windows, not 4,096 times per pattern."""

    MARGIN = 32  # characters around a cluster of digits that a pattern may still need

    def __init__(self, text: str) -> None:
        self.text = text
        self.lowered = text.lower()
        self._regions: dict[str, list[tuple[int, int]]] = {}
        self.claimed: list[tuple[int, int]] = []  # spans a more specific entity already has

    def is_claimed(self, start: int, end: int) -> bool:
        return any(start < last and end > first for first, last in self.claimed)

    def covers(self, start: int, end: int) -> bool:
        """Whether one claimed span holds all of start..end (the digits of an IBAN, say)."""
        return any(first <= start and end <= last for first, last in self.claimed)

    def regions(self, where: str) -> list[tuple[int, int]]:
        """Where to look: around digit clusters, around @ signs, or everywhere."""
        found = self._regions.get(where)
        if found is None:
            found = self._regions[where] = self._find(where)
        return found

    def _find(self, where: str) -> list[tuple[int, int]]:
        size = len(self.text)
        if where == "all":
            return [(0, size)]
        if where == "@":  # an address: at most 64 characters before its @, 255 after
            spans = [(max(0, at - 65), min(size, at + 256)) for at in _occurrences(self.text, "@")]
        elif where == ":":  # an IPv6 address (at most 45): colons between hex digits or colons
            text = self.text
            spans = [(max(0, at - 46), min(size, at + 46)) for at in _occurrences(text, ":")
                     if _HEXISH.match(text, at + 1) or (at and _HEXISH.match(text, at - 1))]
        else:  # digits: runs of them, with what may surround them
            spans = [(max(0, start - self.MARGIN), min(size, end + self.MARGIN))
                     for start, end in _digit_runs(self.text)]
        merged: list[tuple[int, int]] = []
        for start, end in spans:
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        return merged


_DIGITS = re.compile(r"\d+")
_HEXISH = re.compile(r"[0-9A-Fa-f:]")
_DIGIT_MASK = bytes(49 if 48 <= byte <= 57 else 48 for byte in range(256))  # "1" per digit


def _occurrences(text: str, char: str) -> Iterator[int]:
    at = text.find(char)
    while at != -1:
        yield at
        at = text.find(char, at + 1)


def _digit_runs(text: str) -> Iterator[tuple[int, int]]:
    """Where the runs of digits are. For ASCII text (byte offsets are character offsets), by
    jumping between them over a digit mask, at C speed: a regular expression would step
    through all 4,096 characters of a prompt to find its twenty digits."""
    if not text.isascii():
        for match in _DIGITS.finditer(text):
            yield match.span()
        return
    mask = text.encode().translate(_DIGIT_MASK)
    start = mask.find(b"1")
    while start != -1:
        end = mask.find(b"0", start)
        if end == -1:
            yield start, len(mask)
            return
        yield start, end
        start = mask.find(b"1", end)


@dataclass(frozen=True)
class Recognizer:
    entity: str
    pattern: re.Pattern[str]
    validate: Validator
    context: tuple[str, ...] = ()  # words that make it likelier
    negative: tuple[str, ...] = ()  # words that make it unlikelier (order no., ISBN, version…)
    triggers: tuple[str, ...] = ()  # lower-case substrings one of which a match must contain
    where: str = "digits"  # the regions of a Scan to look in: "digits", "@", ":" or "all"
    not_after: re.Pattern[str] | None = None  # a character that may not come just before
    subtype: str | None = None
    group: int = 0  # the pattern group that is the entity

    @property
    def types(self) -> frozenset[str]:
        return frozenset((self.entity,))

    def matches(self, scan: Scan) -> Iterator[re.Match[str]]:
        if self.triggers and not any(t in scan.lowered for t in self.triggers):
            return
        not_after = self.not_after
        for start, end in scan.regions(self.where):
            for match in self.pattern.finditer(scan.text, start, end):
                begin = match.start()
                if not_after is None or begin == 0 or not not_after.match(scan.text, begin - 1):
                    yield match

    def find(self, scan: Scan) -> Iterator[Finding]:
        for match in self.matches(scan):
            score = self.validate(match.group(self.group), match)
            if score is not None:
                start, end = match.span(self.group)
                yield self.finding(start, end, score, scan.lowered)

    def finding(self, start: int, end: int, score: float, lowered: str) -> Finding:
        """A finding, its score moved by the words before it."""
        if self.context or self.negative:
            words = _words_before(lowered, start)
            if any(word in " ".join(words[-NEGATIVE_WORDS:]) for word in self.negative):
                score -= CONTEXT_PENALTY
            elif any(word in " ".join(words[-CONTEXT_WORDS:]) for word in self.context):
                score += CONTEXT_BOOST
        return Finding(self.entity, start, end, min(score, 1.0), self.subtype)


def _words_before(lowered: str, start: int) -> list[str]:
    """The words just before a candidate, back to the previous number: the words around another
    number ("Order #123, 456-78-9012") are about that one."""
    words = lowered[max(0, start - CONTEXT_WINDOW):start].split()
    for index in range(len(words) - 1, -1, -1):
        if any(ch.isdigit() for ch in words[index]):
            return words[index + 1:]
    return words


class GroupedRecognizer(Recognizer):
    """For numbers written in groups (cards, phones): a greedy pattern can run into the next
    number, or start inside the previous one. Within each match, the longest run of whole
    space-separated groups that validates is an entity (a group joined by dashes or dots, an
    ISBN or a date, is never split), and what is left on either side is searched again."""

    prefixes_only = False  # phones: tried from a group's start onwards, never mid-number
    fewest_digits = 13  # in a whole match: fewer, and no run of it can validate

    def find(self, scan: Scan) -> Iterator[Finding]:
        for match in self.matches(scan):
            if not scan.covers(match.start(), match.end()) \
                    and sum(map(str.isdigit, match.group(0))) >= self.fewest_digits:
                yield from self._within(scan, match, match.start(), match.end())

    def _within(self, scan: Scan, match: re.Match[str], first: int,
                last: int) -> Iterator[Finding]:
        text, lowered = scan.text, scan.lowered
        groups = [(m.start(), m.end()) for m in _GROUP.finditer(text, first, last)]
        starts = range(min(1, len(groups))) if self.prefixes_only else range(len(groups))
        runs = sorted(((groups[i][0], groups[j][1]) for i in starts
                       for j in range(i, len(groups))), key=lambda r: (r[0] - r[1], r[0]))
        for begin, finish in runs:
            if scan.is_claimed(begin, finish) or _IBAN_BEFORE.search(text, max(0, begin - 40),
                                                                    begin):
                continue  # a more specific entity's, or the digits of an IBAN that failed
            score = self.validate(text[begin:finish], match)
            if score is not None:
                yield self.finding(begin, finish, score, lowered)
                yield from self._within(scan, match, first, begin)
                yield from self._within(scan, match, finish, last)
                return
        if self.prefixes_only and len(groups) > 1:  # no number starts here: try the next group
            yield from self._within(scan, match, groups[1][0], last)


_GROUP = re.compile(r"\S+")
_IBAN_BEFORE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4})* ?$")


_NON_DIGIT = re.compile(r"\D")


def _digits(value: str) -> str:
    return _NON_DIGIT.sub("", value)


# --- EMAIL ---------------------------------------------------------------------------------------

def _email(value: str, match: re.Match[str]) -> float | None:
    local, _, domain = value.rpartition("@")
    if local.startswith(".") or local.endswith(".") or ".." in local or ".." in domain:
        return None
    return 0.95


EMAIL = Recognizer(
    "EMAIL",
    re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
               r"[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"),
    _email, where="@")


# --- PHONE ---------------------------------------------------------------------------------------

_PHONE = re.compile(r"(?<![\w+/.:-])(?:\+|00)?\(?\d[\d ().-]{5,22}\d(?![\w/-]|[.,:]\d)")
_SEPARATED = re.compile(r"\d[ .-]\d|\(\d")


# Shapes that are something else: a CPR or SSN layout, a dotted quad, a date, a card layout.
_NOT_PHONE = re.compile(r"\d{6}-\d{4}|\d{3}-\d{2}-\d{4}|\d{1,3}(?:\.\d{1,3}){3}|\d{4}-\d\d-\d\d"
                        r"|\d\d?[./-]\d\d?[./-]\d{2,4}|\d{4}([ -])\d{4}\1\d{4}\1\d{1,7}.*")


def phone_validator(regions: tuple[str, ...]) -> Validator:
    """Valid in the numbering plan of its country (given with +/00), or of one of ``regions``.
    A bare run of digits is weak evidence (order numbers look the same): context decides."""
    def validate(value: str, match: re.Match[str]) -> float | None:
        if _NOT_PHONE.fullmatch(match.group(0)):
            return None
        return _phone_score(value, regions)
    return validate


# Not cached across requests, though a conversation resends its history every turn: a cache
# would keep people's numbers in the gateway's memory long after their requests.
def _phone_score(value: str, regions: tuple[str, ...]) -> float | None:
    international = value.startswith(("+", "00"))
    digits = _digits(value)
    if _NOT_PHONE.fullmatch(value) or not 6 <= len(digits) <= (15 if international else 12) \
            or sum(len(group) == 1 for group in _DIGITS.findall(value)) > 1:
        return None  # a list of single digits is not a phone number
    number = "+" + value[2:] if value.startswith("00") else value
    for region in (None,) if international else _fitting(digits, regions):
        try:
            parsed = phonenumbers.parse(number, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            if international:
                return 0.85
            return 0.65 if _SEPARATED.search(value) else 0.4
    return None


def _fitting(digits: str, regions: tuple[str, ...]) -> list[str]:
    """The regions whose numbers can have this many digits (after the trunk prefix): parsing
    is the expensive part, and most digit runs fit no plan at all."""
    fitting = []
    for region in regions:
        prefix, lengths = _PLANS[region]
        national = digits[len(prefix):] if prefix and digits.startswith(prefix) else digits
        if len(national) in lengths or len(digits) in lengths:
            fitting.append(region)
    return fitting


class _Plans(dict[str, tuple[str, frozenset[int]]]):
    def __missing__(self, region: str) -> tuple[str, frozenset[int]]:
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
        if metadata is None:
            raise ValueError(f"unknown phone region {region}")
        described = metadata.general_desc
        lengths = described.possible_length if described is not None else None
        plan = (metadata.national_prefix or "", frozenset(lengths or range(4, 16)))
        self[region] = plan
        return plan


_PLANS = _Plans()


class _PhoneRecognizer(GroupedRecognizer):
    prefixes_only = True
    fewest_digits = 6


def phone(regions: tuple[str, ...]) -> Recognizer:
    return _PhoneRecognizer(
        "PHONE", _PHONE, phone_validator(regions),
        context=("phone", "tel", "tlf", "mobil", "call", "ring", "fax", "kontakt", "contact",
                 "nummer", "number", "sms", "whatsapp"),
        negative=("order", "ordre", "invoice", "faktura", "isbn", "ref", "serial", "account",
                  "konto", "version", "id:", "sku", "case", "ticket", "tracking", "total", "sum",
                  "beløb", "amount", "price", "pris", "$", "€"))


# --- CREDIT_CARD ---------------------------------------------------------------------------------

_ISSUERS = re.compile(
    r"^(?:4\d{12}(?:\d{3}){0,2}"  # Visa (incl. Dankort co-branded 4571)
    r"|5[1-5]\d{14}|2(?:2[2-9][1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)\d{12}"  # Mastercard
    r"|3[47]\d{13}"  # American Express
    r"|3(?:0[0-5]|[68]\d)\d{11,16}"  # Diners Club
    r"|6(?:011|5\d\d|4[4-9]\d)\d{12,15}"  # Discover
    r"|35(?:2[89]|[3-8]\d)\d{12,15}"  # JCB
    r"|62\d{14,17}"  # UnionPay
    r"|5019\d{12}"  # Dankort
    r"|(?:50|5[6-9]|6\d)\d{10,17})$")  # Maestro


def _card(value: str, match: re.Match[str]) -> float | None:
    digits = _digits(value)
    separators = set(_NON_DIGIT.findall(value))
    if len(separators) > 1:
        return None  # "4111 1111-1111 1111" is not how anyone writes a card
    groups = _NON_DIGIT.split(value)
    if separators and not all(3 <= len(group) <= 6 for group in groups[:-1]):
        return None  # cards come in groups of 4 (4-6-5, 4-6-4), never "4 1 1 1 …"
    if not 13 <= len(digits) <= 19 or not _ISSUERS.match(digits) or not luhn.is_valid(digits):
        return None
    return 0.9


CREDIT_CARD = GroupedRecognizer(
    "CREDIT_CARD",
    re.compile(r"(?<![\w.+-])\d(?:[ -]?\d){12,30}(?![\w-]|[.,]\d)"),
    _card,
    context=("card", "kort", "visa", "mastercard", "amex", "credit", "kredit", "cc"),
    negative=("isbn", "order", "ordre", "tracking", "invoice", "faktura"))


# --- IBAN ----------------------------------------------------------------------------------------

def _iban(value: str, match: re.Match[str]) -> float | None:
    """mod-97 first (cheap), then country, length and BBAN format (python-stdnum)."""
    return 0.95 if _mod97(value) and stdnum_iban.is_valid(value) else None


def _mod97(value: str) -> bool:
    """The IBAN checksum alone: cheap, so the full check (country, length, format) runs only
    for candidates that pass it."""
    compact = value.replace(" ", "")
    try:
        return int("".join(str(int(ch, 36)) for ch in compact[4:] + compact[:4])) % 97 == 1
    except ValueError:
        return False


class _IbanRecognizer(Recognizer):
    """Printed IBANs come in groups of four: the pattern may run into the next word, so the
    longest prefix (at group boundaries) that validates is the IBAN."""

    def find(self, scan: Scan) -> Iterator[Finding]:
        for first, last in scan.regions(self.where):
            position = first
            while match := self.pattern.search(scan.text, position, last):
                value, start = match.group(0), match.start()
                position = start + 1  # none here: the next one may begin inside this match
                for end in _group_ends(value):
                    score = self.validate(value[:end], match)
                    if score is not None:
                        yield Finding("IBAN", start, start + end, score)
                        position = start + end  # the rest may be the next IBAN
                        break


def _group_ends(value: str) -> list[int]:
    ends = [i for i, ch in enumerate(value) if ch == " "] + [len(value)]
    return sorted(ends, reverse=True)


IBAN = _IbanRecognizer(
    "IBAN", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,31}\b"), _iban)


# --- US_SSN --------------------------------------------------------------------------------------

def _ssn(value: str, match: re.Match[str]) -> float | None:
    if not ssn.is_valid(value):
        return None
    return 0.85 if match.group("sep") else 0.35  # nine bare digits: only with context


US_SSN = Recognizer(
    "US_SSN",
    re.compile(r"(?<![\w.-])\d{3}(?P<sep>[- ]?)\d{2}(?P=sep)\d{4}(?![\w-]|\.\d)"),
    _ssn,
    context=("ssn", "social security", "social-security", "taxpayer", "tin"),
    negative=("order", "isbn", "invoice", "phone", "tel", "zip", "ref", "tracking"))


# --- DK_CPR --------------------------------------------------------------------------------------

def _cpr(value: str, match: re.Match[str]) -> float | None:
    if not ("01" <= value[:2] <= "31" and "01" <= value[2:4] <= "12") or not cpr.is_valid(value):
        return None
    return 0.85 if "-" in value else 0.55


DK_CPR = Recognizer(
    "DK_CPR",
    re.compile(r"(?<![\w.-])\d{6}-?\d{4}(?![\w-]|\.\d)"),
    _cpr,
    context=("cpr", "personnummer", "person nr", "personnr", "cpr-nr", "fødselsnummer"),
    negative=("order", "ordre", "faktura", "invoice", "isbn", "phone", "tel", "tlf", "konto",
              "account", "ref", "sag", "case", "tracking"))


# --- IP_ADDRESS ----------------------------------------------------------------------------------

def _ipv4(value: str, match: re.Match[str]) -> float | None:
    octets = value.split(".")
    if any(int(octet) > 255 or (len(octet) > 1 and octet[0] == "0") for octet in octets):
        return None
    return 0.85


def _ipv6(value: str, match: re.Match[str]) -> float | None:
    if "::" not in value and value.count(":") != 7:
        return None
    if sum(ch.isalnum() for ch in value) < 4:
        return None  # "::", "a::b": too little to be an address anyone wrote on purpose
    try:
        ipaddress.IPv6Address(value.split("%")[0])
    except ValueError:
        return None
    return 0.85


_IP_CONTEXT = ("ip", "address", "host", "server", "adresse")
IPV4 = Recognizer(
    "IP_ADDRESS",
    re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w]|\.\d)"),
    _ipv4,
    context=_IP_CONTEXT,
    negative=("version", "release", "build", "isbn", "oid"))
IPV6 = Recognizer(
    "IP_ADDRESS",
    re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{0,4}|\d{1,3}"
               r"(?:\.\d{1,3}){3})(?:%[\w.]+)?(?![\w:]|\.\w)"),
    _ipv6, where=":", context=_IP_CONTEXT)


# --- SECRET --------------------------------------------------------------------------------------

def _certain(value: str, match: re.Match[str]) -> float | None:
    return 1.0


def _jwt(value: str, match: re.Match[str]) -> float | None:
    header = value.split(".", 1)[0]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, binascii.Error):
        return None
    return 0.95 if isinstance(decoded, dict) and "alg" in decoded else None


def _bearer(value: str, match: re.Match[str]) -> float | None:
    return 0.85 if any(ch.isdigit() for ch in value) else None  # "Bearer of bad news"


# Secret patterns start with a literal ("eyJ", "vagt_", "A…"), which lets the regular expression
# engine skip ahead at C speed; what may not come just before them is checked by ``not_after``.
SECRETS = (
    Recognizer("SECRET", re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*"
        r"PRIVATE KEY-----|[\s\S]*)"), _certain, where="all", subtype="private_key"),
    Recognizer("SECRET", re.compile(
        r"A(?:KIA|SIA|BIA|CCA|GPA|IDA|ROA|IPA|NPA|NVA|PKA)[A-Z2-7]{16}(?![A-Za-z0-9])"),
        _certain, where="all", not_after=re.compile(r"[A-Za-z0-9]"), subtype="aws_access_key"),
    Recognizer("SECRET", re.compile(
        r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{8,}"),
        _jwt, where="all", not_after=re.compile(r"[\w-]"), subtype="jwt"),
    Recognizer("SECRET", re.compile(r"vagt_[A-Za-z0-9_-]{32,}"), _certain, where="all",
               not_after=re.compile(r"[\w-]"), subtype="vagt_api_key"),
    Recognizer("SECRET", re.compile(
        r"(?i)\bbearer[ \t]+([A-Za-z0-9._~+/-]{16,}=*)"), _bearer, triggers=("bearer",),
        where="all", subtype="bearer_token", group=1),
)


class NerRecognizer:
    """Names, places and organisations, from a spaCy pipeline (loaded once per policy)."""

    LABELS = {"PERSON": "PERSON", "PER": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION",
              "FAC": "LOCATION", "ORG": "ORGANIZATION"}
    types = frozenset(NER_ENTITIES)

    def __init__(self, model: str, score: float) -> None:
        import spacy  # optional dependency

        self._nlp = spacy.load(model)
        self._score = score

    def find(self, scan: Scan) -> Iterator[Finding]:
        for entity in self._nlp(scan.text).ents:
            kind = self.LABELS.get(entity.label_)
            if kind is not None and not scan.is_claimed(entity.start_char, entity.end_char):
                yield Finding(kind, entity.start_char, entity.end_char, self._score)


def recognizers(phone_regions: tuple[str, ...], ner: tuple[str, float] | None = None
                ) -> tuple[Recognizer | NerRecognizer, ...]:
    """Every recognizer, the most specific first (see PRIORITY); NER last, when asked for."""
    structured = sorted((EMAIL, phone(phone_regions), CREDIT_CARD, IBAN, US_SSN, DK_CPR, IPV4,
                         IPV6, *SECRETS), key=lambda r: PRIORITY[r.entity])
    return (*structured, *([NerRecognizer(*ner)] if ner is not None else []))


# Where findings overlap, the most specific entity wins: a validated structure (a key, a
# checksum, a date) says more than "a valid phone number", which many digit runs are.
PRIORITY = {"SECRET": 0, "EMAIL": 1, "IBAN": 2, "CREDIT_CARD": 3, "IP_ADDRESS": 4, "DK_CPR": 5,
            "US_SSN": 5, "PHONE": 6, "PERSON": 7, "LOCATION": 7, "ORGANIZATION": 7}


def resolve(findings: Iterable[Finding]) -> list[Finding]:
    """One entity per span: where findings overlap, the most specific type wins, then the
    surest, then the longest. In text order."""
    kept: list[Finding] = []
    for finding in sorted(findings, key=lambda f: (PRIORITY[f.type], -f.score,
                                                   -(f.end - f.start), f.start)):
        if all(finding.end <= k.start or finding.start >= k.end for k in kept):
            kept.append(finding)
    return sorted(kept, key=lambda f: f.start)
