"""Florence-2: a detailed caption and object labels for the caption stage, quad-boxed text lines for OCR."""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

import numpy as np

from engine.config import CaptionSettings, OcrSettings, RuntimeSettings
from engine.geometry import polygon_box
from engine.runtime import gpu
from engine.runtime.models import ModelPool
from engine.types import QA, TextLine

log = logging.getLogger(__name__)

CAPTION_TASK = "<MORE_DETAILED_CAPTION>"
OBJECTS_TASK = "<OD>"
OCR_TASK = "<OCR_WITH_REGION>"
DESCRIBE_QUESTION = "Describe the picture in detail."
LOCATION_BINS = 1000  # Florence-2 writes coordinates as <loc_0>..<loc_999> over the picture's width and height
_QUAD = re.compile(r"((?:\s*<loc_\d+>){8})")
_LOC = re.compile(r"<loc_(\d+)>")
_MARKUP = re.compile(r"</?s>|<pad>|<unk>")
MAX_ANSWER_CHARS = 400


def shared_florence2(models: ModelPool, model: str, *, key: str) -> Florence2:
    """The pipeline's one Florence2 for `model`, so caption and OCR on the same model load it once."""
    return models.shared(("florence2", model), lambda: Florence2(model, models.runtime, key=key))


class Florence2Ocr:
    """ocr = "florence2": `<OCR_WITH_REGION>` text lines with their quadrilaterals."""

    def __init__(self, settings: OcrSettings, models: ModelPool) -> None:
        self.model = shared_florence2(models, settings.florence2_model, key="ocr.florence2_model")
        self.max_new_tokens = settings.max_new_tokens

    def read_lines(self, rgb: np.ndarray) -> list[TextLine]:
        """The picture's text lines."""
        return self.model.read_lines(rgb, max_new_tokens=self.max_new_tokens)


class Florence2Caption:
    """caption = "florence2": a detailed caption and the detected objects' labels (it has no open questions)."""

    def __init__(self, settings: CaptionSettings, models: ModelPool) -> None:
        self.model = shared_florence2(models, settings.florence2_model, key="caption.florence2_model")
        self.max_new_tokens = settings.max_new_tokens

    def answer(self, pixels: np.ndarray) -> tuple[QA, ...]:
        """The caption and the labels as question/answer pairs."""
        return self.model.describe(pixels, max_new_tokens=self.max_new_tokens)


class Florence2:
    """A Florence-2 model (`Florence2ForConditionalGeneration`), loaded from local files on first use."""

    def __init__(self, model: str, runtime: RuntimeSettings, *, key: str) -> None:
        # Checked when the pipeline is built, so a missing model stops `serve` at start, not the first job.
        gpu.require_torch("florence2 backend")
        self.path = gpu.model_path(model, key=key)
        self.model_id = model
        self.runtime = runtime
        self._loaded: tuple[Any, Any, Any, Any] | None = None  # model, processor, device, dtype
        self._lock = threading.Lock()

    def run(self, pixels: np.ndarray, tasks: tuple[str, ...], *, max_new_tokens: int) -> list[str]:
        """The raw decoded output (location tokens kept) of each task on the RGB picture, in one generate call."""
        import torch
        from PIL import Image

        model, processor, device, dtype = self._load()
        image = Image.fromarray(pixels)
        inputs = processor(images=[image] * len(tasks), text=list(tasks), padding=True, return_tensors="pt").to(device)
        inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
        started = time.perf_counter()
        with torch.inference_mode():
            # Beam search as in the model card: greedy decoding drops lines from long OCR outputs.
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=3)
        texts: list[str] = processor.batch_decode(out, skip_special_tokens=False)
        log.debug("florence2 ran %s in %.2f s", ",".join(tasks), time.perf_counter() - started)
        return texts

    def describe(self, pixels: np.ndarray, *, max_new_tokens: int) -> tuple[QA, ...]:
        """A detailed caption, and the detected objects' labels (largest first) as answers."""
        height, width = pixels.shape[:2]
        caption, objects = self.run(pixels, (CAPTION_TASK, OBJECTS_TASK), max_new_tokens=max_new_tokens)
        qa = [QA(DESCRIBE_QUESTION, _cap(plain_text(caption)) or "no answer")]
        labels = parse_objects(objects, width, height)
        if labels:
            qa.append(QA("What is the main character?", labels[0]))
            qa.append(QA("What objects are in the picture?", _cap(", ".join(dict.fromkeys(labels)))))
        return tuple(qa)

    def read_lines(self, pixels: np.ndarray, *, max_new_tokens: int) -> list[TextLine]:
        """The picture's text lines with their quadrilaterals (<OCR_WITH_REGION>)."""
        height, width = pixels.shape[:2]
        (text,) = self.run(pixels, (OCR_TASK,), max_new_tokens=max_new_tokens)
        return parse_ocr_with_region(text, width, height)

    def _load(self) -> tuple[Any, Any, Any, Any]:
        with self._lock:
            if self._loaded is None:
                from transformers import AutoProcessor, Florence2ForConditionalGeneration
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
                device = gpu.torch_device(self.runtime)
                dtype = gpu.torch_dtype(self.runtime, device)
                started = time.perf_counter()
                model: Any = Florence2ForConditionalGeneration.from_pretrained(
                    self.path, dtype=dtype, local_files_only=True
                )
                model = model.to(device).eval()
                processor = AutoProcessor.from_pretrained(self.path, local_files_only=True)
                log.info(
                    "loaded florence2 %s on %s (%s) in %.1f s",
                    self.model_id,
                    device,
                    dtype,
                    time.perf_counter() - started,
                )
                self._loaded = (model, processor, device, dtype)
            return self._loaded


def parse_ocr_with_region(text: str, width: int, height: int) -> list[TextLine]:
    """Text lines from Florence-2's `<OCR_WITH_REGION>` output: each line's text, then 8 location tokens.

    Florence-2 gives no per-line score, so every line's confidence is 1.0.
    """
    text = _MARKUP.sub("", text)
    lines: list[TextLine] = []
    pieces = _QUAD.split(text)  # [text, quad, text, quad, ..., trailing text]
    for label, quad in zip(pieces[0::2], pieces[1::2]):
        label = " ".join(label.split())
        if not label:
            continue
        bins = [int(b) for b in _LOC.findall(quad)]
        points = tuple(
            (_dequantize(bins[i], width), _dequantize(bins[i + 1], height)) for i in range(0, 8, 2)
        )  # fmt: skip
        lines.append(TextLine(text=label, box=polygon_box(points, width, height), confidence=1.0, polygon=points))
    return lines


def parse_objects(text: str, width: int, height: int) -> list[str]:
    """Object labels from Florence-2's `<OD>` output (label, then 4 location tokens), largest box first."""
    text = _MARKUP.sub("", text)
    found: list[tuple[float, str]] = []
    for label, box in re.findall(r"([^<]+)((?:\s*<loc_\d+>){4})", text):
        label = " ".join(label.split())
        if not label:
            continue
        x0, y0, x1, y1 = (int(b) for b in _LOC.findall(box))
        area = max(0, x1 - x0) * width * max(0, y1 - y0) * height
        found.append((area, label))
    return [label for _area, label in sorted(found, key=lambda f: -f[0])]


def plain_text(text: str) -> str:
    """Decoded output without markup or location tokens."""
    return " ".join(_LOC.sub("", _MARKUP.sub("", text)).split())


def _dequantize(location: int, size: int) -> float:
    # The bin's centre, as Florence-2's own post-processor does.
    return (min(location, LOCATION_BINS - 1) + 0.5) * size / LOCATION_BINS


def _cap(text: str) -> str:
    return text if len(text) <= MAX_ANSWER_CHARS else text[: MAX_ANSWER_CHARS - 1].rstrip() + "…"
