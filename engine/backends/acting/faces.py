"""Faces and people in the picture: mediapipe's bundled models (face detection, face mesh, selfie segmentation).

mediapipe 0.10.21 carries these models inside its wheel, so they run offline. It is imported only when the
acting backend first looks at a picture (the CLI starts without it), and its models are built once per
pipeline. Where mediapipe is absent (its wheels stop at Python 3.12), `FaceFinder.available` is False and the
backend rigs the Haar face boxes of the scene stage with a fitted face template instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from engine.geometry import FloatBox, area, overlap

log = logging.getLogger(__name__)

Box = FloatBox  # x0, y0, x1, y1 in picture pixels

DETECT_SIDE = 640  # px: detection runs on a copy of this longer side
MESH_SIDE = 256  # px: each face is cropped and resized to this for the mesh
CROP_GROW = 2.2  # the mesh sees the face box grown this much (it wants forehead, chin and some background)
MIN_DETECTION = 0.3  # full-range detector confidence; memes are small, low-contrast and often drawn
MIN_FACE_PX = 12  # faces smaller than this (longer side, in the picture) cannot act visibly
MAX_FACES = 6


@dataclass(frozen=True)
class FoundFace:
    """One face: 478 mesh points (x, y in picture pixels) or None when only its box is known."""

    box: Box
    score: float
    points: np.ndarray | None  # (478, 2) float64, mediapipe's face mesh order (with irises)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """mediapipe's native code prints its start-up chatter to fd 2; keep it out of the user's terminal."""
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 at all (a daemon): nothing to silence
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            chatter = sink.read().decode(errors="replace").strip()
            if chatter:
                log.debug("mediapipe: %s", chatter[-2000:])


def _import_solutions() -> tuple[object, object, object] | None:
    """mediapipe's legacy solutions (face_detection, face_mesh, selfie_segmentation), or None when not installed."""
    # its drawing helpers import matplotlib, which wants a writable config folder
    if not os.access(os.path.expanduser("~"), os.W_OK):
        os.environ.setdefault("MPLCONFIGDIR", tempfile.mkdtemp(prefix="makeitmove-mpl-"))
    try:
        with _quiet_stderr():
            from mediapipe.python.solutions import face_detection, face_mesh, selfie_segmentation
    except ImportError as exc:
        log.info("mediapipe is not installed (%s): faces are rigged from their boxes", exc)
        return None
    return face_detection, face_mesh, selfie_segmentation


class FaceFinder:
    """Finds faces (box + 478 landmarks) and the person mask; one instance per pipeline, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded = False
        self._detector: object | None = None
        self._mesh: object | None = None
        self._segmenter: object | None = None
        self._mesh_warned = False

    @property
    def available(self) -> bool:
        """Whether mediapipe's models are here (loads them on first use)."""
        self._load()
        return self._mesh is not None

    def _load(self) -> None:
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            solutions = _import_solutions()
            if solutions is None:
                return
            face_detection, face_mesh, selfie_segmentation = solutions
            with _quiet_stderr():
                self._detector = face_detection.FaceDetection(  # type: ignore[attr-defined]
                    model_selection=1, min_detection_confidence=MIN_DETECTION
                )
                self._mesh = face_mesh.FaceMesh(  # type: ignore[attr-defined]
                    static_image_mode=True, max_num_faces=1, refine_landmarks=True, min_detection_confidence=0.3
                )
                self._segmenter = selfie_segmentation.SelfieSegmentation(model_selection=0)  # type: ignore[attr-defined]
                # each graph prints its start-up chatter on its first picture: show it one now, so jobs need
                # not take over fd 2, where other threads' messages would vanish (but once: see _mesh_in)
                blank = np.full((64, 64, 3), 128, np.uint8)
                for model in (self._detector, self._mesh, self._segmenter):
                    model.process(blank)  # type: ignore[attr-defined,union-attr]

    def faces(self, rgb: np.ndarray, hints: tuple[Box, ...] = ()) -> list[FoundFace]:
        """The faces in an RGB picture, biggest first; `hints` are boxes another detector found (Haar).

        Every detector box (and every hint no detector box overlaps) gets a mesh from a crop around it;
        a box whose crop yields no mesh is kept without points only when it came from mediapipe's detector.
        """
        self._load()
        height, width = rgb.shape[:2]
        boxes: list[tuple[Box, float, bool]] = []
        if self._detector is not None:
            scale = min(1.0, DETECT_SIDE / max(height, width))
            small = rgb if scale == 1.0 else cv2.resize(rgb, (round(width * scale), round(height * scale)))
            with self._lock:
                found = self._detector.process(np.ascontiguousarray(small))  # type: ignore[attr-defined]
            for det in found.detections or ():
                rel = det.location_data.relative_bounding_box
                box = _clip_box(
                    (rel.xmin * width, rel.ymin * height, (rel.xmin + rel.width) * width,
                     (rel.ymin + rel.height) * height), width, height,
                )  # fmt: skip
                if box is not None:
                    boxes.append((box, float(det.score[0]), True))
        for hint in hints:
            if all(overlap(hint, box) < 0.3 for box, _, _ in boxes):
                boxes.append((hint, 0.5, False))
        result: list[FoundFace] = []
        for box, score, trusted in sorted(boxes, key=lambda b: -area(b[0]))[: MAX_FACES * 2]:
            if max(box[2] - box[0], box[3] - box[1]) < MIN_FACE_PX:
                continue
            points = self._mesh_in(rgb, box)
            if points is not None:
                box = _clip_box(_points_box(points), width, height) or box
            elif not trusted:
                continue
            if any(overlap(box, other.box) > 0.4 for other in result):
                continue
            result.append(FoundFace(box=box, score=score, points=points))
            if len(result) == MAX_FACES:
                break
        return result

    def _mesh_in(self, rgb: np.ndarray, box: Box) -> np.ndarray | None:
        if self._mesh is None:
            return None
        height, width = rgb.shape[:2]
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        half = CROP_GROW * max(box[2] - box[0], box[3] - box[1]) / 2
        x0, y0 = max(0, round(cx - half)), max(0, round(cy - half))
        x1, y1 = min(width, round(cx + half)), min(height, round(cy + half))
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
        k = MESH_SIDE / max(x1 - x0, y1 - y0)
        size = (max(8, round((x1 - x0) * k)), max(8, round((y1 - y0) * k)))
        crop = cv2.resize(rgb[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
        # the mesh projects its landmarks correctly only from a square picture: pad a crop cut by the edge
        side = max(size)
        square = cv2.copyMakeBorder(crop, 0, side - size[1], 0, side - size[0], cv2.BORDER_REPLICATE)
        with self._lock:
            # the mesh's landmark stage prints one warning the first time it sees a face (a blank warm-up
            # picture never gets that far): catch that one, then leave fd 2 alone
            with _quiet_stderr() if not self._mesh_warned else contextlib.nullcontext():
                found = self._mesh.process(np.ascontiguousarray(square))  # type: ignore[attr-defined]
            self._mesh_warned = self._mesh_warned or bool(found.multi_face_landmarks)
        if not found.multi_face_landmarks:
            return None
        marks = found.multi_face_landmarks[0].landmark
        points = np.array([(m.x * side / k + x0, m.y * side / k + y0) for m in marks], np.float64)
        # a mesh whose centre is far from the box it was asked about belongs to another face in the crop
        mx, my = points.mean(axis=0)
        if not (box[0] <= mx <= box[2] and box[1] <= my <= box[3]):
            return None
        return points

    def person_mask(self, rgb: np.ndarray) -> np.ndarray | None:
        """Selfie segmentation's person probability (H, W) float32 in [0, 1], or None without mediapipe."""
        self._load()
        if self._segmenter is None:
            return None
        with self._lock:
            found = self._segmenter.process(np.ascontiguousarray(rgb))  # type: ignore[attr-defined]
        mask = found.segmentation_mask
        if mask is None:
            return None
        return np.clip(np.asarray(mask, np.float32), 0.0, 1.0)


def _points_box(points: np.ndarray) -> Box:
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    return (float(x0), float(y0), float(x1), float(y1))


def _clip_box(box: tuple[float, float, float, float], width: int, height: int) -> Box | None:
    x0, y0 = max(0.0, box[0]), max(0.0, box[1])
    x1, y1 = min(float(width), box[2]), min(float(height), box[3])
    return (x0, y0, x1, y1) if x1 - x0 >= 2 and y1 - y0 >= 2 else None
