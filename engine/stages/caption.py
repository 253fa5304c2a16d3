"""Stage 4: what the engine knows about the clean picture, phrased as answers to questions about it.

OpenCV's scene analysis (subjects, colours, panels) always runs; a VQA backend, when configured, adds a
model's answers, which replace the CPU's answer to the same question.
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np

from engine.backends import load_backend
from engine.backends.scene import SceneAnalysis, dominant_colors, find_panels
from engine.config import CaptionBackend, CaptionSettings
from engine.runtime.models import ModelPool
from engine.types import QA, Box, CleanImage, OcrResult, SceneInfo, Subject

log = logging.getLogger(__name__)

BACKENDS: dict[CaptionBackend, str | None] = {
    "none": None,  # OpenCV's analysis alone
    "blip2": "engine.backends.blip2:Blip2Caption",
    "florence2": "engine.backends.florence2:Florence2Caption",
}


class Answerer(Protocol):
    """What a VQA backend does: question/answer pairs about the picture."""

    def answer(self, pixels: np.ndarray) -> tuple[QA, ...]:
        """The model's answers about the (H, W, 3) uint8 RGB picture."""
        ...


class Caption:
    """Describes the clean picture; backend "none" uses only what OpenCV ships."""

    def __init__(self, settings: CaptionSettings, models: ModelPool) -> None:
        self.settings = settings
        self.scene = SceneAnalysis()
        spec = BACKENDS[settings.backend]
        # built here, loaded on the first picture: start-up stays fast
        self.model: Answerer | None = load_backend(spec)(settings, models) if spec else None

    def __call__(self, clean: CleanImage, ocr: OcrResult) -> SceneInfo:
        """Describe the clean picture: subjects, colours, panels and the meme's text as QA pairs."""
        pixels = clean.pixels
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
            raise ValueError(f"clean.pixels must be (H, W, 3) uint8, got {pixels.shape} {pixels.dtype}")
        # 1. find the subject: faces first, cats next, saliency as the fallback
        subjects = self.scene.detect_subjects(pixels)
        # 2. dominant colours and panel layout
        colors = dominant_colors(pixels)
        panels = find_panels(pixels)
        # 3. the answers, phrased like a VQA model's
        meme_text = " ".join(ocr.text.split())
        qa: tuple[QA, ...] = (
            QA("What does the meme's text say?", meme_text or "there is no text"),
            QA("What is the main character?", describe_subject(subjects)),
            QA("Where is the main character?", describe_place(subjects, pixels.shape[1], pixels.shape[0])),
            QA("What are the colors of the scene?", join_words(colors)),
            QA("How many panels does the meme have?", describe_panels(panels, pixels.shape[1], pixels.shape[0])),
        )
        # 4. a model's answers, when one is configured: they replace the CPU's answer to the same question
        if self.model is not None:
            qa = merge_answers(qa, self.model.answer(pixels))
        return SceneInfo(
            qa=qa, subjects=subjects, colors=colors, panels=panels, meme_text=meme_text,
            panel_texts=panel_texts(panels, ocr),
        )  # fmt: skip


def panel_texts(panels: tuple[Box, ...], ocr: OcrResult) -> tuple[str, ...]:
    """The text of each panel: every block goes to the panel holding its centre, else to the nearest one."""
    found: list[list[str]] = [[] for _ in panels]
    for block in ocr.blocks if panels else ():
        x0, y0, x1, y1 = block.box
        centre = ((x0 + x1) / 2, (y0 + y1) / 2)
        nearest = min(range(len(panels)), key=lambda i: _distance(panels[i], centre))
        found[nearest].append(" ".join(block.text.split()))
    return tuple(" ".join(texts) for texts in found)


def _distance(panel: Box, point: tuple[float, float]) -> float:
    """How far `point` lies outside `panel` (0 inside), in city-block pixels."""
    (px0, py0, px1, py1), (x, y) = panel, point
    return max(px0 - x, 0.0, x - px1) + max(py0 - y, 0.0, y - py1)


def merge_answers(base: tuple[QA, ...], answers: tuple[QA, ...]) -> tuple[QA, ...]:
    """`base` with each question the model answered replaced by its answer, then the model's other answers."""
    given = {qa.question: qa for qa in answers}
    merged = [given.pop(qa.question, qa) for qa in base]
    return tuple(merged) + tuple(qa for qa in answers if qa.question in given)


def describe_subject(subjects: tuple[Subject, ...]) -> str:
    """What the main character is, in words."""
    if not subjects:
        return "no clear main character"
    first = subjects[0]
    people = sum(1 for s in subjects if s.kind == "face")
    if first.kind == "face":
        return "a person" if people == 1 else f"{people} people, one of them most prominent"
    if first.kind == "cat":
        return "a cat"
    return "an object or figure that stands out from the background"


def describe_place(subjects: tuple[Subject, ...], width: int, height: int) -> str:
    """Where the main character is, in words."""
    if not subjects:
        return "nowhere in particular"
    x0, y0, x1, y1 = subjects[0].box
    cx, cy = (x0 + x1) / 2 / width, (y0 + y1) / 2 / height
    horizontal = "left" if cx < 0.38 else "right" if cx > 0.62 else "center"
    vertical = "top" if cy < 0.38 else "bottom" if cy > 0.62 else "middle"
    if (horizontal, vertical) == ("center", "middle"):
        return "in the center"
    return f"at the {vertical} {horizontal}".replace("middle ", "").replace(" center", "")


def describe_panels(panels: tuple[Box, ...], width: int, height: int) -> str:
    """How many panels, and how they are laid out."""
    if len(panels) == 1:
        return "one panel"
    columns = len({p[0] for p in panels})
    rows = len({p[1] for p in panels})
    if rows * columns != len(panels):
        return f"{len(panels)} panels"
    layout = "side by side" if rows == 1 else "stacked" if columns == 1 else f"in a {rows}×{columns} grid"
    return f"{len(panels)} panels, {layout}"


def join_words(words: tuple[str, ...]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    if not words:
        return "no clear colors"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
