"""The clipguided backend's optimiser: a frozen CLIP scores augmented views of a canvas, Adam moves its pixels.

Everything on the image side stays in torch so gradients reach the pixels: the views are cut with
one `grid_sample` per step (a random perspective warp composed with a random square crop, resized to
the model's input size; torchvision is not a dependency), and normalised with the model's own mean
and std. CLIPImageProcessor would go through PIL and cut the gradient.

Loss per step over K views: - w_now cos(view, prompt_now) - w_next cos(view, prompt_next)
+ negative cos(view, negative prompt) + stability L1(canvas, previous frame) + anchor L1(canvas, meme).
The anchor term is ours, not the paper's: it keeps a meme's subject itself while CLIP pulls on it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from engine.backends.clipguided.schedule import PromptWeights

# CLIP's own normalisation, for a model folder whose preprocessor_config.json does not say
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CROP_AREA = (0.6, 0.95)  # a view covers this share of the canvas's area (a square, capped by the shorter side)
PERSPECTIVE = 0.25  # the largest projective term: a view's far edge shrinks to about 1/1.25 of its near edge
SHEAR = 0.1  # the largest shear of a view


class ClipScorer:
    """One frozen CLIP model in eval mode: unit text embeddings, and differentiable unit image embeddings."""

    def __init__(self, model: Any, tokenizer: Any, mean: Sequence[float], std: Sequence[float]) -> None:
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.device: torch.device = next(model.parameters()).device
        self.dtype: torch.dtype = next(model.parameters()).dtype
        self.image_size = int(model.config.vision_config.image_size)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)

    @classmethod
    def load(cls, path: str, device: torch.device, dtype: torch.dtype) -> ClipScorer:
        """The CLIPModel, its tokenizer and its normalisation from the folder `path`, on `device` in `dtype`."""
        from transformers import CLIPModel, CLIPTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        model: Any = CLIPModel.from_pretrained(path, dtype=dtype, local_files_only=True)
        tokenizer = CLIPTokenizer.from_pretrained(path, local_files_only=True)
        mean, std = normalisation(path)
        return cls(model.to(device), tokenizer, mean, std)

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """(len(texts), D) unit embeddings, float32, without gradients."""
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt").to(self.device)
        with torch.no_grad():
            features = pooled(self.model.get_text_features(**tokens))
        return F.normalize(features.float(), dim=-1)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """(K, D) unit embeddings, float32, of (K, 3, S, S) images in 0..1; gradients flow back to `images`."""
        pixels = ((images - self.mean) / self.std).to(self.dtype)
        return F.normalize(pooled(self.model.get_image_features(pixel_values=pixels)).float(), dim=-1)


def pooled(output: Any) -> torch.Tensor:
    """The projected embedding from get_*_features: a tensor before transformers 5, `.pooler_output` since."""
    if isinstance(output, torch.Tensor):
        return output
    features: torch.Tensor = output.pooler_output
    return features


def normalisation(path: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The image mean and std from the folder's preprocessor_config.json, or CLIP's own when it has none."""
    config = Path(path) / "preprocessor_config.json"
    try:
        values = json.loads(config.read_text("utf-8"))
    except (OSError, ValueError):
        return CLIP_MEAN, CLIP_STD
    mean, std = values.get("image_mean"), values.get("image_std")
    if not (isinstance(mean, list) and isinstance(std, list) and len(mean) == len(std) == 3):
        return CLIP_MEAN, CLIP_STD
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


@dataclass(frozen=True)
class Guide:
    """One scorer with the job's prompts encoded by it (each CLIP has its own embedding space)."""

    scorer: ClipScorer
    prompts: torch.Tensor  # (P, D) unit
    negative: torch.Tensor | None  # (D,) unit, or None without a negative prompt


def guide(scorer: ClipScorer, prompts: Sequence[str], negative: str) -> Guide:
    """The prompts (and the negative prompt, if any) encoded by `scorer`."""
    if not prompts:
        raise ValueError("guide needs at least one prompt, got none")
    return Guide(scorer, scorer.encode_texts(prompts), scorer.encode_texts([negative])[0] if negative else None)


@dataclass(frozen=True)
class Pull:
    """The weights of one frame's loss terms."""

    prompts: PromptWeights
    negative: float
    stability: float
    anchor: float


def augment(canvas: torch.Tensor, count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """`count` random views (perspective warp of a random square crop) of a (1, 3, H, W) canvas, each size x size.

    The random numbers come from the CPU `generator`, so a seed gives the same views on any device.
    """
    _, _, height, width = canvas.shape
    draws = torch.rand(count, 7, generator=generator, dtype=torch.float64)
    area = CROP_AREA[0] + (CROP_AREA[1] - CROP_AREA[0]) * draws[:, 0]
    side = torch.clamp(torch.sqrt(area * height * width), max=min(height, width))  # px, square in pixels
    half_x, half_y = side / width, side / height  # half-extents in grid units (the canvas spans -1..1)
    centre_x = (2 * draws[:, 1] - 1) * (1 - half_x)
    centre_y = (2 * draws[:, 2] - 1) * (1 - half_y)
    tilt_x, tilt_y = (2 * draws[:, 3:5] - 1).unbind(1)
    shear_x, shear_y = (2 * draws[:, 5:7] - 1).unbind(1)

    def column(values: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return (values * scale).to(device=canvas.device, dtype=torch.float32).view(count, 1, 1)

    ticks = torch.linspace(-1 + 1 / size, 1 - 1 / size, size, device=canvas.device)  # pixel centres
    v, u = torch.meshgrid(ticks, ticks, indexing="ij")
    depth = 1 + column(tilt_x, PERSPECTIVE) * u + column(tilt_y, PERSPECTIVE) * v
    warped_u = (u + column(shear_x, SHEAR) * v) / depth
    warped_v = (v + column(shear_y, SHEAR) * u) / depth
    grid = torch.stack(
        (column(centre_x) + column(half_x) * warped_u, column(centre_y) + column(half_y) * warped_v), dim=-1
    )
    # the warp may reach past the canvas's edge: mirrored pixels there, not black borders CLIP would read
    return F.grid_sample(
        canvas.expand(count, -1, -1, -1), grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )


def centre_view(canvas: torch.Tensor, size: int) -> torch.Tensor:
    """The canvas as CLIP's processor shows it: the centred square, resized to size x size (no randomness)."""
    _, _, height, width = canvas.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = canvas[:, :, top : top + side, left : left + side]
    return F.interpolate(square, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def frame_loss(
    canvas: torch.Tensor, guide: Guide, pull: Pull, crops: int, previous: torch.Tensor | None,
    meme: torch.Tensor, generator: torch.Generator,
) -> torch.Tensor:  # fmt: skip
    """One step's loss for a (1, 3, H, W) canvas in 0..1 (the module's docstring has the terms)."""
    views = augment(canvas, crops, guide.scorer.image_size, generator)
    embeddings = guide.scorer.encode_images(views)  # (K, D)
    similarity = (embeddings @ guide.prompts.T).mean(dim=0)  # (P,): the mean over the views
    weights = pull.prompts
    loss = -weights.w_now * similarity[weights.now] - weights.w_next * similarity[weights.next]
    if guide.negative is not None and pull.negative:
        loss = loss + pull.negative * (embeddings @ guide.negative).mean()
    if previous is not None and pull.stability:
        loss = loss + pull.stability * (canvas - previous).abs().mean()
    if pull.anchor:
        loss = loss + pull.anchor * (canvas - meme).abs().mean()
    return loss


@dataclass(frozen=True)
class FrameRun:
    """How one frame is optimised."""

    iterations: int
    crops: int
    lr: float
    carry_at: int  # after this many steps the iterate is kept as the next frame's start (0: the start itself)


@dataclass(frozen=True)
class Optimised:
    """One optimised frame: the final canvas, the iterate the next frame starts from, and the loss per step."""

    final: torch.Tensor  # (1, 3, H, W) in 0..1, detached
    carry: torch.Tensor  # (1, 3, H, W) in 0..1, detached
    losses: tuple[float, ...]


def optimise_frame(
    start: torch.Tensor, guides: Sequence[Guide], pull: Pull, run: FrameRun, *, previous: torch.Tensor | None,
    meme: torch.Tensor, generator: torch.Generator, on_step: Callable[[], None] | None = None,
) -> Optimised:  # fmt: skip
    """Adam on the raw pixels from `start`, clamped to 0..1 after each step; the guides take turns per step.

    `on_step` runs after every step and may raise to stop.
    """
    if not 0 <= run.carry_at <= run.iterations:
        raise ValueError(f"carry_at must be in 0..{run.iterations} (the frame's iterations), got {run.carry_at}")
    canvas = start.detach().clone().requires_grad_(True)
    optimiser = torch.optim.Adam([canvas], lr=run.lr)
    carry = canvas.detach().clone()
    losses: list[float] = []
    for step in range(run.iterations):
        optimiser.zero_grad(set_to_none=True)
        with torch.enable_grad():  # a caller under no_grad would otherwise leave the pixels without a gradient
            loss = frame_loss(canvas, guides[step % len(guides)], pull, run.crops, previous, meme, generator)
            loss.backward()
        optimiser.step()
        with torch.no_grad():
            canvas.clamp_(0.0, 1.0)
        losses.append(float(loss.detach()))
        if step + 1 == run.carry_at:
            carry = canvas.detach().clone()
        if on_step is not None:
            on_step()
    return Optimised(final=canvas.detach(), carry=carry, losses=tuple(losses))


def similarities(canvas: torch.Tensor, guide: Guide) -> tuple[float, ...]:
    """The cosine similarity of the canvas's centre view to each of the guide's prompts."""
    with torch.no_grad():
        embedding = guide.scorer.encode_images(centre_view(canvas, guide.scorer.image_size))[0]
        return tuple(float(value) for value in guide.prompts @ embedding)


def seeded(seed: int) -> torch.Generator:
    """A CPU generator: the same seed gives the same views and noise on any device."""
    return torch.Generator(device="cpu").manual_seed(seed)


def noise(shape: Sequence[int], scale: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Gaussian noise of standard deviation `scale`, drawn on the CPU from `generator`, moved to `device`."""
    if scale <= 0:
        return torch.zeros(tuple(shape), device=device)
    return (torch.randn(tuple(shape), generator=generator) * scale).to(device)
