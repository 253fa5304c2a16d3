"""BLIP-2 visual question answering: every configured question about one picture in one generate call."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np

from engine.config import CaptionSettings
from engine.errors import ConfigError
from engine.runtime import gpu
from engine.runtime.models import ModelPool
from engine.types import QA

log = logging.getLogger(__name__)

MAX_ANSWER_CHARS = 200


class Blip2Caption:
    """caption = "blip2": a BLIP-2 model (`Blip2ForConditionalGeneration`), loaded from local files on first use."""

    def __init__(self, settings: CaptionSettings, models: ModelPool) -> None:
        if not settings.questions:
            raise ConfigError("config key 'caption.questions' is empty: the blip2 backend needs questions to ask")
        # Checked when the pipeline is built, so a missing model stops `serve` at start, not the first job.
        gpu.require_torch("blip2 caption backend")
        self.path = gpu.model_path(settings.blip2_model, key="caption.blip2_model")
        self.model_id = settings.blip2_model
        self.runtime = models.runtime
        self.questions = settings.questions
        self.max_new_tokens = settings.max_new_tokens
        self._loaded: tuple[Any, Any, Any, Any] | None = None  # model, processor, device, dtype
        self._lock = threading.Lock()

    def answer(self, pixels: np.ndarray) -> tuple[QA, ...]:
        """The model's answer to each configured question about the RGB picture, in the questions' order."""
        questions = self.questions
        import torch
        from PIL import Image

        model, processor, device, dtype = self._load()
        # 1. one batch row per question; OPT generates left to right, so the prompts are padded on the left
        prompts = [f"Question: {q} Answer:" for q in questions]
        image = Image.fromarray(pixels)
        inputs = processor(images=[image] * len(prompts), text=prompts, padding=True, return_tensors="pt").to(device)
        inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
        # 2. one generate call for the whole batch
        started = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1)
        # 3. decoder-only output repeats the prompt; keep what the model added
        new = out[:, inputs["input_ids"].shape[1] :]
        answers = processor.batch_decode(new, skip_special_tokens=True)
        log.debug("blip2 answered %d questions in %.2f s", len(questions), time.perf_counter() - started)
        return tuple(QA(q, clean_answer(a)) for q, a in zip(questions, answers))

    def _load(self) -> tuple[Any, Any, Any, Any]:
        with self._lock:
            if self._loaded is None:
                from transformers import AutoProcessor, Blip2ForConditionalGeneration
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # a bar per load is noise in a service log
                device = gpu.torch_device(self.runtime)
                dtype = gpu.torch_dtype(self.runtime, device)
                started = time.perf_counter()
                model: Any = Blip2ForConditionalGeneration.from_pretrained(
                    self.path, dtype=dtype, local_files_only=True
                )
                model = model.to(device).eval()
                processor = AutoProcessor.from_pretrained(self.path, local_files_only=True)
                processor.tokenizer.padding_side = "left"
                log.info(
                    "loaded blip2 %s on %s (%s) in %.1f s", self.model_id, device, dtype, time.perf_counter() - started
                )
                self._loaded = (model, processor, device, dtype)
            return self._loaded


def clean_answer(text: str) -> str:
    """One line, capped: a model's answer becomes data for the next stage, never a wall of text."""
    text = " ".join(text.split())
    if len(text) > MAX_ANSWER_CHARS:
        text = text[: MAX_ANSWER_CHARS - 1].rstrip() + "…"
    return text or "no answer"
