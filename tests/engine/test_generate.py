"""Stage 6: the procedural backend's motions on a drawn scene."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from engine.backends.procedural.motions import MOTIONS, build_curves, plan_motions
from engine.config import load_settings, replace
from engine.errors import ConfigError
from engine.geometry import output_size
from engine.runtime.models import ModelPool
from engine.stages.generate import Generate
from engine.types import CleanImage, ResolvedOptions, SceneInfo, Script, Subject
from engine.vocabulary import CAMERAS, EMOTIONS

W, H = 400, 300
FACE = (170, 80, 230, 140)


def _picture(width: int = W, height: int = H, seed: int = 0, cell: int = 8) -> np.ndarray:
    """Textured background (no dark pixels anywhere) with a distinct head-and-body subject."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(90, 220, (height // cell + 1, width // cell + 1, 3)).astype(np.uint8)
    img = cv2.resize(texture, (width, height), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img, 90, 220).astype(np.uint8)
    cv2.ellipse(img, (width // 2, height - 10), (width // 6, height // 3), 0, 0, 360, (120, 100, 210), -1)
    cv2.circle(img, (width // 2, 110), 30, (215, 180, 150), -1)
    return img


def _clean(img: np.ndarray) -> CleanImage:
    empty = np.zeros(img.shape[:2], np.uint8)
    return CleanImage(pixels=img, text_mask=empty, region_mask=empty)


def _scene(subjects: tuple[Subject, ...] = (Subject("face", FACE, 0.9),), panels=((0, 0, W, H),)) -> SceneInfo:
    return SceneInfo(qa=(), subjects=subjects, colors=(), panels=panels, meme_text="")


def _script(emotion: str = "neutral", camera: str = "orbit") -> Script:
    return Script("a person", "", emotion, "", camera, "")


def _options(**kw) -> ResolvedOptions:
    values = {"frames": 24, "fps": 12, "size": 160, "motion": "low", "seed": 0, "prompt": None, "camera": None,
              "format": "gif", "max_bytes": 10**7, "fallback_format": None, "checkpoint": None} | kw  # fmt: skip
    return ResolvedOptions(**values)


@pytest.fixture(scope="module")
def generate() -> Generate:
    settings = load_settings()
    return Generate(
        dataclasses.replace(settings.generate, backend="procedural", frames=48, fps=16, motion="low", camera=None),
        ModelPool(settings.runtime),
    )


def _steps(frames: np.ndarray) -> tuple[np.ndarray, float]:
    """Mean absolute difference of consecutive frames, and of the last frame to the first."""
    f = frames.astype(np.int16)
    return np.abs(np.diff(f, axis=0)).mean(axis=(1, 2, 3)), float(np.abs(f[-1] - f[0]).mean())


# one (emotion, camera) per motion that leads with it; acting always comes with a (lighter) camera move
SOLO = {
    "punch-in": ("surprise", "zoom-in"), "push": ("neutral", "zoom-in"), "pull": ("neutral", "zoom-out"),
    "recoil": ("disgust", "zoom-out"), "shake": ("anger", "shake"), "tremble": ("fear", "shake"),
    "bounce": ("joy", "pan-left"), "sway": ("confusion", "pan-left"), "heartbeat": ("love", "pan-left"),
    "orbit": ("neutral", "orbit"), "parallax": ("smug", "orbit"), "pan-left": ("neutral", "pan-left"),
    "pan-right": ("neutral", "pan-right"), "pan-up": ("neutral", "pan-up"), "pan-down": ("neutral", "pan-down"),
}  # fmt: skip


def test_solo_table_covers_every_motion() -> None:
    assert set(SOLO) == set(MOTIONS)
    assert all(plan_motions(*pair)[0] == motion for motion, pair in SOLO.items())


@pytest.mark.parametrize("emotion", EMOTIONS)
@pytest.mark.parametrize("camera", CAMERAS)
def test_every_emotion_and_camera_gives_n_even_frames(generate: Generate, emotion: str, camera: str) -> None:
    out = generate(_clean(_picture()), _scene(), _script(emotion, camera), _options(frames=8, size=97))
    assert out.frames.dtype == np.uint8
    assert out.frames.shape == (8, 72, 98, 3)  # 400x300 → longer side 97 rounded up to even, aspect kept
    assert out.fps == 12.0
    assert out.motion == "+".join(plan_motions(emotion, camera))


def test_output_size_is_even_with_the_input_aspect() -> None:
    assert output_size(1000, 618, 480) == (480, 296)
    assert output_size(333, 1000, 480) == (160, 480)
    w, h = output_size(1001, 999, 481)
    assert w % 2 == 0 and h % 2 == 0 and abs(w - 481) <= 1


@pytest.mark.parametrize("motion", sorted(SOLO))
def test_each_motion_moves_and_loops_seamlessly(generate: Generate, motion: str) -> None:
    out = generate(_clean(_picture()), _scene(), _script(*SOLO[motion]), _options(frames=24, motion="high"))
    assert out.motion.split("+")[0] == motion
    steps, seam = _steps(out.frames)
    assert steps.mean() > 0.5, "the frames should move"
    # the last frame flows into the first like any other pair (a jump back would be far larger)
    assert seam <= 1.25 * steps.max() + 0.5
    if steps.min() > 0.5:  # no hold in this motion: a repeated frame at the seam would stutter
        assert seam > 0.3 * steps.min()


@pytest.mark.parametrize("motion", sorted(MOTIONS))
def test_every_curve_is_periodic_in_the_loop_phase(motion: str) -> None:
    t = np.array([0.0, 0.23, 0.61, 1.0, 1.23, 1.61])
    curves = MOTIONS[motion](t, 1.9, np.random.default_rng(5))
    for channel in ("zoom", "shift_x", "shift_y", "angle", "squash", "fg_shift_x", "fg_shift_y", "fg_zoom"):
        values = np.broadcast_to(getattr(curves, channel), t.shape)
        np.testing.assert_allclose(values[:3], values[3:], atol=1e-9, err_msg=channel)


@pytest.mark.parametrize("motion", sorted(SOLO))
def test_no_frame_samples_outside_the_picture(generate: Generate, motion: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # the reflecting border is only a safety net: with a black border instead, any sample taken
    # outside the picture would show up as a dark edge
    monkeypatch.setattr(cv2, "BORDER_REFLECT_101", cv2.BORDER_CONSTANT)
    out = generate(_clean(_picture()), _scene(), _script(*SOLO[motion]), _options(motion="high"))
    f = out.frames
    edges = np.concatenate([f[:, 0], f[:, -1], f[:, :, 0], f[:, :, -1]], axis=1)
    assert edges.max(axis=-1).min() >= 88  # the picture's darkest channel value is 90


@pytest.mark.parametrize("motion", sorted(SOLO))
def test_high_moves_more_than_low(generate: Generate, motion: str) -> None:
    # a coarse texture, so the frame difference grows with the displacement instead of saturating
    smooth = _clean(_picture(cell=40))
    low = generate(smooth, _scene(), _script(*SOLO[motion]), _options(motion="low"))
    high = generate(smooth, _scene(), _script(*SOLO[motion]), _options(motion="high"))
    assert _steps(high.frames)[0].mean() > 1.3 * _steps(low.frames)[0].mean()


def test_same_seed_same_frames_another_seed_other_jitter(generate: Generate) -> None:
    args = (_clean(_picture()), _scene(), _script("anger", "shake"))
    first = generate(*args, _options(seed=7)).frames
    np.testing.assert_array_equal(first, generate(*args, _options(seed=7)).frames)
    assert np.abs(first.astype(np.int16) - generate(*args, _options(seed=8)).frames).mean() > 1.0
    # motions without jitter do not depend on the seed
    calm = (_clean(_picture()), _scene(), _script("sadness", "zoom-in"))
    np.testing.assert_array_equal(generate(*calm, _options(seed=1)).frames, generate(*calm, _options(seed=2)).frames)


def test_only_the_subjects_panel_moves(generate: Generate, monkeypatch: pytest.MonkeyPatch) -> None:
    # as above: a sample from outside the subject's panel would show as black at the panel's edge
    monkeypatch.setattr(cv2, "BORDER_REFLECT_101", cv2.BORDER_CONSTANT)
    img = np.concatenate([_picture(200, 300, seed=1), _picture(200, 300, seed=2)], axis=1)
    panels = ((0, 0, 200, 300), (200, 0, 400, 300))
    face = (270, 80, 330, 140)  # in the right panel
    still = cv2.resize(img, (160, 120), interpolation=cv2.INTER_AREA).astype(np.int16)
    for emotion, camera in (("anger", "shake"), ("confusion", "pan-left"), ("smug", "orbit"), ("joy", "zoom-out")):
        scene = _scene((Subject("face", face, 0.9),), panels)
        f = generate(_clean(img), scene, _script(emotion, camera), _options(motion="high")).frames.astype(np.int16)
        # 160x120 output: the panels meet at x = 80
        assert np.abs(np.diff(f[:, :, :80], axis=0)).max() == 0, emotion
        assert np.abs(f[0, :, :80] - still[:, :80]).mean() < 3, emotion
        assert np.abs(np.diff(f[:, :, 80:], axis=0)).mean() > 0.5, emotion
        panel_edges = np.concatenate([f[:, :, 80], f[:, :, -1], f[:, 0, 80:], f[:, -1, 80:]], axis=1)
        assert panel_edges.max(axis=-1).min() >= 88, emotion


def test_motion_follows_emotion_and_camera() -> None:
    assert plan_motions("surprise", "zoom-in") == ["punch-in"]
    assert plan_motions("surprise", "pan-left") == ["punch-in", "pan-left"]
    assert plan_motions("surprise", "zoom-out") == ["pull"]  # a zoom fight: the camera move wins
    assert plan_motions("anger", "shake") == ["shake"]
    assert plan_motions("joy", "orbit") == ["bounce", "orbit"]
    assert plan_motions("love", "zoom-in") == ["heartbeat", "push"]
    assert plan_motions("sadness", "zoom-in") == ["push"]
    assert plan_motions("fear", "shake") == ["tremble"]
    assert plan_motions("smug", "orbit") == ["parallax"]
    assert plan_motions("neutral", "pan-up") == ["pan-up"]
    assert plan_motions("confusion", "zoom-out") == ["sway", "pull"]


def test_parallax_without_a_subject_orbits(generate: Generate) -> None:
    out = generate(_clean(_picture()), _scene(subjects=()), _script("smug", "orbit"), _options())
    assert out.motion == "orbit"


def test_parallax_moves_the_subject_against_its_background(generate: Generate) -> None:
    out = generate(_clean(_picture()), _scene(), _script("smug", "pan-left"), _options(motion="high", frames=16))
    f = out.frames
    skin = np.all(np.abs(f.astype(np.int16) - (215, 180, 150)) < 12, axis=3)  # the head's colour
    xs = [np.flatnonzero(s.any(axis=0)).mean() for s in skin]
    orbit = generate(_clean(_picture()), _scene(), _script("neutral", "pan-left"), _options(motion="high", frames=16))
    skin_orbit = np.all(np.abs(orbit.frames.astype(np.int16) - (215, 180, 150)) < 12, axis=3)
    xs_orbit = [np.flatnonzero(s.any(axis=0)).mean() for s in skin_orbit]
    # with the cut-out the head travels its own path, not the background's
    assert np.abs(np.subtract(xs, xs_orbit)).max() > 1.0


def test_curves_scale_with_the_level() -> None:
    rng = np.random.default_rng(0)
    low = build_curves(["heartbeat"], 48, "low", rng)
    high = build_curves(["heartbeat"], 48, "high", np.random.default_rng(0))
    assert (high.zoom - 1).max() > 1.5 * (low.zoom - 1).max()


@pytest.mark.parametrize(
    ("change", "name"),
    [
        ({"scene": _scene((Subject("face", (380, 0, 420, 40), 0.9),))}, "scene.subjects[0].box"),
        ({"clean": _clean(np.zeros((30, 40), np.uint8))}, "clean.pixels"),
    ],
)
def test_bad_inputs_name_the_argument(generate: Generate, change: dict, name: str) -> None:
    args = {"clean": _clean(_picture()), "scene": _scene(), "script": _script(), "options": _options()} | change
    with pytest.raises(ValueError, match=name.replace("[", r"\[").replace("]", r"\]")):
        generate(**args)


def test_unknown_backend_is_refused_when_the_config_loads() -> None:
    expected = "'generate.backend' must be one of 'acting', 'procedural', 't2v', 'i2v', 'clipguided'"
    with pytest.raises(ConfigError, match=expected):
        replace(load_settings(), generate={"backend": "stable-video"})
