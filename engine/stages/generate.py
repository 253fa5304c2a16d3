"""Stage 6: turn the script and the clean picture into frames, with the configured backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from engine.backends import load_backend
from engine.config import GenerateBackend, GenerateSettings
from engine.runtime.models import ModelPool
from engine.types import CleanImage, Frames, ResolvedOptions, SceneInfo, Script

# t2v and i2v import torch and diffusers only when they are selected: the CPU install has neither.
BACKENDS: dict[GenerateBackend, str] = {
    "acting": "engine.backends.acting.backend:Acting",
    "procedural": "engine.backends.procedural.animator:Procedural",
    "t2v": "engine.backends.video.t2v:TextToVideo",
    "i2v": "engine.backends.video.i2v:ImageToVideo",
    "clipguided": "engine.backends.clipguided.backend:ClipGuided",
}


class FrameGenerator(Protocol):
    """What a generate backend does."""

    def __call__(
        self, clean: CleanImage, scene: SceneInfo, script: Script, options: ResolvedOptions,
        progress: Callable[[float], None] | None = None,
    ) -> Frames:  # fmt: skip
        """The frames for the script, at the output size and the picture's aspect."""
        ...


class Generate:
    """The frame generator: the configured backend, built (and its model files checked) once."""

    def __init__(self, settings: GenerateSettings, models: ModelPool) -> None:
        self.settings = settings
        self.backend: FrameGenerator = load_backend(BACKENDS[settings.backend])(settings, models)

    def __call__(
        self, clean: CleanImage, scene: SceneInfo, script: Script, options: ResolvedOptions,
        progress: Callable[[float], None] | None = None,
    ) -> Frames:  # fmt: skip
        """Animate the clean picture as the script says; `options` arrive fully resolved by the pipeline.

        `progress` hears the fraction of this stage done (per denoising step for the model backends);
        it may raise to stop the job, which then leaves no result behind.
        """
        return self.backend(clean, scene, script, options, progress)
