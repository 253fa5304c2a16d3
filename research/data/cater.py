"""CATER-like scenes, as MAGE's CATER-GEN uses them: objects on a gridded table, actions, explicit and vague texts.

The grid (see research.data.render): objects stand on the crossings x, y in -3..3 of a 6 x 6 grid, x to the
right, y away from the camera. Quadrants are the mathematician's: first x > 0, y > 0; second x < 0, y > 0; third
x < 0, y < 0; fourth x > 0, y < 0; a point on an axis is in none. So that every vague text names a region, slide
and pick-and-place targets are never on an axis.

Each clip has 2-4 objects (make_clips' `objects`) of distinct colours, at least two crossings apart
(Chebyshev) at rest, and one or two actions: a slide or a pick-and-place, alone, or with a second action on another
object at the same time (any of ACTIONS), or after a cone's "contain" on the same cone. Contain: a cone is picked
up and set down over another object no larger than itself; from the frame it is down, the contained object is
hidden and its ground truth (pixels and grid) follows the cone, carried along by any later move. Objects the
text names come first, in the order it names them; motions are ACTIONS labels, "contain then slide" (or
"contain then pick-and-place"), "contained" or "still". Paths never make two objects on the ground overlap.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from research.data.clips import Clip, Vocabulary
from research.data.render import COLOURS, MATERIALS, SHAPES, SIZES, Thing, draw

ACTIONS = ("slide", "pick-and-place", "rotate", "contain")
MOVES = ("slide", "pick-and-place")
QUADRANTS = ("first", "second", "third", "fourth")
COORDINATES = tuple(range(-3, 4))
LIFT = 1.6  # grid units: above the tallest object, so a carried object passes over the others
SPACING = 2  # Chebyshev distance between two objects at rest, in grid cells
PHRASES = {"slide": "is sliding to", "pick-and-place": "is picked up and placed to"}
_CLAIM = re.compile(
    r"the ((?:small|large) [a-z]+ (?:rubber|metal) [a-z]+) is|then it is"
    r"|to \((-?\d+), (-?\d+)\)|to the (first|second|third|fourth) quadrant",
    re.IGNORECASE,
)


def vocabulary() -> Vocabulary:
    """Every word a CATER text, explicit or vague, can contain."""
    grammar = "the is sliding to picked up and placed rotating containing then it quadrant ( , ) ."
    names = [*COLOURS, *SIZES, *MATERIALS, *SHAPES, *QUADRANTS, *map(str, COORDINATES)]
    return Vocabulary(Vocabulary.split(" ".join([grammar, *names])))


def quadrant_of(x: float, y: float) -> int | None:
    """1-4 for the quadrant grid point (x, y) lies in; None on an axis."""
    if x == 0 or y == 0:
        return None
    return (1 if y > 0 else 4) if x > 0 else (2 if y > 0 else 3)


def targets(text: str, objects: Sequence[str]) -> list[tuple[int, tuple[int, int] | int]]:
    """What a text says about where objects end: (object index, (x, y) or quadrant 1-4), in the order it says it."""
    claims: list[tuple[int, tuple[int, int] | int]] = []
    subject = None
    for match in _CLAIM.finditer(text):
        name, x, y, quadrant = match.groups()
        if name is not None:
            if name.lower() not in objects:
                raise ValueError(f"the text names {name!r}, which is not one of {list(objects)}")
            subject = list(objects).index(name.lower())
        elif match.group(0).lower() == "then it is":
            continue  # "it" is the subject just named
        elif subject is None:
            raise ValueError(f"a target without an object in {text!r}")
        elif x is not None:
            claims.append((subject, (int(x), int(y))))
        else:
            claims.append((subject, QUADRANTS.index(quadrant.lower()) + 1))
    return claims


def region_fits(text: str, grid_xy: np.ndarray, objects: Sequence[str]) -> bool:
    """Whether objects ending at grid_xy (K, 2) do what the text says: within half a cell of a point, in a quadrant.

    Works on explicit and vague texts alike; a text that places nothing is fitted by any ending.
    """
    grid_xy = np.asarray(grid_xy, dtype=np.float64)
    if grid_xy.shape != (len(objects), 2):
        raise ValueError(f"grid_xy must be ({len(objects)}, 2), one row per object, not {grid_xy.shape}")
    for k, claim in targets(text, objects):
        x, y = grid_xy[k]
        if isinstance(claim, tuple):
            if max(abs(x - claim[0]), abs(y - claim[1])) > 0.5:
                return False
        elif quadrant_of(x, y) != claim:
            return False
    return True


def _ease(s: np.ndarray) -> np.ndarray:
    return s * s * (3 - 2 * s)


def _progress(frames: int, window: tuple[int, int]) -> np.ndarray:
    t0, t1 = window
    return np.clip((np.arange(frames) - t0) / max(t1 - t0, 1), 0.0, 1.0)


class _Scene:
    """One clip being planned: the things, where they rest, the actions, and their tracks once played."""

    def __init__(self, rng: np.random.Generator, count: int, frames: int) -> None:
        self.rng, self.frames = rng, frames
        colours = rng.choice(list(COLOURS), size=count, replace=False)
        self.things = [
            Thing(SHAPES[rng.integers(4)], str(colour), list(SIZES)[rng.integers(2)], MATERIALS[rng.integers(2)])
            for colour in colours
        ]
        cells = [(x, y) for x in COORDINATES for y in COORDINATES]
        self.start: list[tuple[int, int]] = []
        for i in rng.permutation(len(cells)):
            if all(max(abs(cells[i][0] - x), abs(cells[i][1] - y)) >= SPACING for x, y in self.start):
                self.start.append(cells[i])
            if len(self.start) == count:
                break
        self.rest = list(self.start)  # where each thing ends up
        self.actions: list[tuple[str, int, object, tuple[int, int]]] = []  # kind, thing, target or other, window
        self.contained: tuple[int, int, int] | None = None  # (cone, contained thing, frame it is hidden from)

    def free_target(self, k: int) -> tuple[int, int] | None:
        """A random off-axis crossing far enough from every other thing's resting place and from k's own."""
        options = [
            (x, y)
            for x in COORDINATES
            for y in COORDINATES
            if x and y
            and all(max(abs(x - a), abs(y - b)) >= SPACING for j, (a, b) in enumerate(self.rest) if j != k)
            and max(abs(x - self.rest[k][0]), abs(y - self.rest[k][1])) >= SPACING
        ]  # fmt: skip
        return options[self.rng.integers(len(options))] if options else None

    def move(self, k: int, kind: str, window: tuple[int, int]) -> bool:
        """Send thing k (and whatever it contains) to a free target; False when there is none."""
        target = self.free_target(k)
        if target is None:
            return False
        self.actions.append((kind, k, target, window))
        self.rest[k] = target
        return True

    def contain(self, cone: int, other: int, window: tuple[int, int]) -> None:
        """The cone is set down over the other thing."""
        self.actions.append(("contain", cone, self.rest[other], window))
        self.rest[cone] = self.rest[other]
        self.contained = (cone, other, window[1])

    def play(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tracks of base centres xyz (T, K, 3), yaw (T, K) and hidden (T, K) for the planned actions."""
        count, frames = len(self.things), self.frames
        xyz = np.zeros((frames, count, 3))
        xyz[:, :, :2] = np.array(self.start, dtype=np.float64)
        yaw, hidden = np.zeros((frames, count)), np.zeros((frames, count), bool)
        for kind, k, target, window in sorted(self.actions, key=lambda action: action[3]):
            s = _progress(frames, window)
            started = (np.arange(frames) >= window[0])[:, None]
            if kind == "rotate":
                turn = np.pi / 2 if self.things[k].shape == "cube" else np.pi  # both end looking as they began
                yaw[:, k] = turn * _ease(s)
                continue
            begin, end = xyz[window[0], k, :2].copy(), np.array(target, dtype=np.float64)
            glide = _ease(s) if kind == "slide" else _ease(np.clip((s - 0.25) / 0.5, 0, 1))
            xyz[:, k, :2] = np.where(started, begin + (end - begin) * glide[:, None], xyz[:, k, :2])
            if kind != "slide":
                lift = LIFT * _ease(np.clip(np.minimum(s, 1 - s) / 0.25, 0, 1))
                xyz[:, k, 2] = np.where(started[:, 0], lift, xyz[:, k, 2])
        if self.contained is not None:
            cone, other, hide_from = self.contained
            xyz[hide_from:, other] = xyz[hide_from:, cone]
            hidden[hide_from:, other] = True
        return xyz, yaw, hidden

    def collides(self, xyz: np.ndarray) -> bool:
        """Whether two things on the ground ever overlap (a lifted thing passes over; a cone over its content)."""
        pair_ok = {self.contained[:2], self.contained[1::-1]} if self.contained else set()
        for i, a in enumerate(self.things):
            for j in range(i + 1, len(self.things)):
                b = self.things[j]
                if (i, j) in pair_ok:
                    continue
                apart = np.hypot(*(xyz[:, i, :2] - xyz[:, j, :2]).T) >= a.radius + b.radius + 0.05
                above = (xyz[:, i, 2] >= b.height) | (xyz[:, j, 2] >= a.height)
                if not np.all(apart | above):
                    return True
        return False


def _where(target: tuple[int, int], explicit: bool) -> str:
    if explicit:
        return f"({target[0]}, {target[1]})"
    return f"the {QUADRANTS[quadrant_of(*target) - 1]} quadrant"


def _plan(scene: _Scene) -> tuple[list[tuple], dict[int, str]] | None:
    """Draw the actions: the text's clauses (kind, thing[, other or "then"]) and each actor's label; None: redraw."""
    rng, things, last = scene.rng, scene.things, scene.frames - 1
    count = len(things)
    mover = int(rng.integers(count))
    cones = [k for k in range(count) if things[k].shape == "cone"]
    holds = {c: [o for o in range(count) if o != c and SIZES[things[o].size] <= SIZES[things[c].size]] for c in cones}
    scenario = rng.choice(["one", "two", "sequence"], p=[0.3, 0.5, 0.2])
    if scenario == "sequence" and any(holds.values()):
        cone = int(rng.choice([c for c in cones if holds[c]]))
        other = int(rng.choice(holds[cone]))
        kind = MOVES[rng.integers(2)]
        middle = last // 2
        scene.contain(cone, other, (0, middle))
        if not scene.move(cone, kind, (middle, last)):
            return None
        return [("contain", cone, other), (kind, cone, "then")], {cone: f"contain then {kind}", other: "contained"}
    first = MOVES[rng.integers(2)]
    if scenario == "one" or count < 2:
        return ([(first, mover)], {mover: first}) if scene.move(mover, first, (0, last)) else None
    second = int(rng.choice([k for k in range(count) if k != mover]))
    kinds = list(MOVES)
    if things[second].shape in ("cube", "cylinder"):
        kinds.append("rotate")
    contents = [o for o in holds.get(second, []) if o != mover]
    if contents:
        kinds.append("contain")
    kind = kinds[rng.integers(len(kinds))]
    clauses: list[tuple] = []
    labels = {second: kind}
    if kind == "contain":
        other = int(rng.choice(contents))
        scene.contain(second, other, (0, last))
        clauses.append(("contain", second, other))
        labels[other] = "contained"
    elif kind == "rotate":
        scene.actions.append(("rotate", second, None, (0, last)))
        clauses.append(("rotate", second))
    elif not scene.move(second, kind, (0, last)):
        return None
    else:
        clauses.append((kind, second))
    if not scene.move(mover, first, (0, last)):
        return None
    clauses.insert(int(rng.integers(2)), (first, mover))
    labels[mover] = first
    return clauses, labels


def _text(scene: _Scene, clauses: list[tuple], explicit: bool) -> str:
    """The sentence for the planned clauses, with targets as points or as quadrants."""
    names = [thing.name for thing in scene.things]
    sentence = ""
    for clause in clauses:
        kind, k = clause[:2]
        if kind == "contain":
            part = f"the {names[k]} is picked up and containing the {names[clause[2]]}"
        elif kind == "rotate":
            part = f"the {names[k]} is rotating"
        elif len(clause) > 2:  # the same cone's second action
            part = f"it {PHRASES[kind]} {_where(scene.rest[k], explicit)}"
        else:
            part = f"the {names[k]} {PHRASES[kind]} {_where(scene.rest[k], explicit)}"
        joint = "" if not sentence else ", then " if len(clause) > 2 else " and "
        sentence += joint + part
    return sentence[0].upper() + sentence[1:] + "."


def _clip(rng: np.random.Generator, frames: int, size: int, objects: tuple[int, int]) -> Clip:
    """One clip drawn from `rng` (scenes whose plan fails or collides are redrawn from the same generator)."""
    for _ in range(1000):
        scene = _Scene(rng, int(rng.integers(objects[0], objects[1] + 1)), frames)
        planned = _plan(scene)
        if planned is None:
            continue
        xyz, yaw, hidden = scene.play()
        if not scene.collides(xyz):
            break
    else:
        raise RuntimeError("no scene without collisions in 1000 draws")
    clauses, labels = planned
    named = [k for clause in clauses for k in clause[1:] if isinstance(k, int)]
    order = list(dict.fromkeys(named)) + [k for k in range(len(scene.things)) if k not in named]
    text, vague = _text(scene, clauses, True), _text(scene, clauses, False)
    things = [scene.things[k] for k in order]
    pictures, positions = draw(things, xyz[:, order], yaw[:, order], hidden[:, order], size)
    motions = tuple(labels.get(k, "still") for k in order)
    grid = xyz[:, order, :2].astype(np.float32)
    return Clip(pictures, text, vague, positions, tuple(thing.name for thing in things), motions, grid=grid)


def make_clips(
    n: int, seed: int, *, frames: int = 12, size: int = 64, stream: int = 0, objects: tuple[int, int] = (2, 4)
) -> list[Clip]:
    """`n` clips of `objects` (fewest, most) things; the same for one (seed, stream), shorter lists being prefixes."""
    if n < 0 or frames < 4 or size < 32 or not 1 <= objects[0] <= objects[1] <= 4:
        raise ValueError(
            f"need n >= 0, frames >= 4, size >= 32, 1 <= objects <= 4; got {n}, {frames}, {size}, {objects}"
        )
    return [_clip(np.random.default_rng((seed, stream, i)), frames, size, objects) for i in range(n)]


def splits(n_train: int, n_test: int, seed: int = 0, **kwargs) -> tuple[list[Clip], list[Clip]]:
    """Train and test clips from two disjoint seed streams (1 and 2) of `seed`; kwargs go to make_clips."""
    return make_clips(n_train, seed, stream=1, **kwargs), make_clips(n_test, seed, stream=2, **kwargs)
