"""The response filter: what the model writes, redacted and its pseudonyms restored, as it
streams — an entity may arrive split over many chunks.

The filter holds back a bounded tail: nothing is sent that could still turn out to be the start
of an entity or a placeholder. When the tail shows no sign of one (no digit, ``@``, ``<``, ``:``,
``-----``, ``eyJ``, ``vagt_``, ``bearer``), only the last, unfinished word waits; otherwise the
last 64 characters do (every entity with spaces in it is shorter), and never half a word (a
token, an address or a key is one run of non-space characters, up to 4 KiB), nor an unfinished
private-key block. What is sent is scanned with the text around it, so a stream comes out
exactly as the whole response would, however it was cut.
"""

from __future__ import annotations

import re
from dataclasses import replace

from gateway.redaction.recognizers import CONTEXT_WINDOW, Finding
from gateway.redaction.redactor import Blocked, Session

HOLD = 64  # characters held back once the tail looks like it may hold an entity
MAX_RUN = 4096  # a run of non-space characters longer than this is not held whole
MAX_KEY_BLOCK = 65536  # an unfinished private-key block is held up to this long
_TRIGGER = re.compile(r"[0-9@<:]|-----|eyj|vagt_|bearer")
_PLACEHOLDER = re.compile(r"<[A-Z_]+_\d+>")


class ResponseFilter:
    def __init__(self, session: Session) -> None:
        self.session = session
        self._buffer = ""
        self._context = ""  # the end of what was sent: context words for what follows

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
        lowered = text.lower()
        end = len(text)
        tail = max(0, end - HOLD)
        if _TRIGGER.search(lowered, max(0, tail - 8)) is None:
            tail = end  # nothing entity-like: only the unfinished word waits
        tail = _run_start(text, tail)
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
        found = [f for f in self.session.redactor.scan(text) if f.start >= offset]
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
