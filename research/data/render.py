"""A small renderer for CATER-like scenes: a perspective camera over a gridded table, ray-cast shaded objects.

World units: the table is the plane z = 0, x to the right, y away from the camera; grid lines at x, y = -3..3
(a 6 x 6 grid whose 49 crossings are the places objects stand). Pixel coordinates put pixel (i, j)'s centre at
(x=j, y=i), the convention of every `positions` array.

Objects are drawn as sprites ray-cast once per (shape, size, zoom, yaw) in an orthographic view along the camera's
mean viewing angle and cached; perspective enters through each sprite's zoom and its projected anchor (the centre
of its base). A sprite lands on whole pixels, and an object's position is its drawn silhouette's centroid.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

ELEVATION = np.radians(52.0)  # the camera looks down at the table centre at this angle
DISTANCE = 13.0  # camera to the point it looks at, in grid units
LOOK_AT = np.array([0.0, 0.35, 0.0])
FOCAL = 1.45  # image widths per unit of (sideways / forward) distance
LIGHT = np.array([-0.5, -0.35, 0.8]) / np.linalg.norm([-0.5, -0.35, 0.8])  # from the upper left, behind us
AMBIENT = 0.38
SUPERSAMPLE = 3
ZOOM_STEP = 0.25  # sprites are cached per quarter pixel of zoom (pixels per grid unit)
YAW_STEPS = 48  # sprites are cached per 7.5 degrees of turn
TABLE = np.array([0.66, 0.64, 0.61])

COLOURS = {
    "red": (0.80, 0.16, 0.14),
    "green": (0.16, 0.62, 0.22),
    "blue": (0.16, 0.30, 0.85),
    "yellow": (0.92, 0.80, 0.12),
    "purple": (0.55, 0.20, 0.72),
    "cyan": (0.10, 0.72, 0.78),
    "brown": (0.55, 0.33, 0.14),
}
SIZES = {"small": 0.62, "large": 1.0}
SHAPES = ("cone", "sphere", "cylinder", "cube")
MATERIALS = ("rubber", "metal")
# (footprint radius, height) of each shape at size "large", in grid units
DIMENSIONS = {"cone": (0.62, 1.3), "sphere": (0.58, 1.16), "cylinder": (0.52, 1.0), "cube": (0.48, 0.96)}
TURN = {"cone": 0, "sphere": 0, "cylinder": YAW_STEPS, "cube": YAW_STEPS // 4}  # yaw steps until it looks the same


@dataclass(frozen=True)
class Thing:
    """One object of a scene: what it is and how it looks."""

    shape: str
    colour: str
    size: str
    material: str

    @property
    def name(self) -> str:
        """How texts call it: "large red metal cone"."""
        return f"{self.size} {self.colour} {self.material} {self.shape}"

    @property
    def radius(self) -> float:
        """Footprint radius in grid units."""
        return DIMENSIONS[self.shape][0] * SIZES[self.size]

    @property
    def height(self) -> float:
        """Height in grid units."""
        return DIMENSIONS[self.shape][1] * SIZES[self.size]


@dataclass(frozen=True)
class Sprite:
    """A shape seen from the camera: coverage, diffuse shade, highlight, where its base centre and centroid are."""

    alpha: np.ndarray  # (h, w) coverage in [0, 1]
    shade: np.ndarray  # (h, w) diffuse light in [0, 1]
    highlight: np.ndarray  # (h, w) specular light in [0, 1]
    anchor: np.ndarray  # (x, y) pixel where the centre of the base is
    centroid: np.ndarray  # (x, y) pixel centroid of the coverage


def _camera() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Eye position and its right, up and forward axes."""
    eye = LOOK_AT + DISTANCE * np.array([0.0, -np.cos(ELEVATION), np.sin(ELEVATION)])
    forward = (LOOK_AT - eye) / DISTANCE
    right = np.array([1.0, 0.0, 0.0])
    return eye, right, np.cross(right, forward), forward


def project(points: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """World points (..., 3) -> pixels (..., 2) and pixels per grid unit there (...)."""
    eye, right, up, forward = _camera()
    d = np.asarray(points, dtype=np.float64) - eye
    depth = d @ forward
    focal = FOCAL * size
    pixels = np.stack([(size - 1) / 2 + focal * (d @ right) / depth, (size - 1) / 2 - focal * (d @ up) / depth], -1)
    return pixels, focal / depth


@lru_cache(maxsize=8)
def table(size: int) -> np.ndarray:
    """(size, size, 3) float background: the lit table with its faint grid, rendered at 3x and averaged."""
    eye, right, up, forward = _camera()
    fine = size * SUPERSAMPLE
    focal = FOCAL * fine
    rows, cols = np.mgrid[0:fine, 0:fine].astype(np.float64)
    across, along = (cols - (fine - 1) / 2) / focal, ((fine - 1) / 2 - rows) / focal
    rays = forward + across[..., None] * right + along[..., None] * up
    reach = -eye[2] / np.minimum(rays[..., 2], -1e-9)  # the camera looks down: every ray meets the table
    x, y = (eye[:2] + reach[..., None] * rays[..., :2]).transpose(2, 0, 1)
    zoom = focal / reach  # fine pixels per grid unit across the view; along y foreshortened by the slant
    slant = -rays[..., 2] / np.linalg.norm(rays, axis=-1)
    near = 0.75 / zoom  # grid units within which a fine pixel is on a line: lines about 1.5 fine pixels wide
    inside_x, inside_y = np.abs(x) <= 3 + near, np.abs(y) <= 3 + near / slant
    on_line = (np.abs(x - np.round(x)) <= near) | (np.abs(y - np.round(y)) <= near / slant)
    lines = on_line & inside_x & inside_y
    light = np.clip(1.0 - 0.03 * np.hypot(x + 1.0, y + 1.5), 0.55, 1.0)  # a lamp above the near left
    surface = TABLE * (light * (1.0 - 0.2 * lines))[..., None]
    return surface.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 3).mean((1, 3))


def _hits(
    shape: str, origin: np.ndarray, ray: np.ndarray, radius: float, height: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest hit distance (n,) (inf: a miss), surface normal (n, 3), marked (n,) for a shape at the origin."""
    n = len(origin)
    best, normal = np.full(n, np.inf), np.zeros((n, 3))
    ox, oy, oz = origin.T
    dx, dy, dz = ray
    if shape == "sphere":
        centre = origin - (0, 0, height / 2)
        b = centre @ ray
        disc = b**2 - (np.sum(centre**2, 1) - radius**2)
        t = np.where(disc >= 0, -b - np.sqrt(np.maximum(disc, 0)), np.inf)
        best = t
        normal = (centre + np.where(np.isfinite(t), t, 0.0)[:, None] * ray) / radius
    elif shape == "cube":
        low, high = np.array([-radius, -radius, 0.0]), np.array([radius, radius, height])
        ray = np.where(ray == 0, 1e-12, ray)  # a ray along a face would make 0 / 0
        t1, t2 = (low - origin) / ray, (high - origin) / ray
        near, far = np.minimum(t1, t2), np.maximum(t1, t2)
        enter, leave = near.max(1), far.min(1)
        best = np.where(enter <= leave, enter, np.inf)
        axis = near.argmax(1)
        normal[np.arange(n), axis] = -np.sign(ray[axis])
    else:  # cylinder or cone: a side (a quadric around z) under a flat top for the cylinder
        slope = radius / height if shape == "cone" else 0.0
        top = height if shape == "cylinder" else 0.0
        a = dx**2 + dy**2 - (slope * dz) ** 2
        b = 2 * (ox * dx + oy * dy + slope**2 * (height - oz) * dz)
        c = ox**2 + oy**2 - (slope * (height - oz)) ** 2 if shape == "cone" else ox**2 + oy**2 - radius**2
        disc = b**2 - 4 * a * c
        root = np.sqrt(np.maximum(disc, 0))
        near, far = (-b - root) / (2 * a), (-b + root) / (2 * a)
        # the nearer root may lie above the top (or on a cone's mirrored nappe): then the farther one counts
        near_ok, far_ok = [(disc >= 0) & (oz + r * dz >= 0) & (oz + r * dz <= height) for r in (near, far)]
        best = np.where(near_ok, near, np.where(far_ok, far, np.inf))
        p = origin + np.where(np.isfinite(best), best, 0.0)[:, None] * ray
        normal = np.stack([p[:, 0], p[:, 1], slope * np.hypot(p[:, 0], p[:, 1])], 1)
        if top:
            t_cap = (top - oz) / dz
            cap = (np.hypot(ox + t_cap * dx, oy + t_cap * dy) <= radius) & (t_cap < best)
            best = np.where(cap, t_cap, best)
            normal[cap] = (0.0, 0.0, 1.0)
    normal[~np.isfinite(best)] = 0.0
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-9)
    point = origin + np.where(np.isfinite(best), best, 0)[:, None] * ray
    marked = np.abs(np.arctan2(point[:, 1], point[:, 0])) < 0.3  # a stripe that shows a cylinder turning
    marked &= np.hypot(point[:, 0], point[:, 1]) > radius * 0.35
    return best, normal, marked & (shape == "cylinder")


@lru_cache(maxsize=4096)
def sprite(shape: str, size: str, zoom_step: int, yaw_step: int) -> Sprite:
    """The shaded look of a shape at a zoom of zoom_step * ZOOM_STEP pixels per grid unit, turned yaw_step steps."""
    radius, height = DIMENSIONS[shape][0] * SIZES[size], DIMENSIONS[shape][1] * SIZES[size]
    zoom = zoom_step * ZOOM_STEP
    s, c = np.sin(ELEVATION), np.cos(ELEVATION)
    reach = radius * (np.sqrt(2) if shape == "cube" else 1.0)
    top, bottom = height * c + reach * s, -reach * s  # the extent of the view plane's vertical axis
    w, h = int(np.ceil(2 * reach * zoom)) + 3, int(np.ceil((top - bottom) * zoom)) + 3
    anchor = np.array([(w - 1) / 2, 1.0 + top * zoom])
    sub = (np.arange(SUPERSAMPLE) + 0.5) / SUPERSAMPLE - 0.5
    cols = (np.arange(w)[:, None] + sub).ravel()
    rows = (np.arange(h)[:, None] + sub).ravel()
    across, along = np.meshgrid((cols - anchor[0]) / zoom, (anchor[1] - rows) / zoom)
    yaw = 2 * np.pi * yaw_step / YAW_STEPS
    turn = np.array([[np.cos(yaw), np.sin(yaw), 0], [-np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])  # world -> object
    view = np.array([0.0, c, -s])
    plane = across.ravel()[:, None] * np.array([1.0, 0, 0]) + along.ravel()[:, None] * np.array([0.0, s, c])
    t, normal, marked = _hits(shape, (plane - 20 * view) @ turn.T, turn @ view, radius, height)
    normal = normal @ turn  # back to world axes, where the light is
    hit = np.isfinite(t)
    diffuse = np.clip(normal @ LIGHT, 0, 1)
    shade = (AMBIENT + (1 - AMBIENT) * diffuse) * np.where(marked, 0.55, 1.0)
    halfway = (LIGHT - view) / np.linalg.norm(LIGHT - view)
    highlight = np.clip(normal @ halfway, 0, 1) ** 60

    def pool(values: np.ndarray) -> np.ndarray:
        return np.where(hit, values, 0.0).reshape(h, SUPERSAMPLE, w, SUPERSAMPLE).mean((1, 3))

    alpha = pool(np.ones_like(t))
    covered = np.maximum(alpha, 1e-9)
    ys, xs = np.mgrid[0:h, 0:w]
    centroid = np.array([(alpha * xs).sum(), (alpha * ys).sum()]) / alpha.sum()
    return Sprite(alpha, pool(shade) / covered, pool(highlight) / covered, anchor, centroid)


@lru_cache(maxsize=8192)
def _layer(thing: Thing, zoom_step: int, yaw_step: int) -> tuple[np.ndarray, np.ndarray, Sprite]:
    """A thing's sprite in its colour and material: (h, w, 1) coverage and (h, w, 3) colour times coverage."""
    look = sprite(thing.shape, thing.size, zoom_step, yaw_step)
    rgb = np.array(COLOURS[thing.colour])
    if thing.material == "metal":  # a darker, more contrasted body and a sharp white highlight
        colour = rgb * (look.shade**1.6)[..., None] + 0.9 * look.highlight[..., None]
    else:  # rubber: matte
        colour = rgb * look.shade[..., None]
    alpha = look.alpha[..., None]
    return alpha, colour * alpha, look


@lru_cache(maxsize=8)
def _padded_table(size: int, pad: int) -> np.ndarray:
    return np.pad(table(size), ((pad, pad), (pad, pad), (0, 0)), mode="edge")


def draw(
    things: list[Thing], xyz: np.ndarray, yaw: np.ndarray, hidden: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Frames (T, size, size, 3) uint8 and silhouette centroids (T, K, 2) of things at xyz (T, K, 3) (base centres).

    Hidden things are not drawn; their centroid is where it would be. Shadows first, then things far to near.
    """
    frames_count, count = xyz.shape[:2]
    pad = size // 2  # sprites and shadows may hang over the border
    heights = np.array([thing.height for thing in things])
    anchors, zooms = project(xyz, size)
    _, nearness = project(xyz + np.stack([0 * heights, 0 * heights, heights / 2], -1), size)  # zoom grows nearer
    ground, ground_zoom = project(xyz * (1, 1, 0) + (0.1, 0.08, 0), size)  # shadows fall away from the light
    canvas = np.repeat(_padded_table(size, pad)[None], frames_count, axis=0)
    positions = np.zeros((frames_count, count, 2), np.float32)
    zoom_steps = np.round(zooms / ZOOM_STEP).astype(int)
    turns = np.array([TURN[thing.shape] for thing in things])
    yaw_steps = np.where(turns > 0, np.round(yaw / (2 * np.pi) * YAW_STEPS).astype(int) % np.maximum(turns, 1), 0)
    for t in range(frames_count):
        placed = []
        for k, thing in enumerate(things):
            alpha, paint, look = _layer(thing, int(zoom_steps[t, k]), int(yaw_steps[t, k]))
            corner = np.round(anchors[t, k] - look.anchor).astype(int)
            positions[t, k] = corner + look.centroid
            if not hidden[t, k]:
                placed.append((nearness[t, k], alpha, paint, corner + pad))
                _shadow(canvas[t], ground[t, k] + pad, thing.radius * ground_zoom[t, k], xyz[t, k, 2])
        for _, alpha, paint, (x, y) in sorted(placed, key=lambda item: item[0]):
            region = canvas[t, y : y + alpha.shape[0], x : x + alpha.shape[1]]
            region *= 1 - alpha
            region += paint
    frames = np.round(np.clip(canvas[:, pad:-pad, pad:-pad], 0, 1) * 255).astype(np.uint8)
    return frames, positions


def _shadow(canvas: np.ndarray, centre: np.ndarray, radius: float, lift: float) -> None:
    """Darken a soft ellipse under a thing; fainter and wider the higher it is lifted."""
    rx = radius * (1.2 + 0.3 * lift)
    ry = rx * np.sin(ELEVATION) * 0.9
    x0, x1 = int(centre[0] - 2 * rx), int(centre[0] + 2 * rx) + 2
    y0, y1 = int(centre[1] - 2 * ry), int(centre[1] + 2 * ry) + 2
    ys, xs = np.ogrid[y0:y1, x0:x1]
    reach = ((xs - centre[0]) / rx) ** 2 + ((ys - centre[1]) / ry) ** 2
    canvas[y0:y1, x0:x1] *= (1.0 - 0.55 * np.exp(-lift / 1.2) * np.exp(-1.6 * reach))[..., None]
