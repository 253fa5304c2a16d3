"""The GAN's sentence encoder: word embeddings and a GRU, trained on its own to spell its text back from one vector.

StackGAN conditions on a sentence embedding pre-trained apart from the GAN (char-CNN-RNN) and held fixed; we do the
same with a simpler objective that needs no images: from the sentence vector alone, a linear readout must name the
word at every position. The vector then carries every word in order (both digits, both motions), whatever the
video discriminator is asked to match, so the `text_match` on/off comparison runs on the same embedding.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

PAD = 0


class TextEncoder(nn.Module):
    """Word ids (B, L), 0 = padding at the end, to a sentence embedding (B, dim): the GRU state at the last word."""

    def __init__(self, *, vocab_size: int, max_length: int, word_dim: int, dim: int) -> None:
        super().__init__()
        self.vocab_size, self.max_length = vocab_size, max_length
        self.words = nn.Embedding(vocab_size, word_dim, padding_idx=PAD)
        self.gru = nn.GRU(word_dim, dim, batch_first=True)
        # Used only by the encoder's own objective: one query per position reads that position's word from the vector.
        self.positions = nn.Parameter(0.1 * torch.randn(max_length, dim))
        self.readout = nn.Linear(dim, vocab_size)

    def check_text(self, text: Tensor) -> None:
        """Raise unless `text` is int64 (B, L ≤ max_length) of ids below the vocabulary size, each row with a word."""
        if text.dim() != 2 or text.dtype != torch.long or text.shape[0] == 0:
            raise ValueError(f"text must be int64 ids (B ≥ 1, L), got {tuple(text.shape)} {text.dtype}")
        if text.shape[1] > self.max_length:
            raise ValueError(f"text must have at most {self.max_length} ids per row, got {text.shape[1]}")
        if int(text.min()) < 0 or int(text.max()) >= self.vocab_size:
            raise ValueError(f"text ids must lie in [0, {self.vocab_size}), got [{int(text.min())}, {int(text.max())}]")
        if bool((text == PAD).all(1).any()):
            raise ValueError("text has a row that is all padding (id 0); every text needs at least one word")

    def forward(self, text: Tensor) -> Tensor:
        """The sentence embedding (B, dim) of each row of `text`."""
        # 1. check and embed the words
        self.check_text(text)
        words = self.words(text)
        # 2. run the GRU; padding sits after the last word, so the state there has read exactly the words
        states, _ = self.gru(words)
        last = (text != PAD).sum(1) - 1
        return states[torch.arange(text.shape[0], device=text.device), last]

    def reconstruction_loss(self, text: Tensor) -> Tensor:
        """Cross-entropy of naming every word of `text` at its position from the sentence embedding alone."""
        # 1. encode
        sentence = self(text)
        # 2. one query per position, added to the sentence vector, read out as word logits (B, L, vocab)
        queries = torch.tanh(sentence.unsqueeze(1) + self.positions[: text.shape[1]])
        logits = self.readout(queries)
        # 3. score the words, not the padding
        return F.cross_entropy(logits.flatten(0, 1), text.flatten(), ignore_index=PAD)
