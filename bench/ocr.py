"""Benchmark stages 2 and 3 (OCR, de-texting) on the real meme set; prints figures, asserts nothing.

Run: python bench/ocr.py [path/to/shared/memes]
The metrics are the ones tests/engine/test_real_memes.py gates on (definitions in its docstring).
Baselines from the same run: the judge on the un-cleaned inputs, and the inpainted region
itself used as the caption mask.
"""

from __future__ import annotations

import logging
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.config import load_settings  # noqa: E402
from engine.runtime.models import ModelPool  # noqa: E402
from engine.stages.detext import Detext  # noqa: E402
from engine.stages.ocr import Ocr  # noqa: E402
from tests.engine.test_real_memes import box_errors, decoded, judge_finds, load_memes, mask_scores  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of the values."""
    return float(np.percentile(np.asarray(values), q))


def main(root: Path) -> None:
    """Run OCR and de-texting over every meme and print the figures."""
    logging.basicConfig(level=logging.WARNING)
    memes = load_memes(root)
    settings = load_settings()
    ocr, detext = Ocr(settings.ocr, ModelPool(settings.runtime)), Detext(settings.detext)
    images = [decoded(root / m["image"]) for m in memes]

    started = time.perf_counter()
    ocr(images[0])  # the model loads on the first call; time the steady state
    load_s = time.perf_counter() - started

    ocr_s, detext_s, results, cleaned = [], [], [], []
    for image in images:
        t = time.perf_counter()
        results.append(ocr(image))
        ocr_s.append(time.perf_counter() - t)
    for image, result in zip(images, results):
        t = time.perf_counter()
        cleaned.append(detext(image, result))
        detext_s.append(time.perf_counter() - t)

    errors = chars = 0
    for meme, result in zip(memes, results):
        e, c = box_errors(meme, result)
        errors, chars = errors + e, chars + c

    stroke = [0, 0, 0]
    region = [0, 0, 0]
    for meme, clean in zip(memes, cleaned):
        with Image.open(root / meme["textmask"]) as im:
            truth = np.asarray(im.convert("L"))
        stroke = [a + b for a, b in zip(stroke, mask_scores(clean.text_mask, truth))]
        region = [a + b for a, b in zip(region, mask_scores(clean.region_mask, truth))]

    n = len(memes)
    print(f"memes: {n}   (rapidocr model load + first call {load_s:.2f} s)")
    print(f"OCR seconds per meme: median {statistics.median(ocr_s):.3f}  p95 {percentile(ocr_s, 95):.3f}")
    print(f"box CER: {errors / chars:.2%}  ({errors} edits / {chars} ground-truth chars)")
    print(f"detext seconds per meme: median {statistics.median(detext_s):.3f}  p95 {percentile(detext_s, 95):.3f}")
    for name, (i, p, t) in (("text_mask", stroke), ("baseline: region_mask", region)):
        print(f"{name:>22} vs textmask: IoU {i / (p + t - i):.3f}  recall {i / t:.3f}  precision {i / p:.3f}")

    if shutil.which("tesseract") is None:
        print("tesseract judge: skipped (tesseract CLI not installed)")
        return
    t = time.perf_counter()
    before = judge_finds([image.pixels for image in images], memes)
    after = judge_finds([clean.pixels for clean in cleaned], memes)
    print(f"tesseract judge ({time.perf_counter() - t:.1f} s for {2 * n} runs):")
    print(f"  reads caption words in un-cleaned inputs (baseline): {sum(before)}/{n}")
    print(f"  reads caption words after detext: {sum(after)}/{n}  -> detext success {1 - sum(after) / n:.1%}")
    still = [m["id"] for m, found in zip(memes, after) if found]
    if still:
        print(f"  still readable: {', '.join(still)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "memes")
