"""A face rig: named landmark groups in a face-aligned frame, and a piecewise-affine warp over their mesh.

The rig's points are either mediapipe's 478-point face mesh or, for a face known only by its box, a fitted
template of the same features (eyes, lids, brows, lips, jaw). Expressions (acts.py) move the points in the
face's own frame — u to the face's left-right, v down it, both in inter-ocular distances — and the warp
carries every pixel of the face along with the triangle of the mesh it sits in. A ring of still points
around the head keeps the warp local.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

# mediapipe face mesh indices (the subject's right eye is on the picture's left)
MESH_GROUPS: dict[str, tuple[int, ...]] = {
    "right_upper_lid": (246, 161, 160, 159, 158, 157, 173),
    "right_lower_lid": (7, 163, 144, 145, 153, 154, 155),
    "right_eye_corners": (33, 133),
    "left_upper_lid": (466, 388, 387, 386, 385, 384, 398),
    "left_lower_lid": (249, 390, 373, 374, 380, 381, 382),
    "left_eye_corners": (263, 362),
    "right_iris": (468, 469, 470, 471, 472),
    "left_iris": (473, 474, 475, 476, 477),
    "right_brow": (70, 63, 105, 66, 107, 46, 53, 52, 65, 55),
    "left_brow": (300, 293, 334, 296, 336, 276, 283, 282, 295, 285),
    "upper_lip": (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308),
    "lower_lip": (146, 91, 181, 84, 17, 314, 405, 321, 375, 95, 88, 178, 87, 14, 317, 402, 318, 324),
    "inner_upper_lip": (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308),
    "inner_lower_lip": (308, 324, 318, 402, 317, 14, 87, 178, 88, 95, 78),
    "mouth_corners": (61, 291, 78, 308),
    "chin": (152,),
    "face_oval": (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
                  148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109),
}  # fmt: skip
RING_POINTS = 28  # still points on the ellipse around the head
RING_GROW = 1.55  # the ring sits this far out from the face oval (the warp fades to nothing there)


@dataclass(eq=False)
class Rig:
    """A face's points (N, 2) in picture pixels, its feature groups, and its face-aligned frame."""

    points: np.ndarray
    groups: dict[str, np.ndarray]
    origin: np.ndarray  # between the eyes
    ex: np.ndarray  # unit vector along the face (its right eye → left eye, the picture's left → right)
    ey: np.ndarray  # unit vector down the face
    scale: float  # inter-ocular distance, px
    landmarks: bool  # True: a real mesh; False: the box template
    uv: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        rel = self.points - self.origin
        self.uv = np.stack([rel @ self.ex, rel @ self.ey], axis=1) / self.scale

    def to_pixels(self, duv: np.ndarray) -> np.ndarray:
        """Face-frame displacements (N, 2) → picture-pixel displacements."""
        return (duv[:, :1] * self.ex + duv[:, 1:] * self.ey) * self.scale

    def centre(self, group: str) -> np.ndarray:
        """The mean point of a group, in picture pixels."""
        return np.asarray(self.points[self.groups[group]].mean(axis=0))

    @property
    def oval(self) -> tuple[np.ndarray, float, float]:
        """(centre px, half-width px, half-height px) of the face oval along the face's own axes."""
        uv = self.uv[self.groups["face_oval"]]
        cu, cv = (uv.min(0) + uv.max(0)) / 2
        centre = self.origin + (cu * self.ex + cv * self.ey) * self.scale
        half = (uv.max(0) - uv.min(0)) / 2 * self.scale
        return centre, float(half[0]), float(half[1])

    @property
    def size(self) -> float:
        """The face's height, px."""
        return 2 * self.oval[2]


def from_mesh(points: np.ndarray) -> Rig:
    """The rig of a mediapipe face mesh (478 points with irises, or 468 without)."""
    groups = {name: np.array([i for i in idx if i < len(points)], np.int64) for name, idx in MESH_GROUPS.items()}
    return _framed(points.astype(np.float64), groups, landmarks=True)


def from_box(box: tuple[float, float, float, float], scale: float = 1.0) -> Rig:
    """A template rig fitted to a face box (× `scale`) the mesh missed, with a face's usual proportions."""
    x0, y0, x1, y1 = (v * scale for v in box)
    w, h = x1 - x0, y1 - y0
    pts: list[tuple[float, float]] = []
    groups: dict[str, list[int]] = {}

    def add(name: str, coords: list[tuple[float, float]]) -> None:
        groups.setdefault(name, []).extend(range(len(pts), len(pts) + len(coords)))
        pts.extend((x0 + u * w, y0 + v * h) for u, v in coords)

    def arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int) -> list[tuple[float, float]]:
        angles = np.linspace(a0, a1, n)
        return [(cx + rx * np.cos(a), cy + ry * np.sin(a)) for a in angles]

    for side, cx in (("right", 0.3), ("left", 0.7)):
        add(f"{side}_upper_lid", arc(cx, 0.42, 0.1, 0.045, np.pi * 1.15, np.pi * 1.85, 5))
        add(f"{side}_lower_lid", arc(cx, 0.42, 0.1, 0.04, np.pi * 0.85, np.pi * 0.15, 5))
        add(f"{side}_eye_corners", [(cx - 0.11, 0.42), (cx + 0.11, 0.42)])
        add(f"{side}_iris", [(cx, 0.42)])
        add(f"{side}_brow", arc(cx, 0.33, 0.13, 0.04, np.pi * 1.1, np.pi * 1.9, 5))
    add("upper_lip", [(0.36, 0.76), (0.43, 0.74), (0.5, 0.745), (0.57, 0.74), (0.64, 0.76)])
    add("inner_upper_lip", [(0.38, 0.765), (0.5, 0.762), (0.62, 0.765)])
    add("inner_lower_lip", [(0.62, 0.768), (0.5, 0.77), (0.38, 0.768)])
    add("lower_lip", [(0.42, 0.8), (0.5, 0.81), (0.58, 0.8)])
    groups["lower_lip"].extend(groups["inner_lower_lip"])
    groups["upper_lip"].extend(groups["inner_upper_lip"])
    groups["mouth_corners"] = [groups["upper_lip"][0], groups["upper_lip"][4]]
    add("chin", [(0.5, 0.98)])
    add("face_oval", arc(0.5, 0.5, 0.5, 0.5, 0.0, 2 * np.pi * 23 / 24, 24))
    return _framed(np.array(pts), {k: np.array(v, np.int64) for k, v in groups.items()}, landmarks=False)


def _framed(points: np.ndarray, groups: dict[str, np.ndarray], *, landmarks: bool) -> Rig:
    right = points[np.concatenate([groups["right_upper_lid"], groups["right_lower_lid"]])].mean(0)
    left = points[np.concatenate([groups["left_upper_lid"], groups["left_lower_lid"]])].mean(0)
    axis = left - right
    scale = float(np.hypot(*axis))
    if scale < 1e-6:
        raise ValueError("the face's eyes coincide")
    ex = axis / scale
    ey = np.array([-ex[1], ex[0]])
    return Rig(points, groups, (left + right) / 2, ex, ey, scale, landmarks)


class MeshWarp:
    """Piecewise-affine warp of one region: each pixel follows the mesh triangle it lies in.

    The triangulation (the rig's points plus a still ring around the head) and every pixel's barycentric
    weights are computed once; a frame's displacement field is then a weighted sum of its vertices' moves.
    """

    def __init__(self, rig: Rig, width: int, height: int) -> None:
        ring = self.ring(rig)
        self.x0, self.y0, self.x1, self.y1 = self.bounds(rig, width, height)
        self.count = len(rig.points)
        vertices = np.concatenate([rig.points, ring])
        triangles = _delaunay(vertices)
        w, h = self.x1 - self.x0, self.y1 - self.y0
        self.shape = (h, w)
        index = np.full((h, w), -1, np.int32)
        local = vertices - (self.x0, self.y0)
        for t, tri in enumerate(triangles):
            cv2.fillConvexPoly(index, np.round(local[tri] * 16).astype(np.int32), t, lineType=cv2.LINE_8, shift=4)
        inside = index >= 0
        ys, xs = np.nonzero(inside)
        tri = triangles[index[ys, xs]]  # (P, 3) vertex ids
        a, b, c = local[tri[:, 0]], local[tri[:, 1]], local[tri[:, 2]]
        p = np.stack([xs, ys], axis=1).astype(np.float64)
        v0, v1, v2 = b - a, c - a, p - a
        den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
        den = np.where(np.abs(den) < 1e-9, 1e-9, den)
        wb = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
        wc = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
        self._ys, self._xs = ys, xs
        self._tri = tri
        self._weights = np.stack([1 - wb - wc, wb, wc], axis=1).astype(np.float32)

    @staticmethod
    def ring(rig: Rig) -> np.ndarray:
        """The still points around the head (RING_POINTS, 2): higher over the hair than below the chin."""
        centre, hw, hh = rig.oval
        angles = np.linspace(0, 2 * np.pi, RING_POINTS, endpoint=False)
        return np.stack([
            centre + RING_GROW * (hw * np.cos(a) * rig.ex + hh * np.sin(a) * rig.ey * (1.25 if np.sin(a) < 0 else 0.9))
            for a in angles
        ])  # fmt: skip

    @classmethod
    def bounds(cls, rig: Rig, width: int, height: int) -> tuple[int, int, int, int]:
        """The region (x0, y0, x1, y1) the warp covers, inside the picture."""
        ring = cls.ring(rig)
        x0, y0 = np.floor(np.minimum(ring.min(0), rig.points.min(0))).astype(int) - 1
        x1, y1 = np.ceil(np.maximum(ring.max(0), rig.points.max(0))).astype(int) + 2
        return max(0, int(x0)), max(0, int(y0)), min(width, int(x1)), min(height, int(y1))

    def field(self, moves: np.ndarray) -> np.ndarray:
        """The forward displacement (h, w, 2) float32 of the region for the rig points' moves (N, 2)."""
        padded = np.zeros((self.count + RING_POINTS, 2), np.float32)
        padded[: self.count] = moves
        out = np.zeros((*self.shape, 2), np.float32)
        out[self._ys, self._xs] = np.einsum("pk,pkd->pd", self._weights, padded[self._tri])
        return out


def _delaunay(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles (T, 3) as indices into `points` (duplicates are merged by OpenCV; they map back)."""
    lo = points.min(0) - 10
    hi = points.max(0) + 10
    subdiv = cv2.Subdiv2D((int(lo[0]), int(lo[1]), int(hi[0] - lo[0]) + 1, int(hi[1] - lo[1]) + 1))
    ids: dict[tuple[float, float], int] = {}
    for i, (x, y) in enumerate(points):
        key = (float(np.float32(x)), float(np.float32(y)))
        if key in ids:
            continue
        ids[key] = i
        subdiv.insert((float(x), float(y)))
    found = []
    for x_a, y_a, x_b, y_b, x_c, y_c in subdiv.getTriangleList():
        corners = [(float(np.float32(x_a)), float(np.float32(y_a))), (float(np.float32(x_b)), float(np.float32(y_b))),
                   (float(np.float32(x_c)), float(np.float32(y_c)))]  # fmt: skip
        if all(c in ids for c in corners):  # the others touch Subdiv2D's virtual outer vertices
            found.append([ids[c] for c in corners])
    return np.array(found, np.int64).reshape(-1, 3)
