"""MAGE's generator: axial attention over (time, height, width) predicting the next frame's codebook ids.

As in the paper, the motion anchor takes time step 0 and the frames given so far follow it; blocks attend along time
(causally), then height, then width, in turn, each followed by an MLP. The output at a frame's position holds the
logits of every token of the next frame, so training runs all frames at once (teacher forcing) and sampling adds one
whole frame per pass. Height and width positions are learned embeddings added with the tokens; time positions are
added here, the motion anchor's included.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

AXES = ("time", "height", "width")


class TokenEmbedding(nn.Module):
    """Codebook ids (B, T, h, w) to features (B, T, h, w, width): embedded, mixed by a 3×3 conv per frame, placed."""

    def __init__(self, *, codebook_size: int, width: int, grid: int) -> None:
        super().__init__()
        self.codebook_size, self.grid = codebook_size, grid
        self.embedding = nn.Embedding(codebook_size, width)
        self.mix = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.rows = nn.Parameter(torch.randn(grid, 1, width) * width**-0.5)
        self.columns = nn.Parameter(torch.randn(1, grid, width) * width**-0.5)

    def forward(self, ids: Tensor) -> Tensor:
        """Features of every token of every frame, with row and column positions added."""
        if ids.dim() != 4 or ids.dtype != torch.long or ids.shape[-2:] != (self.grid, self.grid):
            raise ValueError(f"ids must be int64 (B, T, {self.grid}, {self.grid}), got {tuple(ids.shape)} {ids.dtype}")
        b, t, h, w = ids.shape
        x = self.embedding(ids).view(b * t, h, w, -1).permute(0, 3, 1, 2)
        x = self.mix(x).permute(0, 2, 3, 1).reshape(b, t, h, w, -1)
        return x + self.rows + self.columns


class AxialBlock(nn.Module):
    """Pre-norm self-attention along one axis of (B, T, h, w, width), causal along time, then an MLP."""

    def __init__(self, *, width: int, heads: int, axis: str, dropout: float) -> None:
        super().__init__()
        if axis not in AXES:
            raise ValueError(f"axis must be one of {AXES}, got {axis!r}")
        if width % heads:
            raise ValueError(f"width must divide by heads, got width={width}, heads={heads}")
        self.heads, self.axis, self.dim = heads, axis, 1 + AXES.index(axis)
        self.norm_attention, self.norm_mlp = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.dropout = nn.Dropout(dropout)

    def attend(self, x: Tensor) -> Tensor:
        """Self-attention among the positions of `x` that differ only along this block's axis."""
        moved = x.movedim(self.dim, 3)  # (B, a, b, n, C): the attended axis next to the channels
        shape = moved.shape
        sequences = moved.reshape(-1, shape[3], shape[4])
        q, k, v = self.qkv(sequences).view(len(sequences), shape[3], 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        read = F.scaled_dot_product_attention(q, k, v, is_causal=self.axis == "time")
        read = self.out(read.transpose(1, 2).reshape(shape))
        return read.movedim(3, self.dim)

    def forward(self, x: Tensor) -> Tensor:
        """Same shape out as in."""
        x = x + self.dropout(self.attend(self.norm_attention(x)))
        return x + self.dropout(self.mlp(self.norm_mlp(x)))


class AxialTransformer(nn.Module):
    """Logits (B, T, h, w, K) of frame t + 1's ids from the motion anchor and frames 0..t, for every t < T."""

    def __init__(
        self, *, width: int, heads: int, layers: int, codebook_size: int, max_frames: int, dropout: float
    ) -> None:
        super().__init__()
        self.max_frames = max_frames
        # step 0 is the motion anchor, steps 1.. the frames; the last frame is never an input
        self.times = nn.Parameter(torch.randn(max_frames, 1, 1, width) * width**-0.5)
        self.blocks = nn.ModuleList(
            AxialBlock(width=width, heads=heads, axis=AXES[i % 3], dropout=dropout) for i in range(layers)
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, codebook_size)

    def forward(self, frames: Tensor, anchor: Tensor) -> Tensor:
        """Next-frame logits for each of `frames` (B, T, h, w, width) given the `anchor` (B, width, h, w)."""
        # 1. check the inputs fit together
        if frames.dim() != 5 or anchor.dim() != 4:
            raise ValueError(f"frames must be (B, T, h, w, C), anchor (B, C, h, w); got {frames.shape}, {anchor.shape}")
        if anchor.permute(0, 2, 3, 1).shape != frames[:, 0].shape:
            raise ValueError(f"anchor {tuple(anchor.shape)} does not match the frames {tuple(frames.shape)}")
        if frames.shape[1] >= self.max_frames:
            raise ValueError(f"at most {self.max_frames - 1} input frames, got {frames.shape[1]}")
        # 2. the anchor leads the sequence in time; every step gets its time position
        x = torch.cat([anchor.permute(0, 2, 3, 1).unsqueeze(1), frames], dim=1)
        x = x + self.times[: x.shape[1]]
        # 3. axial blocks: time (causal), height, width, ...
        for block in self.blocks:
            x = block(x)
        # 4. each frame's position predicts the next frame
        return self.head(self.norm(x[:, 1:]))
