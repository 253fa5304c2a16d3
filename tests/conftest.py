"""Fixtures shared by the whole suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_MEMES = REPO.parent / "shared" / "memes"
MYPY_COMMAND = [sys.executable, "-m", "mypy", "engine", "storage", "bot"]
MYPY_TEST = "test_mypy_is_clean_on_engine_storage_and_bot"
MYPY_RUN = pytest.StashKey[tuple[subprocess.Popen[bytes], Path]]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start mypy in the background when its test is collected: a minute of one core, while the single-process
    suite leaves the second core mostly idle; the test then only collects the answer."""
    if any(item.name == MYPY_TEST for item in session.items):
        handle, name = tempfile.mkstemp(prefix="mypy-", suffix=".txt")
        with os.fdopen(handle, "wb") as sink:
            process = subprocess.Popen(MYPY_COMMAND, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT)
        output = Path(name)
        session.config.stash[MYPY_RUN] = (process, output)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop a background mypy the run no longer waits for (a -x stop, an interrupt)."""
    started = session.config.stash.get(MYPY_RUN, None)
    if started is not None:
        process, output = started
        if process.poll() is None:
            process.kill()
            process.wait()
        output.unlink(missing_ok=True)


@pytest.fixture
def mypy_answer(request: pytest.FixtureRequest) -> tuple[int, str]:
    """mypy's exit code and output: from the background run, or run here when it was not started."""
    started = request.config.stash.get(MYPY_RUN, None)
    if started is None:
        done = subprocess.run(MYPY_COMMAND, cwd=REPO, capture_output=True, text=True, timeout=600)
        return done.returncode, done.stdout + done.stderr
    process, output = started
    code = process.wait(timeout=600)
    return code, output.read_text("utf-8", "replace")


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
