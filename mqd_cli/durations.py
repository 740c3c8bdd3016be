"""Durations as operators write them: ``"90s"``, ``"30m"``, ``"1h"``, ``"2d"``, ``"250ms"``.

``parse_duration`` reads the text (config values, command options); ``format_duration`` writes
the largest whole unit, exactly, so the text parses back. A leaf module: it imports nothing of
mqd, so config, protections and the commands' rendering all use the same reading.
"""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``"90s"``, ``"30m"``, ``"1h"``, ``"2d"``, ``"250ms"`` -> timedelta; ValueError otherwise."""
    m = _DURATION_RE.match(text) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"expected a duration like '90s', '30m', '1h' or '2d', got {text!r}")
    try:
        return timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2)])
    except OverflowError:
        raise ValueError(f"duration {text!r} is too long") from None


_UNIT_MICROS = (
    ("d", 86_400_000_000),
    ("h", 3_600_000_000),
    ("m", 60_000_000),
    ("s", 1_000_000),
    ("ms", 1_000),
)


def format_duration(td: timedelta) -> str:
    """The largest whole unit (``"1h"``, ``"90s"``, ``"250ms"``); exact, so it parses back."""
    micros = td // timedelta(microseconds=1)
    if micros == 0:
        return "0s"
    for unit, size in _UNIT_MICROS:
        if micros % size == 0:
            return f"{micros // size}{unit}"
    return f"{micros / 1_000_000}s"


def format_span(td: timedelta) -> str:
    """A measured span for people: ``42.50s`` under two minutes, else ``5d 3h10m``."""
    seconds = abs(td.total_seconds())
    if seconds < 120:
        return f"{seconds:.2f}s"
    days, rest = divmod(round(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    parts = [f"{days}d"] if days else []
    return " ".join([*parts, f"{hours}h{rest // 60:02d}m"])
