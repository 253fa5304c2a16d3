"""The generated data sets: deterministic by seed, splits apart, texts true to the clips, ground truth where drawn."""

from __future__ import annotations

import re

import numpy as np
import pytest

from research.data import cater, digits
from research.data.clips import UNKNOWN, Clip
from research.data.render import COLOURS


@pytest.fixture(scope="module")
def digit_clips() -> list[Clip]:
    return digits.make_clips(300, 11)


@pytest.fixture(scope="module")
def cater_clips() -> list[Clip]:
    return cater.make_clips(150, 11)


def same(a: list[Clip], b: list[Clip]) -> bool:
    return all(
        np.array_equal(x.frames, y.frames) and x.text == y.text and np.array_equal(x.positions, y.positions)
        for x, y in zip(a, b)
    )


def colour_masks(frame: np.ndarray) -> dict[str, np.ndarray]:
    """Which pixels show each palette colour: clearly saturated and pointing the palette colour's way."""
    rgb = frame.astype(np.float64)
    chroma = rgb - rgb.mean(-1, keepdims=True)
    strength = np.linalg.norm(chroma, axis=-1)
    names = list(COLOURS)
    palette = np.array([COLOURS[name] for name in names])
    palette = palette - palette.mean(-1, keepdims=True)
    palette /= np.linalg.norm(palette, axis=-1, keepdims=True)
    similarity = chroma @ palette.T / np.maximum(strength, 1e-9)[..., None]
    best = similarity.argmax(-1)
    clear = (strength > 30) & (similarity.max(-1) > 0.95)
    return {name: clear & (best == i) for i, name in enumerate(names)}


def centroid(mask: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    weights = mask.astype(np.float64) if weights is None else weights * mask
    ys, xs = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]]
    return np.array([(weights * xs).sum(), (weights * ys).sum()]) / weights.sum()


# Double Moving Digits


def test_digits_are_the_same_for_a_seed_and_differ_across_seeds() -> None:
    first, again, other = digits.make_clips(6, 5), digits.make_clips(6, 5), digits.make_clips(6, 6)
    assert same(first, again)
    assert not any(np.array_equal(a.frames, b.frames) for a, b in zip(first, other))
    assert same(digits.make_clips(3, 5), first[:3])  # a clip depends on its index, not on how many are drawn


def test_digit_splits_share_no_clip() -> None:
    train, test = digits.splits(60, 60, seed=2)
    assert len(train) == len(test) == 60
    assert not {c.frames.tobytes() for c in train} & {c.frames.tobytes() for c in test}


def test_digit_clips_have_the_requested_shape() -> None:
    clip = digits.make_clips(1, 0, frames=7, size=48)[0]
    assert clip.frames.dtype == np.uint8 and clip.frames.shape == (7, 48, 48, 3)
    assert clip.positions.shape == (7, 2, 2) and clip.length == 7


def test_digit_texts_say_what_the_fields_hold(digit_clips: list[Clip]) -> None:
    for clip in digit_clips:
        first, second = clip.objects
        assert first != second and re.fullmatch(r"digit \d", first) and re.fullmatch(r"digit \d", second)
        assert set(clip.motions) <= set(digits.MOTIONS) and clip.ambiguous is None
        assert clip.text == f"The {first} is moving {clip.motions[0]} and the {second} is moving {clip.motions[1]}."
    assert {m for clip in digit_clips for m in clip.motions} == set(digits.MOTIONS)


def test_every_generated_track_reads_back_as_its_motion(digit_clips: list[Clip]) -> None:
    for clip in digit_clips:
        assert [digits.motion_of(clip.positions[:, k]) for k in range(2)] == list(clip.motions), clip.text


def test_motion_of_survives_noise_of_two_pixels_and_calls_a_still_track_still(digit_clips: list[Clip]) -> None:
    rng = np.random.default_rng(0)
    tracks = [(clip.positions[:, k], clip.motions[k]) for clip in digit_clips for k in range(2)]
    read = [digits.motion_of(track + rng.normal(0, 2, track.shape)) == label for track, label in tracks]
    assert np.mean(read) > 0.97
    assert digits.motion_of(np.full((10, 2), 30.0) + rng.normal(0, 1, (10, 2))) == digits.STILL
    assert digits.motion_of(np.stack([np.full(10, 30.0), 40 - 3.0 * np.arange(10)], 1)) == "up"


def test_glyph_centres_are_where_the_ink_is(digit_clips: list[Clip]) -> None:
    checked = 0
    ys, xs = np.mgrid[0:64, 0:64]
    for clip in digit_clips:
        for frame, (a, b) in zip(clip.frames, clip.positions):
            if np.linalg.norm(a - b) < 40:  # closer, the two glyphs' ink may share a side of the bisector
                continue
            ink = frame[..., 0].astype(np.float64)
            nearer_a = (xs - a[0]) ** 2 + (ys - a[1]) ** 2 < (xs - b[0]) ** 2 + (ys - b[1]) ** 2
            assert np.linalg.norm(centroid(nearer_a, ink) - a) < 1.0
            assert np.linalg.norm(centroid(~nearer_a, ink) - b) < 1.0
            checked += 1
    assert checked >= 20


def test_digits_never_reach_a_wall(digit_clips: list[Clip]) -> None:
    frames = np.stack([clip.frames[..., 0] for clip in digit_clips])
    border = np.concatenate([frames[:, :, 0], frames[:, :, -1], frames[:, :, :, 0], frames[:, :, :, -1]], axis=-1)
    assert border.max() < digits.INK * 255
    assert frames.max() > 200  # the glyphs themselves are bright


# CATER-like scenes


def test_scenes_are_the_same_for_a_seed_and_differ_across_seeds() -> None:
    first, again, other = cater.make_clips(4, 5), cater.make_clips(4, 5), cater.make_clips(4, 6)
    assert same(first, again) and all(a.ambiguous == b.ambiguous for a, b in zip(first, again))
    assert not any(np.array_equal(a.frames, b.frames) for a, b in zip(first, other))


def test_scene_splits_share_no_clip() -> None:
    train, test = cater.splits(20, 20, seed=3)
    assert not {c.frames.tobytes() for c in train} & {c.frames.tobytes() for c in test}


def test_scenes_have_the_requested_shape() -> None:
    for clip in cater.make_clips(3, 0, frames=8, size=48, objects=(3, 3)):
        assert clip.frames.dtype == np.uint8 and clip.frames.shape == (8, 48, 48, 3)
        assert clip.positions.shape == clip.grid.shape == (8, 3, 2) and len(clip.objects) == len(clip.motions) == 3


def test_the_text_names_its_objects_first_in_order(cater_clips: list[Clip]) -> None:
    for clip in cater_clips:
        named = sorted((clip.text.index(name), name) for name in clip.objects if name in clip.text)
        assert [name for _, name in named] == list(clip.objects[: len(named)])
        assert [m for m in clip.motions[len(named) :]] == ["still"] * (len(clip.objects) - len(named))
    labels = {m for clip in cater_clips for m in clip.motions}
    assert set(cater.ACTIONS) | {"still", "contained", "contain then slide"} <= labels


def test_explicit_targets_are_the_final_grid_places(cater_clips: list[Clip]) -> None:
    for clip in cater_clips:
        claims = cater.targets(clip.text, clip.objects)
        assert claims and all(isinstance(where, tuple) for _, where in claims)
        for k, where in claims:
            assert tuple(clip.grid[-1, k]) == where and np.abs(clip.grid[:, k] - where).max() >= cater.SPACING
        assert cater.region_fits(clip.text, clip.grid[-1], clip.objects)


def test_the_vague_text_names_the_quadrant_of_each_target(cater_clips: list[Clip]) -> None:
    for clip in cater_clips:
        explicit, vague = cater.targets(clip.text, clip.objects), cater.targets(clip.ambiguous, clip.objects)
        assert [k for k, _ in explicit] == [k for k, _ in vague]
        for (_, (x, y)), (_, quadrant) in zip(explicit, vague):
            assert quadrant == cater.quadrant_of(x, y) is not None
        assert cater.region_fits(clip.ambiguous, clip.grid[-1], clip.objects)
        assert re.sub(r"\(-?\d, -?\d\)", "Q", clip.text) == re.sub(r"the \w+ quadrant", "Q", clip.ambiguous)


def test_region_fits_refuses_an_ending_elsewhere(cater_clips: list[Clip]) -> None:
    clip = cater_clips[0]
    k, _ = cater.targets(clip.ambiguous, clip.objects)[0]
    mirrored = clip.grid[-1].copy()
    mirrored[k] *= -1  # the opposite quadrant
    assert not cater.region_fits(clip.ambiguous, mirrored, clip.objects)
    shifted = clip.grid[-1].copy()
    shifted[k] += (1, 0) if shifted[k, 0] < 3 else (-1, 0)
    assert not cater.region_fits(clip.text, shifted, clip.objects)


def test_quadrants_are_the_usual_ones_and_axes_belong_to_none() -> None:
    assert [cater.quadrant_of(x, y) for x, y in [(1, 1), (-1, 2), (-2, -1), (3, -3)]] == [1, 2, 3, 4]
    assert cater.quadrant_of(0, 2) is None and cater.quadrant_of(2, 0) is None


def test_every_text_is_in_the_vocabulary(digit_clips: list[Clip], cater_clips: list[Clip]) -> None:
    for vocabulary, clips in ((digits.vocabulary(), digit_clips), (cater.vocabulary(), cater_clips)):
        for text in [c.text for c in clips] + [c.ambiguous for c in clips if c.ambiguous]:
            ids = vocabulary.encode(text, 64)
            assert UNKNOWN not in ids and vocabulary.decode(ids) == " ".join(vocabulary.split(text))


def test_object_centres_are_where_their_colour_is(cater_clips: list[Clip]) -> None:
    errors = []
    for clip in cater_clips[:60]:
        colours = [name.split()[1] for name in clip.objects]
        for frame, places in zip(clip.frames, clip.positions):
            masks = colour_masks(frame)
            gaps = np.linalg.norm(places[:, None] - places[None], axis=-1) + np.eye(len(places)) * 99
            for k, colour in enumerate(colours):
                if gaps[k].min() < 14 or masks[colour].sum() < 8:  # overlapping, or hidden in a cone
                    continue
                errors.append(np.linalg.norm(centroid(masks[colour]) - places[k]))
                assert errors[-1] < 2.0, (clip.text, k)
    assert len(errors) >= 500 and np.mean(errors) < 0.6  # highlights and dark edges aside, the colour is centred


def test_a_contained_object_is_hidden_and_follows_its_cone(cater_clips: list[Clip]) -> None:
    carried = 0
    for clip in cater_clips:
        if "contained" not in clip.motions:
            continue
        other = clip.motions.index("contained")
        cone = next(k for k, m in enumerate(clip.motions) if m == "contain" or m.startswith("contain "))
        assert clip.objects[cone].endswith("cone")
        colour = clip.objects[other].split()[1]
        assert colour_masks(clip.frames[0])[colour].sum() >= 8 and colour_masks(clip.frames[-1])[colour].sum() == 0
        assert np.array_equal(clip.grid[-1, other], clip.grid[-1, cone])
        if clip.motions[cone] != "contain":  # contained halfway, then carried to the target
            middle = (clip.length - 1) // 2
            assert np.array_equal(clip.grid[middle:, other], clip.grid[middle:, cone])
            assert np.abs(clip.grid[-1, other] - clip.grid[middle, other]).max() >= cater.SPACING
            carried += 1
    assert carried >= 3


def test_a_rotating_object_stays_put_and_looks_different_halfway(cater_clips: list[Clip]) -> None:
    turning = [(clip, clip.motions.index("rotate")) for clip in cater_clips if "rotate" in clip.motions]
    assert turning
    for clip, k in turning:
        assert np.array_equal(clip.grid[0, k], clip.grid[-1, k])
        others = np.delete(clip.positions[[0, clip.length // 2]], k, axis=1)
        if np.linalg.norm(others - clip.positions[0, k], axis=-1).min() < 14:  # something else passes by
            continue
        x, y = np.round(clip.positions[0, k]).astype(int)
        window = np.s_[max(y - 5, 0) : y + 6, max(x - 5, 0) : x + 6]
        change = np.abs(clip.frames[clip.length // 2][window].astype(int) - clip.frames[0][window]).max()
        assert change > 20, clip.text


def test_long_digit_clips_always_find_room_for_their_motion() -> None:
    """At the most that fits, rounding once left a start range empty (16 frames, in the first 1,200 clips)."""
    for frames in (16,):
        clips = digits.make_clips(1200, seed=0, frames=frames, stream=1)
        assert len(clips) == 1200 and all(
            digits.motion_of(c.positions[:, k]) == c.motions[k] for c in clips for k in (0, 1)
        )
