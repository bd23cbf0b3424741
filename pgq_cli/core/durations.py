"""Durations as people type them on a command line: `30s`, `15m`, `2h`, `7d`, `1h30m`, `90`.

One parser for every option that takes an age or a span (`requeue --dead --older-than`,
`purge --older-than`, ...), so they all accept the same syntax. A bare number means
seconds. Never prints; raises `InvalidInput` (exit 2) with a hint.
"""

from __future__ import annotations

import re

from .errors import InvalidInput

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Up to ten years: beyond that an age is a typo, and interval arithmetic stays in range.
MAX_SECONDS = 10 * 366 * 86400

_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?[smhdw])+$")
_BARE = re.compile(r"^\d+(?:\.\d+)?$")

HINT = "use a number of seconds or units like 30s, 15m, 2h, 7d, 1h30m"


def parse_duration(text: str, what: str = "duration") -> float:
    """Seconds in `text` (`30s`, `15m`, `2h`, `7d`, `2w`, `1h30m`, or a bare `90`)."""
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
