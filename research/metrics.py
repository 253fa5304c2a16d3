"""The evaluation's measures, each checked on hand-made cases: reconstruction, control, diversity, Fréchet distance.

Videos here are float arrays (N, T, 3, H, W) in [0, 1] (research.data.clips.video_array's layout); trajectories
are (N, T, K, 2) object centres in pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import linalg
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

MAX_PSNR = 100.0  # dB for identical frames (PSNR is infinite there; a cap keeps means finite)


def _check_videos(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape or a.ndim != 5 or a.shape[2] != 3:
        raise ValueError(f"videos must both be (N, T, 3, H, W) of one shape, not {a.shape} and {b.shape}")


def psnr(generated: np.ndarray, truth: np.ndarray, *, skip_first: bool = True) -> float:
    """Mean per-frame PSNR (dB, capped at MAX_PSNR), over the frames a model made (the first is given)."""
    _check_videos(generated, truth)
    start = 1 if skip_first and generated.shape[1] > 1 else 0
    values = []
    for video, real in zip(generated, truth):
        for frame, real_frame in zip(video[start:], real[start:]):
            if np.array_equal(frame, real_frame):
                values.append(MAX_PSNR)
            else:
                values.append(min(MAX_PSNR, float(peak_signal_noise_ratio(real_frame, frame, data_range=1.0))))
    return float(np.mean(values))


def ssim(generated: np.ndarray, truth: np.ndarray, *, skip_first: bool = True) -> float:
    """Mean per-frame SSIM (colour, 7-pixel window) over the frames a model made."""
    _check_videos(generated, truth)
    start = 1 if skip_first and generated.shape[1] > 1 else 0
    values = [
        float(structural_similarity(real_frame, frame, channel_axis=0, data_range=1.0))
        for video, real in zip(generated, truth)
        for frame, real_frame in zip(video[start:], real[start:])
    ]
    return float(np.mean(values))


def copy_first_frame(videos: np.ndarray) -> np.ndarray:
    """The baseline: every frame is the first one (a model that never moves anything)."""
    return np.repeat(videos[:, :1], videos.shape[1], axis=1)


def control_accuracy(
    tracks: np.ndarray, motions: Sequence[Sequence[str]], motion_of: Callable[[np.ndarray], str]
) -> float:
    """Share of objects whose trajectory, read back as a motion label, is the one their text asked for.

    `tracks` (N, T, K, 2) are read from videos (by a probe, for generated ones); `motions[n][k]` is the label the
    n-th text gave object k.
    """
    if tracks.ndim != 4 or tracks.shape[0] != len(motions):
        raise ValueError(f"tracks must be (N, T, K, 2) with N = {len(motions)} texts, not {tracks.shape}")
    hits = [motion_of(tracks[n, :, k]) == label for n, labels in enumerate(motions) for k, label in enumerate(labels)]
    return float(np.mean(hits)) if hits else 0.0


def endpoint_accuracy(tracks: np.ndarray, targets: np.ndarray, *, tolerance: float) -> float:
    """Share of objects whose last position is within `tolerance` pixels of its target (N, K, 2; NaN: no target)."""
    ends = tracks[:, -1]
    if ends.shape != targets.shape:
        raise ValueError(f"targets must be (N, K, 2) like the tracks' ends {ends.shape}, not {targets.shape}")
    wanted = ~np.isnan(targets[..., 0])
    if not wanted.any():
        return 0.0
    distance = np.linalg.norm(ends - np.nan_to_num(targets), axis=-1)
    return float(np.mean(distance[wanted] <= tolerance))


def diversity(samples: np.ndarray) -> float:
    """Mean pairwise L1 distance between S samples (S, T, 3, H, W) of one input: 0 when all are the same video."""
    if samples.ndim != 5 or samples.shape[0] < 2:
        raise ValueError(f"samples must be (S >= 2, T, 3, H, W), not {samples.shape}")
    flat = samples.reshape(samples.shape[0], -1).astype(np.float64)
    distances = [np.abs(flat[i] - flat[j]).mean() for i in range(len(flat)) for j in range(i + 1, len(flat))]
    return float(np.mean(distances))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets (N, D), as FID computes it."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"features must be (N >= 2, D) with one D, not {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():  # a singular product: nudge both, as the reference FID code does
        offset = np.eye(len(cov_a)) * 1e-6
        root = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    root = np.real(root)
    distance = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))
    return max(0.0, distance)
