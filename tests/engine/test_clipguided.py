"""The clipguided backend on a tiny random CLIP: the schedule, the optimiser's loss and gradients, seeds, cancelling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from engine.backends.clipguided.backend import ClipGuided
from engine.backends.clipguided.optimise import (
    CLIP_MEAN,
    ClipScorer,
    FrameRun,
    Pull,
    augment,
    frame_loss,
    guide,
    normalisation,
    optimise_frame,
    seeded,
)  # fmt: skip
from engine.backends.clipguided.prompts import prompts_for
from engine.backends.clipguided.schedule import (
    NEGATIVE_WEIGHT,
    PRESETS,
    PromptWeights,
    carry_step,
    noise_scale,
    prompt_schedule,
    stability_weight,
)  # fmt: skip
from engine.config import Settings, load_settings, replace
from engine.errors import ConfigError
from engine.geometry import output_size
from engine.runtime.models import ModelPool
from engine.types import CleanImage, Frames, ResolvedOptions, SceneInfo, Script

W, H = 90, 60  # 3:2, so a wrong aspect shows
SCENE = SceneInfo(qa=(), subjects=(), colors=(), panels=((0, 0, W, H),), meme_text="")
SCRIPT = Script("a cat", "", "joy", "A cat smiles, then laughs", "zoom-in", "")  # two beats: two prompts
PROMPTS = ("a cat smiles", "a cat laughs")  # for the optimiser's own tests


@pytest.fixture(scope="module")
def clip_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two tiny random CLIP folders (different seeds), as `makeitmove models make-tiny` writes them."""
    from engine.runtime.tiny.clip import make_tiny_clip

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny-clip")
    return make_tiny_clip(root / "clip", seed=0), make_tiny_clip(root / "clip2", seed=1)


@pytest.fixture(scope="module")
def scorer(clip_dirs: tuple[Path, Path]) -> ClipScorer:
    return ClipScorer.load(str(clip_dirs[0]), torch.device("cpu"), torch.float32)


def clean() -> CleanImage:
    """A textured 3:2 picture without a caption."""
    pixels = np.random.default_rng(0).integers(40, 220, (H, W, 3), dtype=np.uint8)
    empty = np.zeros((H, W), np.uint8)
    return CleanImage(pixels=pixels, text_mask=empty, region_mask=empty)


def options(**changes: Any) -> ResolvedOptions:
    """Resolved options for a 6-frame, 64 px run."""
    values: dict[str, Any] = {"motion": "low", "frames": 6, "fps": 8, "size": 64, "seed": 0, "prompt": None,
                              "camera": None, "format": "gif", "max_bytes": 10**7, "fallback_format": None,
                              "checkpoint": None} | changes  # fmt: skip
    return ResolvedOptions(**values)


def settings(clip_dirs: tuple[Path, Path], **generate: Any) -> Settings:
    """The shipped settings with the clipguided backend on the tiny CLIP and a 48 px canvas."""
    keys = {"backend": "clipguided", "clip_model": str(clip_dirs[0]), "clip_side": 48} | generate
    return replace(load_settings(), generate=keys, runtime={"device": "cpu", "dtype": "fp32"})


POOLS: dict[Any, ModelPool] = {}  # one pool per runtime, as one engine process has: each CLIP loads once


def backend(clip_dirs: tuple[Path, Path], **generate: Any) -> ClipGuided:
    chosen = settings(clip_dirs, **generate)
    return ClipGuided(chosen.generate, POOLS.setdefault(chosen.runtime, ModelPool(chosen.runtime)))


def animate(made: ClipGuided, **changes: Any) -> Frames:
    progress = changes.pop("progress", None)
    return made(clean(), SCENE, SCRIPT, options(**changes), progress=progress)


def canvas_of(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255.0


# the schedule, on its own


def test_the_prompt_weights_follow_the_papers_schedule_and_the_loop_closes() -> None:
    schedule = prompt_schedule(3, 12)  # F = 4 frames per prompt
    assert [(w.now, w.next) for w in schedule[:5]] == [(0, 1)] * 4 + [(1, 2)]
    assert [w.w_next for w in schedule[:4]] == [0.0, 0.25, 0.5, 0.75]  # w_next = f/F, w_now = 1 - f/F
    assert (schedule[-1].now, schedule[-1].next, schedule[-1].w_next) == (2, 0, 0.75)  # back toward the first
    for frames in (12, 8, 7, 2):  # F whole or not, fewer frames than prompts
        for w in prompt_schedule(3, frames):
            assert w.w_now + w.w_next == pytest.approx(1.0) and 0 <= w.w_next < 1
    # every prompt pulls on 2F frames: rising over the F before its own, falling over its own
    for prompt in range(3):
        pulled = [n for n, w in enumerate(schedule) if (w.now == prompt and w.w_now) or (w.next == prompt and w.w_next)]
        assert len(pulled) == 2 * 4 - 1  # the frame where its weight is exactly 0 does not count
        peak = [w.w_now for w in schedule if w.now == prompt and w.w_now == 1.0]
        assert peak == [1.0]
    assert prompt_schedule(1, 3) == tuple(PromptWeights(0, 1 - f / 3, 0, f / 3) for f in range(3))
    with pytest.raises(ValueError, match="at least one prompt"):
        prompt_schedule(0, 4)
    with pytest.raises(ValueError, match="at least one frame"):
        prompt_schedule(2, 0)


def test_temperature_sets_stability_and_noise_and_the_presets_trade_speed_for_quality() -> None:
    assert (stability_weight(0), stability_weight(50), stability_weight(100)) == (4.0, 2.0, 0.0)
    assert (noise_scale(0), noise_scale(100)) == (0.0, 0.02) and 0 < noise_scale(30) < noise_scale(60)
    with pytest.raises(ValueError, match="0..100"):
        stability_weight(101)
    fast, quality = PRESETS["fast"], PRESETS["quality"]
    assert (fast.side, quality.side) == (224, 336)
    assert quality.iterations > fast.iterations and quality.crops > fast.crops
    assert fast.first_iterations > fast.iterations and quality.first_iterations > quality.iterations
    assert carry_step(fast, 8) == 4 and carry_step(fast, 0) == 0 and 0 <= carry_step(quality, 1) <= 1


# the optimiser


def test_frame_zeros_loss_drops_over_its_iterations(scorer: ClipScorer) -> None:
    fast = PRESETS["fast"]
    meme = canvas_of(clean().pixels[::2, ::2])  # 45 x 30: not square, smaller than the model's 32 px side
    pull = Pull(PromptWeights(0, 1.0, 1, 0.0), NEGATIVE_WEIGHT, stability_weight(30), anchor=1.0)
    run = FrameRun(fast.first_iterations, fast.crops, fast.lr, carry_step(fast, fast.first_iterations))
    steps: list[int] = []
    frame = optimise_frame(
        meme, [guide(scorer, PROMPTS, "Words and text.")], pull, run, previous=None, meme=meme,
        generator=seeded(0), on_step=lambda: steps.append(1),
    )  # fmt: skip
    losses = np.array(frame.losses)
    assert len(losses) == len(steps) == fast.first_iterations
    quarter = len(losses) // 4
    assert losses[-quarter:].mean() < losses[:quarter].mean() - 0.05, losses
    assert frame.final.shape == meme.shape and 0 <= frame.final.min() and frame.final.max() <= 1
    assert not torch.equal(frame.carry, frame.final) and not torch.equal(frame.carry, meme)  # the half-way iterate


def test_clip_stays_frozen_and_only_the_canvas_gets_gradients(scorer: ClipScorer) -> None:
    before = {name: value.clone() for name, value in scorer.model.state_dict().items()}
    assert not scorer.model.training and not any(p.requires_grad for p in scorer.model.parameters())
    meme = canvas_of(clean().pixels)
    canvas = meme.clone().requires_grad_(True)
    pull = Pull(PromptWeights(0, 0.5, 1, 0.5), NEGATIVE_WEIGHT, 1.0, 1.0)
    target = guide(scorer, PROMPTS, "Words and text.")
    frame_loss(canvas, target, pull, 4, meme.flip(-1), meme, seeded(0)).backward()
    assert canvas.grad is not None and canvas.grad.abs().sum() > 0
    assert all(p.grad is None for p in scorer.model.parameters())

    run = FrameRun(iterations=4, crops=2, lr=0.05, carry_at=2)
    optimise_frame(meme, [target], pull, run, previous=meme, meme=meme, generator=seeded(0))
    after = scorer.model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert all(p.grad is None for p in scorer.model.parameters())


def test_views_are_seeded_warped_crops_at_the_models_size_and_pass_gradients() -> None:
    canvas = canvas_of(clean().pixels).requires_grad_(True)
    views = augment(canvas, 5, 32, seeded(3))
    assert views.shape == (5, 3, 32, 32) and 0 <= views.min() and views.max() <= 1
    assert torch.equal(views, augment(canvas, 5, 32, seeded(3)))
    assert not torch.equal(views, augment(canvas, 5, 32, seeded(4)))
    assert all((views[0] - view).abs().mean() > 0.01 for view in views[1:])  # five different views
    views.sum().backward()
    assert canvas.grad is not None and (canvas.grad > 0).float().mean() > 0.5  # most pixels are seen


def test_normalisation_is_read_from_the_model_folder_or_falls_back_to_clips(tmp_path: Path) -> None:
    (tmp_path / "preprocessor_config.json").write_text('{"image_mean": [0.5, 0.5, 0.5], "image_std": [0.2, 0.2, 0.2]}')
    assert normalisation(str(tmp_path)) == ((0.5, 0.5, 0.5), (0.2, 0.2, 0.2))
    assert normalisation(str(tmp_path / "elsewhere"))[0] == CLIP_MEAN


def test_a_higher_stability_weight_shrinks_the_change_from_the_previous_frame(scorer: ClipScorer) -> None:
    meme = canvas_of(clean().pixels)
    target = [guide(scorer, PROMPTS, "Words and text.")]
    run = FrameRun(iterations=8, crops=4, lr=0.02, carry_at=4)
    first = optimise_frame(
        meme, target, Pull(PromptWeights(0, 1.0, 1, 0.0), 0.3, 0.0, 1.0), run, previous=None, meme=meme,
        generator=seeded(0),
    )  # fmt: skip

    def change(stability: float) -> float:
        pull = Pull(PromptWeights(0, 0.5, 1, 0.5), 0.3, stability, 1.0)
        second = optimise_frame(first.carry, target, pull, run, previous=first.final, meme=meme, generator=seeded(1))
        return float((second.final - first.final).abs().mean())

    assert change(4.0) < 0.8 * change(0.0)


# the backend


def test_frames_have_the_output_size_and_a_report_of_their_similarities(clip_dirs: tuple[Path, Path]) -> None:
    made = backend(clip_dirs)
    seen: list[float] = []
    frames = animate(made, progress=seen.append)
    assert frames.frames.shape == (6, *output_size(W, H, 64)[::-1], 3) and frames.frames.dtype == np.uint8
    assert frames.fps == 8.0 and frames.motion == "clipguided"
    fast = PRESETS["fast"]
    total = fast.first_iterations + 5 * fast.iterations
    assert len(seen) == total and seen[-1] == 1.0 and seen == sorted(seen)  # one report per Adam step

    report = made.last_report
    assert report is not None and report.prompts == prompts_for(SCENE, SCRIPT, None) and report.iterations == total
    assert len(report.prompts) == 2
    assert report.canvas == (48, 32) and len(report.meme_similarity) == 2
    assert [(f.now, f.next) for f in report.frames] == [(0, 1)] * 3 + [(1, 0)] * 3  # the loop closes
    assert report.frames[0].last_loss < report.frames[0].first_loss
    # CLIP pulled frame 0 toward its prompt (the tiny model's similarities only prove the mechanics)
    assert report.frames[0].similarity_now > report.meme_similarity[0]


def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_frames(clip_dirs: tuple[Path, Path]) -> None:
    made = backend(clip_dirs)
    first = animate(made, seed=5).frames
    assert np.array_equal(animate(backend(clip_dirs), seed=5).frames, first)
    assert not np.array_equal(animate(made, seed=6).frames, first)


def test_a_hotter_temperature_makes_livelier_frames(clip_dirs: tuple[Path, Path]) -> None:
    def livelier(temperature: float) -> float:
        frames = animate(backend(clip_dirs, clip_temperature=temperature)).frames.astype(np.int16)
        return float(np.abs(np.diff(frames, axis=0)).mean())

    assert livelier(0.0) < livelier(100.0)


def test_a_second_clip_takes_turns_with_the_first(
    clip_dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    one = backend(clip_dirs)
    two = backend(clip_dirs, clip_model2=str(clip_dirs[1]))
    assert len(two.scorers()) == 2 and two.scorers()[0] is one.scorers()[0]  # each CLIP loads once per pool
    assert not np.array_equal(animate(two).frames, animate(one).frames)

    first, second = two.scorers()
    calls: list[ClipScorer] = []

    def counting(scorer: ClipScorer) -> Any:
        def encode_images(images: torch.Tensor) -> torch.Tensor:
            calls.append(scorer)
            return ClipScorer.encode_images(scorer, images)

        return encode_images

    for each in (first, second):
        monkeypatch.setattr(each, "encode_images", counting(each))
    meme = canvas_of(clean().pixels)
    guides = [guide(each, PROMPTS, "") for each in (first, second)]
    pull = Pull(PromptWeights(0, 1.0, 1, 0.0), 0.0, 0.0, 1.0)
    optimise_frame(meme, guides, pull, FrameRun(5, 2, 0.02, 2), previous=None, meme=meme, generator=seeded(0))
    assert calls == [first, second, first, second, first]  # one CLIP per step, in turn


class Stop(Exception):
    pass


def test_a_raising_progress_callback_stops_the_optimisation_mid_way(clip_dirs: tuple[Path, Path]) -> None:
    made = backend(clip_dirs)
    seen: list[float] = []

    def cancel_at_half(fraction: float) -> None:
        seen.append(fraction)
        if fraction >= 0.5:
            raise Stop

    with pytest.raises(Stop):
        animate(made, progress=cancel_at_half)
    total = PRESETS["fast"].first_iterations + 5 * PRESETS["fast"].iterations
    assert len(seen) == total // 2 and seen[-1] == 0.5  # no step ran after the callback raised
    assert animate(made).count == 6  # and the backend still works for the next job


def test_out_of_memory_is_re_raised_and_the_backend_keeps_working(clip_dirs: tuple[Path, Path]) -> None:
    made = backend(clip_dirs)

    def exhausted(_fraction: float) -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        animate(made, progress=exhausted)
    assert animate(made).count == 6


def test_a_missing_clip_model_stops_the_backend_at_construction(clip_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="generate.clip_model2"):
        backend(clip_dirs, clip_model2=str(tmp_path / "no-such-model"))
