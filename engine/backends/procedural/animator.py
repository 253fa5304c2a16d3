"""The procedural backend: subject-aware meme motions rendered as precomputed affine warps."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import cv2
import numpy as np

from engine.backends.procedural.motions import Curves, build_curves, plan_motions
from engine.config import GenerateSettings
from engine.geometry import output_size
from engine.runtime.models import ModelPool
from engine.types import Box, CleanImage, Frames, ResolvedOptions, SceneInfo, Script

log = logging.getLogger(__name__)

WORK_OVERSAMPLE = 1.25  # the source is resized once to this × the output so zooms stay sharp
MASK_SIDE = 160  # px: the foreground cut-out and the hole filling run at this longer side
MATTE_INSET = 0.35  # a segmentation matte's alpha below this is background carried along: dropped
MAX_COVER_ZOOM = 1.6  # containment zooms at most this much to keep a move whole; past it moves are clamped
EDGE = 0.01  # px kept between the sampled area and the picture's edge (interpolation safety)


# Given the work-size picture, the picture to show in frame i (the acting backend's faces and bodies).
SourceFrames = Callable[[np.ndarray], Callable[[int], np.ndarray]]


def animate(
    clean: CleanImage, scene: SceneInfo, script: Script, options: ResolvedOptions, *,
    names: list[str] | None = None, share: float = 1.0, source: SourceFrames | None = None,
    matte: np.ndarray | None = None,
) -> Frames:  # fmt: skip
    """Animate the clean picture with the script's motion as a seamless loop at the output size.

    `names` replaces the motions the script's emotion and camera would plan, run at `share` of their
    amplitude; `source` makes every frame from its own picture (same size as the still one) instead of one;
    `matte` (H, W) float in [0, 1], the subject's soft mask from a segmentation model, replaces the cut-out's guess.
    """
    started = time.perf_counter()
    # 1. check the inputs before any work
    check_inputs(clean, scene, script, options)
    pixels = clean.pixels
    height, width = pixels.shape[:2]
    subject = scene.subject

    # 2. plan the motion; a cut-out needs something to cut out, else the orbit reads the same
    names = list(names) if names is not None else plan_motions(script.emotion, script.camera)
    if subject is None and "parallax" in names:
        names = list(dict.fromkeys("orbit" if name == "parallax" else name for name in names))
    curves = build_curves(names, options.frames, options.motion, np.random.default_rng(options.seed), share)

    # 3. one resize of the source to a bit above the output size, one for the still parts
    out_w, out_h = output_size(width, height, options.size)
    work_scale = min(1.0, WORK_OVERSAMPLE * max(out_w / width, out_h / height))
    work = pixels
    if work_scale < 1.0:
        size = (max(2, round(width * work_scale)), max(2, round(height * work_scale)))
        work = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    frames = np.empty((options.frames, out_h, out_w, 3), np.uint8)
    picture = source(work) if source is not None else None

    # 4. only the subject's panel moves, inside its own box; the rest of the meme stays still
    panel = _active_panel(scene.panels, subject.box if subject else None, width, height)
    if panel != (0, 0, width, height):
        if picture is None:
            frames[:] = cv2.resize(work, (out_w, out_h), interpolation=cv2.INTER_AREA)
        else:
            for i in range(options.frames):
                frames[i] = cv2.resize(picture(i), (out_w, out_h), interpolation=cv2.INTER_AREA)
    ox0, oy0, ox1, oy1 = _scale_box(panel, out_w / width, out_h / height, out_w, out_h)
    wx0, wy0, wx1, wy1 = _scale_box(panel, work.shape[1] / width, work.shape[0] / height, work.shape[1], work.shape[0])
    crop = np.ascontiguousarray(work[wy0:wy1, wx0:wx1])

    def crop_at(i: int) -> np.ndarray:
        return crop if picture is None else np.ascontiguousarray(picture(i)[wy0:wy1, wx0:wx1])

    # 5. where the motion is anchored: the subject's centre (zooms) and its base (rotation, squash)
    local = None
    if subject is not None and _centre_inside(subject.box, panel):
        sx, sy = work.shape[1] / width, work.shape[0] / height
        x0, y0, x1, y1 = subject.box
        local = (
            max(0.0, x0 * sx - wx0), max(0.0, y0 * sy - wy0),
            min(crop.shape[1], x1 * sx - wx0), min(crop.shape[0], y1 * sy - wy0),
        )  # fmt: skip
    focus, base = _anchors(local, subject.kind if subject else "none", crop.shape[1], crop.shape[0])

    # 6. render
    crop_size = (crop.shape[1], crop.shape[0])
    scene_mats = _scene_matrices(curves, focus, base, crop_size, (ox1 - ox0, oy1 - oy0))
    scene_mats = _contain(scene_mats, crop.shape[1], crop.shape[0], ox1 - ox0, oy1 - oy0)
    target = frames[:, oy0:oy1, ox0:ox1]
    if curves.layered and local is not None:
        # the cut-out rides on the (contained) scene, plus its own move
        fg_mats = scene_mats @ _foreground_matrices(curves, focus, crop_size)
        crop_matte = None
        if matte is not None:
            matte_work = cv2.resize(matte.astype(np.float32), work.shape[1::-1], interpolation=cv2.INTER_LINEAR)
            crop_matte = np.ascontiguousarray(matte_work[wy0:wy1, wx0:wx1])
        cut = _cut_out(crop, local, subject.kind if subject else "none", crop_matte)
        _render_layers(target, crop_at, cut, scene_mats, fg_mats)
    else:
        for i in range(options.frames):
            target[i] = cv2.warpAffine(
                crop_at(i), scene_mats[i, :2], (ox1 - ox0, oy1 - oy0), flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REFLECT_101,
            )  # fmt: skip
    motion = "+".join(curves.names)
    log.info(
        "procedural %s: %d frames %dx%d in %.3f s", motion, options.frames, out_w, out_h, time.perf_counter() - started
    )
    return Frames(frames=frames, fps=float(options.fps), motion=motion)


def check_inputs(clean: CleanImage, scene: SceneInfo, script: Script, options: ResolvedOptions) -> None:
    """A ValueError naming the argument when the picture or a box is not what every generator expects."""
    pixels = clean.pixels
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        got = f"{pixels.dtype} {pixels.shape}" if isinstance(pixels, np.ndarray) else type(pixels).__name__
        raise ValueError(f"clean.pixels must be an (H, W, 3) uint8 array, got {got}")
    height, width = pixels.shape[:2]
    if min(height, width) < 2:
        raise ValueError(f"clean.pixels must be at least 2x2, got {width}x{height}")
    boxes = [(f"scene.subjects[{i}].box", s.box) for i, s in enumerate(scene.subjects)]
    boxes += [(f"scene.panels[{i}]", box) for i, box in enumerate(scene.panels)]
    for name, (x0, y0, x1, y1) in boxes:
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise ValueError(
                f"{name} must be a non-empty box inside the {width}x{height} picture, got {(x0, y0, x1, y1)}"
            )


def _active_panel(panels: tuple[Box, ...], subject: Box | None, width: int, height: int) -> Box:
    """The panel holding the subject's centre; without a subject, the largest (the last of equals)."""
    if not panels:
        return (0, 0, width, height)
    if subject is not None:
        for panel in panels:
            if _centre_inside(subject, panel):
                return panel
    areas = [(x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in panels]
    return panels[max(range(len(panels)), key=lambda i: (areas[i], i))]


def _centre_inside(box: Box, panel: Box) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return panel[0] <= cx < panel[2] and panel[1] <= cy < panel[3]


def _scale_box(box: Box, sx: float, sy: float, width: int, height: int) -> Box:
    x0, y0 = round(box[0] * sx), round(box[1] * sy)
    x1, y1 = max(x0 + 2, round(box[2] * sx)), max(y0 + 2, round(box[3] * sy))
    x1, y1 = min(x1, width), min(y1, height)
    return min(x0, x1 - 2), min(y0, y1 - 2), x1, y1


def _anchors(
    local: tuple[float, float, float, float] | None, kind: str, width: int, height: int
) -> tuple[tuple[float, float], tuple[float, float]]:
    """(focus, base) in crop pixels: zooms keep the focus still; rotation and squash pivot on the base."""
    if local is None:
        return (width / 2, height / 2), (width / 2, height - 1.0)
    x0, y0, x1, y1 = local
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    # a face sits on a body that reaches down to the bottom of the picture
    return (cx, cy), (cx, height - 1.0 if kind == "face" else y1)


def _translate(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def _scale_about(point: tuple[float, float], sx: float, sy: float) -> np.ndarray:
    px, py = point
    return np.array([[sx, 0.0, px * (1 - sx)], [0.0, sy, py * (1 - sy)], [0.0, 0.0, 1.0]])


def _rotate_about(point: tuple[float, float], degrees: float) -> np.ndarray:
    m = np.eye(3)
    m[:2] = cv2.getRotationMatrix2D(point, degrees, 1.0)
    return m


def _scene_matrices(
    curves: Curves, focus: tuple[float, float], base: tuple[float, float], src: tuple[int, int], out: tuple[int, int]
) -> np.ndarray:
    """Crop → output matrices (N, 3, 3): camera shift ∘ zoom about the focus ∘ rotation/squash about the base."""
    (sw, sh), (pw, ph) = src, out
    kx, ky = pw / sw, ph / sh
    # pixel centres: output pixel q covers source (q + 0.5) / k - 0.5
    to_output = np.array([[kx, 0.0, 0.5 * kx - 0.5], [0.0, ky, 0.5 * ky - 0.5], [0.0, 0.0, 1.0]])
    mats = np.empty((len(curves.zoom), 3, 3))
    for i in range(len(mats)):
        zoom, squash = curves.zoom[i], curves.squash[i]
        mats[i] = (
            to_output
            @ _translate(curves.shift_x[i] * sw, curves.shift_y[i] * sh)
            @ _scale_about(focus, zoom, zoom)
            @ _rotate_about(base, curves.angle[i])
            @ _scale_about(base, squash, 1.0 / squash)
        )
    return mats


def _foreground_matrices(curves: Curves, focus: tuple[float, float], src: tuple[int, int]) -> np.ndarray:
    """The foreground layer's extra move in crop pixels (N, 3, 3), applied before the scene's."""
    sw, sh = src
    return np.stack([
        _translate(curves.fg_shift_x[i] * sw, curves.fg_shift_y[i] * sh) @ _scale_about(focus, z, z)
        for i, z in enumerate(curves.fg_zoom)
    ])  # fmt: skip


def _contain(mats: np.ndarray, src_w: int, src_h: int, out_w: int, out_h: int) -> np.ndarray:
    """Zoom in (one factor for the whole loop) and shift so no frame samples outside the crop."""
    inverse = np.linalg.inv(mats)
    corners = np.array([[0.0, out_w - 1, 0.0, out_w - 1], [0.0, 0.0, out_h - 1, out_h - 1], [1.0, 1.0, 1.0, 1.0]])
    centre_q = np.array([(out_w - 1) / 2, (out_h - 1) / 2, 1.0])
    sampled = inverse @ corners  # (N, 3, 4): where the frame's corners come from
    centre = (inverse @ centre_q)[:, :2]
    half = np.abs(sampled[:, :2, :] - centre[:, :, None]).max(axis=2)
    low = np.array([EDGE, EDGE])
    high = np.array([src_w - 1 - EDGE, src_h - 1 - EDGE])
    room = high - low

    def fits_whole(m: float) -> bool:  # one shift for every frame keeps shakes and pans intact
        return bool((((centre + half / m).max(0) - (centre - half / m).min(0)) <= room).all())

    zoom = max(1.0, float((2 * half / room).max()))
    if not fits_whole(zoom):
        top = max(zoom, MAX_COVER_ZOOM)
        if fits_whole(top):
            lo = zoom
            for _ in range(30):
                mid = (lo + top) / 2
                lo, top = (lo, mid) if fits_whole(mid) else (mid, top)
        zoom = top
    half = half / zoom
    lo_all, hi_all = (centre - half).min(0), (centre + half).max(0)
    shift = np.where(lo_all < low, low - lo_all, np.where(hi_all > high, high - hi_all, 0.0))
    if not fits_whole(zoom):
        shift = (low + high) / 2 - (lo_all + hi_all) / 2
    # per frame, whatever is still outside (only when a move could not be kept whole) is clamped
    moved = centre + shift
    shifts = np.clip(moved, low + half, np.maximum(low + half, high - half)) - moved + shift
    to_centre = _translate(-centre_q[0], -centre_q[1])
    scale = _translate(centre_q[0], centre_q[1]) @ _scale_about((0.0, 0.0), zoom, zoom) @ to_centre
    corrections = np.stack([_translate(-dx, -dy) for dx, dy in shifts])
    if zoom > 1.0 or np.abs(shifts).max() > 0:
        log.debug("contained: zoom %.3f, shift up to %.1f px", zoom, float(np.abs(shifts).max()))
    return scale @ mats @ corrections


def _cut_out(
    crop: np.ndarray, box: tuple[float, float, float, float], kind: str, matte: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The subject's soft alpha (uint8) and the crop with the subject's place inpainted, for 2.5D parallax.

    Without a `matte` (the crop's size, float in [0, 1]), the subject's outline is GrabCut from a body prior.
    """
    h, w = crop.shape[:2]
    scale = min(1.0, MASK_SIDE / max(h, w))
    sw, sh = max(8, round(w * scale)), max(8, round(h * scale))
    small = cv2.resize(crop, (sw, sh), interpolation=cv2.INTER_AREA)
    fx, fy = sw / w, sh / h
    small_box = (box[0] * fx, box[1] * fy, box[2] * fx, box[3] * fy)
    if matte is not None:
        soft = cv2.resize(matte, (sw, sh), interpolation=cv2.INTER_AREA)
        mask = (soft > 0.5).astype(np.uint8)
        # the layer's edge sits a little inside the mask's: a segmentation edge carries some background,
        # which would ride along with the subject as a halo (the hole below is filled past it anyway)
        alpha = cv2.GaussianBlur(cv2.resize(matte, (w, h), interpolation=cv2.INTER_LINEAR), (0, 0), 1.0)
        alpha = np.clip((alpha - MATTE_INSET) / (1.0 - MATTE_INSET), 0.0, 1.0)
    else:
        mask = _refine(small, _body_prior(sw, sh, small_box, kind), small_box)
        alpha = cv2.resize(
            cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 1.0), (w, h), interpolation=cv2.INTER_LINEAR
        )
    # inpaint a grown hole so no subject colour bleeds into the fill, but paste the fill only just
    # past the cut-out: beyond it the real background is sharper than any fill
    grow = max(2, round(0.04 * max(sw, sh)))
    hole = cv2.dilate(mask * 255, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    filled = cv2.resize(cv2.inpaint(small, hole, 5, cv2.INPAINT_TELEA), (w, h), interpolation=cv2.INTER_LINEAR)
    paste = cv2.dilate(mask, np.ones((3, 3), np.uint8)).astype(np.float32)
    weight = cv2.resize(cv2.GaussianBlur(paste, (0, 0), 1.0), (w, h), interpolation=cv2.INTER_LINEAR)
    background = cv2.blendLinear(filled, crop, weight, 1.0 - weight)
    return np.clip(alpha * 255 + 0.5, 0, 255).astype(np.uint8), background


def _body_prior(width: int, height: int, box: tuple[float, float, float, float], kind: str) -> np.ndarray:
    """A plausible subject region (0/1): for a face, head and hair plus shoulders down to the bottom."""
    x0, y0, x1, y1 = box
    bw, bh, cx, cy = x1 - x0, y1 - y0, (x0 + x1) / 2, (y0 + y1) / 2
    prior = np.zeros((height, width), np.uint8)
    if kind == "face":
        axes = (max(1, round(0.62 * bw)), max(1, round(0.8 * bh)))
        cv2.ellipse(prior, (round(cx), round(cy - 0.08 * bh)), axes, 0, 0, 360, 1, -1)
        torso = np.array([
            [cx - 0.35 * bw, y1 - 0.1 * bh], [cx + 0.35 * bw, y1 - 0.1 * bh], [cx + 1.5 * bw, y1 + 1.2 * bh],
            [cx + 1.7 * bw, height], [cx - 1.7 * bw, height], [cx - 1.5 * bw, y1 + 1.2 * bh],
        ])  # fmt: skip
        cv2.fillPoly(prior, [np.round(torso).astype(np.int32)], 1)
    else:  # cats and salient things: the box itself, rounded
        cv2.ellipse(
            prior, (round(cx), round(cy)), (max(1, round(0.56 * bw)), max(1, round(0.56 * bh))), 0, 0, 360, 1, -1
        )
    return prior


def _refine(small: np.ndarray, prior: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """GrabCut the prior region into the subject's real outline; keep the prior when GrabCut goes astray."""
    band = max(2, round(0.06 * max(small.shape[:2])))
    near = cv2.dilate(prior, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1)))
    labels = np.full(prior.shape, cv2.GC_BGD, np.uint8)
    labels[near > 0] = cv2.GC_PR_BGD
    labels[prior > 0] = cv2.GC_PR_FGD
    x0, y0, x1, y1 = box
    qx, qy = (x1 - x0) / 4, (y1 - y0) / 4
    labels[round(y0 + qy) : round(y1 - qy) + 1, round(x0 + qx) : round(x1 - qx) + 1] = cv2.GC_FGD
    if (labels == cv2.GC_BGD).sum() < 50:  # the subject fills the panel: nothing to learn the background from
        return prior
    try:
        cv2.grabCut(small, labels, None, np.zeros((1, 65)), np.zeros((1, 65)), 2, cv2.GC_INIT_WITH_MASK)
    except cv2.error as exc:
        log.debug("grabCut failed, keeping the prior mask: %s", exc)
        return prior
    mask = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    ratio = mask.sum() / max(1, prior.sum())
    return mask if 0.35 <= ratio <= 1.3 else prior


def _render_layers(
    target: np.ndarray, crop_at: Callable[[int], np.ndarray], cut: tuple[np.ndarray, np.ndarray],
    scene_mats: np.ndarray, fg_mats: np.ndarray,
) -> None:  # fmt: skip
    """Warp the inpainted background and the cut-out separately, then blend the cut-out over it."""
    alpha, background = cut
    weight_src = alpha.astype(np.float32) * (1.0 / 255)
    size = (target.shape[2], target.shape[1])
    for i in range(len(target)):
        back = cv2.warpAffine(
            background, scene_mats[i, :2], size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )
        # replicate: a body cut by the picture's edge stays attached to it
        front = cv2.warpAffine(
            crop_at(i), fg_mats[i, :2], size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        weight = cv2.warpAffine(
            weight_src, fg_mats[i, :2], size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        target[i] = cv2.blendLinear(front, back, weight, 1.0 - weight)


class Procedural:
    """generate = "procedural": subject-aware meme motions on a CPU, with no weights."""

    def __init__(self, settings: GenerateSettings, models: ModelPool) -> None:
        self.settings = settings

    def __call__(
        self, clean: CleanImage, scene: SceneInfo, script: Script, options: ResolvedOptions,
        progress: Callable[[float], None] | None = None,
    ) -> Frames:  # fmt: skip
        """The frames for the script, at the output size and the picture's aspect."""
        return animate(clean, scene, script, options)
