"""bench/motion_metrics.py: the quality measures of bench/quality.py, on drawn frames whose answer is known."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from bench.motion_metrics import (
    IDENTITY,
    align,
    box_mask,
    box_through,
    caption_change,
    compose,
    invert,
    new_white_area,
    residual_motion,
    seam_ratio,
    tear_shares,
    tearing,
    word_recall,
)

SIZE = 240


def textured(seed: int = 0, cell: int = 6) -> np.ndarray:
    """A smooth random texture with corners everywhere (no near-white pixels)."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(20, 230, (SIZE // cell, SIZE // cell, 3)).astype(np.uint8)
    return cv2.GaussianBlur(cv2.resize(cells, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC), (3, 3), 0)


def drawn(seed: int = 0) -> np.ndarray:
    """Discs on a soft background: clear edges, with room between them."""
    rng = np.random.default_rng(seed)
    picture = textured(seed, cell=20)
    for _ in range(30):
        centre = tuple(int(v) for v in rng.integers(0, SIZE, 2))
        colour = tuple(int(v) for v in rng.integers(20, 230, 3))
        cv2.circle(picture, centre, int(rng.integers(5, 20)), colour, -1, cv2.LINE_AA)
    return picture


def moved(picture: np.ndarray, dx: float, dy: float, angle: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """The picture rotated and scaled about its centre, then shifted (edges reflected)."""
    matrix = cv2.getRotationMatrix2D((SIZE / 2, SIZE / 2), angle, scale)
    matrix[:, 2] += (dx, dy)
    return cv2.warpAffine(picture, matrix, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


EVERYWHERE = np.ones((SIZE, SIZE), bool)
NOWHERE = np.zeros((SIZE, SIZE), bool)


@pytest.mark.parametrize("dx, dy, angle, scale", [(3.4, -2.1, 0.0, 1.0), (-6.0, 4.0, 3.0, 1.06)])
def test_a_camera_move_leaves_no_residual_motion(dx: float, dy: float, angle: float, scale: float) -> None:
    reference = textured()
    frame = moved(reference, dx, dy, angle, scale)
    transform = align(frame, reference, EVERYWHERE)
    assert residual_motion(frame, reference, IDENTITY, EVERYWHERE) > 2.0  # unaligned, the move shows
    assert residual_motion(frame, reference, transform, EVERYWHERE) < 0.3


def test_a_squash_of_the_whole_picture_is_the_camera_not_the_subject() -> None:
    reference = textured()
    squash = np.array([[1.08, 0.0, -9.6], [0.03, 0.93, 8.4]])  # wider, shorter and sheared, as a bounce draws it
    frame = cv2.warpAffine(reference, squash, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    assert residual_motion(frame, reference, align(frame, reference, EVERYWHERE), EVERYWHERE) < 0.3


def test_a_region_moving_on_its_own_shows_after_the_camera_is_taken_out() -> None:
    reference = textured()
    frame = moved(reference, 5.0, 3.0)  # the camera
    patch = (90, 90, 160, 160)  # 8.5 % of the picture also moves 4 px on its own
    x0, y0, x1, y1 = patch
    frame[y0:y1, x0:x1] = moved(reference, 5.0, 7.0)[y0:y1, x0:x1]
    transform = align(frame, reference, EVERYWHERE)
    assert np.allclose(transform[:, 2], (-5.0, -3.0), atol=0.3)  # the camera, found despite the patch
    assert residual_motion(frame, reference, transform, EVERYWHERE) > 1.5
    outside = EVERYWHERE & ~box_mask(frame.shape, (70, 70, 180, 180))
    assert residual_motion(frame, reference, transform, outside) < 0.3


def test_alignment_follows_a_large_move_from_the_previous_guess() -> None:
    reference = textured()
    guess = align(moved(reference, 14.0, 0.0), reference, EVERYWHERE)
    frame = moved(reference, 28.0, -4.0)
    transform = align(frame, reference, EVERYWHERE, guess)
    assert np.allclose(transform, [[1, 0, -28.0], [0, 1, 4.0]], atol=0.3)


def test_alignment_without_features_falls_back_to_the_guess() -> None:
    flat = np.full((SIZE, SIZE, 3), 128, np.uint8)
    guess = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]])
    assert np.array_equal(align(flat, flat, EVERYWHERE), IDENTITY)
    assert np.array_equal(align(flat, flat, EVERYWHERE, guess), guess)


def test_transforms_compose_invert_and_carry_boxes() -> None:
    shift = np.array([[1.0, 0.0, 10.0], [0.0, 1.0, -5.0]])
    double = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    assert np.allclose(compose(shift, invert(shift)), IDENTITY)
    assert np.allclose(compose(double, shift), [[2, 0, 20], [0, 2, -10]])
    assert box_through((10, 10, 20, 30), shift, 100, 100) == (20, 5, 30, 25)
    assert box_through((10, 10, 60, 30), double, 100, 100) == (20, 20, 100, 60)


def test_an_empty_region_measures_nothing() -> None:
    reference = textured()
    assert residual_motion(moved(reference, 3, 3), reference, IDENTITY, NOWHERE) == 0.0


def test_a_hole_punched_in_tears_more_than_a_clean_warp() -> None:
    reference = drawn()
    frame = moved(reference, 4.0, -3.0, 2.0)
    transform = align(frame, reference, EVERYWHERE)
    holed = frame.copy()
    holed[80:150, 60:170] = (90, 90, 90)
    clean_score = tearing(frame, reference, transform, NOWHERE)
    holed_score = tearing(holed, reference, transform, NOWHERE)
    assert clean_score < 0.05
    assert holed_score > clean_score + 0.02
    # ignored pixels don't count: the hole's border, ignored, tears no more than the clean warp
    assert tearing(holed, reference, transform, box_mask(frame.shape, (50, 70, 180, 160))) < 0.05


def test_following_the_flow_explains_a_part_moving_on_its_own_but_not_a_hole() -> None:
    reference = drawn()
    frame = moved(reference, 4.0, -3.0)
    transform = align(frame, reference, EVERYWHERE)
    rows, cols = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    bump = 6.0 * np.exp(-((cols - 120) ** 2 + (rows - 120) ** 2) / (2 * 40.0**2))  # the middle stretches 6 px down
    acting = cv2.remap(frame, cols, rows - bump, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    holed = frame.copy()
    holed[80:150, 60:170] = (90, 90, 90)
    assert residual_motion(acting, reference, transform, EVERYWHERE) > 1.5
    assert tearing(acting, reference, transform, NOWHERE) > 0.05  # the camera alone doesn't explain it
    assert tearing(acting, reference, transform, NOWHERE, follow_flow=True) < 0.02
    assert tearing(holed, reference, transform, NOWHERE, follow_flow=True) > 0.1


def test_a_white_block_appearing_is_counted_and_the_sources_own_white_is_not() -> None:
    source = textured()
    frame = moved(source, 3.0, 0.0)
    transform = align(frame, source, EVERYWHERE)
    assert new_white_area(frame, source, transform, NOWHERE) == 0
    frame[100:130, 40:80] = 255
    assert new_white_area(frame, source, transform, NOWHERE) >= 0.9 * 30 * 40
    assert new_white_area(frame, source, transform, box_mask(frame.shape, (30, 90, 90, 140))) == 0
    white_source = source.copy()
    white_source[100:130, 37:77] = 255  # the source had it, 3 px to the left: the camera moved it
    assert new_white_area(frame, white_source, transform, NOWHERE) == 0


def test_white_uncovered_next_to_the_sources_own_white_is_background_not_a_patch() -> None:
    source = textured()
    source[:, 150:] = 255  # a white background on the right
    frame = source.copy()
    frame[60:180, 110:150] = 255  # the subject's right side slides left, uncovering more of it
    assert new_white_area(frame, source, IDENTITY, NOWHERE) == 0
    frame[60:100, 20:60] = 255  # a hole where the picture has no white nearby
    assert new_white_area(frame, source, IDENTITY, NOWHERE) == 40 * 40


def test_the_seam_of_a_loop() -> None:
    picture = textured()
    still = [picture] * 8
    assert seam_ratio(still) == 0.0
    circle = [moved(picture, 3 * np.cos(2 * np.pi * i / 16), 3 * np.sin(2 * np.pi * i / 16)) for i in range(16)]
    assert 0.8 < seam_ratio(circle) < 1.25  # constant speed round a circle: the seam is one more step
    drift = [moved(picture, 0.5 * i, 0.0) for i in range(16)]  # ends 7.5 px from where it starts
    assert seam_ratio(drift) > 4.0
    held = circle[:8] + [circle[8]] * 24 + circle[8:]  # rests half the loop: the seam is still one step
    assert 0.8 < seam_ratio(held) < 1.25


def test_caption_change_counts_only_the_captions_pixels() -> None:
    picture = textured()
    caption = box_mask(picture.shape, (20, 20, 120, 50))
    frames = [picture.copy() for _ in range(4)]
    frames[2][150:200, 150:200] = 0  # the picture changes elsewhere
    assert caption_change(frames, caption) == 0.0
    frames[1][20:50, 20:120] = frames[1][20:50, 20:120] // 2
    assert caption_change(frames, caption) > 10.0


@pytest.mark.parametrize(
    "truth, read, recall",
    [
        ("One does not simply", "ONE DOES NOT SIMPLY", 1.0),
        ("Don't you dare!", "DONT YOU", 2 / 3),
        ("no no no", "NO", 1 / 3),
        ("WALK INTO MORDOR", "", 0.0),
        ("", "ANYTHING", 1.0),
        ("with blackjack and hookers", "WITHBLACKJACKANDHOOKERS", 1.0),  # spaces lost, words all there
        ("and then I said", "ANDTHENI SAD", 0.75),
    ],
)
def test_word_recall(truth: str, read: str, recall: float) -> None:
    assert word_recall(truth, read) == pytest.approx(recall)


def test_tear_shares_measures_each_mask_from_one_flow() -> None:
    """A hole cut into one place counts as tearing, and not once that place is left out."""
    first = drawn(3)
    frame = first.copy()
    cv2.rectangle(frame, (100, 100), (140, 140), (255, 255, 255), -1)
    nothing = np.zeros(first.shape[:2], bool)
    hole = np.zeros_like(nothing)
    hole[90:150, 90:150] = True
    everywhere, elsewhere = tear_shares(frame, first, IDENTITY, [nothing, hole], follow_flow=True)
    assert everywhere > 0.01 and elsewhere < everywhere / 4
    assert tearing(frame, first, IDENTITY, nothing, follow_flow=True) == everywhere
