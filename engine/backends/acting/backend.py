"""generate = "acting": the meme's characters act on a CPU — faces make expressions, heads and bodies move.

Faces come from mediapipe's bundled face mesh (or, without it, from the scene stage's Haar boxes with a fitted
template); each face is rigged (rig.py) and performs its emotion's act (acts.py) as a piecewise-affine warp of
its mesh, with a painted mouth inside when the jaw drops. Bodies breathe and sway under the person mask
(selfie segmentation) or, for a cat, under a soft ellipse of its box. The
procedural animator then layers the script's camera move under the acting and renders the loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from engine.backends.acting import acts
from engine.backends.acting.body import body_bases, body_curves, body_mask
from engine.backends.acting.faces import FaceFinder, FoundFace
from engine.backends.acting.fields import FIELD_PIXELS, Basis, accumulate, backward_map
from engine.backends.acting.paint import paint_lids, paint_mouth
from engine.backends.acting.rig import MeshWarp, Rig, from_box, from_mesh
from engine.backends.procedural.animator import animate, check_inputs
from engine.backends.procedural.motions import CAMERA_MOTIONS, CAMERA_UNDER_ACTING
from engine.config import GenerateSettings
from engine.runtime.models import ModelPool
from engine.types import CleanImage, Frames, ResolvedOptions, SceneInfo, Script

log = logging.getLogger(__name__)


MIN_RIG_EYES_PX = 3.0  # eyes closer than this (at the work size) are too small for a face to act


def rig_faces(found: list[FoundFace], scale: float) -> list[Rig]:
    """The faces of one picture rigged at the work size (`scale` × the picture's), in the order found."""
    rigs = []
    for face in found:
        try:
            rig = from_mesh(face.points * scale) if face.points is not None else from_box(face.box, scale)
        except ValueError as exc:  # a degenerate mesh (both eyes on one point): this face sits still
            log.debug("face not rigged: %s", exc)
            continue
        if rig.scale >= MIN_RIG_EYES_PX:
            rigs.append(rig)
    return rigs


@dataclass(eq=False)
class _FaceAct:
    """One face's motion: coarse fields for the picture, and the same moves at the rig's own points."""

    rig: Rig
    bases: list[Basis]
    point_moves: list[tuple[np.ndarray, np.ndarray]]  # (curve (frames,), moves (N, 2) work px at amount 1)
    jaw: np.ndarray  # (frames,) how far the jaw is down
    lids: dict[str, np.ndarray]  # side → (frames,) how far the eye is shut (painted, not warped)

    def points_at(self, i: int) -> np.ndarray:
        """The rig's points in frame i (before the body's move)."""
        moved = self.rig.points.copy()
        for curve, moves in self.point_moves:
            moved += float(curve[i]) * moves
        return moved


def _face_act(rig: Rig, show: acts.Performance, width: int, height: int) -> _FaceAct:
    """The face's expression shapes and head moves as coarse fields over its head region."""
    jaw = show.shapes.get("jaw", np.zeros(len(next(iter(show.head.values())))))
    lids = {side: show.shapes[f"blink_{side}"] for side in ("right", "left") if f"blink_{side}" in show.shapes}
    act = _FaceAct(rig, [], [], np.maximum(jaw, 0.0), lids)
    x0, y0, x1, y1 = MeshWarp.bounds(rig, width, height)
    c = min(1.0, float(np.sqrt(FIELD_PIXELS / max(1, (x1 - x0) * (y1 - y0)))))
    coarse_rig = Rig(rig.points * c, rig.groups, rig.origin * c, rig.ex, rig.ey, rig.scale * c, rig.landmarks)
    warp = MeshWarp(coarse_rig, max(2, round(width * c)), max(2, round(height * c)))
    bases: list[Basis] = []
    y0, x0 = round(warp.y0 / c), round(warp.x0 / c)
    y1, x1 = min(height, round(warp.y1 / c)), min(width, round(warp.x1 / c))
    if y1 - y0 < 2 or x1 - x0 < 2:
        return act
    for name, curve in show.shapes.items():
        if not np.any(curve) or name.startswith("blink"):  # eyes close by paint (paint.py)
            continue
        moves = rig.to_pixels(acts.SHAPES[name](rig)).astype(np.float32)  # work px
        bases.append(Basis(y0, x0, y1, x1, warp.field(moves), curve))
        act.point_moves.append((curve, moves.astype(np.float64)))
    # the head as one piece: full weight over the face and hair, fading to still at the ring
    ys, xs = np.mgrid[warp.y0 : warp.y1, warp.x0 : warp.x1].astype(np.float32)
    centre, hw, hh = coarse_rig.oval
    rel_x, rel_y = xs - centre[0], ys - centre[1]
    u = (rel_x * rig.ex[0] + rel_y * rig.ex[1]) / max(hw, 1e-3)
    v = (rel_x * rig.ey[0] + rel_y * rig.ey[1]) / max(hh, 1e-3)
    v = np.where(v < 0, v / 1.25, v / 0.9)  # the ring's shape: higher over the hair
    r = np.sqrt(u * u + v * v)
    weight = (1.0 - np.clip((r - 1.1) / 0.45, 0.0, 1.0)) ** 2
    weight = (weight * weight * (3 - 2 * weight)).astype(np.float32)
    pivot = centre + rig.ey * hh * 1.25  # the neck
    for name in acts.HEAD:
        head_curve = show.head.get(name)
        if head_curve is None or not np.any(head_curve):
            continue
        if name == "roll":  # degrees → work px per degree (small-angle rotation about the neck)
            k = np.pi / 180 / c
            move = np.stack([-(ys - pivot[1]) * k, (xs - pivot[0]) * k], axis=-1)
            rel = rig.points - pivot / c
            at_points = np.stack([-rel[:, 1], rel[:, 0]], axis=1) * (np.pi / 180)
        else:
            axis = rig.ex if name == "shift_u" else rig.ey
            move = np.broadcast_to((axis * rig.scale).astype(np.float32), (*ys.shape, 2))
            at_points = np.broadcast_to(axis * rig.scale, rig.points.shape)
        bases.append(Basis(y0, x0, y1, x1, (move * weight[..., None]).astype(np.float32), head_curve))
        act.point_moves.append((head_curve, np.array(at_points, np.float64)))  # the face's points all sit at weight 1
    act.bases = bases
    return act


@dataclass(frozen=True)
class Cast:
    """Who is in the picture: its faces (picture pixels, biggest first) and the person mask, if any."""

    faces: list[FoundFace]
    person: np.ndarray | None  # (H, W) float32 in [0, 1]
    width: int  # the picture's width, px (the faces' coordinates are in its pixels)


def find_cast(finder: FaceFinder, clean: CleanImage, scene: SceneInfo) -> Cast:
    """The faces (mediapipe's mesh, or the scene stage's Haar boxes without mediapipe) and the person mask."""
    pixels = clean.pixels
    hints = tuple(
        (float(s.box[0]), float(s.box[1]), float(s.box[2]), float(s.box[3])) for s in scene.subjects if s.kind == "face"
    )  # fmt: skip
    if finder.available:
        return Cast(finder.faces(pixels, hints), finder.person_mask(pixels), pixels.shape[1])
    return Cast([FoundFace(box=box, score=0.5, points=None) for box in hints], None, pixels.shape[1])


class Performance:
    """The acted pictures of one loop at a work size, frame by frame: faces and bodies move, no camera yet."""

    def __init__(
        self, work: np.ndarray, cast: Cast, scene: SceneInfo, script: Script, options: ResolvedOptions,
        progress: Callable[[float], None] | None = None,
    ) -> None:  # fmt: skip
        self.work = work
        self.progress = progress
        self.frames = options.frames
        wh, ww = work.shape[:2]
        seconds = options.frames / float(options.fps)
        t = np.arange(options.frames, dtype=np.float64) / options.frames
        rng = np.random.default_rng(options.seed)
        gain = acts.HIGH_GAIN if options.motion == "high" else 1.0
        speech = acts.reads_as_speech(script.meme_text)
        self.rigs = rig_faces(cast.faces, ww / cast.width)
        # the first face is the biggest: the one the caption is about gets the main act
        self.faces = [
            _face_act(rig, acts.perform(script.emotion, t, seconds, rng, gain=gain, main=i == 0, speech=speech,
                                        prompt=script.motion_prompt), ww, wh)
            for i, rig in enumerate(self.rigs)
        ]  # fmt: skip
        self.acted = [f"{len(self.rigs)} face{'s' * (len(self.rigs) != 1)}"]
        self.body_bases: list[Basis] = []
        body = body_mask(cast.person, scene, self.rigs, ww, wh, cast.width)
        if body is not None:
            breathe, sway = body_curves(script.emotion, t, seconds, gain)
            self.body_bases = body_bases(body, breathe, sway)
            self.acted.append("body")
        self._cache: dict[int, np.ndarray] = {}  # the animator may ask for a frame twice (panels, then the active one)

    def field(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Frame i's forward move of every work pixel (H, W, 2), and the body's share of it."""
        wh, ww = self.work.shape[:2]
        body = accumulate(self.body_bases, i, wh, ww) if self.body_bases else None
        field = body.copy() if body is not None else np.zeros((wh, ww, 2), np.float32)
        for face in self.faces:
            accumulate(face.bases, i, wh, ww, field)
        return field, body

    def __call__(self, i: int) -> np.ndarray:
        """Frame i's picture, the work picture's size."""
        if i in self._cache:
            return self._cache[i]
        field, body = self.field(i)
        if not field.any():
            out = self.work
        else:
            map_x, map_y = backward_map(field)
            out = cv2.remap(self.work, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        for face in self.faces:
            closures = {side: float(curve[i]) for side, curve in face.lids.items()}
            if face.jaw[i] <= 0.02 and max(closures.values(), default=0.0) < 0.03:
                continue
            if out is self.work:
                out = self.work.copy()
            points = face.points_at(i)
            if body is not None:  # the body's move is smooth: the face's centre stands for all of it
                cx, cy = np.clip(np.round(face.rig.origin).astype(int), 0, (out.shape[1] - 1, out.shape[0] - 1))
                points = points + body[cy, cx]
            if face.jaw[i] > 0.02:
                paint_mouth(out, face.rig, points, self.work)
            paint_lids(out, face.rig, points, closures)
        self._cache[i] = out
        if self.progress is not None:
            self.progress(len(self._cache) / self.frames)
        return out


class Acting:
    """generate = "acting": expressions, head and body motion from landmark rigs, camera moves under them."""

    def __init__(self, settings: GenerateSettings, models: ModelPool) -> None:
        self.settings = settings
        self.finder: FaceFinder = models.shared(("acting", "faces"), FaceFinder)

    def __call__(
        self, clean: CleanImage, scene: SceneInfo, script: Script, options: ResolvedOptions,
        progress: Callable[[float], None] | None = None,
    ) -> Frames:  # fmt: skip
        """The frames for the script, at the output size and the picture's aspect."""
        check_inputs(clean, scene, script, options)
        started = time.perf_counter()
        cast = find_cast(self.finder, clean, scene)
        found_seconds = time.perf_counter() - started
        matte = None
        if cast.faces:
            names, share = [CAMERA_MOTIONS[script.camera]], CAMERA_UNDER_ACTING
            matte = _parallax_matte(cast, scene)
            if script.camera == "orbit" and matte is not None:
                names = ["parallax"]  # the person, cut out by its mask, floats over the filled-in background
        else:
            names, share = None, 1.0  # no face to act: the procedural motions, with the body breathing
        made: list[Performance] = []

        def source(work: np.ndarray) -> Callable[[int], np.ndarray]:
            made.append(Performance(work, cast, scene, script, options, progress))
            return made[0]

        result = animate(clean, scene, script, options, names=names, share=share, source=source, matte=matte)
        acted = ", ".join(made[0].acted) if made else "nothing"
        log.info(
            "acting %s (%s): cast found in %.3f s, %d frames in %.3f s", script.emotion, acted, found_seconds,
            options.frames, time.perf_counter() - started,
        )  # fmt: skip
        motion = f"acting {script.emotion} ({acted})" + (f" + {result.motion}" if result.motion else "")
        return Frames(frames=result.frames, fps=result.fps, motion=motion)


MATTE_SHARE = (0.04, 0.6)  # a person mask covering less is noise; covering more leaves no background to show


def _parallax_matte(cast: Cast, scene: SceneInfo) -> np.ndarray | None:
    """The person mask, when it holds the main face and leaves background around it, for the parallax cut-out."""
    person, face = cast.person, cast.faces[0] if cast.faces else None
    if person is None or face is None or scene.subject is None:
        return None
    share = float((person > 0.5).mean())
    cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
    holds = person[min(person.shape[0] - 1, int(cy)), min(person.shape[1] - 1, int(cx))] > 0.5
    return person if holds and MATTE_SHARE[0] <= share <= MATTE_SHARE[1] else None
