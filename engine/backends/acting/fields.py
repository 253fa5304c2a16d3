"""Motion fields: linear moves of picture regions, summed per frame and turned into a resampling map."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

FIELD_PIXELS = 60_000  # a region's moves are computed on at most this many pixels, then resized (they are smooth)


@dataclass(eq=False)
class Basis:
    """One linear motion of one region: moves (h, w, 2) in work pixels at amount 1, on a coarse grid."""

    y0: int
    x0: int
    y1: int
    x1: int
    field: np.ndarray  # (ch, cw, 2) float32, coarse
    curve: np.ndarray  # (frames,) amounts


def accumulate(
    bases: list[Basis], i: int, height: int, width: int, into: np.ndarray | None = None
) -> np.ndarray:  # fmt: skip
    """The sum of the bases' fields at their frame-i amounts, at the work size.

    A face's bases share one region and one coarse grid: they are summed there and resized once.
    """
    field = into if into is not None else np.zeros((height, width, 2), np.float32)
    groups: dict[tuple[int, ...], np.ndarray] = {}
    for b in bases:
        amount = float(b.curve[i])
        if amount == 0.0:
            continue
        key = (b.y0, b.x0, b.y1, b.x1, *b.field.shape)
        if key in groups:
            groups[key] += amount * b.field
        else:
            groups[key] = amount * b.field
    for (y0, x0, y1, x1, *_), coarse in groups.items():
        size = (x1 - x0, y1 - y0)
        field[y0:y1, x0:x1] += coarse if coarse.shape[1::-1] == size else cv2.resize(coarse, size)
    return field


@functools.lru_cache(maxsize=4)
def grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (x, y) of a picture, float32; shared, never written to."""
    gx, gy = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    gx.setflags(write=False)
    gy.setflags(write=False)
    return gx, gy


def backward_map(field: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each output pixel samples the source, for content moved forward by `field` (one refinement step)."""
    gx, gy = grid(*field.shape[:2])
    first_x, first_y = gx - field[..., 0], gy - field[..., 1]
    again = cv2.remap(field, first_x, first_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return gx - again[..., 0], gy - again[..., 1]
