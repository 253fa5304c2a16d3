"""What OpenCV can see in the clean picture with what ships in its wheel: subjects, colours and panels.

The caption stage runs this for every backend; a VQA model (blip2, florence2) only adds answers.
"""

from __future__ import annotations

from functools import cached_property

import cv2
import numpy as np

from engine.geometry import area, overlap, scaled
from engine.types import Box, Subject

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


class SceneAnalysis:
    """Faces and cat faces (OpenCV's bundled Haar cascades, loaded once), saliency, colours and panels."""

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
                    box = scaled((int(x), int(y), int(x + w), int(y + h)), 1 / scale, width, height)
                    if not any(overlap(box, s.box) > 0.3 for s in found):
                        found.append(Subject(kind, box, float(min(1.0, max(0.0, weight / 10.0)))))
        found.sort(key=lambda s: -area(s.box))
        if found:
            return tuple(found[:4])
        salient = salient_box(small)
        if salient is None:
            return ()
        return (Subject("salient", scaled(salient, 1 / scale, width, height), 0.5),)


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
