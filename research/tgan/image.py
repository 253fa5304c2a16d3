"""StackGAN stage I: conditioning augmentation, the text-conditioned image generator and the matching-aware critic.

Zhang et al. 2017, scaled down: the sentence embedding gives a Gaussian N(μ, σ²) from which the condition c is drawn
(kept near N(0, I) by a KL term); [c, z] is upsampled from 4×4 to the frame size; the discriminator scores an image
together with a compressed text code and is trained on (real, right text) → 1, (real, wrong text) → 0 and
(fake, right text) → 0. GroupNorm replaces BatchNorm in the generators, so a sample never depends on the rest of its
batch; the critics see one batch-wide feature, `batch_spread`, against mode collapse.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups that divide `channels`."""
    return nn.GroupNorm(math.gcd(channels, 8), channels)


def upsamplings(size: int) -> int:
    """How many doublings take 4×4 to `size`×`size`; raise unless `size` is 4·2^k with k ≥ 1."""
    steps = int(math.log2(size / 4)) if size >= 8 else 0
    if steps < 1 or 4 * 2**steps != size:
        raise ValueError(f"size must be 4·2^k pixels (8, 16, 32, 64, …), got {size}")
    return steps


def widths(width: int, steps: int) -> list[int]:
    """Channels at 4×4, 8×8, … up to full size: `width` at the top, doubling towards 4×4, capped at 8·width."""
    return [width * min(2 ** (steps - i), 8) for i in range(steps + 1)]


def batch_spread(features: Tensor) -> Tensor:
    """`features` (B, C, …) with one more channel: their standard deviation across the batch, averaged to one number."""
    # ProGAN's minibatch-stddev feature (Karras et al. 2018), in neither StackGAN nor VideoGAN: without it our small
    # GAN collapsed onto one video for every text within 500 steps; with it a batch of look-alikes is easy to reject.
    spread = features.std(0, unbiased=False).mean()
    return torch.cat([features, spread.expand(features.shape[0], 1, *features.shape[2:])], dim=1)


def kl_divergence(mu: Tensor, log_sigma: Tensor) -> Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) per dimension, averaged over batch and dimensions (StackGAN's scale)."""
    return 0.5 * (mu.pow(2) + torch.exp(2 * log_sigma) - 1 - 2 * log_sigma).mean()


class ConditioningAugmentation(nn.Module):
    """Sentence embedding (B, text_dim) to (c, μ, log σ), each (B, cond_dim), with c = μ + σ·ε."""

    def __init__(self, *, text_dim: int, cond_dim: int) -> None:
        super().__init__()
        self.cond_dim = cond_dim
        self.project = nn.Linear(text_dim, 2 * cond_dim)

    def forward(self, embedding: Tensor, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Draw the condition c; ε comes from `generator`."""
        mu, log_sigma = self.project(embedding).chunk(2, dim=1)
        noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(log_sigma) * noise, mu, log_sigma


class ImageGenerator(nn.Module):
    """[c, z] (B, cond_dim + noise_dim) to an image (B, 3, size, size) in [-1, 1]."""

    def __init__(self, *, cond_dim: int, noise_dim: int, size: int, width: int) -> None:
        super().__init__()
        channels = widths(width, upsamplings(size))
        self.top = channels[0]
        self.project = nn.Sequential(
            nn.Linear(cond_dim + noise_dim, channels[0] * 16, bias=False), nn.Unflatten(1, (channels[0], 4, 4))
        )
        self.start = nn.Sequential(group_norm(channels[0]), nn.ReLU())
        self.blocks = nn.Sequential(
            *(
                nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                    group_norm(c_out),
                    nn.ReLU(),
                )
                for c_in, c_out in zip(channels, channels[1:])
            )
        )
        self.to_rgb = nn.Conv2d(channels[-1], 3, 3, padding=1)

    def forward(self, condition: Tensor, noise: Tensor) -> Tensor:
        """The image for condition c and noise z."""
        # 1. [c, z] to a 4×4 map
        x = self.start(self.project(torch.cat([condition, noise], dim=1)))
        # 2. upsample to full size, then to RGB in [-1, 1]
        return torch.tanh(self.to_rgb(self.blocks(x)))


class ImageDiscriminator(nn.Module):
    """Matching-aware critic: an image (B, 3, size, size) in [-1, 1] and a sentence embedding to one logit each."""

    def __init__(self, *, size: int, width: int, text_dim: int, code_dim: int) -> None:
        super().__init__()
        channels = widths(width, upsamplings(size))[:0:-1]  # one per halving, from full size down to 4×4
        layers: list[nn.Module] = []
        for c_in, c_out in zip([3, *channels], channels):
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        self.trunk = nn.Sequential(*layers)
        self.code = nn.Sequential(nn.Linear(text_dim, code_dim), nn.LeakyReLU(0.2))
        self.joint = nn.Sequential(
            nn.Conv2d(channels[-1] + 1 + code_dim, channels[-1], 1), nn.LeakyReLU(0.2), nn.Conv2d(channels[-1], 1, 4)
        )

    def features(self, image: Tensor) -> Tensor:
        """The image's 4×4 feature map and the batch's spread, computed once and scored against several texts."""
        return batch_spread(self.trunk(image))

    def match(self, features: Tensor, embedding: Tensor) -> Tensor:
        """Logits (B,) that the images behind `features` are real and show the texts behind `embedding`."""
        code = self.code(embedding)[:, :, None, None].expand(-1, -1, *features.shape[2:])
        return self.joint(torch.cat([features, code], dim=1)).flatten()
