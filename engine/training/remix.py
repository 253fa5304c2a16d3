"""/remix: a GIF's motion with a new subject, sampled from the GIF's DDIM-inverted latents on the t2v model.

The GIF's tuned temporal LoRA (or none) is made the resident model's adapter, the clip is fitted to the
asked frame count at the model's size, encoded, inverted with the source prompt, blended with fresh
noise by `[training] noise_prior`, and sampled with the new prompt: the inverted noise carries the
layout and motion, the fresh noise and the words leave room for another subject. The watermark band and
the output size are handled as the t2v backend does them.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from engine.backends.video.prompts import prompt_for
from engine.backends.video.resident import (
    Resident,
    StepProgress,
    generation_size,
    generator,
    loaded_key,
    resize_frames,
    run_guarded,
)  # fmt: skip
from engine.backends.video.t2v import DEFAULT_GUIDANCE, DEFAULT_SIDE, DEFAULT_STEPS, load, remove_watermark
from engine.config import Settings
from engine.geometry import output_size
from engine.runtime.gpu import model_path
from engine.training.clips import fit_frames, resize_clip
from engine.training.invert import ddim_invert, decode_latents, denoise, encode_clip, remix_latents, size_multiple
from engine.types import Frames

log = logging.getLogger(__name__)


def remix(
    settings: Settings, resident: Resident, clip_frames: np.ndarray, prompt: str, *, checkpoint: Path | None,
    seed: int, frames: int, fps: int, size: int, source_prompt: str = "", progress: StepProgress | None = None,
) -> Frames:  # fmt: skip
    """`frames` frames of `prompt` moving like the clip, at the output `size` and the clip's aspect.

    `source_prompt` (what happens in the clip; "" as MotionDirector inverts) conditions the inversion,
    `checkpoint` is the clip's tuned LoRA. `progress` gets the fraction of inversion and sampling done
    and may raise to stop; the clip and the output stay uint8 (N, H, W, 3) RGB.
    """
    if clip_frames.ndim != 4 or clip_frames.shape[-1] != 3 or clip_frames.dtype != np.uint8 or not len(clip_frames):
        raise ValueError(
            f"clip_frames must be uint8 (N, H, W, 3) with N >= 1, got {clip_frames.dtype} {clip_frames.shape}"
        )
    generate = settings.generate

    # 1. the resident model, with the clip's tuned checkpoint (or none)
    path = model_path(generate.t2v_model, key="generate.t2v_model")
    pipe = resident.get(loaded_key("t2v", path, settings.runtime), lambda: load(path, settings.runtime))
    resident.use_checkpoint(str(checkpoint) if checkpoint is not None else None, generate.lora_weight)

    # 2. the clip at the model's size near its aspect, exactly `frames` long; the words
    height, width = clip_frames.shape[1:3]
    gen_w, gen_h = generation_size(width, height, generate.max_side or DEFAULT_SIDE, size_multiple(pipe))
    clip = resize_clip(fit_frames(clip_frames, frames), gen_w, gen_h)
    steps = generate.steps or DEFAULT_STEPS
    words = prompt_for(prompt, generate.quality_phrases, tokenizer=getattr(pipe, "tokenizer", None))
    noise_prior = settings.training.noise_prior

    # 3. invert, blend, sample: half of the progress each; the callback may raise to cancel between steps
    def part(offset: float) -> StepProgress | None:
        if progress is None:
            return None
        report = progress
        return lambda fraction: report(offset + fraction / 2)

    def run() -> np.ndarray:
        import torch

        latents = encode_clip(pipe, clip)
        inverted = ddim_invert(pipe, latents, source_prompt, steps=steps, progress=part(0.0))[-1]
        fresh = torch.randn(inverted.shape, generator=generator(seed), dtype=torch.float32)
        start = remix_latents(inverted, fresh, noise_prior)
        sampled = denoise(
            pipe, words, start, steps=steps, guidance=generate.guidance or DEFAULT_GUIDANCE,
            negative_prompt=generate.negative_prompt or None, seed=seed, progress=part(0.5),
        )  # fmt: skip
        return decode_latents(pipe, sampled)

    started = time.perf_counter()
    log.info(
        "remix: %d frames at %dx%d, %d steps, noise prior %.2f, checkpoint %s: %r",
        frames, gen_w, gen_h, steps, noise_prior, checkpoint.stem if checkpoint else "none", words,
    )  # fmt: skip
    video: Any = run_guarded(run, "t2v")
    log.info("remix done in %.1f s", time.perf_counter() - started)

    # 4. watermark out, then the output size at the clip's aspect
    out_w, out_h = output_size(width, height, size)
    result = resize_frames(remove_watermark(video, generate.watermark_band), out_w, out_h)
    return Frames(frames=result, fps=float(fps), motion="remix")
