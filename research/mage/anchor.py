"""The motion anchor (MA) and the implicit randomness injected into it.

MA: every position of the first frame's appearance features asks the words what happens there (cross-attention with
the visual positions as queries and the words as keys and values), so the map stores appearance and motion aligned.
The text is the explicit condition. The paper also embeds scalar explicit conditions (the speed of CATER's motions)
and adds them to the MA; our generated data carries no such scalar, so that part is left out.

Implicit randomness: a spatial latent z (B, z, h, w). While training, z is drawn from a posterior over the real
video's token features (3D convolutions, then the time axis pooled away) and a KL term pulls that posterior towards
N(0, I); when sampling, z comes from N(0, I). The paper modulates the MA with AdaIN driven by z (instance-normalising
the MA, then a scale and shift from z); here the scale and shift act on the MA without instance normalisation
(MA · (1 + γ(z)) + β(z)), because normalising each channel over the map would erase any text feature that is
constant over positions, and (1 + γ) starts the modulation at the identity. The paper collapses time with four
time-strided 3D residual blocks; here two 3D convolutions and a mean over time, which works for any clip length.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class CrossAttentionBlock(nn.Module):
    """Pre-norm cross-attention from visual positions to words, then an MLP, both residual."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm_query, self.norm_words = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries: Tensor, words: Tensor, mask: Tensor) -> Tensor:
        """(B, N, width) queries updated with what they read from the words (B, L, width); mask True = word."""
        words = self.norm_words(words)
        read, _ = self.attention(self.norm_query(queries), words, words, key_padding_mask=~mask, need_weights=False)
        x = queries + self.dropout(read)
        return x + self.dropout(self.mlp(self.norm_mlp(x)))


class MotionAnchor(nn.Module):
    """The MA map (B, width, h, w) from the first frame's features and the word features."""

    def __init__(self, *, width: int, heads: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(CrossAttentionBlock(width, heads, dropout) for _ in range(layers))

    def forward(self, appearance: Tensor, words: Tensor, mask: Tensor) -> Tensor:
        """Align `appearance` (B, h, w, width) with `words` (B, L, width) where `mask` (B, L) is True."""
        if appearance.dim() != 4 or words.dim() != 3 or appearance.shape[-1] != words.shape[-1]:
            raise ValueError(f"appearance must be (B, h, w, C), words (B, L, C); got {appearance.shape}, {words.shape}")
        b, h, w, c = appearance.shape
        x = appearance.reshape(b, h * w, c)
        for block in self.blocks:
            x = block(x, words, mask)
        return x.view(b, h, w, c).permute(0, 3, 1, 2)


class VideoPosterior(nn.Module):
    """q(z | video): mean and log-variance (B, z, h, w) of the latent from the video's token features."""

    def __init__(self, *, width: int, z_channels: int) -> None:
        super().__init__()
        hidden = width // 2
        self.body = nn.Sequential(
            nn.Conv3d(width, hidden, 3, padding=1),
            nn.GELU(),
            nn.Conv3d(hidden, hidden, 3, padding=1),
            nn.GELU(),
        )
        self.head = nn.Conv2d(hidden, 2 * z_channels, 3, padding=1)

    def forward(self, video: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, logvar) for `video` features (B, T, h, w, width)."""
        if video.dim() != 5:
            raise ValueError(f"video features must be (B, T, h, w, C), got {tuple(video.shape)}")
        features = self.body(video.permute(0, 4, 1, 2, 3)).mean(2)
        mean, logvar = self.head(features).chunk(2, dim=1)
        return mean, logvar


class ImplicitRandomness(nn.Module):
    """Modulates the MA with a scale and a shift computed from the latent z."""

    def __init__(self, *, width: int, z_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(z_channels, width, 3, padding=1), nn.GELU())
        self.scale_shift = nn.Conv2d(width, 2 * width, 1)

    def forward(self, anchor: Tensor, z: Tensor) -> Tensor:
        """`anchor` (B, width, h, w) · (1 + γ(z)) + β(z) for `z` (B, z, h, w)."""
        if z.shape[0] != anchor.shape[0] or z.shape[-2:] != anchor.shape[-2:]:
            raise ValueError(f"z must be (B, z, h, w) matching the anchor {tuple(anchor.shape)}, got {tuple(z.shape)}")
        scale, shift = self.scale_shift(self.body(z)).chunk(2, dim=1)
        return anchor * (1 + scale) + shift


def sample_gaussian(mean: Tensor, logvar: Tensor) -> Tensor:
    """A reparameterised draw from N(mean, exp(logvar)); the noise comes from torch's global generator."""
    return mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)


def kl_to_standard_normal(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) ‖ N(0, I)), summed over the latent and averaged over the batch."""
    per_sample = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).flatten(1).sum(1)
    return per_sample.mean()
