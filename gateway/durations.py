"""Durations as people and Ollama write them: "90d", "12h", "1h30m", "500ms", "-1", "300"."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d|w)")
_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
            "d": 86400.0, "w": 604800.0}


def parse_duration(text: str) -> float:
    """Seconds: a bare number is seconds; a leading minus is kept (Ollama's "forever")."""
    text = text.strip()
    body = text.lstrip("+-")
    sign = -1.0 if text.startswith("-") else 1.0
    try:
        return sign * float(body)
    except ValueError:
        pass
    parts = _PART.findall(body)
    if not parts or "".join(n + u for n, u in parts) != body:
        raise ValueError(f"invalid duration {text!r}: use e.g. 90d, 12h, 30m, 45s")
    return sign * sum(float(n) * _SECONDS[u] for n, u in parts)


def parse_lifetime(text: str) -> float:
    """Seconds in a positive duration such as "90d" or "1h30m"."""
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"invalid duration {text!r}: must be positive")
    return seconds
