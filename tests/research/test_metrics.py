"""The evaluation's measures on hand-made cases whose answers are known: a perfect copy, a reversed trajectory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from research.metrics import (
    MAX_PSNR,
    control_accuracy,
    copy_first_frame,
    diversity,
    endpoint_accuracy,
    frechet_distance,
    psnr,
    ssim,
)
from research.probes import TrajectoryProbe, VideoFeatures, label_ids

torch.set_num_threads(1)


def moving_square(
    n: int = 2, frames: int = 6, size: int = 32, step: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Videos of one white 6-pixel square moving right by `step` px a frame, and its centres (N, T, 1, 2)."""
    rng = np.random.default_rng(seed)
    videos = np.zeros((n, frames, 3, size, size), np.float32)
    centres = np.zeros((n, frames, 1, 2), np.float32)
    for i in range(n):
        x0, y0 = rng.integers(4, size - 6 - step * frames), rng.integers(4, size - 10)
        for t in range(frames):
            x = x0 + step * t
            videos[i, t, :, y0 : y0 + 6, x : x + 6] = 1.0
            centres[i, t, 0] = (x + 3, y0 + 3)
    return videos, centres


def direction(track: np.ndarray) -> str:
    """A two-label reading of a (T, 2) track, enough for these cases."""
    return "right" if track[-1, 0] > track[0, 0] else "left"


def test_a_perfect_copy_scores_the_maximum_and_noise_scores_what_its_mse_says() -> None:
    videos, _ = moving_square()
    assert psnr(videos, videos) == MAX_PSNR and ssim(videos, videos) == pytest.approx(1.0)
    noisy = np.clip(videos + 0.1 * np.where(np.indices(videos.shape).sum(0) % 2, 1, -1), 0, 1).astype(np.float32)
    mse = float(np.mean((noisy[:, 1:] - videos[:, 1:]) ** 2))
    assert psnr(noisy, videos) == pytest.approx(10 * np.log10(1 / mse), rel=1e-6)
    assert ssim(noisy, videos) < 0.9


def test_copying_the_first_frame_scores_perfectly_only_on_a_still_video() -> None:
    videos, _ = moving_square()
    still = copy_first_frame(videos)
    assert psnr(copy_first_frame(still), still) == MAX_PSNR
    assert psnr(still, videos) < 20 and ssim(still, videos) < ssim(videos, videos)
    assert np.array_equal(still[:, 0], videos[:, 0]) and np.array_equal(still[:, -1], videos[:, 0])


def test_control_accuracy_of_the_true_and_of_a_reversed_trajectory() -> None:
    _, centres = moving_square(n=4)
    asked = [["right"]] * 4
    assert control_accuracy(centres, asked, direction) == 1.0
    assert control_accuracy(centres[:, ::-1], asked, direction) == 0.0
    half = centres.copy()
    half[:2] = half[:2, ::-1]
    assert control_accuracy(half, asked, direction) == 0.5
    with pytest.raises(ValueError, match="tracks"):
        control_accuracy(centres, asked[:3], direction)


def test_endpoint_accuracy_counts_ends_within_the_tolerance_and_skips_objects_without_a_target() -> None:
    tracks = np.zeros((2, 3, 2, 2))
    tracks[:, -1] = [[[10, 10], [0, 0]], [[20, 20], [5, 5]]]
    targets = np.array([[[10, 12], [np.nan, np.nan]], [[30, 20], [5, 5]]])
    assert endpoint_accuracy(tracks, targets, tolerance=2.0) == pytest.approx(2 / 3)


def test_diversity_is_zero_for_copies_and_the_mean_pairwise_distance_otherwise() -> None:
    one = np.zeros((1, 2, 3, 4, 4))
    assert diversity(np.concatenate([one, one, one])) == 0.0
    assert diversity(np.concatenate([one, one + 1.0])) == 1.0
    assert diversity(np.concatenate([one, one + 1.0, one + 0.5])) == pytest.approx((1.0 + 0.5 + 0.5) / 3)


def test_frechet_distance_is_zero_for_one_set_and_the_squared_shift_for_a_shifted_one() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 4))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shift = np.array([1.0, 2.0, 0.0, -2.0])
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-6)
    assert frechet_distance(a, a * 2) > 1.0  # wider spread, same mean


def test_the_trajectory_probe_learns_where_a_square_is() -> None:
    torch.manual_seed(0)
    videos, centres = moving_square(n=48, frames=4, seed=1)
    probe = TrajectoryProbe(objects=1, size=32, width=8)
    losses = probe.fit(videos, centres, steps=150, batch=32, seed=0)
    assert np.mean(losses[-20:]) < np.mean(losses[:20]) / 4
    test_videos, test_centres = moving_square(n=8, frames=4, seed=2)
    error = np.abs(probe.tracks(test_videos) - test_centres).mean()
    assert error < 3.0, error  # pixels


def test_the_video_features_tell_left_from_right() -> None:
    torch.manual_seed(0)
    right, _ = moving_square(n=24, frames=6, size=32, seed=3)
    left = right[:, ::-1].copy()
    videos = np.concatenate([right, left])
    ids = label_ids([["right"]] * 24 + [["left"]] * 24, ["left", "right"])
    features = VideoFeatures(objects=1, labels=2, width=4)
    features.fit(videos, ids, steps=60, batch=16, seed=0)
    assert features.accuracy(videos, ids) > 0.9
    assert features.features(videos).shape == (48, 64)
