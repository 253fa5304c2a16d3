"""Stage 2: the OCR reads captions drawn in the test and groups them into blocks."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from engine.config import load_settings, replace
from engine.runtime.models import ModelPool
from engine.stages.ocr import Ocr, group_lines
from engine.types import DecodedImage, OcrResult, TextLine

REPO = Path(__file__).resolve().parents[2]
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A bold font: DejaVu Sans Bold when installed, else Pillow's default at that size."""
    return ImageFont.truetype(str(FONT), size) if FONT.is_file() else ImageFont.load_default(size=size)


def gradient(width: int = 480, height: int = 360) -> Image.Image:
    """A smooth coloured gradient with a darker disc: a stand-in for a picture."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([40 + 120 * x / width, 60 + 100 * y / height, 150 - 60 * x / width], axis=2)
    disc = (x - width / 2) ** 2 + (y - height / 2) ** 2 < (height / 4) ** 2
    rgb[disc] *= 0.6
    return Image.fromarray(rgb.astype(np.uint8))


def draw_caption(image: Image.Image, text: str, top: int, size: int = 34) -> tuple[int, int, int, int]:
    """Draw a centred white, black-outlined meme caption; return its ink box."""
    draw = ImageDraw.Draw(image)
    f = font(size)
    left, _, right, _ = draw.multiline_textbbox((0, 0), text, font=f, stroke_width=3, align="center")
    x = (image.width - (right - left)) // 2
    draw.multiline_text((x, top), text, font=f, fill="white", stroke_width=3, stroke_fill="black", align="center")
    box = draw.multiline_textbbox((x, top), text, font=f, stroke_width=3, align="center")
    return (int(box[0]), int(box[1]), int(box[2]), int(box[3]))


def decoded(image: Image.Image) -> DecodedImage:
    """Wrap a Pillow image as intake's output."""
    pixels = np.ascontiguousarray(np.asarray(image.convert("RGB")))
    return DecodedImage(pixels, sha256="0" * 64, source_format="PNG", source_size=image.size, animated=False)


@pytest.fixture(scope="module")
def ocr() -> Ocr:
    """One rapidocr-backed OCR for the module (the model loads once)."""
    return Ocr(load_settings().ocr, ModelPool(load_settings().runtime))


@pytest.fixture(scope="module")
def two_captions(ocr: Ocr) -> tuple[OcrResult, tuple[int, int, int, int], tuple[int, int, int, int]]:
    """A top caption of two lines and a bottom caption of one, read once."""
    image = gradient()
    top = draw_caption(image, "WHEN THE CODE\nFINALLY WORKS", top=10)
    bottom = draw_caption(image, "NOBODY KNOWS WHY", top=300)
    return ocr(decoded(image)), top, bottom


def overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over the area of `a`."""
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h / max(1, (a[2] - a[0]) * (a[3] - a[1]))


def test_reads_the_words(two_captions: tuple[OcrResult, tuple, tuple]) -> None:
    result, _, _ = two_captions
    words = " ".join(result.text.split()).upper()
    for word in ("WHEN", "CODE", "FINALLY", "WORKS", "NOBODY", "KNOWS", "WHY"):
        assert word in words, f"{word!r} not in {result.text!r}"


def test_two_captions_make_two_blocks_top_first(two_captions: tuple[OcrResult, tuple, tuple]) -> None:
    result, top, bottom = two_captions
    assert len(result.blocks) == 2, [b.text for b in result.blocks]
    first, second = result.blocks
    assert first.text.upper().split("\n") == ["WHEN THE CODE", "FINALLY WORKS"]
    assert second.text.upper() == "NOBODY KNOWS WHY"
    assert len(first.lines) == 2 and len(second.lines) == 1
    assert result.text == first.text + "\n\n" + second.text


def test_boxes_are_where_the_text_was_drawn(two_captions: tuple[OcrResult, tuple, tuple]) -> None:
    result, top, bottom = two_captions
    for block, drawn in zip(result.blocks, (top, bottom)):
        # The block box covers the drawn ink and hugs it (the detector pads text by a few px).
        assert overlap(drawn, block.box) > 0.95, (block.box, drawn)
        assert all(abs(a - b) <= 8 for a, b in zip(block.box, drawn)), (block.box, drawn)
        for line in block.lines:
            xs = [p[0] for p in line.polygon]
            ys = [p[1] for p in line.polygon]
            assert line.box[0] <= min(xs) and line.box[2] >= max(xs)
            assert line.box[1] <= min(ys) and line.box[3] >= max(ys)
            assert line.confidence >= 0.6
        assert block.confidence == min(line.confidence for line in block.lines)


def test_side_by_side_labels_read_left_to_right(ocr: Ocr) -> None:
    image = gradient(600, 300)
    draw = ImageDraw.Draw(image)
    for x, text in ((20, "LEFT"), (400, "RIGHT")):
        draw.text((x, 130), text, font=font(36), fill="white", stroke_width=3, stroke_fill="black")
    result = ocr(decoded(image))
    assert [b.text.upper() for b in result.blocks] == ["LEFT", "RIGHT"]


def test_blank_picture_has_no_blocks(ocr: Ocr) -> None:
    assert ocr(decoded(gradient())).blocks == ()


def test_rapidocr_logs_through_our_logging_without_colour(ocr: Ocr, capfd: pytest.CaptureFixture[str]) -> None:
    """A picture without text makes RapidOCR warn; its logger is ours now: no handler, no ANSI, silent by default."""
    capfd.readouterr()
    assert ocr(decoded(Image.new("RGB", (320, 240), "white"))).blocks == ()
    out, err = capfd.readouterr()
    assert "\x1b" not in out + err and err == "", err
    rapid = logging.getLogger("RapidOCR")
    assert rapid.handlers == [] and rapid.propagate and not rapid.isEnabledFor(logging.WARNING)


def test_rapidocr_prints_nothing_into_a_pipe() -> None:
    """The CLI's case: logging set up as the entry point does, stderr a pipe, a blank picture read."""
    script = (
        "import logging, sys, numpy as np\n"
        "logging.basicConfig(level=logging.WARNING, stream=sys.stderr)\n"
        "from engine.config import load_settings\n"
        "from engine.runtime.models import ModelPool\n"
        "from engine.stages.ocr import Ocr\n"
        "from engine.types import DecodedImage\n"
        "blank = DecodedImage(np.full((240, 320, 3), 255, np.uint8), '0' * 64, 'PNG', (320, 240), False)\n"
        "print(len(Ocr(load_settings().ocr, ModelPool(load_settings().runtime))(blank).blocks))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0 and done.stdout == "0\n", done.stderr
    assert done.stderr == "", done.stderr  # before: "\x1b[33m[WARNING] ... The text detection result is empty"


def test_none_backend_reads_nothing() -> None:
    settings = replace(load_settings(), ocr={"backend": "none"}).ocr
    image = gradient()
    draw_caption(image, "SOME TEXT", top=10)
    result = Ocr(settings, ModelPool(load_settings().runtime))(decoded(image))
    assert result.blocks == () and result.text == ""


def test_filters_drop_small_and_unsure_lines(ocr: Ocr) -> None:
    image = gradient()
    draw_caption(image, "BIG CAPTION", top=10, size=40)
    ImageDraw.Draw(image).text((20, 300), "tiny words here", font=font(9), fill="white")
    strict = Ocr(replace(load_settings(), ocr={"min_height": 30}).ocr, ModelPool(load_settings().runtime))
    strict.backend = ocr.backend  # share the loaded model; only the filters differ
    texts = [line.text.upper() for line in strict(decoded(image)).lines]
    assert texts == ["BIG CAPTION"]
    picky = Ocr(replace(load_settings(), ocr={"min_confidence": 1.0}).ocr, ModelPool(load_settings().runtime))
    picky.backend = ocr.backend
    assert picky(decoded(image)).blocks == ()


def test_rejects_non_rgb_input() -> None:
    image = DecodedImage(np.zeros((10, 10), np.uint8), "", "PNG", (10, 10), False)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8 RGB"):
        Ocr(load_settings().ocr, ModelPool(load_settings().runtime))(image)


def line(text: str, box: tuple[int, int, int, int]) -> TextLine:
    """A TextLine with an axis-aligned polygon."""
    x0, y0, x1, y1 = box
    return TextLine(text, box, 0.9, ((x0, y0), (x1, y0), (x1, y1), (x0, y1)))


def test_grouping_rules() -> None:
    lines = [
        line("BOTTOM", (100, 400, 300, 440)),
        line("SECOND", (110, 52, 290, 90)),  # stacked under FIRST: same block
        line("FIRST", (100, 10, 300, 48)),
        line("FAR RIGHT", (420, 20, 580, 56)),  # beside FIRST, no horizontal overlap
        line("HUGE", (90, 100, 310, 220)),  # under SECOND but three times taller
    ]
    blocks = group_lines(lines)
    assert [b.text for b in blocks] == ["FIRST\nSECOND", "FAR RIGHT", "HUGE", "BOTTOM"]
    assert blocks[0].box == (100, 10, 300, 90)
