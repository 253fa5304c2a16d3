"""Small networks trained on the generators' ground truth to read generated videos: where objects are, what moves.

`TrajectoryProbe` regresses every object's centre on every frame (objects in the order their text names them);
`VideoFeatures` classifies a clip's motions and lends its penultimate layer to the Fréchet distance (the
"FID-like" figure), since no pretrained video network can be downloaded here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn


def _train(model: nn.Module, loss_of: Callable[[torch.Tensor], torch.Tensor], rows: int, *, steps: int, batch: int,
           lr: float, seed: int) -> list[float]:  # fmt: skip
    """Adam on `loss_of(random row indices)` for `steps` steps; the model ends in eval mode; the losses."""
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    generator, losses = torch.Generator().manual_seed(seed), []
    model.train()
    for _ in range(steps):
        loss = loss_of(torch.randint(rows, (batch,), generator=generator))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    model.eval()
    return losses


class TrajectoryProbe(nn.Module):
    """Frame (3, H, W) -> (K, 2) object centres in pixels, learned from generated frames and their positions."""

    def __init__(self, objects: int, size: int = 64, width: int = 32) -> None:
        super().__init__()
        self.objects, self.size = objects, size
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(width, width * 2, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(width * 2, width * 2, 4, 2, 1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Linear(width * 2 * 16, 128), nn.ReLU(), nn.Linear(128, objects * 2))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, K, 2) centres in pixels."""
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"frames must be (B, 3, H, W), not {tuple(frames.shape)}")
        unit = self.head(self.features(frames)).view(-1, self.objects, 2)
        return (unit + 0.5) * self.size  # predicted around the canvas centre, in pixels

    def fit(self, videos: np.ndarray, positions: np.ndarray, *, steps: int, batch: int = 64, lr: float = 2e-3,
            seed: int = 0) -> list[float]:  # fmt: skip
        """Train on every frame of `videos` (N, T, 3, H, W) against `positions` (N, T, K, 2); the losses."""
        frames = torch.from_numpy(videos.reshape(-1, *videos.shape[2:]))
        targets = torch.from_numpy(positions.reshape(-1, self.objects, 2).astype(np.float32))
        return _train(
            self,
            lambda pick: nn.functional.smooth_l1_loss(self(frames[pick]), targets[pick]),
            len(frames),
            steps=steps,
            batch=batch,
            lr=lr,
            seed=seed,
        )

    @torch.no_grad()
    def tracks(self, videos: np.ndarray, batch: int = 256) -> np.ndarray:
        """(N, T, 3, H, W) -> (N, T, K, 2) predicted centres."""
        n, t = videos.shape[:2]
        frames = torch.from_numpy(np.ascontiguousarray(videos.reshape(n * t, *videos.shape[2:]), dtype=np.float32))
        out = torch.cat([self(frames[i : i + batch]) for i in range(0, len(frames), batch)])
        return out.view(n, t, self.objects, 2).numpy()


class VideoFeatures(nn.Module):
    """A 3D-conv classifier of each object's motion label; its 64-d penultimate layer is the Fréchet features."""

    def __init__(self, objects: int, labels: int, width: int = 16) -> None:
        super().__init__()
        self.objects, self.labels = objects, labels
        self.body = nn.Sequential(
            nn.Conv3d(3, width, (3, 4, 4), (1, 2, 2), (1, 1, 1)), nn.ReLU(),
            nn.Conv3d(width, width * 2, (3, 4, 4), (2, 2, 2), (1, 1, 1)), nn.ReLU(),
            nn.Conv3d(width * 2, width * 4, (3, 4, 4), (2, 2, 2), (1, 1, 1)), nn.ReLU(),
            nn.AdaptiveAvgPool3d((1, 2, 2)), nn.Flatten(), nn.Linear(width * 16, 64), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(64, objects * labels)

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) -> (B, K, labels) logits."""
        return self.head(self.embed(videos)).view(-1, self.objects, self.labels)

    def embed(self, videos: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) -> (B, 64) features."""
        if videos.ndim != 5 or videos.shape[2] != 3:
            raise ValueError(f"videos must be (B, T, 3, H, W), not {tuple(videos.shape)}")
        return self.body(videos.transpose(1, 2))

    def fit(self, videos: np.ndarray, label_ids: np.ndarray, *, steps: int, batch: int = 32, lr: float = 2e-3,
            seed: int = 0) -> list[float]:  # fmt: skip
        """Train on `videos` (N, T, 3, H, W) and each object's label id (N, K); the losses."""
        clips, targets = torch.from_numpy(videos), torch.from_numpy(label_ids.astype(np.int64))
        return _train(
            self,
            lambda pick: nn.functional.cross_entropy(
                self(clips[pick]).reshape(-1, self.labels), targets[pick].reshape(-1)
            ),
            len(clips),
            steps=steps,
            batch=batch,
            lr=lr,
            seed=seed,
        )

    @torch.no_grad()
    def features(self, videos: np.ndarray, batch: int = 64) -> np.ndarray:
        """(N, T, 3, H, W) -> (N, 64)."""
        clips = torch.from_numpy(np.ascontiguousarray(videos, dtype=np.float32))
        return torch.cat([self.embed(clips[i : i + batch]) for i in range(0, len(clips), batch)]).numpy()

    @torch.no_grad()
    def accuracy(self, videos: np.ndarray, label_ids: np.ndarray) -> float:
        """Share of objects whose motion label the classifier reads right."""
        clips = torch.from_numpy(np.ascontiguousarray(videos, dtype=np.float32))
        predicted = torch.cat([self(clips[i : i + 64]).argmax(-1) for i in range(0, len(clips), 64)]).numpy()
        return float(np.mean(predicted == label_ids))


def label_ids(motions: Sequence[Sequence[str]], vocabulary: Sequence[str]) -> np.ndarray:
    """(N, K) the index of each object's motion label in `vocabulary`."""
    index = {label: i for i, label in enumerate(vocabulary)}
    return np.array([[index[label] for label in labels] for labels in motions], dtype=np.int64)


class ConditionedProbe(nn.Module):
    """Frame (3, H, W) + which object (a one-hot over `conditions`, e.g. its colour) -> that object's place (2,).

    For scenes whose object count varies (CATER-like): the text names the object, so the probe is asked about it.
    """

    def __init__(self, conditions: int, width: int = 32) -> None:
        super().__init__()
        self.conditions = conditions
        self.features = nn.Sequential(
            nn.Conv2d(3 + conditions, width, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(width, width * 2, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(width * 2, width * 2, 4, 2, 1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Linear(width * 2 * 16, 128), nn.ReLU(), nn.Linear(128, 2))

    def forward(self, frames: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) frames and (B,) condition ids -> (B, 2) places."""
        if frames.ndim != 4 or which.shape != frames.shape[:1]:
            raise ValueError(f"frames must be (B, 3, H, W) and which (B,), not {tuple(frames.shape)}, {which.shape}")
        planes = nn.functional.one_hot(which, self.conditions).float()[:, :, None, None]
        planes = planes.expand(-1, -1, *frames.shape[2:])
        return self.head(self.features(torch.cat([frames, planes], dim=1)))

    def fit(self, pool: np.ndarray, index: np.ndarray, which: np.ndarray, places: np.ndarray, *, steps: int,
            batch: int = 64, lr: float = 2e-3, seed: int = 0) -> list[float]:  # fmt: skip
        """Train on examples (pool[index[m]], which[m]) -> places[m]: frames (F, 3, H, W) are stored once."""
        pictures, rows = torch.from_numpy(pool), torch.from_numpy(index.astype(np.int64))
        ids, targets = torch.from_numpy(which.astype(np.int64)), torch.from_numpy(places.astype(np.float32))
        return _train(
            self,
            lambda pick: nn.functional.smooth_l1_loss(self(pictures[rows[pick]], ids[pick]), targets[pick]),
            len(rows),
            steps=steps,
            batch=batch,
            lr=lr,
            seed=seed,
        )

    @torch.no_grad()
    def places(self, frames: np.ndarray, which: np.ndarray) -> np.ndarray:
        """(M, 3, H, W) frames and (M,) ids -> (M, 2) predicted places."""
        pictures = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))
        ids = torch.from_numpy(which.astype(np.int64))
        return torch.cat([self(pictures[i : i + 256], ids[i : i + 256]) for i in range(0, len(ids), 256)]).numpy()
