"""The composed pipeline: stage order, progress, option checks, caption kept on real memes."""

from __future__ import annotations

import io
import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.config import load_settings
from engine.errors import UserError
from engine.pipeline import STAGES, Pipeline, acceptable
from engine.types import AnimationOptions

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "monday-cat.png"


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline(load_settings())


def decode_gif(data: bytes) -> np.ndarray:
    frames = []
    with Image.open(io.BytesIO(data)) as gif:
        for i in range(gif.n_frames):
            gif.seek(i)
            frames.append(np.asarray(gif.convert("RGB"), dtype=np.int16))
    return np.stack(frames)


def test_progress_reports_every_stage_in_order(pipeline: Pipeline) -> None:
    seen: list[tuple[str, float]] = []
    result = pipeline.run(
        EXAMPLE.read_bytes(), AnimationOptions(frames=8, size=160), progress=lambda s, f: seen.append((s, f))
    )
    # each stage is announced as it starts; a backend may also report its own progress within its stage
    # (the acting backend after each frame), so repeats of one stage follow one another
    assert [stage for stage, _ in itertools.groupby(stage for stage, _ in seen)] == [*STAGES, "done"]
    for stage, fraction in seen[:-1]:
        index = STAGES.index(stage)
        assert index / len(STAGES) <= fraction <= (index + 1) / len(STAGES), (stage, fraction)
    fractions = [fraction for _, fraction in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert set(result.timings) == {*STAGES, "total"}
    assert result.timings["total"] >= sum(result.timings[s] for s in STAGES) * 0.99
    assert result.options.frames == 8 and result.options.format == "gif"


def test_defaults_come_from_the_settings(pipeline: Pipeline) -> None:
    resolved = pipeline.resolve(AnimationOptions())
    settings = load_settings()
    assert (resolved.frames, resolved.fps, resolved.size) == (
        settings.generate.frames, settings.generate.fps, settings.encode.size,
    )  # fmt: skip
    assert resolved.camera is None and resolved.max_bytes == settings.encode.max_bytes


@pytest.mark.parametrize("meme", ["mg_01_afraid", "mg_30_keanu", "mg_50_sparta"])
def test_real_meme_caption_stays_still_while_the_picture_moves(
    pipeline: Pipeline, shared_memes: Path, ground_truth: dict, meme: str
) -> None:
    entry = next(m for m in ground_truth["memes"] if m["id"] == meme)
    result = pipeline.run((shared_memes / entry["image"]).read_bytes(), AnimationOptions(frames=12, size=300))
    frames = decode_gif(result.encoded.data)
    assert max(frames.shape[1:3]) == 300, "the longer side is the size asked for"
    mask = np.asarray(Image.open(shared_memes / entry["textmask"]).convert("L").resize(frames.shape[2:0:-1])) > 128
    assert mask.sum() > 100
    caption_motion = np.abs(np.diff(frames, axis=0))[:, mask].mean()
    picture_motion = np.abs(np.diff(frames, axis=0))[:, ~mask].mean()
    assert picture_motion > 1.0, "the picture should move"
    assert caption_motion < picture_motion / 3, "the caption should stay still"
    # and it is the meme's own caption, at its place, in every frame
    original = np.asarray(
        Image.open(shared_memes / entry["image"]).convert("RGB").resize(frames.shape[2:0:-1], Image.Resampling.BOX),
        dtype=np.int16,
    )
    assert np.abs(frames[:, mask] - original[mask]).mean() < 25


def test_fallback_format_replaces_a_gif_that_fits_only_by_shrinking(pipeline: Pipeline) -> None:
    data = EXAMPLE.read_bytes()
    small = AnimationOptions(frames=8, size=256, seed=3)
    mp4 = pipeline.run(data, replace(small, format="mp4")).encoded
    budget = len(mp4.data)  # the MP4 fits as it is; a GIF of the same frames is several times larger
    gif_only = pipeline.run(data, replace(small, format="gif", max_bytes=budget)).encoded
    assert gif_only.format == "gif" and not acceptable(gif_only, pipeline.settings.generate.fps)

    chosen = pipeline.run(data, replace(small, format="gif", max_bytes=budget, fallback_format="mp4")).encoded
    assert chosen.format == "mp4" and len(chosen.data) <= budget
    assert (chosen.width, chosen.height) == (mp4.width, mp4.height) and not chosen.fitted

    roomy = pipeline.run(data, replace(small, format="gif", max_bytes=10**8, fallback_format="mp4")).encoded
    assert roomy.format == "gif" and not roomy.fitted  # a GIF that fits as it is stays a GIF


def test_fallback_format_gives_the_sharper_of_two_shrunk_results_or_a_clear_refusal(pipeline: Pipeline) -> None:
    data = EXAMPLE.read_bytes()
    small = AnimationOptions(frames=8, size=256, seed=3, format="gif", fallback_format="mp4")
    tight = pipeline.run(data, replace(small, fallback_format=None, max_bytes=2000)).encoded
    chosen = pipeline.run(data, replace(small, max_bytes=2000)).encoded
    assert len(chosen.data) <= 2000 and chosen.width >= tight.width  # never a smaller picture than the GIF alone
    with pytest.raises(UserError) as caught:
        pipeline.run(data, replace(small, max_bytes=300))  # nothing fits: the encoder's own sentence, not a crash
    assert caught.value.code == "too_large" and "300" in caught.value.message
