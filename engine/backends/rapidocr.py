"""ocr = "rapidocr": RapidOCR on onnxruntime, with the models that ship inside its wheel (CPU, offline)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from engine.config import OcrSettings
from engine.geometry import polygon_box
from engine.runtime.models import ModelPool
from engine.types import TextLine


class RapidOcr:
    """Reads text lines with RapidOCR; the engine is loaded on the first picture, so start-up stays fast."""

    def __init__(self, settings: OcrSettings, models: ModelPool) -> None:
        self.settings = settings
        self._engine: Any = None

    def read_lines(self, rgb: np.ndarray) -> list[TextLine]:
        """Every line RapidOCR finds on the (H, W, 3) RGB picture, with its quadrilateral and score."""
        engine = self._load()
        # RapidOCR passes ndarrays through untouched and treats them as OpenCV BGR.
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        out = engine(bgr)
        if out.boxes is None or out.txts is None or out.scores is None:
            return []
        height, width = rgb.shape[:2]
        lines = []
        for quad, text, score in zip(out.boxes, out.txts, out.scores):
            polygon = tuple((float(x), float(y)) for x, y in np.asarray(quad, dtype=np.float64))
            lines.append(
                TextLine(
                    text=text.strip(),
                    box=polygon_box(polygon, width, height),
                    confidence=float(score),
                    polygon=polygon,
                )
            )
        return lines

    def _load(self) -> Any:
        if self._engine is None:
            import rapidocr

            # Only the default model type: its weights ship in the wheel, any other downloads.
            self._engine = rapidocr.RapidOCR(params={"Global.log_level": "warning"})
            _adopt_logger(logging.getLogger("RapidOCR"))
        return self._engine


def _adopt_logger(logger: logging.Logger) -> None:
    """Make RapidOCR's logger one of ours: no handler or colours of its own, records go to our logging setup.

    RapidOCR gives its logger a colouring stderr handler that bypasses our setup (ANSI codes into log files and
    pipes). Its warnings report what is routine for memes, a picture without text ("The text detection result
    is empty"), so only its errors are worth a line at the default level.
    """
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.ERROR)
