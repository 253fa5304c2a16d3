"""MAGE's two training stages as plain seeded loops: the VQ-VAE on frames, then the rest on its frozen tokens."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from research.mage.model import Mage

log = logging.getLogger(__name__)

Progress = Callable[[int, float], None]  # (step, loss) after every step


def as_tensor(array: np.ndarray | Tensor, name: str, dtype: torch.dtype) -> Tensor:
    """A CPU tensor of `dtype` sharing memory with `array` where it can."""
    tensor = torch.as_tensor(array)
    if tensor.dtype != dtype:
        raise ValueError(f"{name} must be {dtype}, got {tensor.dtype}")
    return tensor


def cosine_with_warmup(step: int, steps: int) -> float:
    """Learning-rate factor: linear warm-up over the first 5 % of steps, then cosine down to 10 %."""
    warmup = max(1, steps // 20)
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.1 + 0.45 * (1 + math.cos(math.pi * progress))


def _optimise(
    parameters: list[torch.nn.Parameter],
    loss_of: Callable[[Tensor], Tensor],
    count: int,
    *,
    steps: int,
    batch: int,
    lr: float,
    weight_decay: float,
    seed: int,
    clip_norm: float | None = None,
    progress: Progress | None = None,
) -> list[float]:
    """AdamW with warm-up and cosine decay on random batches of `count` items; every step's loss.

    The global generator drives codebook restarts, dropout and the posterior's noise: it is forked and seeded here,
    so runs repeat and the caller's random state stays as it was.
    """
    losses: list[float] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        picker = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: cosine_with_warmup(step, steps))
        for step in range(steps):
            loss = loss_of(torch.randint(count, (batch,), generator=picker))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(parameters, clip_norm)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            if progress is not None:
                progress(step, losses[-1])
    return losses


def train_vqvae(
    model: Mage,
    videos: np.ndarray | Tensor,
    *,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    progress: Progress | None = None,
) -> list[float]:
    """Train the VQ-VAE on random frames of `videos` (N, T, 3, S, S) in [0, 1], then freeze it; every step's loss."""
    # 1. check inputs
    frames = as_tensor(videos, "videos", torch.float32)
    model.check_video(frames, "videos")
    if steps < 1 or batch < 1:
        raise ValueError(f"steps and batch must be ≥ 1, got steps={steps}, batch={batch}")
    frames = frames.flatten(0, 1)
    device = next(model.parameters()).device
    # 2. optimise the VQ-VAE alone (thawed, in case it was frozen by an earlier run)
    model.vqvae.train()
    model.vqvae.requires_grad_(True)
    losses = _optimise(
        list(model.vqvae.parameters()),
        lambda picks: model.vqvae.loss(frames[picks].to(device))["loss"],
        len(frames),
        steps=steps, batch=batch, lr=lr, weight_decay=0.0, seed=seed, progress=progress,
    )  # fmt: skip
    # 3. frozen from here on
    model.vqvae.eval()
    model.vqvae.requires_grad_(False)
    log.info("vqvae trained: %d steps, loss %.4f → %.4f", steps, losses[0], losses[-1])
    return losses


@torch.no_grad()
def tokenize_all(model: Mage, videos: Tensor, chunk: int = 64) -> Tensor:
    """(N, T, grid, grid) ids of every clip, a chunk of clips at a time."""
    device = next(model.parameters()).device
    return torch.cat([model.tokenize(videos[i : i + chunk].to(device)).cpu() for i in range(0, len(videos), chunk)])


def train_mage(
    model: Mage,
    videos: np.ndarray | Tensor,
    texts: np.ndarray | Tensor,
    *,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    progress: Progress | None = None,
) -> list[float]:
    """Train all but the frozen VQ-VAE on `videos` (N, T, 3, S, S) and `texts` (N, L); the losses (ends in eval)."""
    # 1. check inputs
    clips = as_tensor(videos, "videos", torch.float32)
    words = as_tensor(texts, "texts", torch.int64)
    model.check_video(clips, "videos")
    if words.dim() != 2 or len(words) != len(clips):
        raise ValueError(f"texts must be (N={len(clips)}, L) ids, got {tuple(words.shape)}")
    model.text_encoder.check_text(words)
    if steps < 1 or batch < 1:
        raise ValueError(f"steps and batch must be ≥ 1, got steps={steps}, batch={batch}")
    device = next(model.parameters()).device
    # 2. the frozen VQ-VAE tokenizes every clip once
    model.vqvae.eval()
    model.vqvae.requires_grad_(False)
    ids = tokenize_all(model, clips)
    # 3. optimise text encoder, motion anchor, randomness and transformer
    model.train()
    model.vqvae.eval()
    losses = _optimise(
        model.generator_parameters(),
        lambda picks: model.token_loss(ids[picks].to(device), words[picks].to(device))["loss"],
        len(ids),
        steps=steps, batch=batch, lr=lr, weight_decay=0.01, seed=seed, clip_norm=1.0, progress=progress,
    )  # fmt: skip
    model.eval()
    log.info("mage trained: %d steps, loss %.4f → %.4f", steps, losses[0], losses[-1])
    return losses
