"""Stage 7: the caption comes back crisp and still on moving frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine.config import PostprocessSettings
from engine.stages.postprocess import Postprocess
from engine.types import CleanImage, DecodedImage, Frames, OcrResult, TextBlock, TextLine

W, H = 400, 300
OUT_W, OUT_H = 200, 150
CAPTION_BOX = (60, 10, 340, 60)


def _meme() -> tuple[DecodedImage, CleanImage]:
    """A textured picture with a white, black-outlined caption on top, and its stroke mask."""
    rng = np.random.default_rng(0)
    picture = cv2.resize(rng.integers(60, 200, (H // 10, W // 10, 3)).astype(np.uint8), (W, H))
    mask = np.zeros((H, W), np.uint8)
    cv2.putText(mask, "WHEN IT", (70, 50), cv2.FONT_HERSHEY_DUPLEX, 1.6, 255, 9)  # glyph plus outline
    pixels = picture.copy()
    pixels[mask > 0] = 0
    glyphs = np.zeros_like(mask)
    cv2.putText(glyphs, "WHEN IT", (70, 50), cv2.FONT_HERSHEY_DUPLEX, 1.6, 255, 3)
    pixels[glyphs > 0] = 255
    image = DecodedImage(pixels=pixels, sha256="0" * 64, source_format="PNG", source_size=(W, H), animated=False)
    return image, CleanImage(pixels=picture, text_mask=mask, region_mask=cv2.dilate(mask, np.ones((9, 9), np.uint8)))


def _moving(width: int = OUT_W, height: int = OUT_H, n: int = 6) -> Frames:
    """Frames whose whole picture moves (a horizontal scroll of a texture)."""
    rng = np.random.default_rng(1)
    texture = cv2.resize(rng.integers(60, 200, (20, 40, 3)).astype(np.uint8), (width + 4 * n, height))
    frames = np.stack([texture[:, 4 * i : 4 * i + width] for i in range(n)])
    return Frames(frames=np.ascontiguousarray(frames), fps=12.0, motion="pan-left")


def _ocr() -> OcrResult:
    line = TextLine("WHEN IT", CAPTION_BOX, 0.99, ())
    return OcrResult(blocks=(TextBlock("WHEN IT", CAPTION_BOX, 0.99, (line,)),))


def test_caption_is_restored_at_its_place_on_every_frame() -> None:
    image, clean = _meme()
    frames = _moving()
    out = Postprocess(PostprocessSettings(restore_caption=True))(frames, image, clean)
    assert out.frames.shape == frames.frames.shape and out.frames.dtype == np.uint8
    assert out.fps == frames.fps and out.motion == frames.motion
    expected = cv2.resize(image.pixels, (OUT_W, OUT_H), interpolation=cv2.INTER_AREA).astype(np.int16)
    small_mask = cv2.resize(clean.text_mask, (OUT_W, OUT_H), interpolation=cv2.INTER_AREA)
    inside = small_mask == 255  # pixels the caption covers fully; partly covered ones are anti-aliased
    far = cv2.dilate((small_mask > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
    assert inside.sum() > 200
    for i, frame in enumerate(out.frames.astype(np.int16)):
        assert np.abs(frame[inside] - expected[inside]).max() <= 3, i
        np.testing.assert_array_equal(out.frames[i][far], frames.frames[i][far])
    # the caption stays still while the picture behind it moves
    assert np.abs(np.diff(out.frames[:, inside].astype(np.int16), axis=0)).max() <= 1
    assert np.abs(np.diff(out.frames[:, far].astype(np.int16), axis=0)).mean() > 5


def test_caption_edge_is_feathered_not_jaggy() -> None:
    image, clean = _meme()
    frames = Frames(frames=np.full((2, OUT_H, OUT_W, 3), 128, np.uint8), fps=12.0)
    out = Postprocess(PostprocessSettings(restore_caption=True))(frames, image, clean)
    # the pixels just outside the caption take a little of it, so its edge is soft, not a hard step
    small_mask = cv2.resize(clean.text_mask, (OUT_W, OUT_H), interpolation=cv2.INTER_AREA)
    ring = (cv2.dilate(small_mask, np.ones((3, 3), np.uint8)) > 0) & (small_mask == 0)
    touched = np.abs(out.frames[0][ring].astype(np.int16) - 128).max(axis=1) > 2
    assert touched.mean() > 0.5
    far = cv2.dilate(small_mask, np.ones((9, 9), np.uint8)) == 0
    assert (out.frames[0][far] == 128).all()


def test_restore_caption_false_leaves_frames_untouched() -> None:
    image, clean = _meme()
    frames = _moving()
    out = Postprocess(PostprocessSettings(restore_caption=False))(frames, image, clean)
    np.testing.assert_array_equal(out.frames, frames.frames)


def test_a_meme_without_caption_is_left_alone() -> None:
    image, clean = _meme()
    empty = CleanImage(pixels=clean.pixels, text_mask=np.zeros_like(clean.text_mask), region_mask=clean.region_mask)
    frames = _moving()
    np.testing.assert_array_equal(Postprocess(PostprocessSettings(True))(frames, image, empty).frames, frames.frames)


@pytest.mark.parametrize("with_ocr", [True, False])
def test_another_aspect_re_lays_the_caption(with_ocr: bool) -> None:
    image, clean = _meme()
    frames = _moving(width=160, height=160)  # square frames from a 4:3 meme
    out = Postprocess(PostprocessSettings(True))(frames, image, clean, ocr=_ocr() if with_ocr else None)
    changed = np.abs(out.frames.astype(np.int16) - frames.frames).max(axis=(0, 3)) > 30
    assert changed[:30].sum() > 150  # text drawn in the caption's area (top of the frame)
    assert changed[60:].sum() == 0  # and nowhere else
    top = out.frames[0, :30].reshape(-1, 3)
    assert (top.min(axis=1) > 235).sum() > 20 and (top.max(axis=1) < 20).sum() > 20  # white letters, black outline
    # the text fits the narrower frame
    columns = np.flatnonzero(changed.any(axis=0))
    assert columns.min() >= 2 and columns.max() <= 157


def test_mismatched_mask_is_refused() -> None:
    image, clean = _meme()
    bad = CleanImage(pixels=clean.pixels, text_mask=clean.text_mask[:-1], region_mask=clean.region_mask)
    with pytest.raises(ValueError, match="clean.text_mask"):
        Postprocess(PostprocessSettings(True))(_moving(), image, bad)


def test_frames_must_be_a_uint8_stack() -> None:
    image, clean = _meme()
    with pytest.raises(ValueError, match="frames.frames"):
        Postprocess(PostprocessSettings(True))(Frames(frames=np.zeros((4, 4, 3)), fps=1.0), image, clean)
