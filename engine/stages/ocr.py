"""Stage 2: read the meme's caption lines (with the configured backend) and group them into blocks in reading order."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from engine.backends import load_backend
from engine.config import OcrBackend, OcrSettings
from engine.runtime.models import ModelPool
from engine.types import Box, DecodedImage, OcrResult, TextBlock, TextLine

log = logging.getLogger(__name__)

# Grouping thresholds, as fractions of the smaller line height of a pair.
_MAX_HEIGHT_RATIO = 1.6  # a line much taller than its neighbour is another caption
_MAX_LINE_GAP = 0.9  # stacked caption lines leave at most about one line height between them
_MIN_X_OVERLAP = 0.2  # of the narrower line's width: side-by-side labels do not overlap
_SAME_ROW_OVERLAP = 0.3  # blocks whose vertical spans overlap this much read left to right
# A "line" taller than half the picture's shorter side is the detector taking a picture
# feature for a glyph (seen on a face: "t" at 0.60 in a 300x360 px box); inpainting it
# would wipe out the subject.
_MAX_HEIGHT_SHARE = 0.5
# Caption or text in the picture. Meme captions are drawn in black or in white ink (white ones outlined in
# black), so a line whose darkest ink is not near black, and that is not white ink on a dark ground, is part
# of the picture: grey labels and red axis numbers of a chart, a brand on a carton. It stays in the picture
# and moves with it. On the 60 real memes this keeps all 196 caption lines and sets apart 24 of the 37 others
# (the rest are black or white too: a diagram's titles, subtitles burnt into a film still).
_INK_PERCENT = 3  # a line's ink: the darkest (or brightest) 3 % of its box
_BLACK_INK = 40  # luminance at or below which that ink is black (the chart labels measured 64..166)
_WHITE_INK = 215  # at or above which it is white; counted on a dark ground only, a light one is paper
_DARK_GROUND = 128  # the median of the box's rim below which the ground is dark
# A tall line across the top or bottom band is a caption whatever its colour (a yellow subtitle).
_BAND = 0.2  # of the picture's height, at the top and at the bottom
_BAND_MIN_HEIGHT = 0.07  # of the picture's height


BACKENDS: dict[OcrBackend, str | None] = {
    "rapidocr": "engine.backends.rapidocr:RapidOcr",
    "florence2": "engine.backends.florence2:Florence2Ocr",
    "none": None,  # reads nothing: every picture has no caption
}


class Ocr:
    """Reads caption lines with the configured backend, drops noise and groups them into blocks."""

    def __init__(self, settings: OcrSettings, models: ModelPool) -> None:
        self.settings = settings
        spec = BACKENDS[settings.backend]
        self.backend: LineReader | None = load_backend(spec)(settings, models) if spec else None

    def __call__(self, image: DecodedImage) -> OcrResult:
        """Return the caption's blocks, top to bottom, then left to right, and the picture's own text apart."""
        if image.pixels.ndim != 3 or image.pixels.shape[2] != 3 or image.pixels.dtype != np.uint8:
            raise ValueError(f"image.pixels must be (H, W, 3) uint8 RGB, got {image.pixels.shape} {image.pixels.dtype}")
        if self.backend is None:
            return OcrResult(blocks=())

        # 1. read raw lines
        started = time.perf_counter()
        raw = self.backend.read_lines(image.pixels)
        # 2. drop noise
        limit = _MAX_HEIGHT_SHARE * min(image.width, image.height)
        lines = [line for line in raw if self._keep(line, limit)]
        # 3. set the picture's own text apart: it is not removed, restored or read as the caption
        verdicts = [is_caption(line, image.pixels) for line in lines]
        captions = [line for line, caption in zip(lines, verdicts) if caption]
        picture = tuple(line for line, caption in zip(lines, verdicts) if not caption)
        # 4. group into caption blocks in reading order
        blocks = group_lines(captions)
        log.debug(
            "ocr read %d lines, kept %d captions in %d blocks and %d in the picture in %.2f s",
            len(raw), len(captions), len(blocks), len(picture), time.perf_counter() - started,
        )  # fmt: skip
        return OcrResult(blocks=tuple(blocks), picture_text=picture)

    def _keep(self, line: TextLine, max_height: float) -> bool:
        height = line_height(line)
        return (
            bool(line.text)
            and line.confidence >= self.settings.min_confidence
            and self.settings.min_height <= height <= max_height
        )


class LineReader(Protocol):
    """What an OCR backend does: the picture's text lines, in any order."""

    def read_lines(self, rgb: np.ndarray) -> list[TextLine]:
        """Every text line on the (H, W, 3) uint8 RGB picture."""
        ...


def line_height(line: TextLine) -> float:
    """The text height: the mean of the quadrilateral's two short sides (robust to rotation)."""
    pts = np.asarray(line.polygon, dtype=np.float64)
    if len(pts) != 4:
        return float(line.box[3] - line.box[1])
    # The detector orders corners top-left, top-right, bottom-right, bottom-left.
    left = float(np.linalg.norm(pts[3] - pts[0]))
    right = float(np.linalg.norm(pts[2] - pts[1]))
    return (left + right) / 2


def is_caption(line: TextLine, rgb: np.ndarray) -> bool:
    """Whether a line on the (H, W, 3) picture is the meme's caption rather than text in the picture.

    Decided from the line's ink, size and place (see _BLACK_INK and _BAND).
    """
    height = rgb.shape[0]
    x0, y0, x1, y1 = line.box
    if x1 <= x0 or y1 <= y0:
        return False
    box = rgb[y0:y1, x0:x1].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    tall = line_height(line) >= _BAND_MIN_HEIGHT * height
    if tall and (y1 <= _BAND * height or y0 >= (1 - _BAND) * height):
        return True
    if float(np.percentile(box, _INK_PERCENT)) <= _BLACK_INK:
        return True
    rim = np.concatenate([box[0], box[-1], box[:, 0], box[:, -1]])
    return float(np.median(rim)) < _DARK_GROUND and float(np.percentile(box, 100 - _INK_PERCENT)) >= _WHITE_INK


def group_lines(lines: Sequence[TextLine]) -> list[TextBlock]:
    """Group neighbouring lines into caption blocks and order them for reading."""
    if not lines:
        return []
    parent = list(range(len(lines)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(lines)):
        for j in range(i + 1, len(lines)):
            if _same_block(lines[i], lines[j]):
                parent[find(i)] = find(j)
    groups: dict[int, list[TextLine]] = {}
    for i, line in enumerate(lines):
        groups.setdefault(find(i), []).append(line)
    blocks = [_block(members) for members in groups.values()]
    return [block for row in _rows(blocks) for block in sorted(row, key=lambda b: b.box[0])]


def _same_block(a: TextLine, b: TextLine) -> bool:
    ha, hb = line_height(a), line_height(b)
    small = max(1.0, min(ha, hb))
    if max(ha, hb) / small > _MAX_HEIGHT_RATIO:
        return False
    upper, lower = (a, b) if a.box[1] <= b.box[1] else (b, a)
    gap = lower.box[1] - upper.box[3]  # negative when the boxes overlap vertically
    if gap > _MAX_LINE_GAP * small:
        return False
    overlap = min(a.box[2], b.box[2]) - max(a.box[0], b.box[0])
    narrower = max(1, min(a.box[2] - a.box[0], b.box[2] - b.box[0]))
    return overlap >= _MIN_X_OVERLAP * narrower


def _block(members: list[TextLine]) -> TextBlock:
    # Within a block, lines read top to bottom; lines sharing a row read left to right.
    ordered = [line for row in _rows(members) for line in sorted(row, key=lambda ln: ln.box[0])]
    box = (
        min(ln.box[0] for ln in ordered),
        min(ln.box[1] for ln in ordered),
        max(ln.box[2] for ln in ordered),
        max(ln.box[3] for ln in ordered),
    )
    return TextBlock(
        text="\n".join(ln.text for ln in ordered),
        box=box,
        confidence=min(ln.confidence for ln in ordered),
        lines=tuple(ordered),
    )


def _rows(items: Sequence[Any]) -> list[list[Any]]:
    """Split boxed items into rows: items whose vertical spans overlap enough share a row."""
    rows: list[list[Any]] = []
    for item in sorted(items, key=lambda it: (it.box[1], it.box[0])):
        if rows and any(_v_overlap(item.box, other.box) for other in rows[-1]):
            rows[-1].append(item)
        else:
            rows.append([item])
    return rows


def _v_overlap(a: Box, b: Box) -> bool:
    overlap = min(a[3], b[3]) - max(a[1], b[1])
    smaller = max(1, min(a[3] - a[1], b[3] - b[1]))
    return overlap >= _SAME_ROW_OVERLAP * smaller
