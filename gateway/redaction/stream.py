"""The response filter: what the model writes, redacted and its pseudonyms restored, as it
streams — an entity may arrive split over many chunks.

The filter holds back a bounded tail: nothing is sent that could still turn out to be part of
an entity the caller's plan acts on, or of a placeholder to restore. What may start one depends
on the plan: with digits in the tail (and a digit entity in the plan), an ``@`` (email), a
``:`` (IPv6), ``-----``, ``eyJ``, ``vagt_``, ``bearer`` or an AWS key prefix (secrets), or a
``<`` (pseudonyms), the last 64 characters wait — every entity with spaces in it is shorter —
and never half a word (a token, an address or a key is one run of non-space characters, up to
4 KiB), nor an unfinished private-key block. Otherwise only a last word that could still grow
into one waits ("e" may become "eyJ…", "Hello" cannot), so plain text flows token by token.
What is sent is scanned with the text around it, so a stream comes out exactly as the whole
response would, however it was cut.
"""

from __future__ import annotations

import re
from dataclasses import replace

from gateway.redaction.recognizers import CONTEXT_WINDOW, Finding
from gateway.redaction.redactor import Blocked, Session

HOLD = 64  # characters held back once the tail looks like it may hold an entity
MAX_RUN = 4096  # a run of non-space characters longer than this is not held whole
MAX_KEY_BLOCK = 65536  # an unfinished private-key block is held up to this long
_PLACEHOLDER = re.compile(r"<[A-Z_]+_\d+>")
_DIGIT_ENTITIES = ("PHONE", "CREDIT_CARD", "US_SSN", "DK_CPR", "IP_ADDRESS", "IBAN")
# entity → (what in the tail means one may be under way, what a last word that may still grow
# into one looks like)
_SIGNS = {
    "DIGITS": (r"[0-9]|\+|\(", r"\S*[0-9+(]\S*"),
    "IBAN": (r"[0-9]", r"[A-Z]{1,2}"),
    "IP_ADDRESS": (r":", r"[0-9A-Fa-f]{1,4}"),
    "EMAIL": (r"@", r"[\w.%+-]+"),
    "SECRET": (r"-----|eyJ|vagt_|(?i:bearer)|A(?:KIA|SIA|BIA|CCA|GPA|IDA|ROA|IPA|NPA|NVA|PKA)",
               r"-{1,5}\S*|A[A-Z2-7]{0,19}|e(?:y(?:J[\w.-]*)?)?|v(?:a(?:g(?:t(?:_[\w-]*)?)?)?)?"
               r"|(?i:b(?:e(?:a(?:r(?:e(?:r)?)?)?)?)?)"),
    "PLACEHOLDER": (r"<", r"<[A-Z_0-9]*"),
    "NAMES": (r"(?!)", r"\S+"),  # NER: any word may be part of a name
}


def _signs(session: Session) -> tuple[re.Pattern[str], re.Pattern[str]] | None:
    """The tail and last-word patterns for what this session's plan acts on in responses."""
    acting = session.plan.acting("response")
    kinds = {"DIGITS"} if acting & set(_DIGIT_ENTITIES) else set()
    kinds |= {kind for kind in ("IBAN", "IP_ADDRESS", "EMAIL", "SECRET") if kind in acting}
    if acting & {"PERSON", "LOCATION", "ORGANIZATION"}:
        kinds.add("NAMES")
    if session.pseudonyms:
        kinds.add("PLACEHOLDER")
    if not kinds:
        return None
    starts = "|".join(f"(?:{_SIGNS[kind][1]})" for kind in sorted(kinds))
    return (re.compile("|".join(_SIGNS[kind][0] for kind in sorted(kinds))),
            # the end of the last word, from a place an entity may begin ("id:AKI" holds "AKI")
            re.compile(rf"(?<![A-Za-z0-9])(?:{starts})\Z"))


class ResponseFilter:
    def __init__(self, session: Session) -> None:
        self.session = session
        self._buffer = ""
        self._context = ""  # the end of what was sent: context words for what follows
        self._signs = _signs(session)
        # a response is scanned for what the plan acts on (each token is: keep it cheap)
        self._acting = session.plan.acting("response")

    def _restore(self, text: str) -> str:
        """The model's own text with the pseudonyms it was given turned back into originals
        (never a token this filter just wrote)."""
        pseudonyms = self.session.pseudonyms
        if not pseudonyms or "<" not in text:
            return text
        return _PLACEHOLDER.sub(lambda m: pseudonyms.get(m.group(0), m.group(0)), text)

    def feed(self, text: str) -> str:
        """What may be sent now, of everything fed so far."""
        self._buffer += text
        return self._send(self._safe_end())

    def finish(self) -> str:
        """The rest, at the end of the response."""
        return self._send(len(self._buffer))

    def _safe_end(self) -> int:
        text = self._buffer
        end = len(text)
        if self._signs is None:
            return end  # the plan acts on nothing a response may carry, and nothing to restore
        tail_sign, word_sign = self._signs
        tail = max(0, end - HOLD)
        if tail_sign.search(text, max(0, tail - 8)) is None:
            # nothing under way: at most the last word waits, if it may still grow into one
            word = _run_start(text, end)
            return word if word < end and word_sign.search(text, word) else end
        tail = _run_start(text, tail)
        lowered = text.lower()
        key = lowered.rfind("-----begin", 0, tail)
        if key != -1 and "-----end" not in lowered[key:] and end - key <= MAX_KEY_BLOCK:
            tail = key
        return tail

    def _send(self, end: int) -> str:
        if end <= 0:
            return ""
        context = self._context
        text = context + self._buffer
        offset = len(context)
        found = [f for f in self.session.redactor.scan(text, self._acting) if f.start >= offset]
        cut = offset + end
        for finding in found:  # never send part of an entity
            if finding.start < cut < finding.end:
                cut = finding.start
        if cut == offset:
            return ""
        blocked: list[str] = []
        sent = self.session.apply(text[offset:cut], [_shifted(f, -offset) for f in found
                                                     if f.end <= cut], "response", blocked,
                                  self._restore)
        if blocked:
            raise Blocked(blocked, "response")
        self._context = text[:cut][-CONTEXT_WINDOW:]
        self._buffer = text[cut:]
        return sent


def _shifted(finding: Finding, by: int) -> Finding:
    return replace(finding, start=finding.start + by, end=finding.end + by)


def _run_start(text: str, position: int) -> int:
    """``position``, or the start of the run of non-space characters it falls in (a word is
    never cut: the next chunk may continue it)."""
    if position == len(text) and text and not text[-1].isspace():
        position -= 1  # the last word may not be finished
    elif position >= len(text) or position == 0 or text[position - 1].isspace() \
            or text[position].isspace():
        return position  # already between words
    start = position
    while start > 0 and not text[start - 1].isspace():
        start -= 1
        if position - start > MAX_RUN:
            return position
    return start
