"""Parse the human units used on command lines and in config files: 5s, 2m, 500ms, 10G."""

from __future__ import annotations

import re
from fractions import Fraction

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, None: 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_duration(text: str) -> float:
    """Seconds from '500ms', '5s', '2m', '1h', '1d' or a bare number of seconds."""
    m = _DURATION.fullmatch(str(text))
    if not m:
        raise ValueError(f"{text!r} is not a duration (examples: 500ms, 5s, 2m, 1h)")
    seconds = float(m[1]) * _DURATION_UNITS[m[2]]
    if not 0 < seconds < 10**9:
        raise ValueError(f"duration {text!r} must be positive and finite")
    return seconds


def parse_size(text: str) -> int:
    """Bytes from '500M', '10G', '2GiB' or a bare number of bytes."""
    m = _SIZE.fullmatch(str(text))
    if not m:
        raise ValueError(f"{text!r} is not a size (examples: 500M, 10G, 2GiB)")
    unit = (m[2] or "").lower()
    binary = "i" in unit
    base = _SIZE_UNITS[unit[:1] if unit[:1] != "b" else ""]
    if binary:
        base = 1024 ** {"k": 1, "m": 2, "g": 3, "t": 4}[unit[0]]
    size = int(Fraction(m[1]) * base)  # exact: float("1.001") * 1000 truncates to 1000
    if size <= 0:
        raise ValueError(f"size {text!r} must be positive")
    return size
