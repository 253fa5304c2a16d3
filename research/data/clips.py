"""What every generator hands out: clips with their texts and ground truth, a word vocabulary, tensors for training."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

PAD, UNKNOWN = 0, 1
WORD = re.compile(r"[a-z]+|-?\d+|[(),.]")


@dataclass(frozen=True)
class Clip:
    """One generated video, what it shows, and where everything is on every frame."""

    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    text: str  # the explicit description ("The digit 5 is moving down then up and the digit 8 is moving up.")
    ambiguous: str | None  # a description several videos fit ("... placed to the fourth quadrant"), if the set has one
    positions: np.ndarray  # (T, K, 2) float32: each of the K objects' centre (x, y) in pixels, on every frame
    objects: tuple[str, ...]  # what each of the K objects is ("digit 5", "large red metal cone")
    motions: tuple[str, ...]  # each object's motion label from the generator's fixed set ("down then up", "slide")
    grid: np.ndarray | None = None  # (T, K, 2) float32: each object's place on a scene's grid, if the set has one

    @property
    def length(self) -> int:
        """Frames."""
        return int(self.frames.shape[0])


class Vocabulary:
    """Words to ids for a generator's whole grammar, known in advance: the ids never depend on the data drawn."""

    def __init__(self, words: Iterable[str]) -> None:
        ordered = sorted(set(words))
        self.words = ("<pad>", "<unk>", *ordered)
        self.ids = {word: i for i, word in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    @staticmethod
    def split(text: str) -> list[str]:
        """A text's tokens: lower-case words, signed integers and punctuation."""
        return WORD.findall(text.lower())

    def encode(self, text: str, length: int) -> np.ndarray:
        """(length,) int64 ids, cut or padded with PAD; unknown words are UNKNOWN."""
        ids = [self.ids.get(token, UNKNOWN) for token in self.split(text)][:length]
        return np.array(ids + [PAD] * (length - len(ids)), dtype=np.int64)

    def decode(self, ids: Sequence[int]) -> str:
        """The tokens of `ids` back as text (padding dropped)."""
        return " ".join(self.words[i] for i in ids if i != PAD)


def video_array(clips: Sequence[Clip]) -> np.ndarray:
    """(N, T, 3, H, W) float32 in [0, 1]: the layout the models train on."""
    frames = np.stack([clip.frames for clip in clips]).astype(np.float32) / 255.0
    return np.ascontiguousarray(frames.transpose(0, 1, 4, 2, 3))


def text_array(clips: Sequence[Clip], vocabulary: Vocabulary, length: int, *, ambiguous: bool = False) -> np.ndarray:
    """(N, length) int64 ids of each clip's explicit (or ambiguous) text."""
    texts = [(clip.ambiguous or clip.text) if ambiguous else clip.text for clip in clips]
    return np.stack([vocabulary.encode(text, length) for text in texts])
