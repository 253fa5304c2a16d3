"""The clipguided backend: the de-texted meme's own pixels optimised toward its prompts, frame by frame, with CLIP.

After "Towards Real-Time Text2Video via CLIP-Guided, Pixel-Level Optimization": no video model, only
CLIP (optionally a second one, taking turns per step). The canvas starts as the meme itself, not noise;
frame 0 gets more steps; each next frame starts from an intermediate iterate of the previous one (the
paper's carry-over) plus a little noise, and is pulled toward the previous frame by a stability term
that the temperature weakens. The paper's CycleGAN "beautifier" has no published weights: left out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from engine.backends.clipguided.prompts import prompts_for
from engine.backends.clipguided.schedule import (
    NEGATIVE_WEIGHT,
    PRESETS,
    carry_step,
    noise_scale,
    prompt_schedule,
    stability_weight,
)  # fmt: skip
from engine.backends.video.resident import generation_size, resize_frames
from engine.config import GenerateSettings
from engine.geometry import output_size
from engine.runtime.gpu import free_memory, model_path, require_torch, torch_device, torch_dtype
from engine.runtime.models import ModelPool
from engine.types import CleanImage, Frames, ResolvedOptions, SceneInfo, Script

log = logging.getLogger(__name__)

StepProgress = Callable[[float], None]
"""Called with the fraction of the generate stage done, 0..1; may raise to stop the job."""


@dataclass(frozen=True)
class FrameReport:
    """One frame's pull and how far it got: CLIP similarity (the first model's) of the final frame."""

    now: int  # index into the prompts
    w_now: float
    next: int
    w_next: float
    similarity_now: float
    similarity_next: float
    first_loss: float
    last_loss: float
    seconds: float  # the optimisation's wall time for this frame


@dataclass(frozen=True)
class ClipReport:
    """What a run did, for the bench: the prompts, the meme's own similarity to each, and every frame's."""

    prompts: tuple[str, ...]
    meme_similarity: tuple[float, ...]  # the un-optimised meme (at the canvas size) to each prompt
    frames: tuple[FrameReport, ...]
    iterations: int  # Adam steps over the whole run
    canvas: tuple[int, int]  # (width, height) while optimising


def animate(
    settings: GenerateSettings, scorers: Sequence[Any], clean: CleanImage, prompts: Sequence[str],
    options: ResolvedOptions, progress: StepProgress | None = None,
) -> tuple[Frames, ClipReport]:  # fmt: skip
    """Optimise `options.frames` frames of the meme toward `prompts`; the frames at the output size, and a report."""
    import torch

    from engine.backends.clipguided.optimise import FrameRun, Pull, guide, noise, optimise_frame, seeded, similarities

    if options.frames < 1:
        raise ValueError(f"options.frames must be at least 1, got {options.frames}")
    if not prompts:
        raise ValueError("the clipguided backend needs at least one prompt, got none")
    # 1. the prompts, encoded by every model, and which of them pull on each frame
    preset = PRESETS[settings.clip_preset]
    guides = [guide(scorer, prompts, settings.clip_negative_prompt) for scorer in scorers]
    schedule = prompt_schedule(len(prompts), options.frames)
    stability, scale = stability_weight(settings.clip_temperature), noise_scale(settings.clip_temperature)

    # 2. the canvas: the clean meme at the preset's side (or clip_side), keeping its aspect
    height, width = clean.pixels.shape[:2]
    canvas_w, canvas_h = generation_size(width, height, settings.clip_side or preset.side, multiple=1)
    device = guides[0].scorer.device
    pixels = resize_frames(clean.pixels[None], canvas_w, canvas_h)[0]
    meme = torch.from_numpy(pixels).to(device=device, dtype=torch.float32).permute(2, 0, 1)[None] / 255.0
    generator = seeded(options.seed)

    # 3. frame by frame; progress after every step, which may raise to cancel
    total = preset.first_iterations + (options.frames - 1) * preset.iterations
    done = 0

    def step_done() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done / total)

    log.info(
        "clipguided: %d frames at %dx%d, %s preset, %d prompts: %r",
        options.frames, canvas_w, canvas_h, settings.clip_preset, len(prompts), list(prompts),
    )  # fmt: skip
    start, previous = meme, None
    finals, reports = [], []
    for index, weights in enumerate(schedule):
        began = time.perf_counter()
        iterations = preset.first_iterations if index == 0 else preset.iterations
        run = FrameRun(iterations, preset.crops, preset.lr, carry_step(preset, iterations))
        pull = Pull(weights, NEGATIVE_WEIGHT, stability, settings.clip_anchor)
        if index:
            start = (start + noise(start.shape, scale, generator, device)).clamp(0.0, 1.0)
        frame = optimise_frame(
            start, guides, pull, run, previous=previous, meme=meme, generator=generator, on_step=step_done
        )
        seconds = time.perf_counter() - began
        finals.append(frame.final)
        start, previous = frame.carry, frame.final
        scores = similarities(frame.final, guides[0])
        reports.append(FrameReport(
            weights.now, weights.w_now, weights.next, weights.w_next, scores[weights.now], scores[weights.next],
            frame.losses[0] if frame.losses else 0.0, frame.losses[-1] if frame.losses else 0.0, seconds,
        ))  # fmt: skip

    # 4. uint8 frames at the output size and the picture's aspect
    video = torch.cat(finals).permute(0, 2, 3, 1).mul(255.0).add(0.5).clamp(0, 255).to(torch.uint8).cpu().numpy()
    out_w, out_h = output_size(width, height, options.size)
    frames = Frames(
        frames=resize_frames(np.ascontiguousarray(video), out_w, out_h), fps=float(options.fps), motion="clipguided"
    )
    report = ClipReport(tuple(prompts), similarities(meme, guides[0]), tuple(reports), total, (canvas_w, canvas_h))
    return frames, report


class ClipGuided:
    """generate = "clipguided": CLIP pulls the meme's own pixels from one prompt to the next, frame by frame."""

    def __init__(self, settings: GenerateSettings, models: ModelPool) -> None:
        # Checked when the pipeline is built: a missing model stops `serve` at start with the
        # `hf download` sentence, instead of failing every job with a traceback.
        require_torch("clipguided generate backend")
        self.paths = [model_path(settings.clip_model, key="generate.clip_model")]
        if settings.clip_model2:
            self.paths.append(model_path(settings.clip_model2, key="generate.clip_model2"))
        self.settings = settings
        self.models = models
        self.last_report: ClipReport | None = None  # the latest run's similarities, for the bench

    def scorers(self) -> list[Any]:
        """The CLIP models, loaded once per pool on first use and shared after."""
        from engine.backends.clipguided.optimise import ClipScorer

        device = torch_device(self.models.runtime)
        dtype = torch_dtype(self.models.runtime, device)
        return [
            self.models.shared(("clip", path, str(device), str(dtype)), partial(ClipScorer.load, path, device, dtype))
            for path in self.paths
        ]

    def __call__(
        self, clean: CleanImage, scene: SceneInfo, script: Script, options: ResolvedOptions,
        progress: StepProgress | None = None,
    ) -> Frames:  # fmt: skip
        """The frames for the script's prompts, at the output size and the picture's aspect."""
        prompts = prompts_for(scene, script, options.prompt)
        try:
            frames, self.last_report = animate(self.settings, self.scorers(), clean, prompts, options, progress)
        except Exception as exc:
            if any(cls.__name__ == "OutOfMemoryError" for cls in type(exc).__mro__):
                log.warning("the clipguided models ran out of memory: %s", exc)
                free_memory()
            raise
        return frames
