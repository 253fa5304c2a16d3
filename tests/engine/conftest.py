"""Fixtures shared by the engine tests: tiny random models built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.config import IntakeSettings, load_settings
from engine.stages.intake import Intake


@pytest.fixture(scope="session")
def tiny_blip2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BLIP-2 folder (model and processor), loaded the way production loads the real one."""
    from engine.runtime.tiny.vqa import make_tiny_blip2

    torch.set_num_threads(1)
    torch.manual_seed(0)
    return make_tiny_blip2(tmp_path_factory.mktemp("tiny-blip2"))


@pytest.fixture(scope="session")
def tiny_florence2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Florence-2 folder (model and processor)."""
    from engine.runtime.tiny.vqa import make_tiny_florence2

    torch.set_num_threads(1)
    torch.manual_seed(0)
    return make_tiny_florence2(tmp_path_factory.mktemp("tiny-florence2"))


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every tiny model, two t2v LoRA checkpoints and the tiny configs, as `makeitmove models make-tiny` writes them."""
    from engine.runtime.tiny import make_tiny

    torch.set_num_threads(1)
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny-all")
    make_tiny(root)
    return root


@pytest.fixture(scope="module")
def settings() -> IntakeSettings:
    """The shipped intake defaults."""
    return load_settings().intake


@pytest.fixture(scope="module")
def intake(settings: IntakeSettings) -> Intake:
    """An intake with the shipped defaults."""
    return Intake(settings)
