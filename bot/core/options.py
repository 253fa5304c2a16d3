"""`/animate` options (`motion=`, `camera=`, `seed=`, `fps=` tokens, everything else is the prompt), and what
`/remix` (a new subject for a GIF's motion) and `/lora tune` (a checkpoint tuned on a GIF) ask for.

A request is checked once, where it comes in (the words a user typed, a Discord command's arguments, a
state file written by an older run), against engine/vocabulary.py; afterwards it is a typed value the bots
pass around and hand to the engine as its options JSON.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from bot.core.errors import OptionError
from bot.core.models import LIMIT_KEYS
from engine.vocabulary import CAMERAS, FPS, MAX_PROMPT_CHARS, MOTION_LEVELS, SEED, Camera, Motion, is_camera, is_motion

__all__ = [
    "AnimateRequest", "OptionError", "RemixRequest", "Request", "TuneRequest", "parse_animate",
    "parse_limits", "parse_remix", "parse_tune", "request_of", "rerun",
]  # fmt: skip

MAX_SEED = SEED[1]
KEYS = ("motion", "camera", "seed", "fps")
# Only these keys make a token an option; "a=b" with any other key stays part of the prompt.
TOKEN = re.compile(r"(?i)(motion|camera|seed|fps)=(.*)")
LIMIT_TOKEN = re.compile(r"(?i)([a-z_]+)=(.*)")
# The engine registry's checkpoint names (CHECKPOINT_NAME of its API), checked here for a sentence before an upload.
CHECKPOINT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
NO_REMIX_PROMPT = "Say what the GIF should show instead, e.g. “a sloth is surfing”."


@dataclass(frozen=True)
class AnimateRequest:
    """What to animate: the prompt and the options a user chose (None: the engine's default)."""

    prompt: str | None = None
    motion: Motion | None = None
    camera: Camera | None = None
    seed: int | None = None
    fps: int | None = None
    kind: ClassVar[str] = "animate"

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


@dataclass(frozen=True)
class RemixRequest:
    """What to remix: the GIF's motion with this new subject; the seed None lets the engine pick one."""

    prompt: str
    seed: int | None = None
    kind: ClassVar[str] = "remix"

    @property
    def options(self) -> dict[str, Any]:
        """The engine's RemixOptions JSON, only what was chosen (the output format is the adapter's)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def with_seed(self, seed: int | None) -> RemixRequest:
        """The same remix with this seed (the 🔁 button); None drops it, so the engine picks a new one."""
        return dataclasses.replace(self, seed=None if seed is None else _in_bounds("seed", seed, *SEED))

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RemixRequest:
        """A remix from typed values (a command's arguments, a state file's JSON), each checked."""
        unknown = sorted(set(options) - {"prompt", "seed"})
        if unknown:
            raise OptionError(f"{unknown[0][:30]} isn't an option of a remix.")
        prompt, seed = options.get("prompt"), options.get("seed")
        if not isinstance(prompt, str) or not prompt.strip():
            raise OptionError(NO_REMIX_PROMPT)
        return cls(_checked_prompt(" ".join(prompt.split())), None if seed is None else _in_bounds("seed", seed, *SEED))


@dataclass(frozen=True)
class TuneRequest:
    """A checkpoint to tune on one GIF: its name in the registry and, optionally, what happens in the GIF."""

    name: str
    prompt: str | None = None
    kind: ClassVar[str] = "tune"

    @property
    def options(self) -> dict[str, Any]:
        """The engine's TuneOptions JSON, only what was chosen."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> TuneRequest:
        """A tune from typed values (a command's arguments, a state file's JSON), each checked."""
        unknown = sorted(set(options) - {"name", "prompt"})
        if unknown:
            raise OptionError(f"{unknown[0][:30]} isn't an option of a tune.")
        name, prompt = options.get("name"), options.get("prompt")
        if not isinstance(name, str) or CHECKPOINT_NAME.fullmatch(name) is None:
            shown = name if isinstance(name, str) and len(name) <= 30 else f"{str(name)[:30]}…"
            raise OptionError(
                f"{shown} can't be a checkpoint's name: use up to 100 letters, digits, dots, dashes and underscores, "
                "starting with a letter or digit."
            )
        if prompt is not None and not isinstance(prompt, str):
            raise OptionError("The prompt must be text.")
        words = " ".join(prompt.split()) if prompt else ""
        return cls(name, _checked_prompt(words) if words else None)


Request = AnimateRequest | RemixRequest | TuneRequest
REQUESTS: dict[str, type[AnimateRequest] | type[RemixRequest] | type[TuneRequest]] = {
    "animate": AnimateRequest, "remix": RemixRequest, "tune": TuneRequest,
}  # fmt: skip


def rerun(request: Request, seed: int | None, *, more: bool) -> Request | None:
    """What 🔁 (a new seed) or ⚡ (the result's seed, more motion) asks for; None where the button has no meaning."""
    if isinstance(request, AnimateRequest):
        return request.with_seed(seed).more_motion() if more else request.with_seed(None)
    if isinstance(request, RemixRequest) and not more:
        return request.with_seed(None)
    return None


def request_of(kind: str, options: Mapping[str, Any]) -> Request:
    """The request of a job of this kind from its options JSON; OptionError for an unknown kind or a bad value."""
    if kind not in REQUESTS:
        raise OptionError(f"{kind[:30]} isn't a kind of job I make.")
    return REQUESTS[kind].from_options(options)


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


def parse_remix(text: str) -> RemixRequest:
    """Parse what follows `/remix`: all of it is the new subject; OptionError when there is none."""
    return RemixRequest.from_options({"prompt": text})


def parse_tune(words: list[str]) -> TuneRequest:
    """Parse what follows `/lora tune`: the checkpoint's name, then what happens in the GIF (optional)."""
    if not words:
        raise OptionError("Give the checkpoint a name: /lora tune NAME [what happens in the GIF].")
    return TuneRequest.from_options({"name": words[0], "prompt": " ".join(words[1:]) or None})


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
