"""Stage 3: de-texting removes a caption drawn in the test and masks its strokes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine.config import load_settings, replace
from engine.runtime.models import ModelPool
from engine.stages.detext import Detext
from engine.stages.ocr import Ocr
from engine.types import CleanImage, DecodedImage, OcrResult, TextBlock, TextLine
from tests.engine.test_ocr import decoded, font, gradient


def caption_layer(size: tuple[int, int]) -> Image.Image:
    """A transparent layer with a white, black-outlined caption at the top."""
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).text(
        (40, 20), "MAKE IT MOVE", font=font(44), fill="white", stroke_width=3, stroke_fill="black"
    )
    return layer


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray, np.ndarray, OcrResult, CleanImage]:
    """Background, captioned image, the caption's alpha, the OCR of it and its de-texting."""
    background = gradient()
    layer = caption_layer(background.size)
    captioned = Image.alpha_composite(background.convert("RGBA"), layer).convert("RGB")
    ocr = Ocr(load_settings().ocr, ModelPool(load_settings().runtime))
    result = ocr(decoded(captioned))
    clean = Detext(load_settings().detext)(decoded(captioned), result)
    alpha = np.asarray(layer)[:, :, 3]
    return np.asarray(background), np.asarray(captioned), alpha, result, clean


def test_ocr_sees_the_caption_first(scene: tuple) -> None:
    _, _, _, result, _ = scene
    assert " ".join(result.text.upper().split()) == "MAKE IT MOVE"


def test_caption_is_removed(scene: tuple) -> None:
    background, _, alpha, _, clean = scene
    assert clean.pixels.shape == background.shape and clean.pixels.dtype == np.uint8
    # A second read of the cleaned picture finds nothing.
    assert (
        Ocr(load_settings().ocr, ModelPool(load_settings().runtime))(decoded(Image.fromarray(clean.pixels))).blocks
        == ()
    )
    # Where the glyphs were, the fill is close to the picture that was under them.
    ink = alpha > 0
    error = np.abs(clean.pixels.astype(int) - background.astype(int)).max(axis=2)
    assert float(np.mean(error[ink])) < 12, float(np.mean(error[ink]))
    # Outside the inpainted region nothing changed.
    outside = clean.region_mask == 0
    assert np.array_equal(clean.pixels[outside], np.asarray(scene[1])[outside])


def test_region_covers_the_caption(scene: tuple) -> None:
    _, _, alpha, _, clean = scene
    ink = alpha > 0
    assert set(np.unique(clean.region_mask)) <= {0, 255}
    assert np.all(clean.region_mask[ink] == 255)


def test_text_mask_covers_the_glyphs_and_little_else(scene: tuple) -> None:
    _, _, alpha, _, clean = scene
    assert clean.text_mask.shape == alpha.shape and clean.text_mask.dtype == np.uint8
    assert set(np.unique(clean.text_mask)) <= {0, 255}
    ink = alpha >= 128
    mask = clean.text_mask > 0
    recall = np.count_nonzero(mask & ink) / np.count_nonzero(ink)
    # Anything drawn at all (anti-aliased rim included) counts as caption for precision.
    precision = np.count_nonzero(mask & (alpha > 0)) / np.count_nonzero(mask)
    assert recall > 0.97, recall
    assert precision > 0.85, precision
    # The mask is strokes, not boxes: it is much smaller than the inpainted region.
    assert np.count_nonzero(mask) < 0.7 * np.count_nonzero(clean.region_mask)


def test_white_glyph_on_white_keeps_its_fill() -> None:
    # The fill differs from the background only through its outline: it must still be masked.
    white = Image.new("RGB", (480, 200), "white")
    layer = caption_layer(white.size)
    captioned = Image.alpha_composite(white.convert("RGBA"), layer).convert("RGB")
    image = decoded(captioned)
    result = Ocr(load_settings().ocr, ModelPool(load_settings().runtime))(image)
    clean = Detext(load_settings().detext)(image, result)
    ink = np.asarray(layer)[:, :, 3] >= 128
    recall = np.count_nonzero((clean.text_mask > 0) & ink) / np.count_nonzero(ink)
    assert recall > 0.95, recall


def test_no_text_leaves_the_image_unchanged() -> None:
    image = decoded(gradient())
    clean = Detext(load_settings().detext)(image, OcrResult(blocks=()))
    assert np.array_equal(clean.pixels, image.pixels)
    assert clean.text_mask.shape == clean.region_mask.shape == image.pixels.shape[:2]
    assert not clean.text_mask.any() and not clean.region_mask.any()


def test_region_is_the_widened_polygon_and_telea_works() -> None:
    # A plain horizontal ramp: nothing in it differs clearly from its own inpainting.
    ramp = np.repeat(np.linspace(30, 220, 200, dtype=np.uint8)[None, :, None], 100, axis=0)
    image = decoded(Image.fromarray(np.ascontiguousarray(np.repeat(ramp, 3, axis=2))))
    polygon = ((50.0, 40.0), (150.0, 40.0), (150.0, 60.0), (50.0, 60.0))
    text_line = TextLine("X", (50, 40, 151, 61), 0.9, polygon)
    result = OcrResult(blocks=(TextBlock("X", text_line.box, 0.9, (text_line,)),))
    settings = replace(load_settings(), detext={"widen_px": 5, "method": "telea"}).detext
    clean = Detext(settings)(image, result)
    ys, xs = np.nonzero(clean.region_mask)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (45, 155, 35, 65)
    assert not clean.text_mask.any()


def test_rejects_non_rgb_input() -> None:
    image = DecodedImage(np.zeros((10, 10, 4), np.uint8), "", "PNG", (10, 10), False)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8 RGB"):
        Detext(load_settings().detext)(image, OcrResult(blocks=()))
