"""House style that a machine can check: mypy on engine/, storage/ and bot/, ruff lint and format everywhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON_DIRS = ["engine", "storage", "bot", "research", "tests", "bench", "examples"]


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *command], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_mypy_is_clean_on_engine_storage_and_bot(mypy_answer: tuple[int, str]) -> None:
    # mypy started in the background when this test was collected (tests/conftest.py)
    code, output = mypy_answer
    assert code == 0, output


def test_ruff_lint_is_clean() -> None:
    done = run("ruff", "check", "--output-format", "concise", *PYTHON_DIRS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format_is_clean() -> None:
    done = run("ruff", "format", "--check", *PYTHON_DIRS)
    assert done.returncode == 0, done.stdout + done.stderr
