"""Boxes and output sizes, shared by the stages and backends (pure functions, no numpy)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from engine.types import Box


def output_size(width: int, height: int, size: int) -> tuple[int, int]:
    """The output's (width, height): longer side `size`, the input's aspect, both even (h264 needs it)."""
    scale = size / max(width, height)
    # half-up, not Python's round-half-to-even, so an odd size always rounds the same way (97 → 98)
    return max(2, 2 * int(width * scale / 2 + 0.5)), max(2, 2 * int(height * scale / 2 + 0.5))


def polygon_box(polygon: Sequence[tuple[float, float]], width: int, height: int) -> Box:
    """The integer box (x1/y1 exclusive) around a polygon, clipped to the image."""
    xs = [p[0] for p in polygon]
    ys = [p[1] for p in polygon]
    x0 = max(0, math.floor(min(xs)))
    y0 = max(0, math.floor(min(ys)))
    x1 = min(width, math.ceil(max(xs)) + 1)
    y1 = min(height, math.ceil(max(ys)) + 1)
    return (x0, y0, max(x0, x1), max(y0, y1))


def scaled(box: Box, factor: float, width: int, height: int) -> Box:
    """`box` scaled by `factor` about the origin, clipped to a width x height picture."""
    x0, y0, x1, y1 = box
    return (
        max(0, round(x0 * factor)), max(0, round(y0 * factor)),
        min(width, round(x1 * factor)), min(height, round(y1 * factor)),
    )  # fmt: skip


# A box in sub-pixel coordinates (x0, y0, x1, y1); an integer Box is one too.
FloatBox = tuple[float, float, float, float]


def area(box: FloatBox) -> float:
    """The box's area in pixels."""
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


def overlap(a: FloatBox, b: FloatBox) -> float:
    """Intersection over the smaller box's area, 0..1."""
    inter = area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    return inter / max(1, min(area(a), area(b)))
