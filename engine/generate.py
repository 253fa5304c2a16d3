"""Stage 6: turn the script and the clean picture into frames, with the configured backend."""

from __future__ import annotations

import logging

from engine import procedural
from engine.config import GenerateSettings
from engine.types import AnimationOptions, CleanImage, Frames, SceneInfo, Script

log = logging.getLogger(__name__)

BACKENDS = ("procedural",)  # GPU backends (t2v, i2v) join here; they import torch lazily


class Generate:
    """The frame generator: dispatches to the configured backend."""

    def __init__(self, settings: GenerateSettings) -> None:
        if settings.backend not in BACKENDS:
            raise ValueError(f"settings.backend must be one of {BACKENDS}, got {settings.backend!r}")
        self.settings = settings

    def __call__(self, clean: CleanImage, scene: SceneInfo, script: Script, options: AnimationOptions) -> Frames:
        """Animate the clean picture as the script says; `options` arrive fully resolved by the pipeline."""
        return procedural.animate(clean, scene, script, options)
