"""MAGE's text encoder: word ids to contextual word features, a sentence feature and the padding mask.

As in the paper's code, a small transformer encoder over learned word and position embeddings (trained from scratch,
no pretrained language model); padding (id 0) is masked out of the attention.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

PAD = 0


@dataclass(frozen=True)
class TextFeatures:
    """What the text encoder hands on: per-word features, one sentence vector, and which positions are words."""

    words: Tensor  # (B, L, width)
    sentence: Tensor  # (B, width): the mean of the word features over the words
    mask: Tensor  # (B, L) bool, True where there is a word (not padding)


class TextEncoder(nn.Module):
    """Word ids (B, L), 0 = padding, through a transformer encoder to `TextFeatures`."""

    def __init__(
        self, *, vocab_size: int, width: int, layers: int, heads: int, max_length: int, dropout: float
    ) -> None:
        super().__init__()
        self.vocab_size, self.max_length = vocab_size, max_length
        self.words = nn.Embedding(vocab_size, width, padding_idx=PAD)
        self.positions = nn.Embedding(max_length, width)
        layer = nn.TransformerEncoderLayer(
            width,
            heads,
            dim_feedforward=4 * width,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)

    def check_text(self, text: Tensor) -> None:
        """Raise unless `text` is int64 (B, L ≤ max_length) of ids below the vocabulary size, each row with a word."""
        if text.dim() != 2 or text.dtype != torch.long:
            raise ValueError(f"text must be int64 ids (B, L), got {tuple(text.shape)} {text.dtype}")
        if text.shape[1] > self.max_length:
            raise ValueError(f"text must have at most {self.max_length} ids per row, got {text.shape[1]}")
        if text.numel() and (int(text.min()) < 0 or int(text.max()) >= self.vocab_size):
            raise ValueError(f"text ids must lie in [0, {self.vocab_size}), got [{int(text.min())}, {int(text.max())}]")
        if bool((text == PAD).all(1).any()):
            raise ValueError("text has a row that is all padding (id 0); every text needs at least one word")

    def forward(self, text: Tensor) -> TextFeatures:
        """Contextual features of every word, the sentence feature and the word mask."""
        # 1. embed words and positions
        self.check_text(text)
        mask = text != PAD
        positions = torch.arange(text.shape[1], device=text.device)
        x = self.words(text) + self.positions(positions)
        # 2. contextualise, padding excluded from every attention
        words = self.norm(self.encoder(x, src_key_padding_mask=~mask))
        # 3. pool the words into one sentence vector
        weights = mask.unsqueeze(-1).to(words.dtype)
        sentence = (words * weights).sum(1) / weights.sum(1)
        return TextFeatures(words=words, sentence=sentence, mask=mask)
