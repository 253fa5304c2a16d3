"""Stage 4: what the engine can know about the clean picture (visual question answering seam)."""

from __future__ import annotations

import logging
from functools import cached_property
from typing import Any

import cv2
import numpy as np

from engine.config import CaptionSettings, RuntimeSettings
from engine.types import QA, Box, CleanImage, OcrResult, SceneInfo, Subject

log = logging.getLogger(__name__)

# Detection runs on a copy of this longer side: Haar cascades are scale-searched anyway.
DETECT_SIDE = 480
# Named colours for the dominant-colour answer (sRGB).
COLOR_NAMES: dict[str, tuple[int, int, int]] = {
    "black": (20, 20, 20), "white": (245, 245, 245), "gray": (128, 128, 128),
    "red": (200, 30, 30), "orange": (240, 140, 30), "yellow": (240, 220, 50),
    "green": (50, 160, 60), "teal": (30, 140, 140), "blue": (40, 80, 200),
    "sky blue": (130, 190, 235), "purple": (120, 50, 160), "pink": (240, 150, 190),
    "brown": (120, 75, 40), "beige": (215, 195, 160),
}  # fmt: skip


BACKENDS = ("none", "blip2", "florence2")


class Caption:
    """Answers questions about the picture; backend "none" uses only what OpenCV ships.

    blip2 and florence2 keep that analysis (subjects, colours, panels) and add a model's answers.
    """

    def __init__(self, settings: CaptionSettings, runtime: RuntimeSettings | None = None) -> None:
        if settings.backend not in BACKENDS:
            raise ValueError(f"caption backend must be one of {BACKENDS}, got {settings.backend!r}")
        if settings.backend != "none" and runtime is None:
            raise ValueError(f"the {settings.backend} caption backend needs the [runtime] settings")
        if settings.backend == "blip2" and not settings.questions:
            from engine.errors import ConfigError

            raise ConfigError("config key 'caption.questions' is empty: the blip2 backend needs questions to ask")
        self.settings = settings
        self.model: Any = None  # built here, loaded on the first picture: start-up stays fast
        if settings.backend == "blip2":
            from engine.backends.blip2 import Blip2Vqa

            assert runtime is not None
            self.model = Blip2Vqa(
                settings.blip2_model, runtime, key="caption.blip2_model", max_new_tokens=settings.max_new_tokens
            )
        elif settings.backend == "florence2":
            from engine.backends.florence2 import florence2_for

            assert runtime is not None
            self.model = florence2_for(settings.florence2_model, runtime, key="caption.florence2_model")

    def __call__(self, clean: CleanImage, ocr: OcrResult) -> SceneInfo:
        """Describe the clean picture: subjects, colours, panels and the meme's text as QA pairs."""
        pixels = clean.pixels
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
            raise ValueError(f"clean.pixels must be (H, W, 3) uint8, got {pixels.shape} {pixels.dtype}")
        # 1. find the subject: faces first, cats next, saliency as the fallback
        subjects = self.detect_subjects(pixels)
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
        if self.settings.backend == "blip2":
            qa = merge_answers(qa, self.model.answer(pixels, self.settings.questions))
        elif self.settings.backend == "florence2":
            qa = merge_answers(qa, self.model.describe(pixels, max_new_tokens=self.settings.max_new_tokens))
        return SceneInfo(qa=qa, subjects=subjects, colors=colors, panels=panels, meme_text=meme_text)

    @cached_property
    def _cascades(self) -> dict[str, list[cv2.CascadeClassifier]]:
        def load(name: str) -> cv2.CascadeClassifier:
            cascade = cv2.CascadeClassifier(cv2.data.haarcascades + name)  # type: ignore[attr-defined]
            if cascade.empty():
                raise RuntimeError(f"OpenCV's bundled cascade {name} could not be loaded")
            return cascade

        return {
            "face": [load("haarcascade_frontalface_default.xml"), load("haarcascade_profileface.xml")],
            "cat": [load("haarcascade_frontalcatface_extended.xml")],
        }

    def detect_subjects(self, pixels: np.ndarray) -> tuple[Subject, ...]:
        """Faces and cat faces, biggest first; the most salient region when there are none."""
        height, width = pixels.shape[:2]
        scale = min(1.0, DETECT_SIDE / max(height, width))
        small = cv2.resize(pixels, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        min_side = max(24, round(min(small.shape[:2]) * 0.08))
        found: list[Subject] = []
        for kind, cascades in self._cascades.items():
            for cascade in cascades:
                hits, _, weights = cascade.detectMultiScale3(
                    gray, scaleFactor=1.1, minNeighbors=6, minSize=(min_side, min_side), outputRejectLevels=True
                )
                for (x, y, w, h), weight in zip(hits, np.ravel(weights)):
                    box = _scaled((int(x), int(y), int(x + w), int(y + h)), 1 / scale, width, height)
                    if not any(_overlap(box, s.box) > 0.3 for s in found):
                        found.append(Subject(kind, box, float(min(1.0, max(0.0, weight / 10.0)))))
        found.sort(key=lambda s: -_area(s.box))
        if found:
            return tuple(found[:4])
        salient = salient_box(small)
        if salient is None:
            return ()
        return (Subject("salient", _scaled(salient, 1 / scale, width, height), 0.5),)


def merge_answers(base: tuple[QA, ...], answers: tuple[QA, ...]) -> tuple[QA, ...]:
    """`base` with each question the model answered replaced by its answer, then the model's other answers."""
    given = {qa.question: qa for qa in answers}
    merged = [given.pop(qa.question, qa) for qa in base]
    return tuple(merged) + tuple(qa for qa in answers if qa.question in given)


def salient_box(pixels: np.ndarray) -> Box | None:
    """The box of the most salient blob by spectral residual saliency (Hou & Zhang, 2007)."""
    side = 64
    gray = cv2.resize(cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY), (side, side), interpolation=cv2.INTER_AREA)
    spectrum = np.fft.fft2(gray.astype(np.float64))
    log_amplitude = np.log(np.abs(spectrum) + 1e-9)
    residual = log_amplitude - cv2.blur(log_amplitude, (3, 3))
    saliency = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))) ** 2
    saliency = cv2.GaussianBlur(saliency, (9, 9), 2.5)
    if saliency.max() <= 0:
        return None
    mask = (saliency >= saliency.mean() * 3).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return None
    # The blob holding the most saliency mass is the subject, not merely the largest one.
    mass = np.bincount(labels.ravel(), weights=saliency.ravel(), minlength=count)[1:]
    best = int(np.argmax(mass)) + 1
    x, y, w, h = (int(v) for v in stats[best, :4])
    if w * h < 0.01 * side * side:
        return None
    sx, sy = pixels.shape[1] / side, pixels.shape[0] / side
    return (round(x * sx), round(y * sy), round((x + w) * sx), round((y + h) * sy))


def dominant_colors(pixels: np.ndarray, count: int = 3) -> tuple[str, ...]:
    """The names of the picture's most common colours, most common first."""
    thumb = cv2.resize(pixels, (48, 48), interpolation=cv2.INTER_AREA).reshape(-1, 3).astype(np.int32)
    names = list(COLOR_NAMES)
    palette = np.array([COLOR_NAMES[n] for n in names], dtype=np.int32)
    # Nearest name per pixel; a vote is deterministic where k-means would need a seed.
    nearest = np.argmin(((thumb[:, None, :] - palette[None, :, :]) ** 2).sum(axis=2), axis=1)
    votes = np.bincount(nearest, minlength=len(names))
    order = [i for i in np.argsort(-votes, kind="stable") if votes[i] >= 0.05 * len(thumb)]
    return tuple(names[i] for i in order[:count])


def find_panels(pixels: np.ndarray) -> tuple[Box, ...]:
    """Split a multi-panel meme along uniform separator bands; a single panel gives the whole picture."""
    height, width = pixels.shape[:2]
    panels: list[Box] = []
    for y0, y1 in _split(pixels, axis=0):
        for x0, x1 in _split(pixels[y0:y1], axis=1):
            panels.append((x0, y0, x1, y1))
    return tuple(panels) if len(panels) > 1 else ((0, 0, width, height),)


def _split(pixels: np.ndarray, axis: int) -> list[tuple[int, int]]:
    """Spans between interior separator bands along `axis` (0: horizontal bands, 1: vertical)."""
    gray = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY).astype(np.float32)
    if axis == 1:
        gray = gray.T
    length = gray.shape[0]
    # A separator line is uniform along its whole length and sharply different from its neighbours.
    uniform = gray.std(axis=1) < 6.0
    spans: list[tuple[int, int]] = []
    start, i, min_panel = 0, 0, max(16, int(length * 0.2))
    while i < length:
        if not uniform[i]:
            i += 1
            continue
        j = i
        while j < length and uniform[j] and abs(gray[j].mean() - gray[i].mean()) < 12:
            j += 1
        thick = j - i
        # A real border stands out from the picture on both sides; a flat stretch of sky does not.
        crisp = (
            i > 0
            and j < length
            and min(float(np.abs(gray[i - 1] - gray[i]).mean()), float(np.abs(gray[j] - gray[j - 1]).mean())) > 25
        )
        if crisp and i - start >= min_panel and length - j >= min_panel and thick <= max(3, int(length * 0.04)):
            spans.append((start, i))
            start = j
        i = j
    spans.append((start, length))
    return spans


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


def _scaled(box: Box, factor: float, width: int, height: int) -> Box:
    x0, y0, x1, y1 = box
    return (
        max(0, round(x0 * factor)), max(0, round(y0 * factor)),
        min(width, round(x1 * factor)), min(height, round(y1 * factor)),
    )  # fmt: skip


def _area(box: Box) -> int:
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


def _overlap(a: Box, b: Box) -> float:
    """Intersection over the smaller box's area."""
    inter = _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    return inter / max(1, min(_area(a), _area(b)))
