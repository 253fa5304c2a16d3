"""Limits on the words a script carries, shared by every script writer."""

from __future__ import annotations

MAX_PROMPT_WORDS = 60  # a motion prompt longer than this is cut: video models keep 77 tokens


def cap_words(text: str, limit: int) -> str:
    """`text` cut to its first `limit` words, with an ellipsis when cut."""
    words = text.split()
    return text if len(words) <= limit else " ".join(words[:limit]) + "…"
