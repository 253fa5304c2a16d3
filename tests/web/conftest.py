"""Fixtures of the dashboard's tests."""

from __future__ import annotations

import pytest

from engine.config import load_settings
from engine.pipeline import Pipeline


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    """The real CPU pipeline, shared by this module's apps."""
    return Pipeline(load_settings())
