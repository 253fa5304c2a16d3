"""The composed pipeline: stage order, progress, option checks, caption kept on real memes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.config import load_settings
from engine.errors import UserError
from engine.pipeline import STAGES, Pipeline
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
    assert [stage for stage, _ in seen] == [*STAGES, "done"]
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


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (AnimationOptions(frames=1), "frames option"),
        (AnimationOptions(fps=99), "fps option"),
        (AnimationOptions(motion="wild"), "motion option"),
        (AnimationOptions(camera="dolly"), "camera option"),
        (AnimationOptions(format="avi"), "format"),
        (AnimationOptions(prompt="x" * 501), "prompt is too long"),
    ],
)
def test_bad_options_are_user_errors(pipeline: Pipeline, options: AnimationOptions, words: str) -> None:
    with pytest.raises(UserError, match=words) as caught:
        pipeline.run(EXAMPLE.read_bytes(), options)
    assert caught.value.code == "bad_option" and caught.value.message.endswith(".")


@pytest.mark.parametrize("meme", ["mg_01_afraid", "mg_30_keanu", "mg_50_sparta"])
def test_real_meme_caption_stays_still_while_the_picture_moves(
    pipeline: Pipeline, shared_memes: Path, ground_truth: dict, meme: str
) -> None:
    entry = next(m for m in ground_truth["memes"] if m["id"] == meme)
    result = pipeline.run((shared_memes / entry["image"]).read_bytes(), AnimationOptions(frames=12, size=300))
    frames = decode_gif(result.encoded.data)
    scale = frames.shape[2] / entry["width"]
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
    assert scale > 0
