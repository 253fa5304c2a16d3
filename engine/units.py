"""Sizes as people say them, the one formatter for every message that names a byte count (standard library only)."""

from __future__ import annotations


def human_bytes(n: int, *, up: bool = False) -> str:
    """A byte count as a person would say it; `up` rounds up so a size just over a limit reads as over it."""
    if n < 1024:
        return f"{n} bytes"
    for unit, scale in (("KB", 1 << 10), ("MB", 1 << 20), ("GB", 1 << 30)):
        if n < scale << 10 or unit == "GB":
            tenths = -(-n * 10 // scale) if up else round(n * 10 / scale)
            return f"{tenths / 10:g} {unit}"
    raise AssertionError("unreachable")
