"""What a warp cannot show: the inside of a mouth that opens, and eyelids that close over the eye.

A warp only moves pixels that are there. A closed mouth has no inside to stretch, and squeezing an eye shut
smears the iris instead of hiding it; so both are painted over the warped frame, from the rig's moved points.
"""

from __future__ import annotations

import cv2
import numpy as np

from engine.backends.acting.rig import Rig

MOUTH_OPEN_PX = 1.5  # the painted mouth fades in over this opening
LID_SAMPLES = 16  # points along each lid's edge
LASH_WIDTH = 0.02  # × inter-ocular distance: the dark line where the lids meet
SKIN_ABOVE = (0.04, 0.09)  # × inter-ocular distance: the lid's own skin, just above its edge
SKIN_BELOW = (0.08, 0.14)  # × inter-ocular distance: the cheek under the lower lid (brows and lashes are not skin)


def mouth_gap(rig: Rig, points: np.ndarray) -> float:
    """How far apart the inner lips are (px, along the face's vertical), their widest."""
    upper = points[rig.groups["inner_upper_lip"]] @ rig.ey
    lower = points[rig.groups["inner_lower_lip"]] @ rig.ey
    return float(np.max(lower) - np.max(upper)) if len(upper) and len(lower) else 0.0


def _blend(image: np.ndarray, x0: int, y0: int, mask: np.ndarray, colour: np.ndarray) -> None:
    """Lay `colour` (h, w, 3 float) over image[y0:, x0:] with `mask` (h, w) as its opacity."""
    h, w = mask.shape
    patch = image[y0 : y0 + h, x0 : x0 + w].astype(np.float32)
    mixed = patch * (1 - mask[..., None]) + colour * mask[..., None]
    image[y0 : y0 + h, x0 : x0 + w] = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


def _bounds(points: np.ndarray, pad: int, width: int, height: int) -> tuple[int, int, int, int] | None:
    x0, y0 = np.floor(points.min(0)).astype(int) - pad
    x1, y1 = np.ceil(points.max(0)).astype(int) + pad + 1
    x0, y0, x1, y1 = max(0, int(x0)), max(0, int(y0)), min(width, int(x1)), min(height, int(y1))
    return (x0, y0, x1, y1) if x1 - x0 >= 2 and y1 - y0 >= 2 else None


def paint_mouth(image: np.ndarray, rig: Rig, points: np.ndarray, source: np.ndarray) -> None:
    """Paint the newly opened mouth's inside dark, inside the moved inner-lip outline (`points`: the moved rig)."""
    ids = np.concatenate([rig.groups["inner_upper_lip"], rig.groups["inner_lower_lip"]])
    height, width = image.shape[:2]
    added = mouth_gap(rig, points) - mouth_gap(rig, rig.points)
    was = max(0.0, mouth_gap(rig, rig.points))
    # a closed mouth opening shows its dark inside; one already open mostly shows its own teeth, stretched
    strength = min(1.0, max(0.0, added - 0.5) / MOUTH_OPEN_PX) * added / (added + was + 1e-6)
    box = _bounds(points[ids], 3, width, height)
    if strength <= 0.02 or box is None:
        return
    x0, y0, x1, y1 = box
    mask = np.zeros((y1 - y0, x1 - x0), np.float32)
    cv2.fillPoly(mask, [np.round((points[ids] - (x0, y0)) * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
    mask = cv2.GaussianBlur(mask, (0, 0), 0.6) * strength
    rows = np.clip(np.round(rig.points[ids, 1]).astype(int), 0, height - 1)
    cols = np.clip(np.round(rig.points[ids, 0]).astype(int), 0, width - 1)
    lips = source[rows, cols].astype(np.float32).mean(0)
    # darker toward the middle of the opening, a little of the lips' red kept
    depth = cv2.GaussianBlur(mask, (0, 0), max(1.0, 0.25 * (y1 - y0)))
    depth = depth / max(float(depth.max()), 1e-6)
    colour = lips * 0.4 + np.array([14.0, 2.0, 2.0])
    _blend(image, x0, y0, mask, colour[None, None, :] * (1.0 - 0.5 * depth[..., None]))


def _lid_edges(rig: Rig, points: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The upper and lower lid's edges (LID_SAMPLES, 2) px, corner to corner, from the moved points."""
    corners = rig.groups[f"{side}_eye_corners"]
    upper = np.concatenate([rig.groups[f"{side}_upper_lid"], corners])
    lower = np.concatenate([rig.groups[f"{side}_lower_lid"], corners])
    rel = points - rig.origin
    u, v = rel @ rig.ex, rel @ rig.ey
    lo, hi = float(u[corners].min()), float(u[corners].max())
    if hi - lo < 1.0:
        return None
    along = np.linspace(lo, hi, LID_SAMPLES)

    def edge(ids: np.ndarray) -> np.ndarray:
        order = np.argsort(u[ids])
        return np.interp(along, u[ids][order], v[ids][order])

    def to_px(vs: np.ndarray) -> np.ndarray:
        return rig.origin + along[:, None] * rig.ex + vs[:, None] * rig.ey

    return to_px(edge(upper)), to_px(edge(lower))


def paint_lids(image: np.ndarray, rig: Rig, points: np.ndarray, closures: dict[str, float]) -> None:
    """Close each eye by `closures[side]` (0 open, 1 shut): lid skin over the eye, lashes at its edge."""
    height, width = image.shape[:2]
    for side, closure in closures.items():
        if closure < 0.03:
            continue
        edges = _lid_edges(rig, points, side)
        if edges is None:
            continue
        upper, lower = edges
        if float(np.max((lower - upper) @ rig.ey)) < 0.5:  # this eye is shut already (a wink, a drawn line)
            continue
        edge = upper + closure * (lower - upper)
        # the lid's colour: the skin just above it and the cheek below the eye, in this frame; the middle of
        # the lid only (its ends run into the eye's corners)
        middle = slice(LID_SAMPLES // 4, LID_SAMPLES - LID_SAMPLES // 4)
        around = [upper[middle] - rig.ey * rig.scale * k for k in np.linspace(*SKIN_ABOVE, 3)]
        around += [lower[middle] + rig.ey * rig.scale * k for k in np.linspace(*SKIN_BELOW, 3)]
        samples = np.concatenate(around)
        rows = np.clip(np.round(samples[:, 1]).astype(int), 0, height - 1)
        cols = np.clip(np.round(samples[:, 0]).astype(int), 0, width - 1)
        skin = np.median(image[rows, cols].astype(np.float32), axis=0)
        outline = np.concatenate([upper, edge[::-1]])
        lash = max(1.0, LASH_WIDTH * rig.scale)
        box = _bounds(outline, int(np.ceil(lash)) + 3, width, height)
        if box is None:
            continue
        x0, y0, x1, y1 = box
        lid = np.zeros((y1 - y0, x1 - x0), np.float32)
        cv2.fillPoly(lid, [np.round((outline - (x0, y0)) * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
        lid = cv2.GaussianBlur(lid, (0, 0), 0.6)
        # the lid's skin: the skin above its edge mirrored down over the eye (its own texture and shading),
        # pulled toward the skin's median colour so brows and lashes mirrored in do not show
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        rel_u = (xs - rig.origin[0]) * rig.ex[0] + (ys - rig.origin[1]) * rig.ex[1]
        rel_v = (xs - rig.origin[0]) * rig.ey[0] + (ys - rig.origin[1]) * rig.ey[1]
        up_rel = upper - rig.origin
        up_u, up_v = up_rel @ rig.ex, up_rel @ rig.ey
        order = np.argsort(up_u)
        below = np.maximum(rel_v - np.interp(rel_u, up_u[order], up_v[order]).astype(np.float32), 0.0)
        mirror_x = (xs - 2 * below * rig.ey[0]).astype(np.float32)
        mirror_y = (ys - 2 * below * rig.ey[1]).astype(np.float32)
        texture = cv2.remap(image, mirror_x, mirror_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        texture = texture.astype(np.float32)
        texture += 0.6 * (skin[None, None, :] - texture)
        _blend(image, x0, y0, lid, texture * 0.95)
        if closure < 0.5:
            continue  # a half-open eye keeps its own lashes at the lid's edge
        lashes = np.zeros_like(lid)
        cv2.polylines(
            lashes, [np.round((edge[1:-1] - (x0, y0)) * 16).astype(np.int32)], False, 1.0,
            max(1, round(lash)), cv2.LINE_AA, shift=4,
        )  # fmt: skip
        lashes = cv2.GaussianBlur(lashes, (0, 0), 0.5)
        _blend(image, x0, y0, lashes * 0.8 * (closure - 0.5) * 2, (skin * 0.45)[None, None, :])
