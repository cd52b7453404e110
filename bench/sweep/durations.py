"""Durations people write (``30m``, ``2h``, ``1h30m``, seconds): a leaf, read by the space
loader and the command line alike."""
from __future__ import annotations

import math
import re

from bench.errors import UserError

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([hms]?)")


def parse_duration(text, what: str = "--time-budget") -> float:
    """``90``, ``90s``, ``30m``, ``2h``, ``1h30m`` (or a number of seconds) -> seconds > 0."""
    if isinstance(text, bool):
        raise UserError(f"{what} must be a duration like 30m, 90s, 2h or seconds, got {text!r}")
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        s = str(text).strip().lower().replace("min", "m")
        pos, seconds, ok = 0, 0.0, bool(s)
        for match in _PART.finditer(s):
            if match.start() != pos or (not match.group(2) and match.end() != len(s)):
                ok = False
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if not ok or pos != len(s):
            raise UserError(f"{what} must be a duration like 30m, 90s, 2h or seconds, got {text!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise UserError(f"{what} must be more than 0 seconds, got {text!r}")
    return seconds
