"""The clipguided backend's schedule and presets: which prompts pull on each frame, how hard, for how long.

Pure arithmetic, no torch, so the schedule can be tested and reasoned about on its own. The paper
("Towards Real-Time Text2Video via CLIP-Guided, Pixel-Level Optimization") gives each of P prompts
F = N / P of the N frames; over a prompt's frames its weight falls as w_now = 1 - f/F while the next
prompt's rises as w_next = f/F, so every prompt pulls on 2F frames (rising over the F before its own,
falling over its own). The next prompt after the last is the first: the loop closes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

NEGATIVE_WEIGHT = 0.3  # the negative prompt's weight, as CLIPDraw (the paper's starting point) weighs its negatives
MAX_NOISE = 0.02  # the noise's standard deviation at temperature 100, in pixel units (0..1): about 5/255


@dataclass(frozen=True)
class PromptWeights:
    """The two prompts that pull on one frame, by index into the prompts, and their weights (summing to 1)."""

    now: int
    w_now: float
    next: int
    w_next: float


@dataclass(frozen=True)
class Preset:
    """How hard the optimiser works per frame: one of the paper's speed/quality trade-offs."""

    iterations: int  # Adam steps per frame after the first
    first_iterations: int  # Adam steps on frame 0, which has the furthest to go from the meme
    crops: int  # K augmented crops per step
    lr: float  # Adam's step size on the raw pixels (0..1)
    side: int  # px: the canvas's longer side while optimising
    carry_over: float  # the next frame starts from the iterate this far (0..1) through this frame's steps


# Our own numbers, not the paper's (its tables were not to hand): "fast" is sized for about 1-2 frames/s
# with B/32 on a single GPU at CLIP's own 224 px (8 steps x 4 crops), "quality" for a 336 px canvas that
# CLIP sees through 8 crops for 3x the steps at half the step size, so each step moves less.
PRESETS = {
    "fast": Preset(iterations=8, first_iterations=32, crops=4, lr=0.02, side=224, carry_over=0.5),
    "quality": Preset(iterations=24, first_iterations=96, crops=8, lr=0.01, side=336, carry_over=0.5),
}


def prompt_schedule(prompts: int, frames: int) -> tuple[PromptWeights, ...]:
    """Per frame, the current and the next prompt and their weights; the last frames steer back to the first."""
    if prompts < 1:
        raise ValueError(f"prompt_schedule needs at least one prompt, got {prompts}")
    if frames < 1:
        raise ValueError(f"prompt_schedule needs at least one frame, got {frames}")
    per_prompt = frames / prompts  # F; need not be whole
    schedule = []
    for frame in range(frames):
        position = frame / per_prompt
        now = min(math.floor(position), prompts - 1)  # guards float round-off on the last frame
        rising = position - now  # f / F
        schedule.append(PromptWeights(now=now, w_now=1.0 - rising, next=(now + 1) % prompts, w_next=rising))
    return tuple(schedule)


def stability_weight(temperature: float) -> float:
    """The weight of the L1 pull toward the previous frame: the paper's 4 - 4T/100 (4 when cold, 0 when hot)."""
    _check_temperature(temperature)
    return 4.0 - 4.0 * temperature / 100.0


def noise_scale(temperature: float) -> float:
    """The standard deviation of the Gaussian noise added to a frame's start, in pixel units: T/100 x 0.02."""
    _check_temperature(temperature)
    return MAX_NOISE * temperature / 100.0


def carry_step(preset: Preset, iterations: int) -> int:
    """After how many of a frame's `iterations` its iterate is kept as the next frame's start."""
    return min(iterations, max(0, round(preset.carry_over * iterations)))


def _check_temperature(temperature: float) -> None:
    if not 0.0 <= temperature <= 100.0:
        raise ValueError(f"temperature must be in 0..100, got {temperature}")
