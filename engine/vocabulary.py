"""The one home of every request option's allowed values and bounds.

The CLI, the API schema, both bots and the config file all read them from here, so a value can be
added or a bound moved in one place. Standard library only: the bots (whose slim image has no numpy,
OpenCV or Pillow) import this module.
"""

from __future__ import annotations

from typing import Literal, TypeGuard, get_args

Camera = Literal["zoom-in", "zoom-out", "pan-left", "pan-right", "pan-up", "pan-down", "shake", "orbit"]
Motion = Literal["low", "high"]
Emotion = Literal["joy", "surprise", "anger", "fear", "sadness", "disgust", "love", "smug", "confusion", "neutral"]
Format = Literal["gif", "mp4", "webp"]

CAMERAS: tuple[Camera, ...] = get_args(Camera)
MOTION_LEVELS: tuple[Motion, ...] = get_args(Motion)
EMOTIONS: tuple[Emotion, ...] = get_args(Emotion)
FORMATS: tuple[Format, ...] = get_args(Format)

# Bounds a request may ask for, inclusive; they keep one job's time and memory predictable.
FRAMES = (2, 240)
FPS = (1, 50)
SIZE = (64, 1024)  # the output's longer side, px
SEED = (0, 2**31 - 1)  # fits every integer column and numpy's seeding
MAX_PROMPT_CHARS = 500
BOUNDS: dict[str, tuple[int, int]] = {"frames": FRAMES, "fps": FPS, "size": SIZE, "seed": SEED}


def is_camera(value: object) -> TypeGuard[Camera]:
    """Whether `value` names a camera move."""
    return value in CAMERAS


def is_motion(value: object) -> TypeGuard[Motion]:
    """Whether `value` names a motion level."""
    return value in MOTION_LEVELS


def is_format(value: object) -> TypeGuard[Format]:
    """Whether `value` names an output format."""
    return value in FORMATS
