"""DDIM inversion and /remix sampling on a tiny random text-to-video model: round trips, the noise blend, remix()."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from engine.backends.video import t2v
from engine.backends.video.resident import Resident
from engine.config import Settings, load_settings, replace
from engine.geometry import output_size
from engine.training.invert import ddim_invert, decode_latents, denoise, encode_clip, remix_latents, sample
from engine.training.remix import remix

FRAMES, SIDE = 8, 32


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def tiny_t2v(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engine.runtime.tiny.video import make_tiny_t2v

    torch.set_num_threads(1)
    return make_tiny_t2v(tmp_path_factory.mktemp("tiny-t2v") / "t2v")


@pytest.fixture(scope="module")
def lora(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engine.runtime.tiny.video import make_tiny_lora

    return make_tiny_lora(tmp_path_factory.mktemp("tuned") / "tuned.safetensors", "t2v", seed=1)


@pytest.fixture(scope="module")
def settings(tiny_t2v: Path) -> Settings:
    return replace(
        load_settings(), generate={"t2v_model": str(tiny_t2v), "steps": 3, "max_side": SIDE},
        runtime={"device": "cpu", "dtype": "fp32"}, training={"noise_prior": 0.5},
    )  # fmt: skip


@pytest.fixture(scope="module")
def resident() -> Resident:
    return Resident()


@pytest.fixture(scope="module")
def pipe(tiny_t2v: Path, settings: Settings) -> Any:
    return t2v.load(str(tiny_t2v), settings.runtime)


def clip(count: int = FRAMES, height: int = SIDE, width: int = SIDE) -> np.ndarray:
    """A smooth moving pattern: stripes drifting right and down, a colour that brightens."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = [
        np.stack([128 + 100 * np.sin((xx + 3 * i) / 5), 128 + 100 * np.cos((yy - 2 * i) / 6),
                  np.full((height, width), 90.0 + 10 * i)], axis=-1)
        for i in range(count)
    ]  # fmt: skip
    return np.stack(frames).clip(0, 255).astype(np.uint8)


def mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a.float() - b.float()) ** 2).mean())


def test_encode_clip_gives_the_pipelines_latent_layout_and_decodes_back_to_frames(pipe: Any) -> None:
    latents = encode_clip(pipe, clip())
    scale = pipe.vae_scale_factor
    assert latents.shape == (1, pipe.unet.config.in_channels, FRAMES, SIDE // scale, SIDE // scale)
    assert torch.equal(latents, encode_clip(pipe, clip()))  # the distribution's mean, not a sample
    frames = decode_latents(pipe, latents)
    assert frames.shape == (FRAMES, SIDE, SIDE, 3) and frames.dtype == np.uint8
    with pytest.raises(ValueError, match="multiples of 8"):
        encode_clip(pipe, clip(height=30))
    with pytest.raises(ValueError, match="uint8"):
        encode_clip(pipe, clip().astype(np.float32))


def test_the_ddim_round_trip_reconstructs_the_clip_closer_than_fresh_noise(pipe: Any) -> None:
    latents = encode_clip(pipe, clip())
    steps = 20
    trajectory = ddim_invert(pipe, latents, "", steps=steps)
    assert len(trajectory) == steps + 1 and torch.equal(trajectory[0], latents)
    back = denoise(pipe, "", trajectory[-1], steps=steps, guidance=1.0)
    fresh = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0))
    elsewhere = denoise(pipe, "", fresh, steps=steps, guidance=1.0)
    # random weights make the noise prediction depend strongly on its input, so the round trip is not
    # exact here (0.65 measured) but far closer than an unrelated start (~380)
    assert mse(back, latents) * 50 < mse(elsewhere, latents)


def test_the_round_trip_is_exact_when_the_prediction_ignores_the_latents(tiny_t2v: Path, settings: Settings) -> None:
    """DDIM inversion's only error is ε(x_s, t) ≠ ε(x_t, t): with an input-blind UNet the round trip is exact.

    The prediction still varies with the timestep, so inverting and sampling on different timesteps fails.
    """
    blind = t2v.load(str(tiny_t2v), settings.runtime)
    with torch.no_grad():
        blind.unet.conv_in.weight.zero_()
    latents = encode_clip(blind, clip())
    noise = ddim_invert(blind, latents, "a cat", steps=10)[-1]
    assert mse(denoise(blind, "a cat", noise, steps=10, guidance=1.0), latents) < 1e-6 * float(latents.var())
    assert mse(denoise(blind, "a cat", noise, steps=11, guidance=1.0), latents) > float(latents.var())


def test_inversion_reports_progress_after_every_step_and_a_raise_stops_it(pipe: Any) -> None:
    latents = encode_clip(pipe, clip())
    seen: list[float] = []
    ddim_invert(pipe, latents, "", steps=4, progress=seen.append)
    assert seen == [0.25, 0.5, 0.75, 1.0]

    def cancel(fraction: float) -> None:
        seen.append(fraction)
        raise Stop

    seen.clear()
    with pytest.raises(Stop):
        ddim_invert(pipe, latents, "", steps=4, progress=cancel)
    assert seen == [0.25]


def test_remix_latents_blend_keeps_unit_variance_and_its_ends_are_the_inputs() -> None:
    generator = torch.Generator().manual_seed(0)
    inverted = torch.randn(1, 4, 8, 32, 32, generator=generator)
    fresh = torch.randn(1, 4, 8, 32, 32, generator=generator)
    assert torch.equal(remix_latents(inverted, fresh, 0.0), fresh)
    assert torch.equal(remix_latents(inverted, fresh, 1.0), inverted)
    for prior in (0.25, 0.5, 0.9):
        blend = remix_latents(inverted, fresh, prior)
        assert float(blend.std()) == pytest.approx(1.0, abs=0.02)
        assert torch.allclose(blend, prior**0.5 * inverted + (1 - prior) ** 0.5 * fresh)
    # a plain linear mix would shrink the variance to p² + (1 - p)² (0.5 at p = 0.5)
    assert float((0.5 * inverted + 0.5 * fresh).std()) == pytest.approx(0.5**0.5, abs=0.02)
    with pytest.raises(ValueError, match="noise_prior"):
        remix_latents(inverted, fresh, 1.5)


def test_sample_is_deterministic_and_leaves_the_pipelines_scheduler_in_place(pipe: Any) -> None:
    start = torch.randn(1, 4, FRAMES, 16, 16, generator=torch.Generator().manual_seed(3))
    own = pipe.scheduler
    first = sample(pipe, "a dog", start, steps=3, guidance=4.0, negative_prompt="blurry", seed=1)
    again = sample(pipe, "a dog", start, steps=3, guidance=4.0, negative_prompt="blurry", seed=1)
    assert first.shape == (FRAMES, SIDE, SIDE, 3) and np.array_equal(first, again)
    assert pipe.scheduler is own


def run_remix(settings: Settings, resident: Resident, **changes: Any) -> np.ndarray:
    source = changes.pop("clip", clip(count=6, height=45, width=60))  # 4:3, shorter than asked: it loops
    options: dict[str, Any] = {"checkpoint": None, "seed": 0, "frames": FRAMES, "fps": 8, "size": 64} | changes
    result = remix(settings, resident, source, "a sloth is surfing", **options)
    assert result.fps == 8 and result.motion == "remix"
    return result.frames


def test_remix_returns_the_asked_frames_and_size_and_the_tuned_lora_changes_it(
    settings: Settings, resident: Resident, lora: Path
) -> None:
    base = run_remix(settings, resident)
    assert base.shape == (FRAMES, *output_size(60, 45, 64)[::-1], 3) and base.dtype == np.uint8
    assert np.array_equal(run_remix(settings, resident), base)  # same seed, same bytes
    tuned = run_remix(settings, resident, checkpoint=lora)
    assert np.abs(tuned.astype(np.int16) - base).mean() > 2
    assert np.array_equal(run_remix(settings, resident, checkpoint=lora), tuned)
    assert np.array_equal(run_remix(settings, resident), base)  # unloaded again: the base model's output
    assert resident.loads == 1  # a LoRA switch never reloads the base model


def test_the_noise_prior_decides_how_much_the_seed_matters(settings: Settings, resident: Resident) -> None:
    def differ(prior: float) -> float:
        changed = replace(settings, training={"noise_prior": prior})
        a, b = run_remix(changed, resident, seed=1), run_remix(changed, resident, seed=2)
        return float(np.abs(a.astype(np.int16) - b).mean())

    assert differ(1.0) == 0  # all inverted noise: the seed plays no part
    assert differ(0.5) > 1


def test_remix_reports_progress_over_inversion_and_sampling_and_a_raise_stops_it(
    settings: Settings, resident: Resident
) -> None:
    seen: list[float] = []
    run_remix(settings, resident, progress=seen.append)
    assert seen == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1.0])  # 3 inversion, then 3 sampling steps

    def cancel_in_sampling(fraction: float) -> None:
        seen.append(fraction)
        if fraction > 0.5:
            raise Stop

    seen.clear()
    own = resident.pipe.scheduler
    with pytest.raises(Stop):
        run_remix(settings, resident, progress=cancel_in_sampling)
    assert seen == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6])  # no step ran after the callback raised
    assert resident.pipe.scheduler is own  # the sampling scheduler was put back
    assert run_remix(settings, resident).shape[0] == FRAMES  # and the model still works for the next job
