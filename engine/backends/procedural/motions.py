"""Meme motions as periodic curves of the loop phase, and the emotion/camera → motion mapping."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

# What the subject "acts out" for each emotion of the script.
EMOTION_MOTIONS: dict[str, str] = {
    "surprise": "punch-in",  # the dramatic fast zoom onto the face, hold, release
    "anger": "shake",  # rage shakes the whole frame
    "joy": "bounce",  # happy hops with squash and stretch
    "love": "heartbeat",  # lub-dub pulse on the subject
    "sadness": "push",  # slow, heavy push toward the face
    "fear": "tremble",  # small fast shake plus a racing pulse
    "smug": "parallax",  # the subject floats over its own background
    "disgust": "recoil",  # flinches back from the thing, then creeps in again
    "confusion": "sway",  # puzzled head tilt, rocking about the subject's base
    "neutral": "",  # nothing to act out: the camera move alone
}
# What each camera move of the script becomes.
CAMERA_MOTIONS: dict[str, str] = {
    "zoom-in": "push",
    "zoom-out": "pull",
    "pan-left": "pan-left",
    "pan-right": "pan-right",
    "pan-up": "pan-up",
    "pan-down": "pan-down",
    "shake": "shake",
    "orbit": "orbit",
}
# The emotion's motion already performs this camera move (a stronger version of it).
SUBSUMES = {
    ("punch-in", "zoom-in"), ("push", "zoom-in"), ("recoil", "zoom-out"),
    ("shake", "shake"), ("tremble", "shake"), ("parallax", "orbit"),
}  # fmt: skip
# The two would fight over the zoom; the camera move wins because a user may have asked for it.
CONFLICTS = {("punch-in", "zoom-out"), ("push", "zoom-out"), ("recoil", "zoom-in")}

HIGH_GAIN = 1.9  # motion="high" multiplies every amplitude by this
CAMERA_UNDER_ACTING = 0.5  # a camera move layered under an emotion's motion runs at this share, not to drown it


@dataclass
class Curves:
    """Per-frame motion parameters; every array has one value per frame and is periodic."""

    zoom: np.ndarray  # ≥ 1, about the focus point (the subject's centre)
    shift_x: np.ndarray  # content translation, fraction of the panel's width
    shift_y: np.ndarray  # fraction of the panel's height
    angle: np.ndarray  # degrees, about the subject's base
    squash: np.ndarray  # horizontal scale about the base; the vertical is 1/squash (volume kept)
    fg_shift_x: np.ndarray  # the foreground layer's extra translation (parallax only)
    fg_shift_y: np.ndarray
    fg_zoom: np.ndarray
    layered: bool = False  # render a foreground layer over an inpainted background
    names: list[str] = field(default_factory=list)

    @classmethod
    def still(cls, n: int) -> Curves:
        """No motion at all."""
        one, zero = np.ones(n), np.zeros(n)
        return cls(one, zero, zero.copy(), zero.copy(), one.copy(), zero.copy(), zero.copy(), one.copy())

    def then(self, other: Curves) -> Curves:
        """Both motions at once: zooms and squashes multiply, shifts and angles add."""
        return Curves(
            self.zoom * other.zoom, self.shift_x + other.shift_x, self.shift_y + other.shift_y,
            self.angle + other.angle, self.squash * other.squash, self.fg_shift_x + other.fg_shift_x,
            self.fg_shift_y + other.fg_shift_y, self.fg_zoom * other.fg_zoom,
            self.layered or other.layered, self.names + other.names,
        )  # fmt: skip


Motion = Callable[[np.ndarray, float, np.random.Generator], Curves]


def plan_motions(emotion: str, camera: str) -> list[str]:
    """The motions to combine for a script's emotion and camera move (see SUBSUMES/CONFLICTS)."""
    if emotion not in EMOTION_MOTIONS:
        raise ValueError(f"emotion must be one of {', '.join(EMOTION_MOTIONS)}, not {emotion!r}")
    if camera not in CAMERA_MOTIONS:
        raise ValueError(f"camera must be one of {', '.join(CAMERA_MOTIONS)}, not {camera!r}")
    acted, moved = EMOTION_MOTIONS[emotion], CAMERA_MOTIONS[camera]
    if not acted or (acted, camera) in CONFLICTS:
        return [moved]
    if (acted, camera) in SUBSUMES:
        return [acted]
    return [acted, moved]


def build_curves(names: list[str], frames: int, level: str, rng: np.random.Generator, share: float = 1.0) -> Curves:
    """Sum the named motions' curves over one loop of `frames` frames, every amplitude times `share`."""
    gain = share * (HIGH_GAIN if level == "high" else 1.0)
    t = np.arange(frames, dtype=np.float64) / frames  # frame N would be frame 0 again
    curves = Curves.still(frames)
    for i, name in enumerate(names):
        if name not in MOTIONS:
            raise ValueError(f"motion must be one of {', '.join(MOTIONS)}, not {name!r}")
        share = CAMERA_UNDER_ACTING if i > 0 else 1.0  # plan_motions puts the acting first
        curves = curves.then(MOTIONS[name](t, gain * share, rng))
        curves.names.append(name)
    return curves


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _there_and_back(t: np.ndarray, out: float = 0.7) -> np.ndarray:
    """-1 → +1 eased over `out` of the loop, then eased back: a pan that still loops."""
    t = t % 1.0
    go = np.where(t < out, _smoothstep(t / out), 1.0 - _smoothstep((t - out) / (1.0 - out)))
    return 2.0 * go - 1.0


def _pulse(t: np.ndarray, beats: int, at: float, sharpness: float = 40.0) -> np.ndarray:
    """A narrow periodic bump (peak 1) `beats` times per loop, offset by `at` of a beat."""
    return np.exp(sharpness * (np.cos(2.0 * np.pi * (beats * t - at)) - 1.0))


def _jitter(t: np.ndarray, rng: np.random.Generator, low: int, high: int) -> np.ndarray:
    """Seeded periodic noise (peak 1): random harmonics low..high of the loop, so it loops."""
    high = max(1, min(high, len(t) // 2))  # above Nyquist the harmonics would alias
    low = max(1, min(low, high))
    k = np.arange(low, high + 1)
    amplitude = rng.uniform(0.5, 1.0, k.size) / k
    phase = rng.uniform(0.0, 2.0 * np.pi, k.size)
    wave = (amplitude[:, None] * np.sin(2.0 * np.pi * k[:, None] * t[None, :] + phase[:, None])).sum(0)
    peak = float(np.abs(wave).max())
    return wave / peak if peak > 0 else wave


def _curves(n: int, **channels: np.ndarray | bool) -> Curves:
    curves = Curves.still(n)
    for key, value in channels.items():
        setattr(curves, key, value)
    return curves


def punch_in(t: np.ndarray, gain: float, rng: np.random.Generator) -> Curves:
    """Fast zoom onto the face (a tenth of the loop), hold, slow release."""
    t = t % 1.0
    envelope = _smoothstep(t / 0.1) * (1.0 - _smoothstep((t - 0.6) / 0.4))
    return _curves(len(t), zoom=1.0 + 0.35 * gain * envelope)


def push(t: np.ndarray, gain: float, rng: np.random.Generator) -> Curves:
    """Slow push toward the face and back out."""
    return _curves(len(t), zoom=1.0 + 0.12 * gain * (1.0 - np.cos(2.0 * np.pi * t)) / 2.0)


def pull(t: np.ndarray, gain: float, rng: np.random.Generator) -> Curves:
    """Starts close on the subject and pulls out, then drifts back in."""
    return _curves(len(t), zoom=1.0 + 0.12 * gain * (1.0 + np.cos(2.0 * np.pi * t)) / 2.0)


def recoil(t: np.ndarray, gain: float, rng: np.random.Generator) -> Curves:
    """A quick flinch back from a close view, then a slow creep in again."""
    t = t % 1.0
    envelope = 1.0 - _smoothstep(t / 0.12) * (1.0 - _smoothstep((t - 0.45) / 0.55))
    return _curves(len(t), zoom=1.0 + 0.18 * gain * envelope, shift_y=-0.01 * gain * (1.0 - envelope))


def shake(t: np.ndarray, gain: float, rng: np.random.Generator) -> Curves:
    """Earthquake: seeded looping jitter of position and a little rotation."""
    n = len(t)
    return _curves(
        n, shift_x=0.016 * gain * _jitter(t, rng, 5, 14), shift_y=0.016 * gain * _jitter(t, rng, 5, 14),
        angle=0.8 * gain * _jitter(t, rng, 3, 9),
    )  # fmt: skip


def tremble(t: np.ndarray, gain: float, rng: np.random.Generator) -> Curves:
    """Fear: a small fast shiver plus a racing heartbeat."""
    n = len(t)
    beat = _pulse(t, 3, 0.0) + 0.6 * _pulse(t, 3, 0.15)
    return _curves(
        n, shift_x=0.006 * gain * _jitter(t, rng, 10, 20), shift_y=0.006 * gain * _jitter(t, rng, 10, 20),
        zoom=1.0 + 0.04 * gain * beat,
    )  # fmt: skip


def bounce(t: np.ndarray, gain: float, rng: np.random.Generator) -> Curves:
    """Three hops per loop: squashed on landing, stretched in the air."""
    hops = 3
    height = np.abs(np.sin(np.pi * hops * t))
    return _curves(len(t), shift_y=-0.035 * gain * height, squash=1.0 + 0.05 * gain * np.cos(2.0 * np.pi * hops * t))


def sway(t: np.ndarray, gain: float, rng: np.random.Generator) -> Curves:
    """Gentle rocking about the subject's base."""
    phase = 2.0 * np.pi * t
    return _curves(len(t), angle=2.5 * gain * np.sin(phase), shift_x=0.006 * gain * np.sin(phase))


def heartbeat(t: np.ndarray, gain: float, rng: np.random.Generator) -> Curves:
    """Lub-dub: two beats per loop, each a strong and a weaker pulse."""
    beat = _pulse(t, 2, 0.0) + 0.6 * _pulse(t, 2, 0.18)
    return _curves(len(t), zoom=1.0 + 0.06 * gain * beat)


def orbit(t: np.ndarray, gain: float, rng: np.random.Generator) -> Curves:
    """Ken Burns orbit: the view circles the subject with a slight breathing zoom and tilt."""
    phase = 2.0 * np.pi * t
    return _curves(
        len(t), shift_x=0.03 * gain * np.cos(phase), shift_y=0.02 * gain * np.sin(phase),
        zoom=1.0 + 0.03 * gain * (1.0 + np.sin(phase)) / 2.0, angle=0.6 * gain * np.sin(phase),
    )  # fmt: skip


def parallax(t: np.ndarray, gain: float, rng: np.random.Generator) -> Curves:
    """2.5D: the background circles one way, the cut-out subject the other, slightly enlarged."""
    phase = 2.0 * np.pi * t
    u, v = np.cos(phase), 0.5 * np.sin(phase)
    return _curves(
        len(t), shift_x=-0.015 * gain * u, shift_y=-0.015 * gain * v, fg_shift_x=0.025 * gain * u,
        fg_shift_y=0.025 * gain * v, fg_zoom=1.03 + 0.01 * gain * (1.0 + np.sin(2.0 * phase)) / 2.0,
        layered=True,
    )  # fmt: skip


def _pan(dx: float, dy: float) -> Motion:
    def pan(t: np.ndarray, gain: float, rng: np.random.Generator) -> Curves:
        """Eased pan that returns for the loop; the content moves opposite to the camera."""
        p = 0.05 * gain * _there_and_back(t)
        return _curves(len(t), shift_x=dx * p, shift_y=dy * p)

    return pan


MOTIONS: dict[str, Motion] = {
    "punch-in": punch_in, "push": push, "pull": pull, "recoil": recoil, "shake": shake,
    "tremble": tremble, "bounce": bounce, "sway": sway, "heartbeat": heartbeat, "orbit": orbit,
    "parallax": parallax, "pan-left": _pan(1.0, 0.0), "pan-right": _pan(-1.0, 0.0),
    "pan-up": _pan(0.0, 1.0), "pan-down": _pan(0.0, -1.0),
}  # fmt: skip
