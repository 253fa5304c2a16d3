"""How the bots put numbers, times and user text into a sentence: waits, ages, cuts and defused mentions.

Sizes come from engine/units.py, the one byte formatter; standard library only.
"""

from __future__ import annotations

import math
import re
from datetime import datetime

ZWSP = "\u200b"
MENTION = re.compile(r"@(everyone|here)|<@([!&]?\d+)>", re.IGNORECASE)


def in_time(seconds: float | None) -> str:
    """When to come back, in human units: 45 s → "in a minute", 7 min → "in 7 minutes"."""
    if seconds is None or seconds <= 60:
        return "in a minute"
    minutes = math.ceil(seconds / 60)
    if minutes < 90:
        return f"in {minutes} minutes"
    hours = math.ceil(minutes / 60)
    return f"in {hours} hours" if hours < 48 else f"in {math.ceil(hours / 24)} days"


def cut(text: str, limit: int) -> str:
    """Whitespace collapsed to single spaces, and cut to `limit` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: max(0, limit - 1)].rstrip() + "…"


def cut_lines(text: str, limit: int) -> str:
    """Cut to `limit` characters with an ellipsis, keeping the line breaks."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def ago(when: datetime | None, now: datetime) -> str:
    """How long ago, in the largest whole unit: "just now", "7 min ago", "3 h ago", "2 d ago"."""
    if when is None:
        return "?"
    seconds = max(0.0, (now - when).total_seconds())
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"


def defuse_mentions(text: str) -> str:
    """Neutralise @everyone, @here and <@…> mentions with a zero-width space, so echoed text pings no one."""
    return MENTION.sub(lambda m: m.group(0)[0] + ZWSP + m.group(0)[1:], text)
