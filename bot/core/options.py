"""`/animate` options: `motion=`, `camera=`, `seed=`, `fps=` tokens, everything else is the prompt."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from bot.core.errors import OptionError
from bot.core.models import LIMIT_KEYS
from engine.vocabulary import CAMERAS, FPS, MAX_PROMPT_CHARS, MOTION_LEVELS, SEED

__all__ = ["AnimateRequest", "OptionError", "parse_animate", "parse_limits"]

MOTIONS = MOTION_LEVELS
MAX_SEED = SEED[1]
# Only these keys make a token an option; "a=b" with any other key stays part of the prompt.
TOKEN = re.compile(r"(?i)(motion|camera|seed|fps)=(.*)")
LIMIT_TOKEN = re.compile(r"(?i)([a-z_]+)=(.*)")


@dataclass(frozen=True)
class AnimateRequest:
    """What to animate: the prompt (or None) and `options`, the engine's options JSON (prompt included)."""

    prompt: str | None
    options: dict[str, Any] = field(default_factory=dict)

    def more_motion(self) -> AnimateRequest:
        """The same request with `motion=high` (the ⚡ button); the seed is kept, so only the motion changes."""
        return AnimateRequest(self.prompt, {**self.options, "motion": "high"})

    def with_seed(self, seed: int | None) -> AnimateRequest:
        """The same request with this seed (the 🔁 button); None drops it, so the engine picks a new one."""
        options = {k: v for k, v in self.options.items() if k != "seed"}
        if seed is not None:
            options["seed"] = _bounded("seed", str(seed), 0, MAX_SEED)
        return AnimateRequest(self.prompt, options)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> AnimateRequest:
        """Rebuild a request from its `options` (as kept in a pending-jobs file), checking them again."""
        tokens = [f"{k}={v}" for k, v in options.items() if k != "prompt" and v is not None]
        parsed = parse_animate(" ".join(tokens))
        prompt = options.get("prompt")
        if prompt is not None:
            parsed = AnimateRequest(str(prompt), {**parsed.options, "prompt": _checked_prompt(str(prompt))})
        return parsed


def usage(option: str) -> str:
    """The one-sentence usage of an option, naming its allowed values."""
    allowed = {
        "motion": "motion=low or motion=high",
        "camera": "camera= one of " + ", ".join(CAMERAS),
        "seed": f"seed= a whole number from 0 to {MAX_SEED}",
        "fps": f"fps= a whole number from {FPS[0]} to {FPS[1]}",
    }
    return allowed[option]


def parse_animate(text: str) -> AnimateRequest:
    """Parse what follows `/animate`; OptionError (a usage sentence) for a bad or repeated option."""
    options: dict[str, Any] = {}
    words: list[str] = []
    for token in text.split():
        match = TOKEN.fullmatch(token)
        if match is None:
            words.append(token)
            continue
        key, value = match.group(1).lower(), match.group(2)
        if key in options:
            raise OptionError(f"You gave {key} twice; use it once: {usage(key)}.")
        if key == "motion" or key == "camera":
            choices = MOTIONS if key == "motion" else CAMERAS
            if value.lower() not in choices:
                raise OptionError(f"{_shown(key, value)} isn't an option I know; use {usage(key)}.")
            options[key] = value.lower()
        elif key == "seed":
            options[key] = _bounded(key, value, 0, MAX_SEED)
        else:
            options[key] = _bounded(key, value, *FPS)
    prompt = _checked_prompt(" ".join(words)) if words else None
    if prompt is not None:
        options["prompt"] = prompt
    return AnimateRequest(prompt, options)


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
        if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 10**9:
            raise OptionError(f"{key} must be a whole number from 1 to 1000000000.")
        numbers[key] = int(value)
    if not numbers:
        raise OptionError(f"Give at least one limit as key=number; the keys are {allowed}.")
    return numbers


def _bounded(key: str, value: str, low: int, high: int) -> int:
    if not value.isascii() or not value.isdigit() or not low <= int(value) <= high:
        raise OptionError(f"{_shown(key, value)} isn't valid; use {usage(key)}.")
    return int(value)


def _checked_prompt(prompt: str) -> str:
    if len(prompt) > MAX_PROMPT_CHARS:
        raise OptionError(f"The prompt is too long ({len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}).")
    return prompt


def _shown(key: str, value: str) -> str:
    """The bad token as the user typed it, cut short so a pasted essay doesn't echo back."""
    shown = value if len(value) <= 30 else value[:30] + "…"
    return f"{key}={shown}"
