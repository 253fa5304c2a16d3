"""What a face does: expression shapes (moves of the rig's points) and, per emotion, their curves over the loop.

Every shape is linear in its amount, so a frame's face is a weighted sum of a few precomputed shapes. Every
curve is periodic in the loop's phase t ∈ [0, 1): frame N would be frame 0 again, so the GIF loops without a
seam. Amounts are in shape units (1 = a clear, full expression); `--motion high` scales them up.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine.backends.acting.rig import Rig
from engine.vocabulary import EMOTIONS

HIGH_GAIN = 1.6  # motion = "high" exaggerates every act by this
SECONDARY_SHARE = 0.5  # faces the caption is not about act at this share of the main face's expression
BLINK_EVERY = 3.2  # s: people blink every 2–5 s; a loop of any length blinks at least once
BLINK_SECONDS = 0.25  # one blink, closing and opening
SYLLABLES_PER_SECOND = 3.5  # talking: mouth open–close cycles


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _gauss(x: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * (x / sigma) ** 2)


# ---------------------------------------------------------------------------------------------- shapes
# Each shape returns the moves (N, 2) of the rig's points in face units (u right, v down, inter-ocular = 1).


def _brow_raise(rig: Rig, sides: tuple[str, ...] = ("right", "left")) -> np.ndarray:
    """Brows up with the forehead, the upper lids' skin stretching under them (surprise)."""
    uv = rig.uv
    moves = np.zeros_like(uv)
    for side in sides:
        brow = uv[rig.groups[f"{side}_brow"]]
        cu, cv = brow.mean(0)
        half = (brow[:, 0].max() - brow[:, 0].min()) / 2 + 0.15
        across = _smoothstep((half - np.abs(uv[:, 0] - cu)) / 0.2)
        # full lift at the brow and above it, fading to nothing at the eye's opening
        down = _smoothstep((cv + 0.22 - uv[:, 1]) / 0.2)
        up = _gauss(np.minimum(uv[:, 1] - cv, 0.0), 0.6)
        moves[:, 1] -= 0.16 * across * down * up
    return moves


def _brow_frown(rig: Rig) -> np.ndarray:
    """Brows down and drawn together (anger)."""
    uv = rig.uv
    moves = np.zeros_like(uv)
    for side in ("right", "left"):
        brow = uv[rig.groups[f"{side}_brow"]]
        cu, cv = brow.mean(0)
        weight = _gauss(uv[:, 0] - cu, 0.3) * _gauss(uv[:, 1] - cv, 0.16)
        inner = _smoothstep(1 - np.abs(uv[:, 0]) / 0.6)  # near the nose bridge, more
        moves[:, 1] += 0.1 * weight * (0.6 + 0.6 * inner)
        moves[:, 0] -= np.sign(uv[:, 0]) * 0.06 * weight * inner
    return moves


def _brow_sad(rig: Rig) -> np.ndarray:
    """Inner brow ends up, outer ends down (sadness, worry)."""
    uv = rig.uv
    moves = np.zeros_like(uv)
    for side in ("right", "left"):
        brow = uv[rig.groups[f"{side}_brow"]]
        cu, cv = brow.mean(0)
        weight = _gauss(uv[:, 0] - cu, 0.32) * _gauss(uv[:, 1] - cv, 0.16)
        inner = np.clip((np.abs(cu) - np.abs(uv[:, 0])) / 0.3, -1.0, 1.0)  # +1 toward the nose, −1 outward
        moves[:, 1] -= 0.1 * weight * inner
    return moves


def _eyes_widen(rig: Rig) -> np.ndarray:
    """Upper lids up, lower lids a little down: the whites show (fear, shock)."""
    uv = rig.uv
    moves = np.zeros_like(uv)
    for side in ("right", "left"):
        upper, lower = rig.groups[f"{side}_upper_lid"], rig.groups[f"{side}_lower_lid"]
        centre = uv[np.concatenate([upper, lower])].mean(0)
        near = _gauss(uv[:, 0] - centre[0], 0.2) * _gauss(uv[:, 1] - centre[1], 0.14)
        side_of = np.where(uv[:, 1] < centre[1], -1.0, 0.4)
        moves[:, 1] += 0.07 * near * side_of
    return moves


def _jaw_drop(rig: Rig) -> np.ndarray:
    """The jaw comes down: the lower lip and chin move, the upper lip lifts a little (the inside is painted).

    The lips part as an oval: most in the middle, little at the corners.
    """
    uv = rig.uv
    moves = np.zeros_like(uv)
    mouth = uv[rig.groups["inner_upper_lip"]]
    line = mouth[:, 1].mean()
    centre = (mouth[:, 0].max() + mouth[:, 0].min()) / 2
    half = max((mouth[:, 0].max() - mouth[:, 0].min()) / 2, 1e-3)
    below = _smoothstep((uv[:, 1] - line) / 0.12)
    across = 1.0 - 0.6 * _smoothstep((np.abs(uv[:, 0] - centre) - half) / (half + 0.5))
    moves[:, 1] = 0.32 * below * across
    # across the mouth: 1 in the middle, 0 at the corners (an ellipse's profile)
    profile = np.sqrt(np.clip(1.0 - ((uv[:, 0] - centre) / (1.05 * half)) ** 2, 0.0, 1.0))
    lower, upper = rig.groups["lower_lip"], rig.groups["upper_lip"]
    moves[lower, 1] = 0.32 * (0.3 + 0.7 * profile[lower])
    moves[upper, 1] = -0.04 * profile[upper]
    moves[rig.groups["mouth_corners"], 1] = 0.03
    return moves


def _smile(rig: Rig, sides: tuple[str, ...] = ("right", "left")) -> np.ndarray:
    """Mouth corners up and out, cheeks lifted, lower lids pushed up a little (joy; negative: a frown)."""
    uv = rig.uv
    moves = np.zeros_like(uv)
    corners = rig.groups["mouth_corners"]
    for corner in corners:
        cu, cv = uv[corner]
        if ("right" if cu < 0 else "left") not in sides:  # the subject's right is the picture's left
            continue
        weight = _gauss(np.hypot(uv[:, 0] - cu, (uv[:, 1] - cv) * 1.3), 0.28)
        moves[:, 0] += np.sign(cu) * 0.08 * weight
        moves[:, 1] -= 0.13 * weight
    return moves


SHAPES: dict[str, Callable[[Rig], np.ndarray]] = {
    "brows_up": _brow_raise,
    "brow_up_right": lambda rig: _brow_raise(rig, ("right",)),
    "brow_up_left": lambda rig: _brow_raise(rig, ("left",)),
    "brows_angry": _brow_frown,
    "brows_sad": _brow_sad,
    "eyes_wide": _eyes_widen,
    "jaw": _jaw_drop,
    "smile": _smile,
    "smirk": lambda rig: _smile(rig, ("left",)),
}
# Head moves, as one piece over the neck: a roll (degrees), and shifts in inter-ocular units.
HEAD = ("roll", "shift_u", "shift_v")


# ---------------------------------------------------------------------------------------------- curves
@dataclass(frozen=True)
class Performance:
    """One face's act over the loop: per-frame amounts of each shape and head move."""

    shapes: dict[str, np.ndarray]
    head: dict[str, np.ndarray]
    talks: bool


def _loop(t: np.ndarray, cycles: int, phase: float = 0.0) -> np.ndarray:
    return np.sin(2 * np.pi * (cycles * t + phase))


def _hold(t: np.ndarray, rise: float = 0.08, release: float = 0.62) -> np.ndarray:
    """0 → 1 fast, hold, ease back to 0 by the loop's end (a reaction that loops)."""
    t = t % 1.0
    return _smoothstep(t / rise) * (1.0 - _smoothstep((t - release) / (1.0 - release)))


def _drift(t: np.ndarray, rng: np.random.Generator, harmonics: tuple[int, int] = (1, 2)) -> np.ndarray:
    """Seeded smooth looping wander with peak 1."""
    k = np.arange(harmonics[0], harmonics[1] + 1)
    amp = rng.uniform(0.5, 1.0, k.size) / k
    phase = rng.uniform(0, 2 * np.pi, k.size)
    wave = (amp[:, None] * np.sin(2 * np.pi * k[:, None] * t[None, :] + phase[:, None])).sum(0)
    peak = float(np.abs(wave).max())
    return wave / peak if peak > 0 else wave


def blinks(t: np.ndarray, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Lid closure per frame (0 open, 1 shut): natural blinks at seeded moments, at least one per loop."""
    count = max(1, round(seconds / BLINK_EVERY))
    width = min(0.5 / count, BLINK_SECONDS / max(seconds, 1e-6))
    closure = np.zeros_like(t)
    start = rng.uniform(0.1, 0.6 / count)
    for k in range(count):
        centre = (start + k / count + rng.uniform(-0.08, 0.08) / count) % 1.0
        d = (t - centre + 0.5) % 1.0 - 0.5  # signed, wrapped distance in loop phase
        # closing is quicker than opening
        x = np.where(d < 0, d / (0.4 * width), d / (0.6 * width))
        closure = np.maximum(closure, np.clip(1.0 - np.abs(x), 0.0, 1.0) ** 0.7)
    # a frame or two at 16 fps catches the lid mid-way; make sure one frame sees it shut
    if closure.max() > 0:
        closure[int(np.argmax(closure))] = 1.0
    return closure


def talking(t: np.ndarray, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Mouth open–close cycles like speech: syllables with a seeded pause, periodic over the loop."""
    cycles = max(2, round(seconds * SYLLABLES_PER_SECOND))
    n = len(t)
    cycles = min(cycles, max(2, n // 3))  # at least three frames per syllable or it flickers
    syllables = np.abs(np.sin(np.pi * cycles * t))
    loudness = 0.65 + 0.35 * _drift(t, rng, (1, 3))
    pause = 1.0 - 0.85 * np.exp(8.0 * (np.cos(2 * np.pi * (t - rng.uniform(0, 1))) - 1.0))
    return syllables * loudness * pause


# first and second person, a greeting or a plea: someone is talking (a "?" or "!" says so too)
SPEECH_WORDS = {"i", "i'm", "im", "i've", "i'll", "me", "my", "you", "your", "you're", "we", "us", "our", "let's",
                "don't", "can't", "won't", "what", "why", "how", "hey", "please"}  # fmt: skip


def reads_as_speech(text: str) -> bool:
    """Whether a caption reads as someone speaking (first or second person, a question, an exclamation)."""
    words = re.findall(r"[a-z']+", text.lower().replace("’", "'"))
    if not words:
        return False
    return bool(set(words) & SPEECH_WORDS) or "?" in text or text.count("!") >= 1


# What a motion prompt can ask a face to do, beyond the feeling's own act: a pattern of the words a person (or
# the script's writer) would use, and the act. "shakes" alone is the camera's; a head shake names the head.
_HEAD = r"(?:their|his|her|its|the) head"
PROMPT_ACTS: dict[str, str] = {
    "nod": r"\bnod(?:s|ding|ded)?\b",
    "head_shake": rf"\bshak(?:e|es|ing) {_HEAD}\b|\bhead shake",
    "tilt": rf"\btilt(?:s|ing|ed)? {_HEAD}\b|\bhead tilt",
    "wink": r"\bwink(?:s|ing|ed)?\b",
    "smile": r"\b(?:smil|grin)(?:e|es|ing|ed|s|ning|ned)?\b",
    "laugh": r"\b(?:laugh|giggl|chuckl)\w*",
    "talk": r"\b(?:talk|speak|say|says|said|yell|shout|scream|sing|argu|explain|whisper|tell)\w*",
    "gasp": r"\b(?:gasp\w*|jaw drops?|mouth (?:falls? )?open\w*|shock\w*)",
    "frown": r"\b(?:frown|scowl|glar)\w*",
    "eyebrow": r"\b(?:raises?|raising|lifts?|cocks?) (?:an |one |a |their |his |her )?eyebrow",
    "cry": r"\b(?:cr(?:y|ies|ying)|sob\w*|tears? up)\b",
    "stare": r"\b(?:stares?|staring|wide-eyed|eyes wide)\b",
    "blink": r"\bblink\w*",
}


def prompt_acts(prompt: str) -> list[str]:
    """The acts a motion prompt names, in PROMPT_ACTS order."""
    lowered = prompt.lower().replace("’", "'")
    return [name for name, pattern in PROMPT_ACTS.items() if re.search(pattern, lowered)]


def _asked(name: str, t: np.ndarray, seconds: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One prompt act's curves (amounts per frame), looping."""
    ones = np.ones_like(t)
    beats = max(1, round(seconds * 1.2))
    if name == "nod":
        return {"shift_v": 0.06 * np.abs(_loop(t, beats)), "roll": 0.8 * _loop(t, beats)}
    if name == "head_shake":
        return {"shift_u": 0.06 * _loop(t, max(2, round(seconds * 2)))}
    if name == "tilt":
        return {"roll": 7.0 * (1 - np.cos(2 * np.pi * t)) / 2}
    if name == "wink":  # one eye shut for a moment, once per loop
        return {"blink_left": np.clip(1.6 * _hold(t, 0.06, 0.3) * (1 - _smoothstep((t - 0.3) / 0.1)), 0, 1)}
    if name == "smile":
        return {"smile": 0.9 * ones}
    if name == "laugh":
        return {"smile": 0.7 * ones, "jaw": 0.35 * np.abs(_loop(t, max(2, round(seconds * 2))))}
    if name == "talk":
        return {"jaw": 0.55 * talking(t, seconds, rng)}
    if name == "gasp":
        return {"jaw": 0.65 * _hold(t), "eyes_wide": 0.6 * _hold(t)}
    if name == "frown":
        return {"brows_angry": 0.9 * ones}
    if name == "eyebrow":
        return {"brow_up_left": 0.9 * _hold(t, 0.2, 0.7)}
    if name == "cry":
        return {"brows_sad": 1.0 * ones, "smile": -0.7 * ones, "lids": 0.3 * ones}
    if name == "stare":
        return {"eyes_wide": 0.8 * ones}
    if name == "blink":  # a second blink in the loop
        return {
            "blink_right": blinks((t + 0.5) % 1.0, seconds, rng),
            "blink_left": blinks((t + 0.5) % 1.0, seconds, rng),
        }
    raise ValueError(f"prompt act must be one of {', '.join(PROMPT_ACTS)}, not {name!r}")


def perform(
    emotion: str, t: np.ndarray, seconds: float, rng: np.random.Generator, *, gain: float = 1.0,
    main: bool = True, speech: bool = False, prompt: str = "",
) -> Performance:  # fmt: skip
    """The act for a face: blinks and a living head for every face, the emotion's expression on top, and on the
    main face whatever else the motion prompt asks for (what the feeling's act already does is not doubled)."""
    if emotion not in EMOTIONS:
        raise ValueError(f"emotion must be one of {', '.join(EMOTIONS)}, not {emotion!r}")
    n = len(t)
    zero = np.zeros(n)
    closure = blinks(t, seconds, rng)
    shapes: dict[str, np.ndarray] = {"blink_right": closure.copy(), "blink_left": closure.copy()}
    # the head is never a statue: a slow seeded drift of roll and position
    head = {"roll": 1.2 * _drift(t, rng), "shift_u": 0.02 * _drift(t, rng), "shift_v": 0.012 * _drift(t, rng)}
    act = ACTS[emotion](t, seconds, rng)
    if main:
        for asked in prompt_acts(prompt):
            for name, curve in _asked(asked, t, seconds, rng).items():
                if name.startswith("blink"):
                    shapes[name] = np.maximum(shapes[name], curve)
                elif name not in act:
                    act[name] = curve
    share = (1.0 if main else SECONDARY_SHARE) * gain
    for name, curve in act.items():
        if name in HEAD:
            head[name] = head[name] + share * curve
        elif name == "lids":  # a steady partial closure (a sad or contented look) under the blinks
            for side in ("blink_right", "blink_left"):
                shapes[side] = np.maximum(shapes[side], np.clip(share * curve, 0.0, 0.6))
        else:
            shapes[name] = shapes.get(name, zero) + share * curve
    talks = main and speech
    if talks:
        shapes["jaw"] = np.maximum(shapes.get("jaw", zero), 0.55 * min(gain, 1.3) * talking(t, seconds, rng))
    return Performance(shapes=shapes, head=head, talks=talks)


Act = Callable[[np.ndarray, float, np.random.Generator], dict[str, np.ndarray]]


def _surprise(t: np.ndarray, seconds: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    react = _hold(t)
    return {"brows_up": 1.0 * react, "eyes_wide": 1.0 * react, "jaw": 0.65 * react, "shift_v": -0.05 * react}


def _anger(t: np.ndarray, seconds: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    shakes = max(2, round(seconds * 2.5))
    yell = _hold(t, 0.15, 0.55)
    return {"brows_angry": 0.8 + 0.2 * yell, "jaw": 0.45 * yell, "smile": -0.25 * np.ones_like(t),
            "shift_u": 0.045 * yell * _loop(t, shakes), "roll": 1.5 * yell * _loop(t, shakes, 0.25)}  # fmt: skip


def _fear(t: np.ndarray, seconds: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    shiver = _drift(t, rng, (8, 14))
    return {"eyes_wide": 0.9 + 0.1 * _loop(t, 2), "brows_sad": 0.7 * np.ones_like(t), "jaw": 0.18 * np.ones_like(t),
            "shift_u": 0.012 * shiver, "roll": 0.6 * _drift(t, rng, (6, 11))}  # fmt: skip


def _sadness(t: np.ndarray, seconds: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    sink = (1 - np.cos(2 * np.pi * t)) / 2
    return {"brows_sad": 1.0 * np.ones_like(t), "smile": -0.7 * np.ones_like(t), "lids": 0.3 * np.ones_like(t),
            "shift_v": 0.05 * sink, "roll": 2.5 * sink}  # fmt: skip


def _joy(t: np.ndarray, seconds: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    laughs = max(2, round(seconds * 2.0))
    chuckle = np.abs(_loop(t, laughs, 0.0))
    return {"smile": 1.0 * np.ones_like(t), "jaw": 0.3 * chuckle, "lids": 0.2 * np.ones_like(t),
            "shift_v": -0.03 * chuckle, "roll": 2.0 * _loop(t, 1)}  # fmt: skip


def _love(t: np.ndarray, seconds: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"smile": 0.7 * np.ones_like(t), "lids": 0.25 * np.ones_like(t), "roll": 5.0 * _loop(t, 1),
            "brows_sad": 0.3 * np.ones_like(t)}  # fmt: skip


def _smug(t: np.ndarray, seconds: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    react = _hold(t, 0.2, 0.7)
    return {"smirk": 0.6 + 0.5 * react, "brow_up_left": 0.9 * react, "lids": 0.25 * np.ones_like(t),
            "roll": -3.0 * react, "shift_v": -0.02 * react}  # fmt: skip


def _disgust(t: np.ndarray, seconds: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    react = _hold(t, 0.1, 0.6)
    return {"brows_angry": 0.6 * react, "smile": -0.5 * react, "lids": 0.3 * react,
            "shift_u": 0.06 * react, "shift_v": -0.03 * react, "roll": 4.0 * react}  # fmt: skip


def _confusion(t: np.ndarray, seconds: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    tilt = (1 - np.cos(2 * np.pi * t)) / 2
    return {"roll": 5.0 * tilt, "brow_up_right": 0.9 * tilt, "brows_angry": 0.25 * tilt, "smile": -0.3 * tilt,
            "shift_u": 0.03 * tilt}  # fmt: skip


def _neutral(t: np.ndarray, seconds: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    glance = _drift(t, rng, (1, 2))
    return {"roll": 1.0 * glance, "brows_up": 0.15 * np.clip(glance, 0.0, None)}


ACTS: dict[str, Act] = {
    "surprise": _surprise, "anger": _anger, "fear": _fear, "sadness": _sadness, "joy": _joy, "love": _love,
    "smug": _smug, "disgust": _disgust, "confusion": _confusion, "neutral": _neutral,
}  # fmt: skip
