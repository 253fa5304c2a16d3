"""Double Moving Digits, MAGE's "Modified Double Moving MNIST" drawn from a font: two digits, a motion each, a text.

Glyphs come from Pillow's bundled scalable font (no download), rendered once per canvas size in 45 variants per
digit (3 stroke widths x 5 rotations within ±10° x 3 scales within 0.9-1.1); each clip draws one variant per
digit, so train and test share the variants and differ in digits, motions, starts, speeds and variants drawn.

Bouncing: a digit never reaches a wall. Each clip picks a speed (2-3 px a frame at 64 px, slower if the motion
needs it to fit) and a start from which the whole motion keeps the glyph's ink inside the canvas, so the text's
motion is exactly the motion drawn. Two-part motions ("up then down") turn at frame T // 2.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from research.data.clips import Clip, Vocabulary

DIRECTIONS = {"up": (0.0, -1.0), "down": (0.0, 1.0), "left": (-1.0, 0.0), "right": (1.0, 0.0)}
MOTIONS = (
    "up",
    "down",
    "left",
    "right",
    "up then down",
    "down then up",
    "left then right",
    "right then left",
)
STILL = "still"  # what motion_of reads from a trajectory that barely moves; the generator never draws it
STROKES, ANGLES, SCALES = (0, 1, 2), (-10.0, -5.0, 0.0, 5.0, 10.0), (0.9, 1.0, 1.1)
FONT_SIZE = 33  # at a 64 px canvas: ink about 26 px tall on average (21-31 px over all variants)
SPEED = (2.0, 3.0)  # px a frame at a 64 px canvas
INK = 0.1  # a sprite pixel at least this bright counts as ink when keeping digits off the walls


def vocabulary() -> Vocabulary:
    """Every word a digits text can contain."""
    words = Vocabulary.split(" ".join(["the digit is moving and then .", *map(str, range(10)), *DIRECTIONS]))
    return Vocabulary(words)


def template(motion: str, frames: int) -> np.ndarray:
    """(frames, 2) displacement from the start at one pixel a frame, for a label of MOTIONS."""
    if motion not in MOTIONS:
        raise ValueError(f"motion must be one of {MOTIONS}, not {motion!r}")
    parts = motion.split(" then ")
    t = np.arange(frames, dtype=np.float64)[:, None]
    first = np.array(DIRECTIONS[parts[0]])
    if len(parts) == 1:
        return t * first
    turn = frames // 2
    return np.minimum(t, turn) * first + np.maximum(t - turn, 0) * np.array(DIRECTIONS[parts[1]])


def motion_of(track: np.ndarray, *, still: float = 3.0) -> str:
    """The label of MOTIONS whose shape best fits a (T, 2) pixel trajectory; STILL if it travels under `still` px.

    Each label's template is fitted by least squares with a free start and a positive speed; the best fit wins,
    so noise of a few pixels on each frame does not flip the answer.
    """
    track = np.asarray(track, dtype=np.float64)
    if track.ndim != 2 or track.shape[1] != 2 or len(track) < 3:
        raise ValueError(f"track must be (T >= 3, 2), not {track.shape}")
    centred = track - track.mean(0)
    best, best_score, best_travel = STILL, 0.0, 0.0
    for motion in MOTIONS:
        shape = template(motion, len(track))
        shape_centred = shape - shape.mean(0)
        dot = float(np.sum(centred * shape_centred))
        if dot <= 0:
            continue
        speed = dot / float(np.sum(shape_centred**2))
        if dot * speed > best_score:
            best, best_score = motion, dot * speed
            best_travel = speed * float(np.abs(shape).max())
    return best if best_travel >= still else STILL


@lru_cache(maxsize=4)
def glyphs(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sprites (10, V, S, S) float32 in [0, 1], ink centroids (10, V, 2) as (x, y), ink extents (10, V, 4).

    Extents are how far ink reaches from the centroid: left, right, up, down, in pixels.
    """
    side = int(round(size * 0.75))  # fits the largest glyph rotated, centred on its ink centroid
    big = side * 2
    variants = [(stroke, angle, scale) for stroke in STROKES for angle in ANGLES for scale in SCALES]
    sprites = np.zeros((10, len(variants), side, side), np.float32)
    centroids = np.zeros((10, len(variants), 2), np.float32)
    extents = np.zeros((10, len(variants), 4), np.float32)
    fonts = {scale: ImageFont.load_default(size=round(FONT_SIZE * size / 64 * scale)) for scale in SCALES}
    ys, xs = np.mgrid[0:big, 0:big].astype(np.float64)
    for digit in range(10):
        for v, (stroke, angle, scale) in enumerate(variants):
            image = Image.new("L", (big, big))
            width = round(stroke * size / 64)
            ImageDraw.Draw(image).text((big / 2, big / 2), str(digit), fill=255, font=fonts[scale], anchor="mm",
                                       stroke_width=width, stroke_fill=255)  # fmt: skip
            ink = np.asarray(image.rotate(angle, resample=Image.BICUBIC), dtype=np.float64) / 255.0
            cx, cy = float((ink * xs).sum() / ink.sum()), float((ink * ys).sum() / ink.sum())
            left, top = int(round(cx)) - side // 2, int(round(cy)) - side // 2
            crop = ink[top : top + side, left : left + side]
            if crop.sum() < ink.sum() * 0.999:  # a sprite window too small would cut ink off silently
                raise RuntimeError(f"digit {digit} variant {v} does not fit a {side} px sprite")
            sprites[digit, v] = crop
            centroids[digit, v] = (cx - left, cy - top)
            rows, cols = np.nonzero(crop >= INK)
            cx, cy = centroids[digit, v]
            extents[digit, v] = (cx - cols.min(), cols.max() + 1 - cx, cy - rows.min(), rows.max() + 1 - cy)
    return sprites, centroids, extents


def _clip(rng: np.random.Generator, frames: int, size: int) -> Clip:
    """One clip drawn from `rng`."""
    sprites, centroids, extents = glyphs(size)
    side = sprites.shape[-1]
    digits = rng.choice(10, size=2, replace=False)
    motions = [MOTIONS[i] for i in rng.integers(len(MOTIONS), size=2)]
    variants = rng.integers(sprites.shape[1], size=2)
    brightness = rng.uniform(0.8, 1.0, size=2)
    canvas = np.zeros((frames, size + 2 * side, size + 2 * side), np.float32)  # padded: sprites may overhang
    positions = np.zeros((frames, 2, 2), np.float32)
    for k in range(2):
        digit, v = digits[k], variants[k]
        left, right, up, down = extents[digit, v]
        low, high = np.array([left, up]) + 0.5, np.array([size - right, size - down]) - 0.5  # centres; 0.5: rounding
        shape = template(motions[k], frames)
        reach = shape.max(0) - shape.min(0)
        speed = rng.uniform(*SPEED) * size / 64
        # a hair under the most that fits: at exactly the most, rounding can leave the start range empty
        speed = min(speed, 0.999 * float(np.min((high - low)[reach > 0] / reach[reach > 0])))
        start = rng.uniform(low - speed * shape.min(0), high - speed * shape.max(0))
        corners = np.round(start + speed * shape - centroids[digit, v]).astype(int)  # whole pixels: drawn as is
        positions[:, k] = corners + centroids[digit, v]
        glyph = sprites[digit, v] * brightness[k]
        for t, (x, y) in enumerate(corners + side):
            np.maximum(canvas[t, y : y + side, x : x + side], glyph, out=canvas[t, y : y + side, x : x + side])
    grey = np.round(canvas[:, side:-side, side:-side] * 255).astype(np.uint8)
    names = tuple(f"digit {d}" for d in digits)
    text = f"The {names[0]} is moving {motions[0]} and the {names[1]} is moving {motions[1]}."
    return Clip(np.repeat(grey[..., None], 3, axis=-1), text, None, positions, names, tuple(motions))


def make_clips(n: int, seed: int, *, frames: int = 10, size: int = 64, stream: int = 0) -> list[Clip]:
    """`n` clips, the same for the same (seed, stream); clip i depends on i only, so shorter lists are prefixes."""
    if n < 0 or frames < 3 or size < 32:
        raise ValueError(f"need n >= 0, frames >= 3 and size >= 32, not n={n}, frames={frames}, size={size}")
    return [_clip(np.random.default_rng((seed, stream, i)), frames, size) for i in range(n)]


def splits(n_train: int, n_test: int, seed: int = 0, **kwargs: int) -> tuple[list[Clip], list[Clip]]:
    """Train and test clips from two disjoint seed streams (1 and 2) of `seed`; kwargs go to make_clips."""
    return make_clips(n_train, seed, stream=1, **kwargs), make_clips(n_test, seed, stream=2, **kwargs)
