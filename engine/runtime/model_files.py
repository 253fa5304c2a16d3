"""Which model files the configuration names, and whether they are on this machine (`makeitmove models check`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from engine.config import Settings
from engine.runtime import gpu

# Backends that need no model files; a section's plain `model` key matters only for the others.
FILELESS_BACKENDS = ("none", "rapidocr", "template", "procedural", "acting")
# The synthesize section's `model` names a remote API's model, not files on this machine.
REMOTE_SECTIONS = ("synthesize",)
# Keys a backend reads that are not its `<backend>_model`: clipguided alternates two CLIPs.
BACKEND_MODELS = {"clipguided": ("clip_model", "clip_model2")}
# A model folder holds one of these (transformers, diffusers); a folder without is an interrupted download.
MARKERS = ("config.json", "model_index.json")


@dataclass(frozen=True)
class ModelFile:
    """One config key naming a model, and what this machine has of it."""

    key: str  # "caption.blip2_model"
    model: str  # a hub id or a local folder
    selected: bool  # the section's configured backend uses it
    where: str  # "folder", "hf cache", "incomplete" or "missing"
    path: str | None
    size: int  # bytes on disk; 0 when missing

    @property
    def present(self) -> bool:
        """The files are here and look complete."""
        return self.where in ("folder", "hf cache")


def configured_models(settings: Settings) -> list[ModelFile]:
    """Every `model` / `*_model` key (and clip_model2) of the backend sections, in config order; empty ones left out."""
    extra = {key for keys in BACKEND_MODELS.values() for key in keys}
    found: list[ModelFile] = []
    for section in dataclasses.fields(settings):
        values = getattr(settings, section.name)
        if section.name in REMOTE_SECTIONS or not hasattr(values, "backend"):
            continue
        backend = values.backend
        for field in dataclasses.fields(values):
            if field.name != "model" and not field.name.endswith("_model") and field.name not in extra:
                continue
            model = getattr(values, field.name)
            if not isinstance(model, str) or not model:
                continue
            if field.name == "model":
                selected = backend not in FILELESS_BACKENDS
            else:
                selected = field.name == f"{backend}_model" or field.name in BACKEND_MODELS.get(backend, ())
            found.append(locate(f"{section.name}.{field.name}", model, selected))
    return found


def locate(key: str, model: str, selected: bool) -> ModelFile:
    """Where `model` is on this machine (a local folder first, then the HF cache), and its size."""
    local = Path(model).expanduser()
    folder, where = (local, "folder") if local.is_dir() else (gpu.cached_snapshot(model), "hf cache")
    if folder is None:
        return ModelFile(key, model, selected, "missing", None, 0)
    if not any((folder / marker).is_file() for marker in MARKERS):
        where = "incomplete"
    return ModelFile(key, model, selected, where, str(folder), gpu.size_on_disk(folder))
