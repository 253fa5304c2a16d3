"""The t2v backend on a tiny random text-to-video model: LoRA switching, progress, cancelling, sizes, watermark."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.backends.video.t2v import remove_watermark
from engine.geometry import output_size
from tests.engine.video_cases import H, W, animate, resident, tiny_settings


@pytest.fixture(scope="module")
def checkpoints(tiny_dir: Path) -> tuple[str, str]:
    folder = tiny_dir / "checkpoints"
    return str(folder / "wiggle.safetensors"), str(folder / "bounce.safetensors")


def test_frames_have_the_output_size_at_the_pictures_aspect(tiny_dir: Path) -> None:
    frames = animate(tiny_settings(tiny_dir))
    assert frames.frames.shape == (4, *output_size(W, H, 64)[::-1], 3) and frames.frames.dtype == np.uint8
    assert frames.fps == 8 and frames.motion == "t2v"
    assert frames.frames.std() > 5  # noise from random weights, not a blank or constant picture


def test_lora_adapters_change_switch_weigh_and_unload_exactly(tiny_dir: Path, checkpoints: tuple[str, str]) -> None:
    settings = tiny_settings(tiny_dir)
    wiggle, bounce = checkpoints
    base = animate(settings).frames
    loads = resident(settings).loads
    with_a = animate(settings, checkpoint=wiggle).frames
    with_b = animate(settings, checkpoint=bounce).frames
    again_a = animate(settings, checkpoint=wiggle).frames
    unloaded = animate(settings).frames
    weightless = animate(tiny_settings(tiny_dir, lora_weight=0.0), checkpoint=wiggle).frames
    half = animate(tiny_settings(tiny_dir, lora_weight=0.5), checkpoint=wiggle).frames

    def differ(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a.astype(np.int16) - b).mean())

    assert differ(with_a, base) > 2 and differ(with_b, base) > 2 and differ(with_a, with_b) > 2
    assert np.array_equal(again_a, with_a)  # switching back gives A's output again
    assert np.array_equal(unloaded, base)  # bitwise: the adapter sat beside the base weights
    assert np.array_equal(weightless, base)
    assert 0 < differ(half, base) < differ(with_a, base) + 1
    assert resident(settings).loads == loads  # LoRA switches never reload the base model


def test_a_lora_for_another_model_is_refused_and_the_model_stays_clean(tiny_dir: Path, tmp_path: Path) -> None:
    from engine.errors import UserError
    from engine.runtime.tiny.video import make_tiny_lora

    settings = tiny_settings(tiny_dir)
    base = animate(settings).frames
    foreign = make_tiny_lora(tmp_path / "for-ltx.safetensors", "ltx", seed=3)
    with pytest.raises(UserError) as caught:
        animate(settings, checkpoint=str(foreign))
    assert caught.value.code == "invalid_checkpoint" and "for-ltx" in caught.value.message
    assert np.array_equal(animate(settings).frames, base)


def test_progress_is_reported_after_every_step(tiny_dir: Path) -> None:
    seen: list[float] = []
    animate(tiny_settings(tiny_dir, steps=4), progress=seen.append)
    assert seen == [0.25, 0.5, 0.75, 1.0]


class Stop(Exception):
    pass


def test_a_raising_progress_callback_stops_generation_mid_way(tiny_dir: Path) -> None:
    settings = tiny_settings(tiny_dir, steps=4)
    seen: list[float] = []

    def cancel_at_half(fraction: float) -> None:
        seen.append(fraction)
        if fraction >= 0.5:
            raise Stop

    with pytest.raises(Stop):
        animate(settings, progress=cancel_at_half)
    assert seen == [0.25, 0.5]  # no step ran after the callback raised
    assert animate(settings).count == 4  # and the model still works for the next job


def test_out_of_memory_is_re_raised_and_the_model_keeps_working(tiny_dir: Path) -> None:
    settings = tiny_settings(tiny_dir)

    def exhausted(_fraction: float) -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        animate(settings, progress=exhausted)
    assert animate(settings).count == 4


def test_watermark_band_is_inpainted_the_same_way_on_every_frame_and_motion_stays() -> None:
    rng = np.random.default_rng(1)
    # colour varies across, not down: what the band hides can be told from the rows above it
    background = np.tile(np.linspace(60, 180, 48, dtype=np.float32)[None, :, None], (64, 1, 3))
    frames = np.stack([background + rng.normal(0, 1, background.shape) for _ in range(6)])
    frames[:, 40:, :, :] += np.arange(6, dtype=np.float32)[:, None, None, None] * 3  # motion in the band
    frames = frames.clip(0, 255).astype(np.uint8)
    marked = frames.copy()
    marked[:, 56:60, 10:38] = 255  # a static white mark near the bottom
    cleaned = remove_watermark(marked, 0.2)
    mark = (slice(None), slice(56, 60), slice(10, 38))
    assert np.abs(marked[mark].astype(int) - frames[mark]).mean() > 50
    assert np.abs(cleaned[mark].astype(int) - frames[mark]).mean() < 12  # the mark is gone
    assert np.array_equal(cleaned[:, :50], marked[:, :50])  # above the band nothing changes
    beside = (slice(None), slice(56, 60), slice(40, 48))  # in the band, off the mark
    per_frame = cleaned[beside].astype(float).mean(axis=(1, 2, 3))
    assert np.all(np.diff(per_frame) > 2)  # each frame keeps its own brightening: motion survives
    assert np.array_equal(remove_watermark(marked, 0.0), marked)


def test_the_pipeline_reports_steps_inside_the_generate_stage_and_a_cancel_stops_it(tiny_dir: Path) -> None:
    from engine.config import replace
    from engine.pipeline import Pipeline
    from engine.types import AnimationOptions
    from tests.support.memes import meme

    pipeline = Pipeline(replace(tiny_settings(tiny_dir, steps=4), caption={"backend": "none"}))
    seen: list[tuple[str, float]] = []

    def cancel_mid_generate(stage: str, fraction: float) -> None:
        seen.append((stage, fraction))
        if stage == "generate" and fraction > 5 / 8 + 0.06:
            raise Stop

    with pytest.raises(Stop):
        pipeline.run(meme(), AnimationOptions(frames=4, size=64), progress=cancel_mid_generate)
    steps = [fraction for stage, fraction in seen if stage == "generate"]
    assert steps == pytest.approx([5 / 8, 5 / 8 + 0.25 / 8, 5 / 8 + 0.5 / 8])  # stage start, then per step
    assert seen[-1][0] == "generate"  # nothing after the cancel: no postprocess, no encode


def test_a_long_motion_prompt_is_cut_so_the_camera_and_quality_phrases_still_fit(tiny_dir: Path) -> None:
    from transformers import CLIPTokenizer

    from engine.backends.video.prompts import prompt_for

    tokenizer = CLIPTokenizer.from_pretrained(str(tiny_dir / "t2v"), subfolder="tokenizer")
    quality = ("high quality video", "smooth action", "exaggerated expressions")
    long = " ".join(["the cat slowly turns its head and blinks at the camera"] * 6)  # 60 words
    prompt = prompt_for(long, quality, "slow camera zoom in", tokenizer=tokenizer)
    assert len(tokenizer(prompt).input_ids) <= tokenizer.model_max_length
    assert prompt.endswith("slow camera zoom in, high quality video, smooth action, exaggerated expressions")
    uncut = prompt_for(long, quality, "slow camera zoom in")
    assert len(tokenizer(uncut).input_ids) > tokenizer.model_max_length, "the case must need a cut"
    kept = prompt.split(", ")[0]
    assert kept and long.startswith(kept) and len(kept) < len(long)  # whole words from the start
    short = prompt_for("the cat waves.", ("smooth",), tokenizer=tokenizer)  # this tiny vocabulary spells out words
    assert short == prompt_for("the cat waves.", ("smooth",)) == "the cat waves, smooth"  # nothing to cut
