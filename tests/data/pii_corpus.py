"""A labelled PII evaluation corpus, generated from a seed: texts in English (US, UK), Danish
and German with entities at known character offsets, and hard negatives that look like them.

Positives carry valid checksums (Luhn cards, mod-97 IBANs, real CPR dates, issued SSN areas,
numbers valid in their country's numbering plan). Hard negatives are unlabelled look-alikes:
cards failing Luhn, IBANs failing mod-97, order and tracking numbers, ISBNs, dates, version
strings, impossible SSNs and CPR dates, invalid IP octets, clock times.

`python -m tests.data.pii_corpus` rewrites tests/data/pii_corpus.jsonl; a test checks the file
is what the generator makes, so the corpus can be reviewed as a file and trusted as code.
"""

from __future__ import annotations

import base64
import datetime
import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import phonenumbers
from stdnum import iban, luhn
from stdnum.dk import cpr
from stdnum.us import ssn

SEED = 20261126
SAMPLES = 1600
PATH = Path(__file__).with_name("pii_corpus.jsonl")
LOCALES = ("en_US", "en_GB", "da_DK", "de_DE")


@dataclass
class Text:
    """A text being built, with its labelled spans."""

    locale: str
    parts: list[str] = field(default_factory=list)
    entities: list[dict[str, object]] = field(default_factory=list)

    def add(self, text: str, entity: str | None = None, subtype: str | None = None) -> None:
        if entity is not None:
            start = len("".join(self.parts))
            span: dict[str, object] = {"type": entity, "start": start, "end": start + len(text)}
            if subtype is not None:
                span["subtype"] = subtype
            self.entities.append(span)
        self.parts.append(text)

    def record(self) -> dict[str, object]:
        return {"text": "".join(self.parts), "locale": self.locale, "entities": self.entities}


# --- positives -----------------------------------------------------------------------------------

FIRST = {"en_US": ["john", "mary", "james", "linda"], "en_GB": ["oliver", "amelia", "harry"],
         "da_DK": ["mette", "lars", "søren", "anne"], "de_DE": ["jürgen", "katrin", "lukas"]}
LAST = {"en_US": ["smith", "johnson", "garcia"], "en_GB": ["taylor", "evans", "wright"],
        "da_DK": ["jensen", "nielsen", "hansen"], "de_DE": ["müller", "schmidt", "weber"]}
DOMAINS = {"en_US": ["example.com", "mail.example.org", "corp.example.net"],
           "en_GB": ["example.co.uk", "nhs.example.uk"], "da_DK": ["firma.dk", "example.dk"],
           "de_DE": ["beispiel.de", "example.de"]}
ASCII = str.maketrans({"ø": "oe", "æ": "ae", "å": "aa", "ü": "ue", "ö": "oe", "ä": "ae"})


def email(rng: random.Random, locale: str) -> str:
    first = rng.choice(FIRST[locale]).translate(ASCII)
    last = rng.choice(LAST[locale]).translate(ASCII)
    local = rng.choice([f"{first}.{last}", f"{first[0]}{last}",
                        f"{first}_{last}{rng.randint(1, 99)}",
                        f"{first}+{rng.choice(['news', 'work', 'x'])}"])
    return f"{local}@{rng.choice(DOMAINS[locale])}"


PHONE_REGION = {"en_US": "US", "en_GB": "GB", "da_DK": "DK", "de_DE": "DE"}
PHONE_TYPES = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE)


def phone(rng: random.Random, locale: str) -> tuple[str, bool]:
    """A valid number, formatted as people write it; and whether it is bare digits (which needs
    a context word to be told from an order number)."""
    region = PHONE_REGION[locale]
    example = phonenumbers.example_number_for_type(region, rng.choice(PHONE_TYPES))
    digits = str(example.national_number)
    while True:
        keep = len(digits) - rng.randint(3, 5)
        candidate = digits[:keep] + "".join(rng.choice(string.digits)
                                            for _ in range(len(digits) - keep))
        number = phonenumbers.parse(candidate, region)
        if phonenumbers.is_valid_number(number):
            break
    style = rng.random()
    formats = phonenumbers.PhoneNumberFormat
    if style < 0.4:
        return phonenumbers.format_number(number, formats.INTERNATIONAL), False
    if style < 0.55:
        return phonenumbers.format_number(number, formats.E164), False
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    if style < 0.9 or not any(ch in national for ch in " -()"):
        return national, not any(ch in national for ch in " -()")
    return "".join(ch for ch in national if ch.isdigit()), True


ISSUERS = [("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15),
           ("6011", 16), ("65", 16), ("3528", 16), ("5019", 16), ("4571", 16), ("36", 14)]


def card_digits(rng: random.Random, valid: bool) -> str:
    prefix, length = rng.choice(ISSUERS)
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    check = luhn.calc_check_digit(body)
    if not valid:
        check = str((int(check) + rng.randint(1, 9)) % 10)
    return body + check


def card_format(rng: random.Random, digits: str) -> str:
    style = rng.random()
    if len(digits) == 15 and style < 0.6:
        return f"{digits[:4]} {digits[4:10]} {digits[10:]}"
    if style < 0.55:
        return " ".join(digits[i:i + 4] for i in range(0, len(digits), 4))
    if style < 0.75:
        return "-".join(digits[i:i + 4] for i in range(0, len(digits), 4))
    return digits


IBAN_COUNTRIES = {"DK": "14n", "DE": "18n", "GB": "4a14n", "NO": "11n", "FI": "14n",
                  "NL": "4a10n", "SE": "20n", "FR": "10n11n2n", "CH": "17n"}


def _bban(rng: random.Random, shape: str) -> str:
    out, count = [], ""
    for ch in shape:
        if ch.isdigit():
            count += ch
            continue
        pool = string.digits if ch == "n" else string.ascii_uppercase
        out += [rng.choice(pool) for _ in range(int(count))]
        count = ""
    return "".join(out)


def iban_number(rng: random.Random, valid: bool) -> str:
    while True:
        country, shape = rng.choice(list(IBAN_COUNTRIES.items()))
        bban = _bban(rng, shape)
        check = iban.calc_check_digits(country + "00" + bban)
        number = country + check + bban
        if iban.is_valid(number):
            break
    if not valid:
        wrong = (int(check) + rng.randint(1, 50)) % 97 + 2
        number = country + f"{wrong:02d}" + bban
        if iban.is_valid(number):
            return iban_number(rng, valid)
    if rng.random() < 0.6:
        return " ".join(number[i:i + 4] for i in range(0, len(number), 4))
    return number


def ssn_number(rng: random.Random, valid: bool) -> str:
    while True:
        if valid:
            area = rng.choice([a for a in range(1, 900) if a != 666])
            number = f"{area:03d}{rng.randint(1, 99):02d}{rng.randint(1, 9999):04d}"
            if ssn.is_valid(number):
                return number
        else:
            area = rng.choice([0, 666, rng.randint(900, 999)])
            return f"{area:03d}{rng.randint(0, 99):02d}{rng.randint(0, 9999):04d}"


def cpr_number(rng: random.Random, valid: bool) -> str:
    if not valid:  # an impossible date: day 32-39, or month 13-19
        if rng.random() < 0.5:
            return f"{rng.randint(32, 39)}{rng.randint(1, 12):02d}{rng.randint(0, 99):02d}" \
                   f"{rng.randint(0, 9999):04d}"
        return f"{rng.randint(1, 28):02d}{rng.randint(13, 19)}{rng.randint(0, 99):02d}" \
               f"{rng.randint(0, 9999):04d}"
    while True:
        born = datetime.date(1930, 1, 1) + datetime.timedelta(days=rng.randint(0, 33000))
        year = born.year
        century = rng.choice("0123") if year < 2000 else rng.choice("4")
        if year >= 2000 and year - 2000 > 36:
            continue
        number = f"{born:%d%m}{year % 100:02d}{century}{rng.randint(0, 999):03d}"
        if cpr.is_valid(number):
            return number


def ipv4(rng: random.Random) -> str:
    return rng.choice([f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                       f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                       f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}."
                       f"{rng.randint(1, 254)}"])


def ipv6(rng: random.Random) -> str:
    groups = [f"{rng.randint(0, 0xffff):x}" for _ in range(8)]
    style = rng.random()
    if style < 0.4:
        return ":".join(groups)
    if style < 0.8:
        return f"2001:db8:{groups[2]}::{groups[6]}:{groups[7]}"
    return f"fe80::{groups[5]}:{groups[6]}:{groups[7]}"


def _b64(rng: random.Random, data: dict[str, object] | None = None, size: int = 0) -> str:
    raw = json.dumps(data).encode() if data is not None else rng.randbytes(size)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def secret(rng: random.Random) -> tuple[str, str]:
    kind = rng.choice(["aws_access_key", "jwt", "private_key", "bearer_token", "vagt_api_key"])
    if kind == "aws_access_key":
        alphabet = string.ascii_uppercase + "234567"
        return rng.choice(["AKIA", "ASIA"]) + "".join(rng.choice(alphabet)
                                                      for _ in range(16)), kind
    if kind == "jwt":
        return ".".join([_b64(rng, {"alg": rng.choice(["RS256", "ES256"]), "typ": "JWT"}),
                         _b64(rng, {"sub": f"user{rng.randint(1, 9999)}",
                                    "exp": rng.randint(1_700_000_000, 1_900_000_000)}),
                         _b64(rng, size=rng.choice([32, 64]))]), kind
    if kind == "private_key":
        body = "\n".join(base64.b64encode(rng.randbytes(48)).decode() for _ in range(4))
        label = rng.choice(["RSA ", "EC ", ""])
        return f"-----BEGIN {label}PRIVATE KEY-----\n{body}\n-----END {label}PRIVATE KEY-----", kind
    if kind == "bearer_token":
        return "".join(rng.choice(string.ascii_letters + string.digits)
                       for _ in range(rng.randint(24, 40))) + str(rng.randint(0, 9)), kind
    return "vagt_" + base64.urlsafe_b64encode(rng.randbytes(32)).decode().rstrip("="), kind


# --- sentences -----------------------------------------------------------------------------------

CONTEXT = {
    "en_US": {"EMAIL": "email", "PHONE": "call me at", "CREDIT_CARD": "my card is",
              "IBAN": "transfer to", "US_SSN": "SSN", "DK_CPR": "CPR", "IP_ADDRESS": "from IP",
              "SECRET": "the key is", "bare_phone": "phone"},
    "en_GB": {"EMAIL": "e-mail", "PHONE": "ring", "CREDIT_CARD": "card number",
              "IBAN": "account IBAN", "US_SSN": "social security number", "DK_CPR": "CPR no.",
              "IP_ADDRESS": "host", "SECRET": "credential", "bare_phone": "tel"},
    "da_DK": {"EMAIL": "mail", "PHONE": "ring på", "CREDIT_CARD": "kortnummer",
              "IBAN": "overfør til", "US_SSN": "SSN", "DK_CPR": "cpr-nr.",
              "IP_ADDRESS": "fra IP", "SECRET": "nøglen er", "bare_phone": "tlf."},
    "de_DE": {"EMAIL": "E-Mail", "PHONE": "Telefon", "CREDIT_CARD": "Kreditkarte",
              "IBAN": "IBAN", "US_SSN": "SSN", "DK_CPR": "CPR", "IP_ADDRESS": "IP-Adresse",
              "SECRET": "Schlüssel", "bare_phone": "Tel."},
}
FILLER = {
    "en_US": ["Hi team,", "Please update the record.", "Thanks!", "See below.",
              "The meeting moved to Tuesday.", "Can you check this?"],
    "en_GB": ["Cheers,", "Kind regards.", "Could you have a look?", "As discussed on the call."],
    "da_DK": ["Hej,", "Tak for i går.", "Kan du se på det?", "Mvh.", "Vi ses i morgen."],
    "de_DE": ["Hallo,", "Vielen Dank.", "Bitte prüfen.", "Mit freundlichen Grüßen."],
}


def positive(rng: random.Random, out: Text, entity: str) -> None:
    words = CONTEXT[out.locale]
    if entity == "EMAIL":
        out.add(f"{words['EMAIL']}: ")
        out.add(email(rng, out.locale), "EMAIL")
    elif entity == "PHONE":
        number, bare = phone(rng, out.locale)
        out.add(f"{words['bare_phone' if bare else 'PHONE']} ")
        out.add(number, "PHONE")
    elif entity == "CREDIT_CARD":
        if rng.random() < 0.7:
            out.add(f"{words['CREDIT_CARD']} ")
        out.add(card_format(rng, card_digits(rng, valid=True)), "CREDIT_CARD")
    elif entity == "IBAN":
        if rng.random() < 0.7:
            out.add(f"{words['IBAN']} ")
        out.add(iban_number(rng, valid=True), "IBAN")
    elif entity in ("US_SSN", "DK_CPR"):
        ssn = entity == "US_SSN"
        number = ssn_number(rng, valid=True) if ssn else cpr_number(rng, valid=True)
        dashed = rng.random() < 0.75
        if not dashed or rng.random() < 0.5:  # undashed, it needs its name before it
            out.add(f"{words[entity]} ")
        written = f"{number[:3]}-{number[3:5]}-{number[5:]}" if ssn else \
            f"{number[:6]}-{number[6:]}"
        out.add(written if dashed else number, entity)
    elif entity == "IP_ADDRESS":
        if rng.random() < 0.6:
            out.add(f"{words['IP_ADDRESS']} ")
        out.add(ipv4(rng) if rng.random() < 0.6 else ipv6(rng), "IP_ADDRESS")
    else:
        value, kind = secret(rng)
        if kind == "bearer_token":
            out.add("Authorization: Bearer ")
        elif rng.random() < 0.5:
            out.add(f"{words['SECRET']} ")
        out.add(value, "SECRET", kind)


def negative(rng: random.Random, out: Text) -> None:
    """A look-alike that is not PII."""
    kind = rng.randrange(13)
    if kind == 0:
        out.add(f"ref {card_format(rng, card_digits(rng, valid=False))}")
    elif kind == 1:
        out.add(f"IBAN {iban_number(rng, valid=False)}")
    elif kind == 2:
        out.add(f"Order #{rng.randint(10**7, 10**8 - 1)}")
    elif kind == 3:
        out.add(f"ordre nr. {rng.randint(10**9, 10**10 - 1)}")
    elif kind == 4:
        body = "978" + "".join(rng.choice(string.digits) for _ in range(9))
        check = (10 - sum(int(d) * (1 if i % 2 == 0 else 3) for i, d in enumerate(body)) % 10) % 10
        out.add(f"ISBN {body[:3]}-{body[3]}-{body[4:6]}-{body[6:12]}-{check}")
    elif kind == 5:
        day = datetime.date(2000, 1, 1) + datetime.timedelta(days=rng.randint(0, 9000))
        out.add(rng.choice([f"{day:%Y-%m-%d}", f"{day:%d.%m.%Y}", f"{day:%m/%d/%Y}"]))
    elif kind == 6:
        out.add(rng.choice([f"v{rng.randint(0, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 99)}",
                            f"version {rng.randint(1, 12)}.0.{rng.randint(1000, 30000)}."
                            f"{rng.randint(0, 999)}",
                            f"release {rng.randint(1, 5)}.{rng.randint(0, 9)}"]))
    elif kind == 7:
        number = ssn_number(rng, valid=False)
        out.add(f"code {number[:3]}-{number[3:5]}-{number[5:]}")
    elif kind == 8:
        number = cpr_number(rng, valid=False)
        out.add(f"sag {number[:6]}-{number[6:]}")
    elif kind == 9:
        out.add(f"{rng.randint(256, 999)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}."
                f"{rng.randint(0, 255)}")
    elif kind == 10:
        out.add(f"at {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}")
    elif kind == 11:
        out.add(f"tracking {rng.randint(10**11, 10**12 - 1)}")
    else:
        out.add(f"total {rng.randint(1, 999)} {rng.randint(100, 999)},{rng.randint(0, 99):02d}"
                f" kr.")


ENTITY_TYPES = ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "US_SSN", "DK_CPR", "IP_ADDRESS",
                "SECRET")


def sample(rng: random.Random) -> dict[str, object]:
    out = Text(rng.choice(LOCALES))
    pieces: list[Callable[[], None]] = []
    for _ in range(rng.randint(0, 3)):
        entity = rng.choice(ENTITY_TYPES)
        pieces.append(lambda e=entity: positive(rng, out, e))
    for _ in range(rng.randint(0, 2)):
        pieces.append(lambda: negative(rng, out))
    rng.shuffle(pieces)
    out.add(rng.choice(FILLER[out.locale]))
    for piece in pieces:
        out.add(" ")
        piece()
        out.add(rng.choice([".", ",", "", " and", ";"]))
    out.add(" " + rng.choice(FILLER[out.locale]))
    return out.record()


def generate() -> list[dict[str, object]]:
    rng = random.Random(SEED)
    return [sample(rng) for _ in range(SAMPLES)]


def lines() -> str:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in generate())


if __name__ == "__main__":
    PATH.write_text(lines(), encoding="utf-8")
    print(f"wrote {PATH}")
