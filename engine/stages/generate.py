"""Stage 6: turn the script and the clean picture into frames, with the configured backend."""

from __future__ import annotations

import logging
from collections.abc import Callable

from engine.backends.procedural import animator as procedural
from engine.config import GenerateSettings, RuntimeSettings
from engine.types import CleanImage, Frames, ResolvedOptions, SceneInfo, Script

log = logging.getLogger(__name__)

# t2v and i2v import torch and diffusers only when they first run: the CPU install has neither.
BACKENDS = ("procedural", "t2v", "i2v")


class Generate:
    """The frame generator: dispatches to the configured backend."""

    def __init__(self, settings: GenerateSettings, runtime: RuntimeSettings | None = None) -> None:
        if settings.backend not in BACKENDS:
            raise ValueError(f"settings.backend must be one of {BACKENDS}, got {settings.backend!r}")
        if settings.backend != "procedural" and runtime is None:
            raise ValueError(f"runtime settings are needed by the {settings.backend} backend, got None")
        if settings.backend != "procedural":
            # Checked when the pipeline is built, as the caption models are: a missing model stops `serve`
            # at start with the `hf download` sentence, instead of failing every job with a traceback.
            from engine.runtime.gpu import model_path, require_torch

            require_torch(f"{settings.backend} generate backend")
            model_path(getattr(settings, f"{settings.backend}_model"), key=f"generate.{settings.backend}_model")
        self.settings = settings
        self.runtime = runtime

    def __call__(
        self, clean: CleanImage, scene: SceneInfo, script: Script, options: ResolvedOptions,
        progress: Callable[[float], None] | None = None,
    ) -> Frames:  # fmt: skip
        """Animate the clean picture as the script says; `options` arrive fully resolved by the pipeline.

        `progress` hears the fraction of this stage done (per denoising step for the model backends);
        it may raise to stop the job, which then leaves no result behind.
        """
        backend = self.settings.backend
        if backend == "procedural":
            return procedural.animate(clean, scene, script, options)
        assert self.runtime is not None  # checked in __init__
        from engine.runtime.gpu import require_torch

        require_torch(f"{backend} generate backend")
        if backend == "t2v":
            from engine.backends.video import t2v

            return t2v.animate(self.settings, self.runtime, clean, script, options, progress)
        from engine.backends.video import i2v

        return i2v.animate(self.settings, self.runtime, clean, script, options, progress)
