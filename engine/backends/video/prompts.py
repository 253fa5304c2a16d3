"""The words a video model gets: the script's motion prompt, the motion level and camera as phrases, quality phrases."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

# Words for the request's motion level and the script's camera move, added to a video model's prompt.
MOTION_PHRASES = {"low": "subtle gentle motion", "high": "big energetic motion"}
CAMERA_PHRASES = {
    "zoom-in": "slow camera zoom in", "zoom-out": "slow camera zoom out", "pan-left": "camera pans left",
    "pan-right": "camera pans right", "pan-up": "camera tilts up", "pan-down": "camera tilts down",
    "shake": "shaky handheld camera", "orbit": "camera orbits slowly around the subject",
}  # fmt: skip


def prompt_for(motion_prompt: str, quality: tuple[str, ...], *extra: str, tokenizer: Any = None) -> str:
    """The script's motion prompt, then the extra phrases and the configured quality phrases.

    With the model's tokenizer, the motion prompt loses words from its end until the whole prompt fits the
    text encoder (CLIP keeps 77 tokens): otherwise a long motion prompt silently cuts off the camera words
    and the quality phrases, which come last.
    """
    words = motion_prompt.strip().rstrip(".").split()
    tail = [p for p in extra if p] + list(quality)

    def joined(count: int) -> str:
        return ", ".join(p for p in [" ".join(words[:count]), *tail] if p)

    limit = getattr(tokenizer, "model_max_length", None)
    if not isinstance(limit, int) or limit > 100_000:  # no tokenizer, or one without a real limit
        return joined(len(words))
    count = len(words)
    while count > 0 and len(tokenizer(joined(count)).input_ids) > limit:
        count -= 1
    if count < len(words):
        log.info("motion prompt cut to %d of %d words to fit %d tokens", count, len(words), limit)
    return joined(count)
