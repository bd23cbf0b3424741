"""Durations as people type them on a command line: `30s`, `15m`, `2h`, `7d`, `1h30m`, `90`.

One parser for every option that takes a time (`--vt`, `--delay`, `--wait`, `--interval`,
`--older-than`, ...), so they all accept the same syntax. A bare number means seconds,
except for the PostgreSQL timeouts (`--statement-timeout`, `--lock-timeout`), where it
means milliseconds as it always has (`parse_milliseconds`). Never prints; raises
`InvalidInput` (exit 2) with a hint.
"""

from __future__ import annotations

import re

from .errors import InvalidInput

UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Up to ten years: beyond that an age is a typo, and interval arithmetic stays in range.
MAX_SECONDS = 10 * 366 * 86400

# `ms` before `m`: "500ms" is 500 milliseconds, not 500 minutes and a stray "s".
_UNIT = r"(?:ms|[smhdw])"
_PART = re.compile(rf"(\d+(?:\.\d+)?)({_UNIT})")
_WHOLE = re.compile(rf"^(?:\d+(?:\.\d+)?{_UNIT})+$")
_BARE = re.compile(r"^\d+(?:\.\d+)?$")

HINT = "use a number of seconds or units like 30s, 15m, 2h, 7d, 1h30m"
MS_HINT = "use a number of milliseconds or units like 500ms, 3s, 1m"


def parse_duration(text: str, what: str = "duration") -> float:
    """Seconds in `text` (`30s`, `15m`, `2h`, `7d`, `2w`, `1h30m`, `500ms`, or a bare `90`)."""
    cleaned = text.strip().lower()
    if _BARE.match(cleaned):
        seconds = float(cleaned)
    elif _WHOLE.match(cleaned):
        seconds = sum(float(n) * UNIT_SECONDS[unit] for n, unit in _PART.findall(cleaned))
    else:
        raise InvalidInput(f"{what} {text[:40]!r} is not a duration", hint=HINT)
    if seconds > MAX_SECONDS:
        raise InvalidInput(f"{what} {text[:40]!r} is longer than ten years", hint=HINT)
    return seconds


def parse_milliseconds(text: str, what: str = "timeout") -> int:
    """Whole milliseconds in `text`: a bare number is milliseconds (`3000`: 3 s, never 50
    minutes, so scripts written when these options took only milliseconds keep their
    meaning); with a unit it is a duration (`500ms`, `3s`, `1m`)."""
    cleaned = text.strip().lower()
    if _BARE.match(cleaned):
        millis = float(cleaned)
        if millis > MAX_SECONDS * 1000:
            raise InvalidInput(f"{what} {text[:40]!r} is longer than ten years", hint=MS_HINT)
    else:
        try:
            millis = parse_duration(cleaned, what) * 1000
        except InvalidInput:
            raise InvalidInput(
                f"{what} {text[:40]!r} is not a duration", hint=MS_HINT
            ) from None
    return round(millis)
