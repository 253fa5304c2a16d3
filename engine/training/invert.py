"""DDIM inversion of a clip on the text-to-video model, and sampling that starts from the inverted noise.

GIF-Tune's sampling half, the way MotionDirector does it on ModelScope: the source clip is encoded by
the VAE, run backwards through a deterministic DDIM schedule to the noise that would have made it, and
that noise, blended with fresh noise, starts the sampling with a new prompt, so the motion follows the
source while the words choose the subject. Inversion runs without classifier-free guidance (as
Tune-A-Video and MotionDirector do): DDIM is only close to invertible when both directions see the same
noise predictions, and guidance at a high scale would pull the inverted noise off the model's manifold.
torch and diffusers are imported by the functions that need them: the CPU install has neither.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.backends.video.resident import StepProgress, generator, to_frames

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

ENCODE_BATCH = 8  # frames per VAE call: bounds the activations' memory on a long clip


def size_multiple(pipe: Any) -> int:
    """The multiple both sides of a clip must be: the UNet halves the latents once per block after the first."""
    return max(8, pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1))


def encode_clip(pipe: Any, frames: np.ndarray) -> torch.Tensor:
    """The clip's latents (1, C, N, h, w) in the pipeline's layout, scaled by the VAE's scaling factor.

    Each frame is encoded on its own (the VAE is 2D) and the distribution's mean is kept, not a sample:
    the inversion starts from the same latents every time.
    """
    import torch

    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (N, H, W, 3), got {frames.dtype} {frames.shape}")
    multiple = size_multiple(pipe)
    height, width = frames.shape[1:3]
    if height % multiple or width % multiple:
        raise ValueError(f"the clip's sides must be multiples of {multiple} for this model, got {width}x{height}")
    vae = pipe.vae
    device = pipe._execution_device  # the VAE's device, or the GPU its offload hook moves it to
    pixels = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    latents = []
    with torch.no_grad():
        for start in range(0, len(pixels), ENCODE_BATCH):
            batch = pixels[start : start + ENCODE_BATCH].to(device, torch.float32) / 127.5 - 1.0
            encoded = vae.encode(batch.to(vae.dtype)).latent_dist.mode()
            latents.append(encoded.float() * vae.config.scaling_factor)
    return torch.cat(latents).permute(1, 0, 2, 3).unsqueeze(0)


def decode_latents(pipe: Any, latents: torch.Tensor) -> np.ndarray:
    """Latents (1, C, N, h, w) -> frames (N, H, W, 3) uint8, as the pipeline decodes them."""
    import torch

    with torch.no_grad():
        video = pipe.decode_latents(latents.to(pipe._execution_device, pipe.vae.dtype))
        return to_frames(pipe.video_processor.postprocess_video(video=video, output_type="np"))


def ddim_invert(
    pipe: Any, latents: torch.Tensor, prompt: str, *, steps: int, guidance: float = 1.0,
    progress: StepProgress | None = None,
) -> list[torch.Tensor]:  # fmt: skip
    """The clip's latents run backwards through `steps` DDIM steps: [latents, ..., noise], steps + 1 tensors.

    The timesteps are the forward DDIM schedule's, reversed, so `sample` with the same steps retraces them.
    The latents stay in float32 between UNet calls: the small errors of a half-precision round trip add up
    over the steps. `progress` gets the fraction done after every step and may raise to stop.
    """
    import torch
    from diffusers import DDIMInverseScheduler, DDIMScheduler

    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    inverse = DDIMInverseScheduler.from_config(pipe.scheduler.config)
    inverse.set_timesteps(steps)
    forward = DDIMScheduler.from_config(pipe.scheduler.config)
    forward.set_timesteps(steps)
    if not torch.equal(inverse.timesteps.flip(0), forward.timesteps):
        raise ValueError(
            f"the scheduler's timestep_spacing {forward.config.timestep_spacing!r} has no exact DDIM inverse; "
            "use 'leading' or 'trailing'"
        )
    device = pipe._execution_device
    cfg = guidance > 1.0
    with torch.no_grad():
        embeds, negative = pipe.encode_prompt(prompt, device, 1, cfg, "" if cfg else None)
        context = torch.cat([negative, embeds]) if cfg else embeds
        current = latents.to(device, torch.float32)
        trajectory = [current]
        for index, t in enumerate(inverse.timesteps):
            model_input = torch.cat([current] * 2) if cfg else current
            noise = pipe.unet(model_input.to(pipe.unet.dtype), t, encoder_hidden_states=context, return_dict=False)[0]
            noise = noise.float()
            if cfg:
                uncond, text = noise.chunk(2)
                noise = uncond + guidance * (text - uncond)
            current = inverse.step(noise, t, current).prev_sample
            trajectory.append(current)
            if progress is not None:
                progress((index + 1) / steps)
    log.debug("inverted %s latents over %d DDIM steps", tuple(latents.shape), steps)
    return trajectory


def remix_latents(inverted_noise: torch.Tensor, fresh_noise: torch.Tensor, noise_prior: float) -> torch.Tensor:
    """sqrt(p) * inverted + sqrt(1 - p) * fresh: MotionDirector's noise prior, which keeps unit variance.

    Two independent unit-variance fields mixed with weights whose squares sum to one stay unit-variance,
    so the sampler's first step sees noise of the level it expects at any `noise_prior` p in [0, 1].
    """
    if not 0.0 <= noise_prior <= 1.0:
        raise ValueError(f"noise_prior must be between 0 and 1, got {noise_prior}")
    if inverted_noise.shape != fresh_noise.shape:
        raise ValueError(
            f"noise shapes differ: inverted {tuple(inverted_noise.shape)}, fresh {tuple(fresh_noise.shape)}"
        )
    fresh = fresh_noise.to(inverted_noise.device, inverted_noise.dtype)
    if noise_prior == 0.0:
        return fresh.clone()
    if noise_prior == 1.0:
        return inverted_noise.clone()
    return noise_prior**0.5 * inverted_noise + (1.0 - noise_prior) ** 0.5 * fresh


def denoise(
    pipe: Any, prompt: str, start_latents: torch.Tensor, *, steps: int, guidance: float,
    negative_prompt: str | None = None, seed: int = 0, progress: StepProgress | None = None,
) -> torch.Tensor:  # fmt: skip
    """The pipeline's DDIM sampling from `start_latents`, to the final latents (1, C, N, h, w)."""
    _, _, count, latent_h, latent_w = start_latents.shape

    def step_done(step: int, _timestep: Any, _latents: Any) -> None:
        if progress is not None:
            progress((step + 1) / steps)

    with ddim_scheduler(pipe):
        return pipe(
            prompt=prompt, negative_prompt=negative_prompt or None, num_frames=count,
            height=latent_h * pipe.vae_scale_factor, width=latent_w * pipe.vae_scale_factor,
            num_inference_steps=steps, guidance_scale=guidance, generator=generator(seed),
            latents=start_latents.to(pipe._execution_device, pipe.unet.dtype), output_type="latent",
            callback=step_done,
        ).frames  # fmt: skip


def sample(
    pipe: Any, prompt: str, start_latents: torch.Tensor, *, steps: int, guidance: float,
    negative_prompt: str | None = None, seed: int = 0, progress: StepProgress | None = None,
) -> np.ndarray:  # fmt: skip
    """Frames (N, H, W, 3) uint8 sampled with DDIM from `start_latents`; `progress` may raise to stop."""
    latents = denoise(
        pipe, prompt, start_latents, steps=steps, guidance=guidance, negative_prompt=negative_prompt, seed=seed,
        progress=progress,
    )  # fmt: skip
    return decode_latents(pipe, latents)


@contextlib.contextmanager
def ddim_scheduler(pipe: Any) -> Iterator[None]:
    """A fresh DDIM scheduler from the pipeline's config for the duration, the pipeline's own one put back after.

    The inversion is exact only against DDIM (eta 0) on the same timesteps; the resident pipeline keeps
    whatever scheduler its folder names for the other jobs.
    """
    from diffusers import DDIMScheduler

    own = pipe.scheduler
    pipe.scheduler = DDIMScheduler.from_config(own.config)
    try:
        yield
    finally:
        pipe.scheduler = own
