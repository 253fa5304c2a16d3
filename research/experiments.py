"""The experiments both the benchmark (training) and the evaluation run: which data, how much, which model, where.

A run directory holds one trained model (`Mage.save` / `Tgan.save`) and `run.json` with how it was trained.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from research.data import cater, digits
from research.data.clips import Clip, Vocabulary, text_array, video_array

RUNS = Path(__file__).resolve().parent / "runs"  # trained models (not committed)
RESULTS = Path(__file__).resolve().parent / "results"  # the figures and tables research/README.md shows
TEXT_LENGTH = 24
MAGE_FRAMES = 12  # MAGE's clips (first frame given); MageConfig.max_frames
GAN_FRAMES = 16  # the GAN's clips: the blog's VideoGAN makes 16–32 frames


@dataclass(frozen=True)
class Scale:
    """How much data and training: `bench` for the README's figures, `quick` to try the whole path in minutes."""

    train: int  # clips per training set
    test: int  # clips per test set
    mage_vqvae_steps: int
    mage_steps: int
    gan_steps: int
    probe_steps: int
    samples: int  # samples per vague text, for diversity
    vague_inputs: int  # vague texts sampled

    @classmethod
    def bench(cls) -> Scale:
        """At most about 17 minutes per model on one core of this 2-core machine, two models training at once."""
        return cls(train=1200, test=100, mage_vqvae_steps=800, mage_steps=1400, gan_steps=800, probe_steps=1500,
                   samples=4, vague_inputs=24)  # fmt: skip

    @classmethod
    def quick(cls) -> Scale:
        """A few minutes end to end: numbers that only show the path works."""
        return cls(train=160, test=16, mage_vqvae_steps=60, mage_steps=60, gan_steps=60, probe_steps=150,
                   samples=3, vague_inputs=4)  # fmt: skip


@dataclass(frozen=True)
class Data:
    """One experiment's clips as arrays, with what the evaluation reads from them."""

    clips: list[Clip]
    videos: np.ndarray  # (N, T, 3, H, W) float32 in [0, 1]
    texts: np.ndarray  # (N, L) explicit texts' ids
    vague: np.ndarray | None  # (N, L) vague texts' ids, where the set has them


def arrays(clips: list[Clip], vocabulary: Vocabulary) -> Data:
    """A set's clips with their videos and texts as the models take them."""
    vague = text_array(clips, vocabulary, TEXT_LENGTH, ambiguous=True) if clips and clips[0].ambiguous else None
    return Data(clips, video_array(clips), text_array(clips, vocabulary, TEXT_LENGTH), vague)


def digits_data(scale: Scale, frames: int) -> tuple[Data, Data]:
    """Double Moving Digits, train and test (disjoint seed streams)."""
    train, test = digits.splits(scale.train, scale.test, seed=0, frames=frames)
    vocabulary = digits.vocabulary()
    return arrays(train, vocabulary), arrays(test, vocabulary)


def cater_data(scale: Scale) -> tuple[Data, Data]:
    """CATER-like scenes, train and test."""
    train, test = cater.splits(scale.train, scale.test, seed=0, frames=MAGE_FRAMES)
    vocabulary = cater.vocabulary()
    return arrays(train, vocabulary), arrays(test, vocabulary)


def mixed_texts(data: Data, seed: int) -> np.ndarray:
    """Each clip's explicit or vague text, half and half, as MAGE trains on CATER-GEN-v2's vague descriptions."""
    if data.vague is None:
        return data.texts
    choose = np.random.default_rng(seed).random(len(data.texts)) < 0.5
    return np.where(choose[:, None], data.vague, data.texts)


def write_run(directory: Path, **facts: Any) -> None:
    """run.json: how the model in `directory` was trained."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "run.json").write_text(json.dumps(facts, indent=2, sort_keys=True, default=str), "utf-8")


def read_run(directory: Path) -> dict[str, Any]:
    """What write_run wrote."""
    return dict(json.loads((directory / "run.json").read_text("utf-8")))


def scale_facts(scale: Scale) -> dict[str, Any]:
    """The scale as JSON-ready facts."""
    return asdict(scale)


class Clock:
    """Seconds since it was made."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return round(time.perf_counter() - self.start, 1)


def seeded(seed: int) -> None:
    """One thread and a fixed seed: runs repeat, and two at once share two cores."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
