"""Stage 7: put the meme's caption back, crisp and still, on every frame."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from engine.config import PostprocessSettings
from engine.types import CleanImage, DecodedImage, Frames, OcrResult

log = logging.getLogger(__name__)

ASPECT_TOLERANCE = 0.02  # beyond this the caption's old layout no longer fits the frames
FONT_PATHS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf",
    "/Library/Fonts/DejaVuSans-Bold.ttf",
    "C:/Windows/Fonts/DejaVuSans-Bold.ttf",
)
FRAME_MARGIN = 0.04  # of the frame's width, kept clear on each side of a re-typeset line


class Postprocess:
    """Restores the caption on the animated frames."""

    def __init__(self, settings: PostprocessSettings) -> None:
        self.settings = settings

    def __call__(
        self, frames: Frames, image: DecodedImage, clean: CleanImage, *, ocr: OcrResult | None = None
    ) -> Frames:
        """Composite the original caption pixels onto every frame (re-typeset them if the aspect changed)."""
        # 1. check inputs
        _validate(frames, image, clean)
        if not self.settings.restore_caption or not clean.text_mask.any():
            return frames
        _, height, width, _ = frames.frames.shape

        # 2. the caption layer at frame size: colour and a precomputed alpha
        src_h, src_w = clean.text_mask.shape
        aspect_change = (width / height) / (src_w / src_h) - 1.0
        if abs(aspect_change) <= ASPECT_TOLERANCE:
            colour, alpha = _original_caption(image.pixels, clean.text_mask, width, height)
        elif ocr is not None and ocr.lines:
            log.info("frames' aspect differs by %.1f %%: re-typesetting %d lines", 100 * aspect_change, len(ocr.lines))
            colour, alpha = _typeset(ocr, src_w, src_h, width, height)
        else:
            log.info(
                "frames' aspect differs by %.1f %% and no OCR lines: moving the caption pixels", 100 * aspect_change
            )
            colour, alpha = _moved_caption(image.pixels, clean.text_mask, width, height)

        # 3. one blend over all frames with the precomputed alpha, only on the row bands the caption touches
        out = frames.frames.copy()
        weight = np.round(alpha * 256.0).astype(np.uint16)  # 256 = fully caption, exactly its pixels
        for top, bottom in _bands(np.asarray(alpha.any(axis=1))):
            w = weight[None, top:bottom, :, None]
            band = out[:, top:bottom].astype(np.uint16)
            layer = colour[None, top:bottom].astype(np.uint16)
            out[:, top:bottom] = ((band * (256 - w) + layer * w + 128) >> 8).astype(np.uint8)
        return Frames(frames=out, fps=frames.fps, motion=frames.motion)


def _validate(frames: Frames, image: DecodedImage, clean: CleanImage) -> None:
    f = frames.frames
    if not isinstance(f, np.ndarray) or f.dtype != np.uint8 or f.ndim != 4 or f.shape[3] != 3 or f.shape[0] < 1:
        got = f"{f.dtype} {f.shape}" if isinstance(f, np.ndarray) else type(f).__name__
        raise ValueError(f"frames.frames must be an (N, H, W, 3) uint8 array with N >= 1, got {got}")
    if image.pixels.ndim != 3 or image.pixels.shape[2] != 3 or image.pixels.dtype != np.uint8:
        raise ValueError(
            f"image.pixels must be an (H, W, 3) uint8 array, got {image.pixels.dtype} {image.pixels.shape}"
        )
    if clean.text_mask.shape != image.pixels.shape[:2]:
        raise ValueError(
            f"clean.text_mask must match image.pixels' size {image.pixels.shape[:2]}, got {clean.text_mask.shape}"
        )


def _bands(rows: np.ndarray) -> list[tuple[int, int]]:
    """(top, bottom) of each run of True rows: captions are bands, mostly top and bottom."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], rows.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _feathered(mask: np.ndarray) -> np.ndarray:
    """Soften the mask's outer edge by about a pixel; stroke interiors stay fully opaque."""
    return np.maximum(mask, cv2.GaussianBlur(mask, (0, 0), 0.7))


def _original_caption(pixels: np.ndarray, mask: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """The meme's own caption pixels and alpha, resized to the frames (same layout)."""
    colour = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA)
    alpha = cv2.resize(mask.astype(np.float32) / 255.0, (width, height), interpolation=cv2.INTER_AREA)
    return colour, _feathered(alpha)


def _moved_caption(pixels: np.ndarray, mask: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Without the text, keep the meme's own glyphs: scale each caption block uniformly to its new place."""
    src_h, src_w = mask.shape
    sx, sy = width / src_w, height / src_h
    colour = np.zeros((height, width, 3), np.uint8)
    alpha = np.zeros((height, width), np.float32)
    # one block per line-ish cluster: glyphs joined horizontally, lines kept apart
    joined = cv2.dilate(mask, np.ones((max(3, src_h // 60), max(3, src_w // 25)), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(joined)
    for x, y, w, h, _ in stats[1:count]:
        scale = min(sx, sy, (1 - 2 * FRAME_MARGIN) * width / w)
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
        cx = min(max((x + w / 2) * sx, new_w / 2), width - new_w / 2)
        cy = min(max((y + h / 2) * sy, new_h / 2), height - new_h / 2)
        x0, y0 = round(cx - new_w / 2), round(cy - new_h / 2)
        x0, y0 = min(max(0, x0), width - new_w), min(max(0, y0), height - new_h)
        box = (slice(y0, y0 + new_h), slice(x0, x0 + new_w))
        piece = mask[y : y + h, x : x + w].astype(np.float32) / 255.0
        piece = cv2.resize(piece, (new_w, new_h), interpolation=cv2.INTER_AREA)
        keep = piece > alpha[box]
        colour[box][keep] = cv2.resize(pixels[y : y + h, x : x + w], (new_w, new_h), interpolation=cv2.INTER_AREA)[keep]
        alpha[box] = np.maximum(alpha[box], piece)
    return colour, _feathered(alpha)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in FONT_PATHS:
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def _typeset(ocr: OcrResult, src_w: int, src_h: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw each OCR line at its mapped place, white with a black outline, fitted to the frame's width."""
    sx, sy = width / src_w, height / src_h
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    usable = (1 - 2 * FRAME_MARGIN) * width
    for line in ocr.lines:
        text = line.text.strip()
        if not text:
            continue
        x0, y0, x1, y1 = line.box
        # caption boxes hug the capitals, about 0.75 of the font's size
        size = max(6, round((y1 - y0) * sy / 0.75))
        font = _font(size)
        stroke = max(1, size // 14)
        text_w = draw.textlength(text, font=font) + 2 * stroke
        if text_w > usable:
            size = max(6, int(size * usable / text_w))
            font, stroke = _font(size), max(1, size // 14)
            text_w = draw.textlength(text, font=font) + 2 * stroke
        cx = min(max((x0 + x1) / 2 * sx, text_w / 2), width - text_w / 2)
        cy = (y0 + y1) / 2 * sy
        draw.text(
            (cx, cy), text, font=font, fill=(255, 255, 255, 255), anchor="mm", stroke_width=stroke,
            stroke_fill=(0, 0, 0, 255),
        )  # fmt: skip
    rgba = np.asarray(layer)
    return np.ascontiguousarray(rgba[..., :3]), rgba[..., 3].astype(np.float32) / 255.0
