"""`/animate` options: `motion=`, `camera=`, `seed=`, `fps=` tokens, everything else is the prompt.

A request is checked once, where it comes in (the words a user typed, a Discord command's arguments, a
state file written by an older run), against engine/vocabulary.py; afterwards it is a typed value the bots
pass around and hand to the engine as its options JSON.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.core.errors import OptionError
from bot.core.models import LIMIT_KEYS
from engine.vocabulary import CAMERAS, FPS, MAX_PROMPT_CHARS, MOTION_LEVELS, SEED, Camera, Motion, is_camera, is_motion

__all__ = ["AnimateRequest", "OptionError", "parse_animate", "parse_limits"]

MAX_SEED = SEED[1]
KEYS = ("motion", "camera", "seed", "fps")
# Only these keys make a token an option; "a=b" with any other key stays part of the prompt.
TOKEN = re.compile(r"(?i)(motion|camera|seed|fps)=(.*)")
LIMIT_TOKEN = re.compile(r"(?i)([a-z_]+)=(.*)")


@dataclass(frozen=True)
class AnimateRequest:
    """What to animate: the prompt and the options a user chose (None: the engine's default)."""

    prompt: str | None = None
    motion: Motion | None = None
    camera: Camera | None = None
    seed: int | None = None
    fps: int | None = None

    @property
    def options(self) -> dict[str, Any]:
        """The engine's options JSON (prompt included), only what was chosen."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def more_motion(self) -> AnimateRequest:
        """The same request with `motion=high` (the ⚡ button); the seed is kept, so only the motion changes."""
        return dataclasses.replace(self, motion="high")

    def with_seed(self, seed: int | None) -> AnimateRequest:
        """The same request with this seed (the 🔁 button); None drops it, so the engine picks a new one."""
        return dataclasses.replace(self, seed=None if seed is None else _in_bounds("seed", seed, *SEED))

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> AnimateRequest:
        """A request from typed values (a command's arguments, a state file's options JSON), each checked.

        OptionError, with the usage sentence, for an unknown key or a value outside the vocabulary.
        """
        unknown = sorted(set(options) - {"prompt", *KEYS})
        if unknown:
            raise OptionError(f"{unknown[0][:30]} isn't an option I know; use {', '.join(usage(k) for k in KEYS)}.")
        prompt, motion, camera = options.get("prompt"), options.get("motion"), options.get("camera")
        if prompt is not None and not isinstance(prompt, str):
            raise OptionError("The prompt must be text.")
        if motion is not None and not is_motion(motion):
            raise OptionError(f"{_shown('motion', str(motion))} isn't an option I know; use {usage('motion')}.")
        if camera is not None and not is_camera(camera):
            raise OptionError(f"{_shown('camera', str(camera))} isn't an option I know; use {usage('camera')}.")
        seed, fps = options.get("seed"), options.get("fps")
        return cls(
            prompt=_checked_prompt(prompt) if prompt else None,
            motion=motion,
            camera=camera,
            seed=None if seed is None else _in_bounds("seed", seed, *SEED),
            fps=None if fps is None else _in_bounds("fps", fps, *FPS),
        )


def usage(option: str) -> str:
    """The one-sentence usage of an option, naming its allowed values."""
    allowed = {
        "motion": " or ".join(f"motion={level}" for level in MOTION_LEVELS),
        "camera": "camera= one of " + ", ".join(CAMERAS),
        "seed": f"seed= a whole number from 0 to {MAX_SEED}",
        "fps": f"fps= a whole number from {FPS[0]} to {FPS[1]}",
    }
    return allowed[option]


def parse_animate(text: str) -> AnimateRequest:
    """Parse what follows `/animate`; OptionError (a usage sentence) for a bad or repeated option."""
    chosen: dict[str, Any] = {}
    words: list[str] = []
    for token in text.split():
        match = TOKEN.fullmatch(token)
        if match is None:
            words.append(token)
            continue
        key, value = match.group(1).lower(), match.group(2)
        if key in chosen:
            raise OptionError(f"You gave {key} twice; use it once: {usage(key)}.")
        if key in ("motion", "camera"):
            chosen[key] = value.lower()
        elif not value.isascii() or not value.isdigit() or len(value) > 20:  # int() of 5000 digits raises
            raise OptionError(f"{_shown(key, value)} isn't valid; use {usage(key)}.")
        else:
            chosen[key] = int(value)
    if words:
        chosen["prompt"] = " ".join(words)
    return AnimateRequest.from_options(chosen)


def parse_limits(text: str) -> dict[str, int]:
    """Parse an admin's `user_jobs=10 queue_max=200 …`; OptionError names a bad key or number."""
    numbers: dict[str, int] = {}
    allowed = ", ".join(LIMIT_KEYS)
    for token in text.split():
        match = LIMIT_TOKEN.fullmatch(token)
        key = match.group(1).lower() if match else token[:40]
        if match is None or key not in LIMIT_KEYS:
            raise OptionError(f"{key} isn't a limit I know; use key=number with one of {allowed}.")
        value = match.group(2)
        # ASCII digits only (str.isdigit() is true of "٣" and "²" too), and no more of them than the bound has:
        # int() of thousands of digits raises
        if not (value.isascii() and value.isdigit()) or len(value.lstrip("0")) > 10 or not 1 <= int(value) <= 10**9:
            raise OptionError(f"{key} must be a whole number from 1 to 1000000000.")
        numbers[key] = int(value)
    if not numbers:
        raise OptionError(f"Give at least one limit as key=number; the keys are {allowed}.")
    return numbers


def _in_bounds(key: str, value: Any, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise OptionError(f"{_shown(key, str(value))} isn't valid; use {usage(key)}.")
    return value


def _checked_prompt(prompt: str) -> str:
    if len(prompt) > MAX_PROMPT_CHARS:
        raise OptionError(f"The prompt is too long ({len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}).")
    return prompt


def _shown(key: str, value: str) -> str:
    """The bad token as the user typed it, cut short so a pasted essay doesn't echo back."""
    shown = value if len(value) <= 30 else value[:30] + "…"
    return f"{key}={shown}"
