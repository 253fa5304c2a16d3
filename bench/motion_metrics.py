"""Quality measures of an animation's frames, as plain functions on (H, W, 3) uint8 RGB arrays.

bench/quality.py runs them on the real memes; tests/test_bench_quality.py checks them on drawn frames.
A transform here is a 2x3 float matrix that maps a frame's pixel coordinates onto its reference's, so
`cv2.warpAffine(frame, transform, size)` lays the frame over the reference.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import cv2
import numpy as np

Box = tuple[int, int, int, int]
"""(x0, y0, x1, y1) in pixels, x1/y1 exclusive."""

IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
MIN_POINTS = 8  # fewer tracked features than this and an affine fit is guesswork
FLOW_MARGIN = 16  # px of context around the measured region, so the flow's window sees both sides of an edge
WHITE_LEVEL = 245  # every channel at or above this is "near-white"
WHITE_TOLERANCE = 5  # px: a new white pixel this close to the source's own white is the source's white, moved
EDGE_TOLERANCE = 2  # px: an edge this close to one of the reference's is the same edge, resampled
HELD = 0.05  # levels: a step between frames smaller than this is a hold, not motion
STILL_MARGIN = 8  # px: about half the flow's window, where a still overlay's apparent move would bleed in


def gray(rgb: np.ndarray) -> np.ndarray:
    """The frame's luminance, uint8."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def box_mask(shape: Sequence[int], box: Box) -> np.ndarray:
    """A boolean (H, W) mask that is True inside `box`, clipped to the picture."""
    mask = np.zeros(tuple(shape[:2]), bool)
    x0, y0, x1, y1 = box
    mask[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = True
    return mask


def widened(mask: np.ndarray, px: int) -> np.ndarray:
    """The boolean `mask` grown by `px` pixels."""
    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)).astype(bool)


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 transform that applies `inner`, then `outer`."""
    return (np.vstack([outer, [0, 0, 1]]) @ np.vstack([inner, [0, 0, 1]]))[:2]


def invert(transform: np.ndarray) -> np.ndarray:
    """The 2x3 transform that undoes `transform`."""
    return cv2.invertAffineTransform(np.asarray(transform, np.float64))


def box_through(box: Box, transform: np.ndarray, width: int, height: int) -> Box:
    """The box around `box`'s corners mapped by `transform`, clipped to a width x height picture."""
    x0, y0, x1, y1 = box
    corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], np.float64) @ np.asarray(transform).T
    (left, top), (right, bottom) = corners.min(axis=0), corners.max(axis=0)
    return (
        max(0, int(np.floor(left))), max(0, int(np.floor(top))),
        min(width, int(np.ceil(right))), min(height, int(np.ceil(bottom))),
    )  # fmt: skip


def align(frame: np.ndarray, reference: np.ndarray, where: np.ndarray, guess: np.ndarray | None = None) -> np.ndarray:
    """The affine transform (shift, rotation, zoom, squash, shear) laying `frame` over `reference`.

    The frame is first laid over the reference by `guess` (e.g. the previous frame's transform; without
    one, a rough fit of ORB matches), so what is left to find is small even after a large zoom. Corners
    of `reference` where the boolean mask `where` is True are then tracked into it by pyramidal
    Lucas-Kanade, kept when tracking back lands where they started, and fitted with RANSAC. Returns the
    starting transform instead when fewer than MIN_POINTS survive or when it lays the frame better.
    """
    start = np.asarray(guess, np.float64) if guess is not None else rough_alignment(frame, reference, where)
    if guess is None and misfit(frame, reference, IDENTITY, where) < misfit(frame, reference, start, where):
        start = IDENTITY.copy()
    height, width = reference.shape[:2]
    ref_gray = gray(reference)
    laid = gray(cv2.warpAffine(frame, start, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    corners = cv2.goodFeaturesToTrack(
        ref_gray, maxCorners=400, qualityLevel=0.005, minDistance=4, mask=where.astype(np.uint8) * 255, blockSize=5
    )
    if corners is None or len(corners) < MIN_POINTS:
        return start
    ref_pts = corners.reshape(-1, 1, 2).astype(np.float32)
    lk = {"winSize": (21, 21), "maxLevel": 3, "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01)}
    found, ok, _ = cv2.calcOpticalFlowPyrLK(ref_gray, laid, ref_pts, None, **lk)
    back, ok_back, _ = cv2.calcOpticalFlowPyrLK(laid, ref_gray, found, None, **lk)
    good = (ok.ravel() == 1) & (ok_back.ravel() == 1) & (np.linalg.norm((back - ref_pts).reshape(-1, 2), axis=1) < 0.5)
    if good.sum() < MIN_POINTS:
        return start
    correction, inliers = cv2.estimateAffine2D(
        found[good], ref_pts[good], method=cv2.RANSAC, ransacReprojThreshold=1.0, maxIters=2000, confidence=0.995
    )
    if correction is None or inliers is None or int(inliers.sum()) < MIN_POINTS:
        return start
    # a fit on few or misleading corners can be worse than where it started: keep whichever lays it better
    fitted = compose(correction, start)
    return min((fitted, start), key=lambda t: misfit(frame, reference, t, where))


def misfit(frame: np.ndarray, reference: np.ndarray, transform: np.ndarray, where: np.ndarray) -> float:
    """How badly `transform` lays `frame` over `reference`: the mean absolute grey difference where `where` is True."""
    height, width = reference.shape[:2]
    laid = cv2.warpAffine(gray(frame), transform, (width, height), flags=cv2.INTER_LINEAR)
    counted = where & _covered(transform, reference.shape)
    if not counted.any():
        return float("inf")
    return float(np.abs(laid[counted].astype(np.int16) - gray(reference)[counted]).mean())


def rough_alignment(frame: np.ndarray, reference: np.ndarray, where: np.ndarray) -> np.ndarray:
    """A coarse affine transform laying `frame` over `reference`, from ORB matches (identity without enough)."""
    orb = cv2.ORB_create(1500)
    ref_keys, ref_desc = orb.detectAndCompute(gray(reference), where.astype(np.uint8) * 255)
    frame_keys, frame_desc = orb.detectAndCompute(gray(frame), None)
    if ref_desc is None or frame_desc is None or len(ref_keys) < MIN_POINTS or len(frame_keys) < MIN_POINTS:
        return IDENTITY.copy()
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(frame_desc, ref_desc)
    if len(matches) < MIN_POINTS:
        return IDENTITY.copy()
    src = np.float32([frame_keys[m.queryIdx].pt for m in matches])
    dst = np.float32([ref_keys[m.trainIdx].pt for m in matches])
    transform, inliers = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0)
    if transform is None or inliers is None or int(inliers.sum()) < MIN_POINTS:
        return IDENTITY.copy()
    return transform.astype(np.float64)


def _covered(transform: np.ndarray, shape: Sequence[int], inverse: bool = False) -> np.ndarray:
    """Where a warp by `transform` has real pixels, not border fill (one pixel shy of the edge)."""
    height, width = shape[:2]
    flags = cv2.INTER_NEAREST | (cv2.WARP_INVERSE_MAP if inverse else 0)
    ones = cv2.warpAffine(np.ones((height, width), np.uint8), transform, (width, height), flags=flags)
    return cv2.erode(ones, np.ones((3, 3), np.uint8)).astype(bool)


def residual_motion(
    frame: np.ndarray, reference: np.ndarray, transform: np.ndarray, region: np.ndarray, still: np.ndarray | None = None
) -> float:
    """The 95th percentile of dense optical flow (px) inside `region` once `frame` is laid over `reference`.

    What a camera move explains is taken out first (`transform`, from `align`); what is left is
    motion of the picture's own parts. `region` is a boolean mask in the reference's coordinates.
    `still` marks an overlay that stays put in every frame (the caption): once the picture is aligned
    it seems to move, so both its places are filled alike in the two pictures and pixels within
    STILL_MARGIN px of them are not measured, lest the flow's window drag its move onto the picture.
    Farneback flow is computed on the region's bounding box plus FLOW_MARGIN only. 0 when nothing is left to measure.
    """
    height, width = reference.shape[:2]
    aligned = cv2.warpAffine(frame, transform, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    measured = region & _covered(transform, reference.shape)
    overlay = np.zeros((height, width), bool)
    if still is not None and still.any():
        carried = cv2.warpAffine(still.astype(np.uint8), transform, (width, height), flags=cv2.INTER_NEAREST)
        overlay = widened(still | carried.astype(bool), 2)
        measured &= ~widened(overlay, STILL_MARGIN)
    ys, xs = np.nonzero(measured)
    if len(xs) == 0:
        return 0.0
    x0, y0 = max(0, xs.min() - FLOW_MARGIN), max(0, ys.min() - FLOW_MARGIN)
    x1, y1 = min(width, xs.max() + 1 + FLOW_MARGIN), min(height, ys.max() + 1 + FLOW_MARGIN)
    ref_crop, frame_crop, hole = reference[y0:y1, x0:x1], aligned[y0:y1, x0:x1].copy(), overlay[y0:y1, x0:x1]
    if hole.any():
        ref_crop = cv2.inpaint(ref_crop, hole.astype(np.uint8), 3, cv2.INPAINT_TELEA)
        frame_crop[hole] = ref_crop[hole]
    flow = cv2.calcOpticalFlowFarneback(gray(ref_crop), gray(frame_crop), None, 0.5, 3, 15, 3, 5, 1.2, 0)
    magnitude = np.linalg.norm(flow, axis=2)[measured[y0:y1, x0:x1]]
    return float(np.percentile(magnitude, 95))


def edges(rgb: np.ndarray, low: int = 100, high: int = 200) -> np.ndarray:
    """Canny edges of the frame, boolean."""
    return cv2.Canny(gray(rgb), low, high) > 0


def tearing(
    frame: np.ndarray, reference: np.ndarray, transform: np.ndarray, ignore: np.ndarray, follow_flow: bool = False
) -> float:
    """The share (0..1) of `frame`'s edges that `reference`, warped onto the frame by `transform`, lacks (see
    tear_shares, which measures it for several `ignore` masks at the cost of one)."""
    return tear_shares(frame, reference, transform, [ignore], follow_flow)[0]


def tear_shares(
    frame: np.ndarray, reference: np.ndarray, transform: np.ndarray, ignores: list[np.ndarray],
    follow_flow: bool = False,
) -> list[float]:  # fmt: skip
    """The share (0..1) of `frame`'s edges that `reference`, warped onto the frame by `transform`, lacks.

    Holes, smears and seams of a cut-out draw edges no camera move of the reference explains. The
    reference's edges are found with half the thresholds and widened by EDGE_TOLERANCE, so a resampled
    edge still matches. Pixels where `ignore` is True (the caption) and outside the warped reference
    do not count. 0 for a frame without edges.
    With `follow_flow`, the warped reference is also moved by the dense (smooth) optical flow onto the
    frame, so parts that move on their own (a face that talks, a panel that pans) are explained too and
    what is left are edges no smooth motion of the reference makes: holes, seams, smears.
    """
    height, width = frame.shape[:2]
    warped = cv2.warpAffine(
        reference, transform, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )  # fmt: skip
    known = widened(edges(warped, 50, 100), EDGE_TOLERANCE)
    if follow_flow:  # an edge either move explains is explained (the flow's resampling blurs some away)
        flow = cv2.calcOpticalFlowFarneback(gray(frame), gray(warped), None, 0.5, 4, 21, 3, 5, 1.2, 0)
        grid = np.mgrid[0:height, 0:width].astype(np.float32)
        carried = cv2.remap(
            warped, grid[1] + flow[..., 0], grid[0] + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        known |= widened(edges(carried, 50, 100), EDGE_TOLERANCE)
    found = edges(frame) & _covered(transform, frame.shape, inverse=True)
    shares = []
    for ignore in ignores:
        counted = found & ~ignore
        total = int(counted.sum())
        shares.append(float((counted & ~known).sum() / total) if total else 0.0)
    return shares


def near_white(rgb: np.ndarray) -> np.ndarray:
    """Where every channel is at least WHITE_LEVEL."""
    return np.all(rgb >= WHITE_LEVEL, axis=2)


def new_white_area(frame: np.ndarray, source: np.ndarray, transform: np.ndarray, ignore: np.ndarray) -> int:
    """The pixel count of the largest near-white island of `frame` that `source` has no white in.

    `transform` lays the frame over the source (same size as the frame). A near-white region of the frame
    counts only when none of it lies on the source's own white (moved there, widened by WHITE_TOLERANCE px):
    white that grows out of the source's white is a white background a moving subject uncovered, not a
    patch. Pixels where `ignore` is True (the caption) are left out.
    """
    height, width = frame.shape[:2]
    moved = cv2.warpAffine(
        near_white(source).astype(np.uint8), transform, (width, height),
        flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE,
    )  # fmt: skip
    known = widened(moved.astype(bool), WHITE_TOLERANCE)
    count, labels = cv2.connectedComponents((near_white(frame) & ~ignore).astype(np.uint8), connectivity=8)
    if count < 2:
        return 0
    sizes = np.bincount(labels.ravel(), minlength=count)
    grown = np.bincount(labels[known], minlength=count) > 0  # regions with some of the source's white
    islands = sizes[1:][~grown[1:]]
    return int(islands.max()) if islands.size else 0


def mean_difference(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    """The mean absolute difference of two frames (levels 0..255), over the True pixels of `where` if given."""
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    if where is None:
        return float(diff.mean())
    return float(diff[where].mean()) if where.any() else 0.0


def seam_ratio(frames: Sequence[np.ndarray]) -> float:
    """The loop's jump, last frame to first, over the median step between consecutive frames that move.

    About 1 for a seamless loop, well above 1 for a visible jump, 0 when the last frame repeats the
    first (a stall at the seam) or nothing moves at all. Held frames (steps under HELD levels) are left
    out of the median: a motion that rests half the loop would otherwise make any seam look like a jump.
    """
    seam = mean_difference(frames[-1], frames[0])
    if seam == 0.0:
        return 0.0
    steps = [step for a, b in zip(frames, frames[1:]) if (step := mean_difference(a, b)) > HELD]
    return seam / float(np.median(steps)) if steps else float("inf")


def caption_change(frames: Sequence[np.ndarray], caption: np.ndarray) -> float:
    """The mean absolute difference of the caption's pixels between consecutive frames (levels 0..255)."""
    if not caption.any() or len(frames) < 2:
        return 0.0
    return float(np.mean([mean_difference(a, b, caption) for a, b in zip(frames, frames[1:])]))


def words(text: str) -> list[str]:
    """The text's words, upper-cased, apostrophes dropped (OCR reads DON'T as DONT as often as not)."""
    return re.findall(r"[A-Z0-9]+", text.upper().replace("'", "").replace("\u2019", ""))


def word_recall(truth: str, read: str) -> float:
    """The share of the true caption's words (counted with repeats) that the read text contains; 1 for no words.

    A read word that is several true words run together ("WITHBLACKJACK", RapidOCR on a condensed font)
    counts as those words: the caption reads the same to a person.
    """
    expected = Counter(words(truth))
    found: Counter[str] = Counter()
    for word in words(read):
        found.update(split_words(word, set(expected)) or [word])
    total = sum(expected.values())
    return sum(min(n, found[word]) for word, n in expected.items()) / total if total else 1.0


def split_words(run: str, vocabulary: set[str]) -> list[str] | None:
    """`run` as a sequence of vocabulary words (fewest pieces), or None when it isn't one."""
    best: list[list[str] | None] = [[]] + [None] * len(run)
    for end in range(1, len(run) + 1):
        for start in range(end):
            head, current = best[start], best[end]
            if head is None or run[start:end] not in vocabulary:
                continue
            if current is None or len(head) + 1 < len(current):
                best[end] = [*head, run[start:end]]
    return best[-1]
