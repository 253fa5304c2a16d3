"""Stage 3: find the caption's own stroke pixels, inpaint only them, and keep their mask."""

from __future__ import annotations

import logging
import time

import cv2
import numpy as np

from engine.config import DetextSettings
from engine.types import CleanImage, DecodedImage, OcrResult, TextLine

log = logging.getLogger(__name__)

# A pixel belongs to the caption when it differs from the background estimate by more than
# this (max over RGB, 0..255). JPEG noise and inpainting blur stay well below it.
_STROKE_DIFF = 48
# ... and when its colour is within this (max over RGB) of one of its line's two ink colours (a white
# fill and a black outline, or one ink). Picture pixels the estimate got wrong, a face or a sleeve
# beside the letters, have other colours: restoring them still would paint patches over the motion.
_INK_DISTANCE = 60
_INK_SHARE = 0.2  # a line's darkest and brightest fifth of differing pixels show its inks
_DARK_INK, _LIGHT_INK = 100, 160  # luminance: ink is at most this dark or at least this light
# The ground around a line: the colours of at least _GROUND_SHARE of the pixels within
# _GROUND_RING_PX outside the search area, and what is within _GROUND_DISTANCE (max over RGB) of them.
_GROUND_RING_PX = 6
_GROUND_SHARE, _GROUND_DISTANCE = 0.15, 24
_PLAIN_SHARE = 0.9  # a line whose surroundings are this much of one colour sits on a plain band
_CROP_MARGIN = 0.3  # of a line's height: how far past its search area a line's crop reaches
_WALL_CLOSE_PX = 3  # gaps in an outline this narrow (JPEG) still enclose its fill
# Glyph edges are anti-aliased into the background: grow the stroke mask by this many pixels
# so composited captions keep their soft edge instead of a halo of the new frame.
_STROKE_GROW_PX = 1
# The inpainted area: the strokes grown by this much (over the JPEG ringing and outline pixels too
# close to the picture's colour to tell apart), then closed over gaps narrower than this share of
# the line's height, so no sliver of picture is left between two letters.
_FILL_GROW_PX = 3
_FILL_CLOSE = 0.4
# The detector's quadrilateral hugs the letters' bodies and can slide a rotated line by part of a
# letter (the handshake's LEFT lost the top of its L): where to look for a line's strokes is its
# quadrilateral grown along the line by this share of its height, and by widen_px all round.
_ALONG = 0.25
# Inpainting runs at this scale: the estimate only has to be right within _STROKE_DIFF, and a fill
# propagated from a downscaled border carries fewer streaks of its texture (the blur takes the rest).
_INPAINT_SCALE = 0.5
_FILL_SMOOTH = 0.12  # of the lines' height: the blur deep inside the fill


class Detext:
    """Removes the caption's strokes by inpainting and keeps their mask for the restore."""

    def __init__(self, settings: DetextSettings) -> None:
        self.settings = settings
        self._flag = cv2.INPAINT_NS if settings.method == "ns" else cv2.INPAINT_TELEA

    def __call__(self, image: DecodedImage, ocr: OcrResult) -> CleanImage:
        """Return the picture without its caption, the caption's stroke mask and the inpainted pixels."""
        pixels = image.pixels
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
            raise ValueError(f"image.pixels must be (H, W, 3) uint8 RGB, got {pixels.shape} {pixels.dtype}")
        height, width = pixels.shape[:2]
        empty = np.zeros((height, width), dtype=np.uint8)
        if not ocr.lines:
            return CleanImage(pixels=pixels, text_mask=empty, region_mask=empty.copy())

        started = time.perf_counter()
        # 1. where to look: each line's polygon grown in its own frame (letters overhang the detector's quad)
        search = region_mask(ocr, height, width, self.settings.widen_px)
        # 2. what the picture looks like there without the caption, roughly
        estimate = np.where(search[..., None] > 0, self._inpaint(pixels, search), pixels)
        # 3. strokes: what differs clearly from that estimate in the colours of its line's ink
        text, fill = caption_masks(pixels, estimate, ocr.lines, search, self.settings.widen_px)
        # 4. inpaint only the letters, from the real picture between and around them: a whole inpainted
        #    band smears its border into streaks that show as soon as the picture moves under the caption
        clean = _filled(pixels, self._inpaint(pixels, fill), fill, ocr.lines) if fill.any() else pixels
        log.debug(
            "detext searched %d px, inpainted %d px (%d stroke px) in %.3f s",
            int(np.count_nonzero(search)), int(np.count_nonzero(fill)), int(np.count_nonzero(text)),
            time.perf_counter() - started,
        )  # fmt: skip
        return CleanImage(pixels=clean, text_mask=text, region_mask=fill)

    def _inpaint(self, pixels: np.ndarray, hole: np.ndarray) -> np.ndarray:
        """The whole picture with `hole` inpainted at _INPAINT_SCALE, back at full size."""
        height, width = pixels.shape[:2]
        size = (max(2, round(width * _INPAINT_SCALE)), max(2, round(height * _INPAINT_SCALE)))
        small = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
        # the downscale blends the letters into the pixels around the hole: take those in too
        small_hole = cv2.dilate(cv2.resize(hole, size, interpolation=cv2.INTER_NEAREST), np.ones((3, 3), np.uint8))
        radius = max(1, round(self.settings.inpaint_radius * _INPAINT_SCALE))
        filled = cv2.inpaint(small, small_hole, radius, self._flag)
        return cv2.resize(filled, (width, height), interpolation=cv2.INTER_LINEAR)


def grown_polygon(line: TextLine, widen_px: int) -> np.ndarray:
    """The line's quadrilateral grown in its own frame (see _ALONG), as (4, 2) float pixels."""
    quad = np.asarray(line.polygon, dtype=np.float64)
    if len(quad) != 4:
        x0, y0, x1, y1 = line.box
        quad = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)
    height = _quad_height(quad)
    centre = quad.mean(axis=0)
    # the detector orders corners top-left, top-right, bottom-right, bottom-left: u runs along the line
    u = (quad[1] - quad[0]) + (quad[2] - quad[3])
    u = u / max(float(np.linalg.norm(u)), 1e-9)
    v = np.array([-u[1], u[0]])
    along, across = (quad - centre) @ u, (quad - centre) @ v
    along += np.sign(along) * (_ALONG * height + widen_px)
    across += np.sign(across) * widen_px
    return centre + along[:, None] * u + across[:, None] * v


def _filled(pixels: np.ndarray, inpainted: np.ndarray, fill: np.ndarray, lines: tuple[TextLine, ...]) -> np.ndarray:
    """The picture with `fill` taken from the inpainting: sharp at the fill's border, smooth inside it.

    Inpainting carries the border's texture inward as streaks; deep inside a letter-sized hole any
    texture is a guess, and a smooth one is the guess that does not show when the picture moves.
    Pixels outside `fill` are left as they are.
    """
    height = float(np.median([_quad_height(np.asarray(line.polygon, np.float64).reshape(-1, 2)) for line in lines]))
    sigma = max(1.0, _FILL_SMOOTH * height)
    smooth = cv2.GaussianBlur(inpainted, (0, 0), sigma)
    depth = cv2.distanceTransform((fill > 0).astype(np.uint8), cv2.DIST_L2, 3)[..., None]
    out = inpainted + (smooth - inpainted.astype(np.float32)) * np.clip(depth / sigma, 0.0, 1.0)
    # the fill's rim keeps some of the picture: no seam where the fill meets it
    out = pixels + (out - pixels) * (np.clip((depth + 1) / 3, 0.0, 1.0) * (depth > 0))
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _quad_height(quad: np.ndarray) -> float:
    """The text height: the mean of a quadrilateral's two short sides (robust to rotation)."""
    if len(quad) != 4:
        return float(np.ptp(quad[:, 1]))
    return float(np.linalg.norm(quad[3] - quad[0]) + np.linalg.norm(quad[2] - quad[1])) / 2


def region_mask(ocr: OcrResult, height: int, width: int, widen_px: int) -> np.ndarray:
    """A 0/255 mask of every line's grown polygon: where its strokes are looked for."""
    mask = np.zeros((height, width), dtype=np.uint8)
    for line in ocr.lines:
        cv2.fillPoly(mask, [np.round(grown_polygon(line, widen_px)).astype(np.int32)], 255)
    return mask


def caption_masks(
    original: np.ndarray, estimate: np.ndarray, lines: tuple[TextLine, ...], search: np.ndarray, widen_px: int
) -> tuple[np.ndarray, np.ndarray]:
    """0/255 masks of the caption's glyph and outline pixels and of the area to inpaint, line by line."""
    height, width = search.shape
    diff = cv2.absdiff(original, estimate).max(axis=2)
    strokes = np.zeros((height, width), np.uint8)
    fill = np.zeros((height, width), np.uint8)
    for line in lines:
        grown = grown_polygon(line, widen_px)
        quad = np.asarray(line.polygon, dtype=np.float64).reshape(-1, 2)
        # the crop reaches a margin past the search area: far enough to tell ground from a glyph's fill
        margin = max(3, round(_CROP_MARGIN * _quad_height(quad)))
        x0, y0 = np.maximum(np.floor(grown.min(axis=0)).astype(int) - margin, 0)
        x1, y1 = np.minimum(np.ceil(grown.max(axis=0)).astype(int) + 1 + margin, (width, height))
        if x1 <= x0 or y1 <= y0:
            continue
        area = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(area, [np.round(grown - (x0, y0)).astype(np.int32)], 1)
        own = np.zeros_like(area)
        cv2.fillPoly(own, [np.round(quad - (x0, y0)).astype(np.int32)], 1)
        crop = (slice(y0, y1), slice(x0, x1))
        ring = (search[crop] == 0) & (cv2.distanceTransform(1 - area, cv2.DIST_L2, 3) <= _GROUND_RING_PX)
        differs = diff[crop] > _STROKE_DIFF
        plain = _plain_ground(original[crop][ring])
        if plain is not None:
            # A caption printed on a plain band (black letters on white paper): the estimate smears the picture
            # next to the band into it, dark as the letters, and would lose their insides; the paper knows.
            off_paper = np.abs(original[crop].astype(np.float32) - plain).max(axis=2)
            differs |= off_paper > _STROKE_DIFF
        found = _line_strokes(original[crop], differs, area > 0, own > 0, ring)
        found = found.astype(np.uint8) * np.uint8(255)
        strokes[crop] |= found
        size = max(3, round(_FILL_CLOSE * _quad_height(quad)) | 1)
        closing = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
        fill[crop] |= cv2.morphologyEx(_grown(found, _FILL_GROW_PX), cv2.MORPH_CLOSE, closing)
    return _grown(strokes, _STROKE_GROW_PX) & search, fill


def _line_strokes(
    pixels: np.ndarray, differs: np.ndarray, area: np.ndarray, own: np.ndarray, ring: np.ndarray
) -> np.ndarray:
    """One line's strokes in its crop: differing pixels of its inks that join its letters, and the fills they enclose.

    `area` is where to look, `own` the detector's quadrilateral, `ring` the picture around the caption.
    """
    found = differs & area
    if np.count_nonzero(found & own) < 4:
        return np.zeros_like(found)
    outside = np.zeros_like(area)
    outside[[0, -1], :] = outside[:, [0, -1]] = True
    colours = pixels.astype(np.float32)
    inks = _inks(colours[(found | _enclosed(found, area, outside)) & own])
    inky = np.abs(colours[:, :, None, :] - inks[None, None]).max(axis=3).min(axis=2) <= _INK_DISTANCE
    # Ink-coloured pixels joined to the plain ground around the line by pixels of its colour (the white
    # paper a black caption is printed on) are ground, however much they differ from a poor estimate
    # (a face's hair smeared into the caption's area); a white fill its outline encloses is not. When
    # every ink is a ground colour (letters half on white, half on a dark suit) colour cannot tell.
    grounds = [g for g in _dominant(colours[ring]) if np.abs(inks - g).max(axis=1).min() <= _GROUND_DISTANCE]
    if 0 < len(grounds) < len(inks):
        for ground in grounds:
            plain = np.abs(colours - ground).max(axis=2) <= _GROUND_DISTANCE
            _, parts = cv2.connectedComponents(plain.astype(np.uint8), connectivity=4)
            found &= ~np.isin(parts, np.unique(parts[ring & plain]))
    found &= inky
    # only what joins the letters the detector saw: a stray ink-coloured bit of the picture is not the caption
    _, parts = cv2.connectedComponents(found.astype(np.uint8), connectivity=8)
    found &= np.isin(parts, np.unique(parts[found & own]))
    # A white glyph on a white background differs only at its outline: its fill is a hole the
    # outline encloses. Enclosed ink-coloured pixels join the mask; a counter showing the picture does not.
    walls = cv2.morphologyEx(found.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((_WALL_CLOSE_PX,) * 2, np.uint8)) > 0
    return found | (_enclosed(walls, area, outside) & inky)


def _enclosed(walls: np.ndarray, area: np.ndarray, outside: np.ndarray) -> np.ndarray:
    """Pixels of `area` that `walls` cut off from `outside` (4-connected)."""
    _, holes = cv2.connectedComponents((~walls).astype(np.uint8), connectivity=4)
    return ~walls & area & ~np.isin(holes, np.unique(holes[outside & ~walls]))


def _plain_ground(colours: np.ndarray) -> np.ndarray | None:
    """The one colour at least _PLAIN_SHARE of a line's surroundings (N, 3) are within _GROUND_DISTANCE of, if any."""
    if len(colours) < 20:
        return None
    median = np.median(colours.astype(np.float32), axis=0)
    near = np.abs(colours.astype(np.float32) - median).max(axis=1) <= _GROUND_DISTANCE
    return median if near.mean() >= _PLAIN_SHARE else None


def _dominant(colours: np.ndarray) -> list[np.ndarray]:
    """The colours that make up at least _GROUND_SHARE of `colours` (N, 3): the ground's, when it is plain."""
    if len(colours) == 0:
        return []
    bins = (colours.astype(np.int32) >> 4) @ np.array([256, 16, 1])
    counts = np.bincount(bins, minlength=4096)
    return [colours[bins == b].mean(axis=0) for b in np.flatnonzero(counts >= _GROUND_SHARE * len(colours))]


def _inks(colours: np.ndarray) -> np.ndarray:
    """The colours a line's strokes are drawn in, (K, 3): the median of its darkest and of its brightest pixels.

    Captions are drawn in dark and light ink (a white or coloured fill, a black outline); an extreme that is
    neither dark nor light is the picture showing through a poor estimate, not ink (unless both are).
    """
    luma = colours @ np.array([0.299, 0.587, 0.114], np.float32)
    order = np.argsort(luma, kind="stable")
    share = max(1, round(_INK_SHARE * len(order)))
    dark, light = np.median(colours[order[:share]], axis=0), np.median(colours[order[-share:]], axis=0)
    inks = [
        ink
        for ink, ok in (
            (dark, luma[order[share // 2]] <= _DARK_INK),
            (light, luma[order[-1 - share // 2]] >= _LIGHT_INK),
        )
        if ok
    ]
    return np.stack(inks or [dark, light])


def _grown(mask: np.ndarray, px: int) -> np.ndarray:
    if px <= 0:
        return mask
    return cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1)))
