"""Stage 4: what the CPU can know about a picture."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from engine.config import load_settings
from engine.runtime.models import ModelPool
from engine.stages.caption import Caption, describe_place, dominant_colors, find_panels
from engine.types import CleanImage, OcrResult, Subject, TextBlock


def clean(pixels: np.ndarray) -> CleanImage:
    empty = np.zeros(pixels.shape[:2], np.uint8)
    return CleanImage(pixels, empty, empty)


def textured(height: int, width: int, seed: int) -> np.ndarray:
    """A busy photo-like background (no uniform rows or columns)."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 255, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    return cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="module")
def caption() -> Caption:
    return Caption(load_settings().caption, ModelPool(load_settings().runtime))


def test_single_picture_is_one_panel() -> None:
    pixels = textured(300, 400, 1)
    assert find_panels(pixels) == ((0, 0, 400, 300),)


def test_panels_split_on_white_borders() -> None:
    top, bottom = textured(200, 400, 2), textured(200, 400, 3)
    stacked = np.concatenate([top, np.full((6, 400, 3), 255, np.uint8), bottom])
    assert find_panels(stacked) == ((0, 0, 400, 200), (0, 206, 400, 406))
    grid = np.concatenate([stacked, np.full((406, 5, 3), 255, np.uint8), stacked[:, ::-1]], axis=1)
    panels = find_panels(grid)
    assert len(panels) == 4
    assert panels[0] == (0, 0, 400, 200) and panels[-1] == (405, 206, 805, 406)


def test_flat_sky_is_not_a_border() -> None:
    sky = np.zeros((300, 400, 3), np.uint8)
    sky[:] = (130, 190, 235)
    sky[150:] = textured(150, 400, 4)  # a horizon: uniform rows above it, but no thin band
    assert len(find_panels(sky)) == 1


def test_salient_subject_is_found(caption: Caption) -> None:
    pixels = np.full((300, 400, 3), (90, 110, 160), np.uint8)
    cv2.circle(pixels, (300, 90), 40, (250, 220, 40), -1)
    scene = caption(clean(pixels), OcrResult(()))
    assert scene.subject is not None and scene.subject.kind == "salient"
    x0, y0, x1, y1 = scene.subject.box
    assert x0 <= 300 <= x1 and y0 <= 90 <= y1
    assert "right" in scene.qa[2].answer


def test_qa_carries_the_meme_text_and_colors(caption: Caption) -> None:
    pixels = np.full((240, 320, 3), (40, 80, 200), np.uint8)
    pixels[:, 240:] = 245
    block = TextBlock("ONE DOES NOT\nSIMPLY", (10, 10, 200, 60), 0.9, ())
    scene = caption(clean(pixels), OcrResult((block,)))
    assert scene.meme_text == "ONE DOES NOT SIMPLY"
    assert scene.qa[0].answer == "ONE DOES NOT SIMPLY"
    assert scene.colors[:2] == ("blue", "white")
    assert dominant_colors(pixels) == scene.colors


def test_place_words() -> None:
    assert describe_place((Subject("face", (0, 0, 50, 50), 1.0),), 300, 300) == "at the top left"
    assert describe_place((Subject("face", (125, 125, 175, 175), 1.0),), 300, 300) == "in the center"
    assert describe_place((Subject("face", (250, 125, 300, 175), 1.0),), 300, 300) == "at the right"
    assert describe_place((), 300, 300) == "nowhere in particular"


def test_rejects_wrong_pixels(caption: Caption) -> None:
    with pytest.raises(ValueError, match="clean.pixels"):
        caption(clean(np.zeros((10, 10), np.uint8)), OcrResult(()))


@pytest.mark.parametrize(
    ("meme", "center"),
    [("mg_30_keanu", (0.5, 0.5)), ("mg_45_sad-clinton", (0.5, 0.5)), ("mg_01_afraid", (0.35, 0.35))],
)
def test_faces_on_real_memes(caption: Caption, shared_memes: Path, meme: str, center: tuple[float, float]) -> None:
    pixels = np.asarray(Image.open(shared_memes / "clean" / f"{meme}.png").convert("RGB"))
    scene = caption(clean(pixels), OcrResult(()))
    assert scene.subject is not None and scene.subject.kind == "face"
    x0, y0, x1, y1 = scene.subject.box
    height, width = pixels.shape[:2]
    assert x0 <= center[0] * width <= x1 and y0 <= center[1] * height <= y1
    assert scene.qa[1].answer.startswith(("a person", "2 people", "3 people"))
