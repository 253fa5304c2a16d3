"""Bodies: breathing and sway under a soft body mask (the person mask, or a subject's ellipse)."""

from __future__ import annotations

import cv2
import numpy as np

from engine.backends.acting.fields import FIELD_PIXELS, Basis
from engine.backends.acting.rig import Rig
from engine.types import SceneInfo

BREATH_SECONDS = 3.5  # one breath per this long, at least one per loop
BREATH_DEPTH = 0.012  # the chest rises by this share of the body's height
MIN_BODY_SHARE = 0.02  # a person mask smaller than this share of the picture is noise
# faster breathing (breaths per second) and deeper, and a sway (degrees), per feeling; others: calm
BREATH_RATE: dict[str, float] = {"fear": 0.8, "anger": 0.8}
BREATH_GAIN: dict[str, float] = {"fear": 1.3, "anger": 1.4, "joy": 1.2, "sadness": 1.1}
SWAY_DEGREES: dict[str, float] = {"joy": 0.8, "love": 0.6, "confusion": 0.8, "sadness": 0.3}


def body_bases(mask: np.ndarray, curve_breathe: np.ndarray, curve_sway: np.ndarray) -> list[Basis]:
    """Breathing (the chest rises over a still base) and a sway about the base, under a soft body mask."""
    height, width = mask.shape
    rows = np.nonzero(mask.max(axis=1) > 0.5)[0]
    cols = np.nonzero(mask.max(axis=0) > 0.5)[0]
    if rows.size < 4 or cols.size < 4:
        return []
    top, base = float(rows[0]), float(rows[-1])
    span = max(base - top, 1.0)
    c = min(1.0, float(np.sqrt(FIELD_PIXELS / (height * width))))
    cw, ch = max(2, round(width * c)), max(2, round(height * c))
    soft = cv2.resize(mask, (cw, ch), interpolation=cv2.INTER_AREA)
    soft = cv2.GaussianBlur(soft, (0, 0), max(1.0, 0.01 * max(cw, ch)))
    ys, xs = np.mgrid[0:ch, 0:cw].astype(np.float32) / c
    rise = np.clip((base - ys) / span, 0.0, 1.0)
    bases = []
    breathe = np.stack([np.zeros_like(ys), -BREATH_DEPTH * span * rise * soft], axis=-1)
    bases.append(Basis(0, 0, height, width, breathe.astype(np.float32), curve_breathe))
    if np.any(curve_sway):
        cx = float(cols.mean())
        k = np.pi / 180  # per degree, about the base's centre
        sway = np.stack([-(ys - base) * k * soft, (xs - cx) * k * soft], axis=-1)
        bases.append(Basis(0, 0, height, width, sway.astype(np.float32), curve_sway))
    return bases


def subject_mask(box: tuple[float, float, float, float], width: int, height: int) -> np.ndarray:
    """A soft ellipse over a subject the models know only by its box (a cat)."""
    x0, y0, x1, y1 = box
    mask = np.zeros((height, width), np.float32)
    centre = (round((x0 + x1) / 2), round((y0 + y1) / 2))
    axes = (max(1, round(0.55 * (x1 - x0))), max(1, round(0.55 * (y1 - y0))))
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(mask, (0, 0), max(1.0, 0.08 * max(axes)))


def body_curves(emotion: str, t: np.ndarray, seconds: float, gain: float) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: how far the chest has risen (0–1 × depth) and the sway's angle (degrees), both looping."""
    breaths = max(1, round(seconds / BREATH_SECONDS), round(seconds * BREATH_RATE.get(emotion, 0.0)))
    breathe = gain * BREATH_GAIN.get(emotion, 1.0) * (1 - np.cos(2 * np.pi * breaths * t)) / 2
    sway = gain * SWAY_DEGREES.get(emotion, 0.2) * np.sin(2 * np.pi * t)
    return breathe, sway


def body_mask(
    person: np.ndarray | None, scene: SceneInfo, rigs: list[Rig], width: int, height: int, source_width: int
) -> np.ndarray | None:
    """The moving body at the work size: the person mask when it holds a face, else a cat's soft ellipse.

    Without a face the person mask is not trusted: on cartoons and things it finds "people" that are not there,
    and a body breathing in the wrong place bends the picture around it.
    """
    if person is not None and rigs:
        mask = cv2.resize(person, (width, height), interpolation=cv2.INTER_LINEAR)
        share = float((mask > 0.5).mean())
        holds_face = any(
            mask[int(np.clip(r.origin[1], 0, height - 1)), int(np.clip(r.origin[0], 0, width - 1))] > 0.5 for r in rigs
        )
        if share >= MIN_BODY_SHARE and holds_face:
            return mask
    subject = scene.subject
    if subject is None or rigs or subject.kind != "cat":  # things and drawings do not breathe: they would bend
        return None
    k = width / source_width
    return subject_mask(tuple(v * k for v in subject.box), width, height)  # type: ignore[arg-type]
