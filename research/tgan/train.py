"""Training the text-to-video GAN: first the text encoder alone, then alternating critic and generator steps.

Phase 1 (`config.text_steps`) fits the sentence encoder to its own objective, as StackGAN pre-trains its text
embedding apart from the GAN; phase 2 then trains the image stage and the video stage together, every step: one
Adam step of both critics, then one of both generators (Adam with β1 = 0.5, as DCGAN-style GANs use).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import Tensor

from research.tgan.model import Tgan

log = logging.getLogger(__name__)


def train_tgan(
    model: Tgan,
    videos: Tensor,
    texts: Tensor,
    *,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    critic_lr: float | None = None,
    progress: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, list[float]]:
    """Train `model` on `videos` (N, T, 3, H, W) in [0, 1] and `texts` (N, L); per-step losses by name.

    The generators learn at `lr` and the critics at `critic_lr` (default the same; faster critics are the
    two-timescale rule of Heusel et al. 2017).
    """
    # 1. check inputs
    model.check_videos(videos)
    model.text_encoder.check_text(texts)
    if videos.shape[0] != texts.shape[0]:
        raise ValueError(f"videos and texts must hold the same clips, got {videos.shape[0]} and {texts.shape[0]}")
    if not 2 <= batch <= videos.shape[0]:
        raise ValueError(f"batch must lie in [2, {videos.shape[0]}] (the clips given), got {batch}")
    critic_lr = lr if critic_lr is None else critic_lr
    if steps < 0 or lr <= 0 or critic_lr <= 0:
        raise ValueError(f"steps must be ≥ 0 and lr, critic_lr > 0, got steps={steps}, lr={lr}, critic_lr={critic_lr}")
    model.train()
    device = model.device
    generator = torch.Generator(device=device).manual_seed(seed)
    picker = torch.Generator().manual_seed(seed)
    history: dict[str, list[float]] = {"text": []}

    # 2. phase 1: the text encoder spells its texts back
    encoder_optimizer = torch.optim.Adam(model.text_encoder.parameters(), lr=model.config.text_lr)
    for _ in range(model.config.text_steps):
        rows = torch.randperm(texts.shape[0], generator=picker)[:batch]
        loss = model.text_encoder.reconstruction_loss(texts[rows].to(device))
        encoder_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        encoder_optimizer.step()
        history["text"].append(float(loss.detach()))
    if history["text"]:
        log.info(
            "text encoder: %d steps, loss %.3f → %.3f", len(history["text"]), history["text"][0], history["text"][-1]
        )

    # 3. phase 2: alternate critic and generator steps on random batches
    d_optimizer = torch.optim.Adam(model.discriminator_parameters(), lr=critic_lr, betas=(0.5, 0.999))
    g_optimizer = torch.optim.Adam(model.generator_parameters(), lr=lr, betas=(0.5, 0.999))
    critics = torch.nn.ModuleList([model.image_discriminator, model.video_discriminator])
    for step in range(steps):
        rows = torch.randperm(videos.shape[0], generator=picker)[:batch]
        real, text = videos[rows].to(device), texts[rows].to(device)
        fakes = model.sample(text, generator=generator)
        # 3a. critics, on the fakes cut from the generators' graph
        d_losses = model.discriminator_losses(real, text, fakes.detached())
        d_optimizer.zero_grad(set_to_none=True)
        d_losses["total"].backward()
        d_optimizer.step()
        # 3b. generators, against the critics just updated (held still: no gradients for their weights)
        critics.requires_grad_(False)
        g_losses = model.generator_losses(text, fakes)
        g_optimizer.zero_grad(set_to_none=True)
        g_losses["total"].backward()
        g_optimizer.step()
        critics.requires_grad_(True)
        # 3c. record
        values = {"d": float(d_losses["total"].detach()), "g": float(g_losses["total"].detach())}
        values |= {f"d_{name}": float(v.detach()) for name, v in d_losses.items() if name != "total"}
        values |= {f"g_{name}": float(v.detach()) for name, v in g_losses.items() if name != "total"}
        for name, value in values.items():
            history.setdefault(name, []).append(value)
        if progress is not None:
            progress(step, values)
    return history
