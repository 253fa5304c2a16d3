"""OCR and de-texting on the real meme set (skipped when the set is absent).

Definitions used here and by bench/ocr.py:

- box character error rate: for every ground-truth caption line (its `box`), the OCR lines
  whose box lies mostly (>= half its area) inside that box, and more inside it than inside
  any other caption box, are joined in reading order with spaces. Both texts are upper-cased
  with whitespace collapsed; the Levenshtein distance is summed over all caption lines of all
  memes and divided by the total number of ground-truth characters. OCR lines outside every
  caption box (the template's own labels) are not counted either way.
- "the judge finds caption text": Debian's tesseract (a different OCR from the one that made
  the inpainting mask), run on the caption area only (every ground-truth box padded by 6 px,
  pasted on a grey canvas), recognises at least one ground-truth word of >= 4 letters.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from engine.config import load_settings
from engine.runtime.models import ModelPool
from engine.stages.detext import Detext
from engine.stages.ocr import Ocr
from engine.types import CleanImage, DecodedImage, OcrResult

_JUDGE_PAD = 6
_JUDGE_WORKERS = 4  # tesseract is single-threaded per process here (OMP_THREAD_LIMIT=1)


def load_memes(shared_memes: Path) -> list[dict[str, Any]]:
    """The ground-truth records of every meme in the set."""
    return list(json.loads((shared_memes / "ground_truth.json").read_text("utf-8"))["memes"])


def decoded(path: Path) -> DecodedImage:
    """A DecodedImage of an image file, as intake would hand it on (already at working size)."""
    with Image.open(path) as im:
        pixels = np.ascontiguousarray(np.asarray(im.convert("RGB")))
    return DecodedImage(
        pixels, sha256="", source_format="JPEG", source_size=(pixels.shape[1], pixels.shape[0]), animated=False
    )


def normalise(text: str) -> str:
    """Upper-case, whitespace collapsed to single spaces."""
    return " ".join(text.upper().split())


def levenshtein(a: str, b: str) -> int:
    """The edit distance between two strings."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _intersection(a: tuple[int, ...] | list[int], b: tuple[int, ...] | list[int]) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def box_errors(meme: dict[str, Any], result: OcrResult) -> tuple[int, int]:
    """(edit distance, ground-truth characters) of one meme over its caption boxes."""
    gt_boxes = [line["box"] for line in meme["lines"]]
    assigned: list[list[Any]] = [[] for _ in gt_boxes]
    for line in result.lines:
        area = max(1, (line.box[2] - line.box[0]) * (line.box[3] - line.box[1]))
        shares = [_intersection(line.box, box) / area for box in gt_boxes]
        best = int(np.argmax(shares))
        if shares[best] >= 0.5:
            assigned[best].append(line)
    errors = chars = 0
    for gt_line, found in zip(meme["lines"], assigned):
        found.sort(key=lambda ln: (ln.box[1] + ln.box[3], ln.box[0]))
        truth = normalise(gt_line["text"])
        errors += levenshtein(normalise(" ".join(ln.text for ln in found)), truth)
        chars += len(truth)
    return errors, chars


def caption_canvas(pixels: np.ndarray, meme: dict[str, Any]) -> Image.Image:
    """The meme's caption boxes (padded) stacked on a grey canvas: the judge sees nothing else."""
    height, width = pixels.shape[:2]
    crops = []
    for line in meme["lines"]:
        x0, y0, x1, y1 = line["box"]
        crop = pixels[
            max(0, y0 - _JUDGE_PAD) : min(height, y1 + _JUDGE_PAD),
            max(0, x0 - _JUDGE_PAD) : min(width, x1 + _JUDGE_PAD),
        ]
        crops.append(Image.fromarray(np.ascontiguousarray(crop)))
    gap = 20
    canvas = Image.new(
        "RGB", (max(c.width for c in crops) + 2 * gap, sum(c.height + gap for c in crops) + gap), (128, 128, 128)
    )
    y = gap
    for crop in crops:
        canvas.paste(crop, (gap, y))
        y += crop.height + gap
    return canvas


def caption_words(meme: dict[str, Any]) -> set[str]:
    """The ground-truth words of at least four letters, upper-cased, punctuation stripped."""
    words = re.findall(r"[A-Za-z']+", meme["text"])
    return {w.replace("'", "").upper() for w in words if len(w.replace("'", "")) >= 4}


def tesseract_words(image: Image.Image) -> set[str]:
    """The words Debian's tesseract reads in an image, upper-cased, punctuation stripped."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "judge.png"
        image.save(path)
        out = subprocess.run(
            ["tesseract", str(path), "stdout", "--psm", "11", "-l", "eng"],
            capture_output=True, text=True, timeout=60, env={"OMP_THREAD_LIMIT": "1", "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
    return {w.replace("'", "").upper() for w in re.findall(r"[A-Za-z']+", out.stdout)}


def judge_finds(images: list[np.ndarray], memes: list[dict[str, Any]]) -> list[bool]:
    """Per meme: does tesseract read any of its caption words in its caption area?"""

    def one(pair: tuple[np.ndarray, dict[str, Any]]) -> bool:
        pixels, meme = pair
        return bool(tesseract_words(caption_canvas(pixels, meme)) & caption_words(meme))

    with ThreadPoolExecutor(_JUDGE_WORKERS) as pool:
        return list(pool.map(one, zip(images, memes)))


def mask_scores(predicted: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    """(intersection, predicted, truth) pixel counts of two masks."""
    p, t = predicted > 0, truth > 0
    return int(np.count_nonzero(p & t)), int(np.count_nonzero(p)), int(np.count_nonzero(t))


# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def memes(shared_memes: Path) -> list[dict[str, Any]]:
    """Every meme record of the set."""
    return load_memes(shared_memes)


@pytest.fixture(scope="module")
def rendered(shared_memes: Path, memes: list[dict[str, Any]]) -> list[DecodedImage]:
    """The captioned inputs."""
    return [decoded(shared_memes / m["image"]) for m in memes]


@pytest.fixture(scope="module")
def ocr_results(rendered: list[DecodedImage]) -> list[OcrResult]:
    """OCR of every meme, once per module."""
    ocr = Ocr(load_settings().ocr, ModelPool(load_settings().runtime))
    return [ocr(image) for image in rendered]


@pytest.fixture(scope="module")
def cleaned(rendered: list[DecodedImage], ocr_results: list[OcrResult]) -> list[CleanImage]:
    """Every meme after de-texting."""
    detext = Detext(load_settings().detext)
    return [detext(image, result) for image, result in zip(rendered, ocr_results)]


def test_ocr_box_character_error_rate(memes: list[dict[str, Any]], ocr_results: list[OcrResult]) -> None:
    errors = chars = 0
    for meme, result in zip(memes, ocr_results):
        e, c = box_errors(meme, result)
        errors += e
        chars += c
    assert len(memes) == 60
    assert errors / chars <= 0.03, f"box CER {errors / chars:.3%} over {chars} characters"


def test_text_mask_matches_the_caption_strokes(
    shared_memes: Path, memes: list[dict[str, Any]], cleaned: list[CleanImage]
) -> None:
    inter = pred = true = 0
    for meme, clean in zip(memes, cleaned):
        with Image.open(shared_memes / meme["textmask"]) as im:
            truth = np.asarray(im.convert("L"))
        i, p, t = mask_scores(clean.text_mask, truth)
        inter, pred, true = inter + i, pred + p, true + t
    iou = inter / (pred + true - inter)
    # Measured: recall 0.934, precision 0.880, IoU 0.83. Before the mask kept to its line's ink colours
    # and left the picture's own labels alone: 0.959, 0.790, 0.764 -- the rest was picture restored still.
    # Recall misses mostly outline pixels the colour of the picture under them, which show either way.
    assert inter / true >= 0.93, f"text_mask recall {inter / true:.3f}"
    assert inter / pred >= 0.85, f"text_mask precision {inter / pred:.3f}"
    assert iou >= 0.80, f"text_mask IoU {iou:.3f}"


def test_caption_lines_are_told_from_the_pictures_own_text(
    memes: list[dict[str, Any]], ocr_results: list[OcrResult]
) -> None:
    # A line counts as the caption's when at least half its box lies in a ground-truth caption box.
    kept = set_apart = others = 0
    for meme, result in zip(memes, ocr_results):
        for line in (*result.lines, *result.picture_text):
            area = max(1, (line.box[2] - line.box[0]) * (line.box[3] - line.box[1]))
            caption = max(_intersection(line.box, gt["box"]) / area for gt in meme["lines"]) >= 0.5
            if caption:
                assert line in result.lines, f"{meme['id']}: caption line {line.text!r} taken for the picture's"
                kept += 1
            else:
                others += 1
                set_apart += line in result.picture_text
    # Measured: all 196 caption lines kept; 24 of the 37 others set apart (the rest are black or white
    # too: a diagram's titles, a film's subtitles), among them every label of the midwit's bell curve.
    assert kept >= 190 and set_apart >= 0.6 * others, (kept, set_apart, others)
    midwit = ocr_results[[m["id"] for m in memes].index("mg_34_midwit")]
    assert {"34%", "14%", "55", "100", "145"} <= {line.text for line in midwit.picture_text}


def test_the_fill_invents_few_edges(shared_memes: Path, memes: list[dict[str, Any]], cleaned: list[CleanImage]) -> None:
    # Inpainting a whole band streaks it, and the streaks show once the picture moves under the still
    # caption. Count the edges of the de-texted picture in the caption boxes that the clean template lacks.
    invented = {}
    for meme, clean in zip(memes, cleaned):
        with Image.open(shared_memes / meme["clean"]) as im:
            truth = np.asarray(im.convert("RGB"))
        boxes = np.zeros(truth.shape[:2], bool)
        for line in meme["lines"]:
            x0, y0, x1, y1 = line["box"]
            boxes[y0:y1, x0:x1] = True
        real = cv2.dilate(edges(truth).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        invented[meme["id"]] = 1000 * np.count_nonzero(edges(clean.pixels) & ~real & boxes) / np.count_nonzero(boxes)
    # Measured, per 1000 caption-box pixels: mean 2.6, keanu's bottom band 6.0; the whole-band
    # Navier-Stokes fill before: mean 9.2, keanu 11.1.
    assert np.mean(list(invented.values())) <= 4.0, invented
    assert invented["mg_30_keanu"] <= 8.0, invented["mg_30_keanu"]


def test_rotated_captions_leave_nothing_behind(
    shared_memes: Path, memes: list[dict[str, Any]], rendered: list[DecodedImage], cleaned: list[CleanImage]
) -> None:
    # The caption pixels one can see (they differ from the clean template) must be masked, to be restored,
    # and gone from the de-texted picture, else they move with it: the handshake's LEFT kept its L's top.
    rotated = [(m, image, clean) for m, image, clean in zip(memes, rendered, cleaned) if m["rotated"]]
    assert len(rotated) == 4
    for meme, image, clean in rotated:
        with Image.open(shared_memes / meme["clean"]) as im:
            template = np.asarray(im.convert("RGB")).astype(np.int16)
        with Image.open(shared_memes / meme["textmask"]) as im:
            strokes = np.asarray(im.convert("L")) > 0
        pixels = image.pixels.astype(np.int16)
        visible = strokes & (np.abs(pixels - template).max(axis=2) > 48)
        left = visible & (np.abs(clean.pixels.astype(np.int16) - pixels).max(axis=2) <= 24)
        masked = visible & (clean.text_mask > 0)
        # measured: at most 1.5 % left (friends), 0.3 % for the handshake (8.8 % before); masked >= 97 %
        assert np.count_nonzero(left) <= 0.02 * np.count_nonzero(visible), (meme["id"], np.count_nonzero(left))
        assert np.count_nonzero(masked) >= 0.96 * np.count_nonzero(visible), (meme["id"], np.count_nonzero(masked))


def edges(rgb: np.ndarray) -> np.ndarray:
    """Canny edges of a picture's luminance."""
    return cv2.Canny(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 50, 120) > 0


@pytest.mark.skipif(
    shutil.which("tesseract") is None, reason="Debian's tesseract CLI (the second-opinion OCR) is not installed"
)
def test_second_ocr_finds_no_caption_after_detext(
    memes: list[dict[str, Any]], rendered: list[DecodedImage], cleaned: list[CleanImage]
) -> None:
    before = judge_finds([image.pixels for image in rendered], memes)
    after = judge_finds([clean.pixels for clean in cleaned], memes)
    # The judge is not blind: on the captioned inputs it reads caption words in most memes.
    assert sum(before) >= 0.75 * len(memes), f"judge read captions in only {sum(before)}/{len(memes)} inputs"
    still = [m["id"] for m, found in zip(memes, after) if found]
    assert len(still) <= 0.05 * len(memes), f"caption text still readable in {len(still)} memes: {still}"
