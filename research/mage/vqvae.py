"""MAGE's first stage: a VQ-VAE that turns each frame into a small grid of codebook ids and back.

The paper trains a VQ-VAE with a learned codebook (codebook loss plus commitment loss). Here the codebook follows an
exponential moving average of the encodings assigned to it and unused vectors are restarted on encodings from the
batch: on a short CPU budget that keeps far more of a small codebook in use. Only the commitment loss is learned.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ResidualBlock(nn.Module):
    """3×3 then 1×1 convolution added back to its input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Same shape out as in."""
        return x + self.body(x)


class Codebook(nn.Module):
    """Nearest-vector quantizer whose vectors track a moving average of the encodings assigned to them."""

    def __init__(self, size: int, dim: int, *, decay: float = 0.99, restart_below: float = 1.0) -> None:
        super().__init__()
        self.size, self.dim, self.decay, self.restart_below = size, dim, decay, restart_below
        self.register_buffer("vectors", torch.randn(size, dim))
        # zero counts: every vector starts "unused", so the first update seeds them all from real encodings
        self.register_buffer("counts", torch.zeros(size))
        self.register_buffer("sums", torch.zeros(size, dim))

    def nearest(self, flat: Tensor) -> Tensor:
        """(N,) ids of the closest vector to each row of `flat` (N, dim)."""
        vectors: Tensor = self.vectors  # type: ignore[assignment]
        distances = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ vectors.t() + vectors.pow(2).sum(1)
        return distances.argmin(1)

    def lookup(self, ids: Tensor) -> Tensor:
        """The vectors of `ids`, shape (*ids.shape, dim)."""
        return F.embedding(ids, self.vectors)  # type: ignore[arg-type]

    @torch.no_grad()
    def update(self, flat: Tensor, ids: Tensor) -> None:
        """Move each vector towards the mean of its encodings; restart the unused ones on random encodings."""
        vectors: Tensor = self.vectors  # type: ignore[assignment]
        counts: Tensor = self.counts  # type: ignore[assignment]
        sums: Tensor = self.sums  # type: ignore[assignment]
        batch_counts = torch.bincount(ids, minlength=self.size).to(flat.dtype)
        batch_sums = torch.zeros_like(sums).index_add_(0, ids, flat)
        counts.mul_(self.decay).add_(batch_counts, alpha=1 - self.decay)
        sums.mul_(self.decay).add_(batch_sums, alpha=1 - self.decay)
        total = counts.sum()
        smoothed = (counts + 1e-5) / (total + self.size * 1e-5) * total  # Laplace smoothing keeps the division safe
        used = counts >= self.restart_below
        vectors[used] = sums[used] / smoothed[used].unsqueeze(1)
        dead = (~used).nonzero().squeeze(1)
        if len(dead):
            picks = flat[torch.randint(len(flat), (len(dead),), device=flat.device)]
            vectors[dead] = picks
            sums[dead] = picks * self.restart_below
            counts[dead] = self.restart_below


class VQVAE(nn.Module):
    """Frames (N, 3, H, W) in [0, 1] ↔ codebook ids (N, H/d, W/d), d = `downsample` (a power of two)."""

    def __init__(
        self,
        *,
        channels: int,
        code_dim: int,
        codebook_size: int,
        downsample: int,
        res_blocks: int = 1,
        commitment: float = 0.25,
        decay: float = 0.99,
    ) -> None:
        super().__init__()
        halvings = int(math.log2(downsample))
        if downsample < 2 or 2**halvings != downsample:
            raise ValueError(f"downsample must be a power of two ≥ 2, got {downsample}")
        self.downsample, self.commitment = downsample, commitment
        down: list[nn.Module] = [nn.Conv2d(3, channels, 4, stride=2, padding=1)]
        for _ in range(halvings - 1):
            down += [nn.ReLU(), nn.Conv2d(channels, channels, 4, stride=2, padding=1)]
        self.encoder = nn.Sequential(
            *down,
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            *[ResidualBlock(channels) for _ in range(res_blocks)],
            nn.ReLU(),
            nn.Conv2d(channels, code_dim, 1),
        )
        up: list[nn.Module] = []
        for _ in range(halvings - 1):
            up += [nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1), nn.ReLU()]
        self.decoder = nn.Sequential(
            nn.Conv2d(code_dim, channels, 3, padding=1),
            *[ResidualBlock(channels) for _ in range(res_blocks)],
            nn.ReLU(),
            *up,
            nn.ConvTranspose2d(channels, 3, 4, stride=2, padding=1),
        )
        self.codebook = Codebook(codebook_size, code_dim, decay=decay)

    def check_frames(self, frames: Tensor) -> None:
        """Raise if `frames` is not (N, 3, H, W) float with H and W divisible by the downsampling."""
        if frames.dim() != 4 or frames.shape[1] != 3 or not frames.is_floating_point():
            raise ValueError(f"frames must be a float tensor (N, 3, H, W), got {tuple(frames.shape)} {frames.dtype}")
        if frames.shape[2] % self.downsample or frames.shape[3] % self.downsample:
            raise ValueError(f"frames' height and width must divide by {self.downsample}, got {tuple(frames.shape)}")

    def encode(self, frames: Tensor) -> Tensor:
        """(N, h, w) int64 codebook ids of `frames`; never changes the codebook."""
        self.check_frames(frames)
        encodings = self.encoder(frames * 2 - 1)
        n, d, h, w = encodings.shape
        return self.codebook.nearest(encodings.permute(0, 2, 3, 1).reshape(-1, d)).view(n, h, w)

    def decode(self, ids: Tensor) -> Tensor:
        """(N, 3, H, W) frames in [0, 1] for codebook ids (N, h, w)."""
        if ids.dim() != 3 or ids.dtype != torch.long:
            raise ValueError(f"ids must be int64 (N, h, w), got {tuple(ids.shape)} {ids.dtype}")
        quantized = self.codebook.lookup(ids).permute(0, 3, 1, 2)
        return ((self.decoder(quantized) + 1) / 2).clamp(0, 1)

    def loss(self, frames: Tensor) -> dict[str, Tensor]:
        """Reconstruction + commitment loss of `frames`; in training mode the codebook moves towards the batch."""
        # 1. encode and quantize
        self.check_frames(frames)
        target = frames * 2 - 1
        encodings = self.encoder(target)
        n, d, h, w = encodings.shape
        flat = encodings.permute(0, 2, 3, 1).reshape(-1, d)
        ids = self.codebook.nearest(flat.detach())
        if self.training:
            self.codebook.update(flat.detach(), ids)
        quantized = self.codebook.lookup(ids)
        # 2. straight-through: the decoder's gradient reaches the encoder as if quantization were the identity
        commitment = F.mse_loss(flat, quantized.detach())
        passed = flat + (quantized - flat).detach()
        # 3. decode and compare
        reconstruction = F.mse_loss(self.decoder(passed.view(n, h, w, d).permute(0, 3, 1, 2)), target)
        usage = torch.bincount(ids, minlength=self.codebook.size).float() / len(ids)
        perplexity = torch.exp(-(usage * torch.log(usage + 1e-10)).sum())
        return {
            "loss": reconstruction + self.commitment * commitment,
            "reconstruction": reconstruction.detach(),
            "commitment": commitment.detach(),
            "perplexity": perplexity,
        }
