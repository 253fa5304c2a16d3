"""Fixtures shared by the whole suite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_MEMES = REPO.parent / "shared" / "memes"


@pytest.fixture(scope="session")
def shared_memes() -> Path:
    """The real meme test set beside the repository; the test is skipped when it is absent."""
    if not (SHARED_MEMES / "ground_truth.json").is_file():
        pytest.skip(f"real meme set not found at {SHARED_MEMES} (only present beside CI's clone)")
    return SHARED_MEMES


@pytest.fixture(scope="session")
def ground_truth(shared_memes: Path) -> dict:
    """The real meme set's ground truth, keyed by meme id."""
    return json.loads((shared_memes / "ground_truth.json").read_text("utf-8"))
