"""What the t2v and i2v tests share: a picture, a scene, a script and the tiny settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from engine.backends.video.resident import Resident
from engine.config import RuntimeSettings, Settings, load_settings, replace
from engine.runtime.models import ModelPool
from engine.stages.generate import Generate
from engine.types import CleanImage, Frames, ResolvedOptions, SceneInfo, Script

W, H = 90, 60  # 3:2, so a wrong aspect shows


def clean() -> CleanImage:
    """A textured 3:2 picture without a caption."""
    pixels = np.random.default_rng(0).integers(40, 220, (H, W, 3), dtype=np.uint8)
    empty = np.zeros((H, W), np.uint8)
    return CleanImage(pixels=pixels, text_mask=empty, region_mask=empty)


SCENE = SceneInfo(qa=(), subjects=(), colors=(), panels=((0, 0, W, H),), meme_text="")
SCRIPT = Script("a cat", "", "joy", "A cat dances", "zoom-in", "")


def options(**changes: Any) -> ResolvedOptions:
    """Resolved options for a 4-frame, 64 px run."""
    values: dict[str, Any] = {"motion": "low", "frames": 4, "fps": 8, "size": 64, "seed": 0, "prompt": None,
                              "camera": None, "format": "gif", "max_bytes": 10**7, "fallback_format": None,
                              "checkpoint": None} | changes  # fmt: skip
    return ResolvedOptions(**values)


def tiny_settings(tiny_dir: Path, config: str = "tiny.toml", **generate: Any) -> Settings:
    """The tiny config with a few [generate] keys changed."""
    return replace(load_settings(tiny_dir / config), generate=generate)


# One pool per runtime for the whole test session, as one engine process has one: the video model stays resident.
POOLS: dict[RuntimeSettings, ModelPool] = {}


def pool(settings: Settings) -> ModelPool:
    """The session's model pool for these runtime settings."""
    return POOLS.setdefault(settings.runtime, ModelPool(settings.runtime))


def resident(settings: Settings) -> Resident:
    """The one resident video model of that pool."""
    return pool(settings).shared("video", Resident)


def animate(settings: Settings, **changes: Any) -> Frames:
    """One run of the configured generate backend on the shared picture."""
    generate = Generate(settings.generate, pool(settings))
    progress = changes.pop("progress", None)
    return generate(clean(), SCENE, SCRIPT, options(**changes), progress=progress)
