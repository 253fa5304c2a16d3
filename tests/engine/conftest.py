"""Fixtures shared by the engine tests: tiny random models built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_blip2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BLIP-2 folder (model and processor), loaded the way production loads the real one."""
    torch = pytest.importorskip("torch")
    from engine.tiny.vqa import make_tiny_blip2

    torch.set_num_threads(1)
    torch.manual_seed(0)
    return make_tiny_blip2(tmp_path_factory.mktemp("tiny-blip2"))


@pytest.fixture(scope="session")
def tiny_florence2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Florence-2 folder (model and processor)."""
    torch = pytest.importorskip("torch")
    from engine.tiny.vqa import make_tiny_florence2

    torch.set_num_threads(1)
    torch.manual_seed(0)
    return make_tiny_florence2(tmp_path_factory.mktemp("tiny-florence2"))
