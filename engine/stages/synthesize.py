"""Stage 5: the motion script — what moves, how, and why it fits the joke — by the configured writer."""

from __future__ import annotations

import dataclasses
import logging
from typing import Protocol

from engine.backends import load_backend
from engine.backends.template import TemplateWriter
from engine.config import SynthesizeBackend, SynthesizeSettings
from engine.errors import ScriptWriterError
from engine.types import SceneInfo, Script
from engine.vocabulary import Camera

log = logging.getLogger(__name__)

BACKENDS: dict[SynthesizeBackend, str] = {
    "template": "engine.backends.template:TemplateWriter",
    "openai": "engine.backends.llm:LlmScriptWriter",
}


class ScriptWriter(Protocol):
    """What a script writer does; it raises ScriptWriterError when it can't, and the template stands in."""

    name: str

    def __call__(self, scene: SceneInfo, *, prompt: str | None) -> Script:
        """The script for the scene, the user's prompt (if any) guiding the motion."""
        ...


class Synthesize:
    """Writes the Script; backend "template" is offline and deterministic, "openai" asks an LLM.

    When the LLM fails (after its one retry) the template writes the script, and the Script's
    `writer` says so: "template (openai failed: timeout)".
    """

    def __init__(self, settings: SynthesizeSettings, *, api_key: str | None = None) -> None:
        self.settings = settings
        self.template = TemplateWriter(settings)
        self.writer: ScriptWriter | None = None
        if settings.backend != "template":
            self.writer = load_backend(BACKENDS[settings.backend])(settings, api_key=api_key)

    def __call__(self, scene: SceneInfo, *, prompt: str | None = None, camera: Camera | None = None) -> Script:
        """A script from what the picture shows and what its caption says; the user's prompt and camera win."""
        prompt = " ".join((prompt or "").split()) or None
        if self.writer is None:
            return self.template(scene, prompt=prompt, camera=camera)
        try:
            script = self.writer(scene, prompt=prompt)
        except ScriptWriterError as exc:
            log.warning("the %s script writer failed (%s); the template wrote the script", self.writer.name, exc)
            fallback = self.template(scene, prompt=prompt, camera=camera)
            return dataclasses.replace(fallback, writer=f"template ({self.settings.backend} failed: {exc})")
        # The model wrote the motion from the user's request; a camera the user named is not negotiable.
        if camera:
            script = dataclasses.replace(script, camera=camera)
        return script
