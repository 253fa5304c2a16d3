"""Stage 3: remove the caption by inpainting, and keep a mask of its stroke pixels."""

from __future__ import annotations

import logging
import time

import cv2
import numpy as np

from engine.config import DetextSettings
from engine.types import CleanImage, DecodedImage, OcrResult

log = logging.getLogger(__name__)

# A pixel belongs to the caption when it differs from the inpainted background by more than
# this (max over RGB, 0..255). JPEG noise and inpainting blur stay well below it.
_STROKE_DIFF = 48
# Glyph edges are anti-aliased into the background: grow the stroke mask by this many pixels
# so composited captions keep their soft edge instead of a halo of the new frame.
_STROKE_GROW_PX = 1


class Detext:
    """Inpaints the OCR's text regions and extracts the caption's stroke mask."""

    def __init__(self, settings: DetextSettings) -> None:
        self.settings = settings
        self._flag = cv2.INPAINT_NS if settings.method == "ns" else cv2.INPAINT_TELEA

    def __call__(self, image: DecodedImage, ocr: OcrResult) -> CleanImage:
        """Return the picture without its caption, the caption's stroke mask and the inpainted region."""
        pixels = image.pixels
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
            raise ValueError(f"image.pixels must be (H, W, 3) uint8 RGB, got {pixels.shape} {pixels.dtype}")
        height, width = pixels.shape[:2]
        empty = np.zeros((height, width), dtype=np.uint8)
        if not ocr.lines:
            return CleanImage(pixels=pixels, text_mask=empty, region_mask=empty.copy())

        started = time.perf_counter()
        # 1. region: each line's polygon, widened to take in the outline and the glyphs'
        #    overhang the detector's quadrilateral can cut off
        region = region_mask(ocr, height, width, self.settings.widen_px)
        # 2. inpaint the whole image so the fill sees the real surroundings of every region
        clean = cv2.inpaint(pixels, region, self.settings.inpaint_radius, self._flag)
        # 3. strokes: inside the region, what differs clearly from the new background
        text = stroke_mask(pixels, clean, region)
        log.debug(
            "detext inpainted %d px (%d stroke px) in %.3f s",
            int(np.count_nonzero(region)), int(np.count_nonzero(text)), time.perf_counter() - started,
        )  # fmt: skip
        return CleanImage(pixels=clean, text_mask=text, region_mask=region)


def region_mask(ocr: OcrResult, height: int, width: int, widen_px: int) -> np.ndarray:
    """A 0/255 mask of every line's polygon widened by `widen_px` pixels."""
    mask = np.zeros((height, width), dtype=np.uint8)
    for line in ocr.lines:
        quad = np.round(np.asarray(line.polygon, dtype=np.float64)).astype(np.int32)
        if len(quad) >= 3:
            cv2.fillPoly(mask, [quad], 255)
        else:
            x0, y0, x1, y1 = line.box
            mask[y0:y1, x0:x1] = 255
    if widen_px > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * widen_px + 1, 2 * widen_px + 1))
        mask = cv2.dilate(mask, kernel)
    return mask


def stroke_mask(original: np.ndarray, clean: np.ndarray, region: np.ndarray) -> np.ndarray:
    """A 0/255 mask of the caption's glyph and outline pixels inside `region`."""
    diff = cv2.absdiff(original, clean).max(axis=2)
    inside = region > 0
    found = (diff > _STROKE_DIFF) & inside
    # A white glyph on a white background differs only at its outline: the fill is a hole
    # enclosed by outline pixels. Holes that never reach outside the region are glyph fill
    # (or a letter's small counter), so they join the mask.
    _, labels = cv2.connectedComponents((~found).astype(np.uint8), connectivity=4)
    background = np.unique(labels[~inside & ~found])
    found |= ~found & ~np.isin(labels, background)
    strokes = np.where(found, 255, 0).astype(np.uint8)
    if _STROKE_GROW_PX > 0:
        size = 2 * _STROKE_GROW_PX + 1
        strokes = cv2.dilate(strokes, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
        strokes &= region
    return strokes
