"""Stage 6, the acting backend: face rigs on real and drawn faces, every emotion's act, the fallbacks, the loop."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from engine.backends.acting import acts
from engine.backends.acting.backend import Cast, Performance, find_cast
from engine.backends.acting.faces import FaceFinder, FoundFace
from engine.backends.acting.rig import MESH_GROUPS, MeshWarp, from_box, from_mesh
from engine.config import load_settings
from engine.runtime.models import ModelPool
from engine.stages.generate import Generate
from engine.types import CleanImage, ResolvedOptions, SceneInfo, Script, Subject
from engine.vocabulary import EMOTIONS

# photo memes with one clear, frontal face (ids in ../shared/memes)
PHOTO_MEMES = ("mg_30_keanu", "mg_01_afraid", "mg_44_sad-biden", "mg_12_chosen")


@pytest.fixture(scope="module")
def finder() -> FaceFinder:
    found = FaceFinder()
    if not found.available:
        pytest.skip("mediapipe is not installed (its wheels stop at Python 3.12): the template rig tests still run")
    return found


@pytest.fixture(scope="module")
def acting() -> Generate:
    settings = load_settings()
    return Generate(
        dataclasses.replace(settings.generate, backend="acting", frames=24, fps=12, motion="low", camera=None),
        ModelPool(settings.runtime),
    )


def _clean(img: np.ndarray) -> CleanImage:
    empty = np.zeros(img.shape[:2], np.uint8)
    return CleanImage(pixels=np.ascontiguousarray(img), text_mask=empty, region_mask=empty)


def _scene(img: np.ndarray, subjects: tuple[Subject, ...] = (), text: str = "") -> SceneInfo:
    h, w = img.shape[:2]
    return SceneInfo(qa=(), subjects=subjects, colors=(), panels=((0, 0, w, h),), meme_text=text)


def _script(emotion: str = "neutral", camera: str = "orbit", text: str = "") -> Script:
    return Script("a person", text, emotion, "", camera, "")


def _options(**kw: object) -> ResolvedOptions:
    values = {"frames": 24, "fps": 12, "size": 240, "motion": "low", "seed": 0, "prompt": None, "camera": None,
              "format": "gif", "max_bytes": 10**7, "fallback_format": None, "checkpoint": None} | kw  # fmt: skip
    return ResolvedOptions(**values)  # type: ignore[arg-type]


def _photo(shared_memes: Path, meme_id: str) -> np.ndarray:
    with Image.open(shared_memes / "clean" / f"{meme_id}.png") as im:
        return np.ascontiguousarray(np.asarray(im.convert("RGB")))


def _drawn_face(size: int = 240) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A cartoon face: skin disc, two eyes with pupils, brows, a mouth line, on a flat background."""
    img = np.full((size, size, 3), (120, 170, 210), np.uint8)
    c = size // 2
    cv2.circle(img, (c, c), size // 3, (240, 200, 170), -1)
    for dx in (-size // 8, size // 8):
        cv2.ellipse(img, (c + dx, c - size // 20), (size // 16, size // 28), 0, 0, 360, (255, 255, 255), -1)
        cv2.circle(img, (c + dx, c - size // 20), size // 40, (30, 30, 30), -1)
        cv2.line(img, (c + dx - size // 14, c - size // 8), (c + dx + size // 14, c - size // 8), (60, 40, 30), 3)
    cv2.ellipse(img, (c, c + size // 7), (size // 9, size // 40), 0, 0, 180, (150, 40, 50), 3)
    r = size // 3
    return img, (c - r, c - r, c + r, c + r)


# ---------------------------------------------------------------------------------------------- acts


def test_every_emotion_has_its_own_act() -> None:
    t = np.arange(48) / 48
    seen = {}
    for emotion in EMOTIONS:
        show = acts.perform(emotion, t, 3.0, np.random.default_rng(0))
        assert show.shapes["blink_right"].max() == 1.0, f"{emotion}: no blink"
        moved = {
            (name, float(np.sign(curve[np.argmax(np.abs(curve))])))  # a smile and a frown are not the same act
            for name, curve in show.shapes.items()
            if np.abs(curve).max() > 0.05 and not name.startswith("blink")
        }
        head = {name for name, curve in show.head.items() if np.abs(curve).max() > 0.05}
        assert head, f"{emotion}: the head never moves"
        if emotion != "neutral":
            assert moved, f"{emotion}: the face makes no expression"
        seen[emotion] = frozenset(moved)
    # no two feelings look the same
    expressive = [v for e, v in seen.items() if e != "neutral"]
    assert len(set(expressive)) == len(expressive), seen
    with pytest.raises(ValueError, match="emotion must be one of"):
        acts.perform("bored", t, 3.0, np.random.default_rng(0))


@pytest.mark.parametrize("emotion", EMOTIONS)
def test_acts_loop(emotion: str) -> None:
    """Every curve is periodic: the step from the last frame to the first is like any other step."""
    n = 48
    t = np.arange(n) / n
    show = acts.perform(emotion, t, 3.0, np.random.default_rng(3), speech=True)
    for name, curve in {**show.shapes, **show.head}.items():
        steps = np.abs(np.diff(np.append(curve, curve[0])))
        if name.startswith("blink") or name == "jaw":
            continue  # blinks and syllables are quick by nature; their periodicity is checked below
        assert steps[-1] <= max(steps[:-1].max(), 1e-9) + 1e-9, f"{emotion} {name} jumps at the seam"
    again = acts.perform(emotion, np.arange(2 * n) / n, 6.0, np.random.default_rng(3), speech=True)
    assert again.shapes["blink_right"].max() == 1.0


def test_high_motion_exaggerates() -> None:
    t = np.arange(48) / 48
    low = acts.perform("surprise", t, 3.0, np.random.default_rng(0))
    high = acts.perform("surprise", t, 3.0, np.random.default_rng(0), gain=acts.HIGH_GAIN)
    assert high.shapes["jaw"].max() > 1.5 * low.shapes["jaw"].max()
    assert high.shapes["brows_up"].max() > 1.5 * low.shapes["brows_up"].max()


def test_secondary_faces_act_less_and_only_the_main_face_talks() -> None:
    t = np.arange(48) / 48
    main = acts.perform("joy", t, 3.0, np.random.default_rng(0), speech=True)
    other = acts.perform("joy", t, 3.0, np.random.default_rng(0), main=False, speech=True)
    assert main.talks and not other.talks
    assert other.shapes["smile"].max() == pytest.approx(acts.SECONDARY_SHARE * main.shapes["smile"].max())


@pytest.mark.parametrize(
    ("caption", "speech"),
    [("I DON'T KNOW WHAT THIS MEME IS FOR", True), ("ARE YOU TWO FRIENDS?", True), ("SAD JOE BIDEN", False),
     ("ONE DOES NOT SIMPLY WALK INTO MORDOR", False), ("", False)],
)  # fmt: skip
def test_captions_that_read_as_speech_make_the_face_talk(caption: str, speech: bool) -> None:
    assert acts.reads_as_speech(caption) is speech


# ---------------------------------------------------------------------------------------------- rigs


def _rig_moves(rig, name: str) -> np.ndarray:
    return np.hypot(*rig.to_pixels(acts.SHAPES[name](rig)).T)


@pytest.mark.parametrize("meme_id", PHOTO_MEMES)
def test_face_rig_on_real_photo_memes(finder: FaceFinder, shared_memes: Path, meme_id: str) -> None:
    img = _photo(shared_memes, meme_id)
    faces = finder.faces(img)
    assert faces and faces[0].points is not None and faces[0].points.shape == (478, 2), meme_id
    rig = from_mesh(faces[0].points)
    g = rig.groups
    # the jaw moves the lower lip and chin, not the upper lip or the eyes
    jaw = _rig_moves(rig, "jaw")
    # the lips part as an oval: the middle of the lower lip drops most, the ends least
    lower = g["inner_lower_lip"]
    middle = lower[np.argmin(np.abs(rig.uv[lower, 0] - rig.uv[lower, 0].mean()))]
    assert jaw[middle] > 0.25 * rig.scale and jaw[g["chin"]].min() > 0.2 * rig.scale
    assert jaw[g["lower_lip"]].min() > 0.05 * rig.scale and jaw[g["mouth_corners"]].max() < 0.5 * jaw[middle]
    upper_lip = np.setdiff1d(g["upper_lip"], g["mouth_corners"])  # the corners open half-way
    lift = rig.to_pixels(acts.SHAPES["jaw"](rig)) @ rig.ey  # the upper lip may only lift, and a little
    assert lift[upper_lip].max() <= 1e-9 and jaw[upper_lip].max() < 0.06 * rig.scale
    assert jaw[g["right_upper_lid"]].max() < 0.01 * rig.scale
    # brows up lifts the brows (up the face), not the mouth
    brows = rig.to_pixels(acts.SHAPES["brows_up"](rig)) @ rig.ey
    assert brows[g["right_brow"]].mean() < -0.1 * rig.scale and np.abs(brows[g["lower_lip"]]).max() < 0.01 * rig.scale
    # a smile lifts the mouth's corners, a frown (negative smile) would lower them
    smile = rig.to_pixels(acts.SHAPES["smile"](rig)) @ rig.ey
    assert smile[g["mouth_corners"]].max() < -0.06 * rig.scale
    # the warp is local: nothing moves outside the ring around the head
    warp = MeshWarp(rig, img.shape[1], img.shape[0])
    field = warp.field(rig.to_pixels(acts.SHAPES["jaw"](rig)).astype(np.float32))
    ring = MeshWarp.ring(rig)
    assert np.abs(field).max() > 0.25 * rig.scale
    for x, y in ring.astype(int):
        if warp.x0 <= x < warp.x1 and warp.y0 <= y < warp.y1:
            assert np.abs(field[y - warp.y0, x - warp.x0]).max() < 1.0


@pytest.mark.parametrize("meme_id", PHOTO_MEMES)
def test_blinks_close_the_eyes(finder: FaceFinder, shared_memes: Path, meme_id: str) -> None:
    """At the blink's peak the eye (its iris) is covered by the lid's skin; before and after, it is open."""
    img = _photo(shared_memes, meme_id)
    cast = Cast(finder.faces(img), None, img.shape[1])
    play = Performance(img, cast, _scene(img), _script("neutral"), _options(frames=48, fps=16))
    face = play.faces[0]
    shut = int(np.argmax(face.lids["right"]))
    assert face.lids["right"][shut] == 1.0
    rig = play.rigs[0]
    checked = 0
    for side in ("right", "left"):
        ids = rig.groups[f"{side}_upper_lid"][2:5]  # the middle of the lid, over the iris
        lows = rig.groups[f"{side}_lower_lid"][2:5]
        x, y = np.round((rig.points[ids].mean(0) + rig.points[lows].mean(0)) / 2).astype(int)
        skin = np.median(
            img[np.round(rig.points[lows, 1] + 0.12 * rig.scale).astype(int), rig.points[lows, 0].astype(int)], axis=0
        ).astype(float)
        eye_then = np.abs(img[y - 1 : y + 2, x - 1 : x + 2].astype(float) - skin).mean()
        eye_shut = np.abs(play(shut)[y - 1 : y + 2, x - 1 : x + 2].astype(float) - skin).mean()
        if eye_then > 25:  # an eye whose middle differs from the skin (an iris or a white shows)
            assert eye_shut < 0.6 * eye_then, (side, eye_then, eye_shut)
            checked += 1
    assert checked, "neither eye stands out from the skin: the blink was not checked"


def test_expressions_move_the_face_and_nothing_far_from_it(finder: FaceFinder, shared_memes: Path) -> None:
    img = _photo(shared_memes, "mg_30_keanu")
    cast = Cast(finder.faces(img), None, img.shape[1])  # no body: only the face acts
    play = Performance(img, cast, _scene(img), _script("surprise"), _options(frames=24))
    face_box = cast.faces[0].box
    fx0, fy0, fx1, fy1 = (int(v) for v in face_box)
    biggest = max(range(24), key=lambda i: float(np.abs(play.field(i)[0]).max()))
    field, body = play.field(biggest)
    assert body is None
    inside = np.hypot(*field[fy0:fy1, fx0:fx1].reshape(-1, 2).T)
    assert inside.max() > 0.15 * play.rigs[0].scale, "the face barely moves"
    # far from the head (outside every face's warp region) not a pixel moves
    still = np.ones(img.shape[:2], bool)
    for face in play.faces:
        for b in face.bases:
            still[b.y0 : b.y1, b.x0 : b.x1] = False
    assert still.any() and np.abs(field[still]).max() == 0
    frame = play(biggest)
    assert np.array_equal(frame[still], img[still])
    # the dropped jaw shows a dark mouth where the lips met
    mouth = play.faces[0].points_at(biggest)[play.rigs[0].groups["inner_lower_lip"]].mean(0)
    lips = play.rigs[0].points[play.rigs[0].groups["inner_upper_lip"]].mean(0)
    mx, my = ((mouth + lips) / 2).round().astype(int)
    assert frame[my, mx].mean() < img[my, mx].mean() - 15 or frame[my, mx].mean() < 60


def test_a_drawn_face_without_mediapipe_is_rigged_from_its_box() -> None:
    """The fallback path (Python 3.13, no mediapipe): Haar boxes with the template rig, and it acts."""
    img, box = _drawn_face()
    rig = from_box(tuple(float(v) for v in box))
    assert not rig.landmarks and rig.scale > 10
    assert set(rig.groups) >= set(MESH_GROUPS) - {"face_oval"} | {"face_oval"}
    cast = Cast([FoundFace(box=tuple(float(v) for v in box), score=0.5, points=None)], None, img.shape[1])
    play = Performance(img, cast, _scene(img), _script("surprise", text="WHAT?!"), _options(frames=24))
    moved = max(float(np.abs(play(i).astype(int) - img).max()) for i in range(24))
    assert moved > 40
    assert all(play(i).shape == img.shape for i in range(24))


def test_drawn_faces_and_no_faces_fall_back_without_crashing(acting: Generate) -> None:
    img, box = _drawn_face()
    for subjects in ((Subject("face", box, 0.6),), (Subject("salient", box, 0.4),), (Subject("cat", box, 0.5),), ()):
        scene = _scene(img, subjects)
        out = acting(_clean(img), scene, _script("joy"), _options())
        assert out.frames.shape[0] == 24 and out.frames.dtype == np.uint8
        assert out.motion.startswith("acting joy")
    # a picture with nothing in it: still a loop, no face rigged, the camera alone
    flat = np.full((180, 240, 3), 128, np.uint8)
    flat[:, :120] = 90
    out = acting(_clean(flat), _scene(flat), _script("neutral"), _options())
    assert "0 faces" in out.motion
    # with no face rigged only a cat breathes; things and drawings would bend at their outlines
    thing = (60, 40, 180, 140)
    cat = acting(_clean(flat), _scene(flat, (Subject("cat", thing, 0.5),)), _script("neutral"), _options())
    other = acting(_clean(flat), _scene(flat, (Subject("salient", thing, 0.5),)), _script("neutral"), _options())
    assert "0 faces, body" in cat.motion and "body" not in other.motion, (cat.motion, other.motion)


def test_several_faces_each_act(finder: FaceFinder, shared_memes: Path) -> None:
    img = _photo(shared_memes, "mg_39_panik-kalm-panik")
    cast = find_cast(finder, _clean(img), _scene(img))
    assert len(cast.faces) >= 3
    play = Performance(img, cast, _scene(img), _script("fear"), _options())
    for face in play.faces:
        x0, y0, x1, y1 = (int(v) for v in cast.faces[play.faces.index(face)].box)
        motion = max(float(np.abs(play.field(i)[0][y0:y1, x0:x1]).max()) for i in range(0, 24, 2))
        assert motion > 1.0, f"a face at {(x0, y0, x1, y1)} does not act"


def test_same_seed_same_frames_and_the_loop_closes(acting: Generate, shared_memes: Path) -> None:
    img = _photo(shared_memes, "mg_44_sad-biden")
    scene = _scene(img)
    first = acting(_clean(img), scene, _script("sadness"), _options(frames=32, seed=7)).frames
    again = acting(_clean(img), scene, _script("sadness"), _options(frames=32, seed=7)).frames
    other = acting(_clean(img), scene, _script("sadness"), _options(frames=32, seed=8)).frames
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    steps = [float(np.abs(first[i].astype(int) - first[(i + 1) % 32]).mean()) for i in range(32)]
    assert steps[-1] <= 2.5 * float(np.median(steps[:-1])) + 0.5, steps


def test_the_acting_backend_is_the_default_and_needs_no_model_files() -> None:
    from engine.runtime.model_files import FILELESS_BACKENDS

    assert load_settings().generate.backend == "acting"
    assert "acting" in FILELESS_BACKENDS


def test_haar_faces_the_mesh_does_not_confirm_are_not_rigged(finder: FaceFinder) -> None:
    """The Haar cascade fires on cartoons and texture: a "face" the face mesh cannot find does not act."""
    flat = np.full((200, 200, 3), 140, np.uint8)
    scene = _scene(flat, (Subject("face", (50, 50, 120, 120), 0.7), Subject("cat", (10, 10, 40, 40), 0.5)))
    assert find_cast(finder, _clean(flat), scene).faces == []


def test_the_person_mask_cuts_the_person_out_for_parallax(acting: Generate, shared_memes: Path) -> None:
    """With an orbit, a person with background around them floats over it, cut out by the segmentation mask."""
    from engine.backends.procedural.animator import _cut_out

    img = _photo(shared_memes, "mg_18_ermg")
    scene = _scene(img, (Subject("face", (130, 100, 230, 200), 0.9),))
    out = acting(_clean(img), scene, _script("neutral", camera="orbit"), _options())
    assert "parallax" in out.motion and "body" in out.motion
    # the cut-out's alpha is the mask's, softened; the background under it is filled, not the person again
    matte = np.zeros((100, 120), np.float32)
    matte[30:90, 40:80] = 1.0
    crop = np.full((100, 120, 3), 200, np.uint8)
    crop[30:90, 40:80] = (20, 40, 200)
    alpha, background = _cut_out(crop, (40.0, 30.0, 80.0, 90.0), "face", matte)
    assert alpha[60, 60] > 240 and alpha[5, 5] < 10 and 20 < alpha[60, 40] < 240
    assert np.abs(background[60, 60].astype(int) - 200).max() < 40  # the person's place shows the background


@pytest.mark.parametrize(
    ("prompt", "wanted"),
    [("He winks and nods slowly", ["nod", "wink"]), ("The person shakes their head", ["head_shake"]),
     ("the whole frame shakes", []), ("She laughs, then talks to the camera", ["laugh", "talk"]),
     ("raises an eyebrow", ["eyebrow"]), ("the cat's jaw drops", ["gasp"]), ("Kid cries", ["cry"]),
     ("grinning", ["smile"]), ("tilts his head", ["tilt"]), ("stares", ["stare"]), ("frowns", ["frown"])],
)  # fmt: skip
def test_the_motion_prompt_names_acts(prompt: str, wanted: list[str]) -> None:
    assert acts.prompt_acts(prompt) == wanted


def test_the_motion_prompt_adds_what_the_feeling_lacks_on_the_main_face() -> None:
    t = np.arange(48) / 48
    plain = acts.perform("neutral", t, 3.0, np.random.default_rng(0))
    asked = acts.perform("neutral", t, 3.0, np.random.default_rng(0), prompt="he winks and smiles, nodding")
    assert "smile" not in plain.shapes and asked.shapes["smile"].min() > 0.5
    assert asked.shapes["blink_left"].sum() > plain.shapes["blink_left"].sum() + 2  # the wink holds one eye shut
    assert np.abs(asked.head["shift_v"]).max() > np.abs(plain.head["shift_v"]).max() + 0.03
    other = acts.perform("neutral", t, 3.0, np.random.default_rng(0), main=False, prompt="he winks and smiles")
    assert "smile" not in other.shapes  # only the main face does what the prompt says
    # what the feeling already acts is not doubled: surprise's own jaw drop stays as it is
    shock = acts.perform("surprise", t, 3.0, np.random.default_rng(0))
    told = acts.perform("surprise", t, 3.0, np.random.default_rng(0), prompt="their jaw drops")
    assert np.allclose(shock.shapes["jaw"], told.shapes["jaw"])
    for name in acts.PROMPT_ACTS:  # every act the prompt can name makes curves
        assert acts._asked(name, t, 3.0, np.random.default_rng(0))


def test_mediapipe_says_nothing_on_the_terminal(finder: FaceFinder, shared_memes: Path, tmp_path: Path) -> None:
    """Its native start-up and first-face warnings go to fd 2; a user sees only the CLI's own report."""
    import shutil
    import subprocess

    cli = shutil.which("makeitmove")
    if cli is None:
        pytest.skip("the makeitmove console script is not on PATH (activate the venv)")
    done = subprocess.run(
        [cli, "animate", str(shared_memes / "rendered" / "mg_30_keanu.jpg"), "-o", str(tmp_path / "k.gif"),
         "--frames", "8", "--size", "160"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(str(tmp_path / "k.gif")), lines
