"""What `makeitmove animate` takes before any work: regular files within the byte cap, numbers in the vocabulary."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import build_parser
from engine.cli.animate import read_image
from engine.errors import UserError
from engine.vocabulary import FPS, FRAMES, SEED, SIZE

REPO = Path(__file__).resolve().parents[1]
# Runs the CLI with its address space capped 512 MB above what its imports took: a CLI that read a device
# to the end would fail with a MemoryError (status 1) instead of taking the machine's memory.
CAPPED_CLI = """
import resource, sys
import engine.pipeline  # the heavy imports first, so the cap is about what the command reads
from engine.cli import main
with open("/proc/self/statm") as statm:
    size = int(statm.read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (size + (512 << 20), resource.RLIM_INFINITY))
sys.exit(main(["animate", *sys.argv[1:]]))
"""


def run_capped(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process with capped memory; the timeout only guards against a hang (a FIFO's open)."""
    return subprocess.run(
        [sys.executable, "-c", CAPPED_CLI, *args], capture_output=True, text=True, timeout=300, cwd=REPO
    )


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux's /proc")
def test_a_device_is_refused_unread(tmp_path: Path) -> None:
    done = run_capped("/dev/zero", "-o", str(tmp_path / "never.gif"))
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert done.stderr == "error: /dev/zero is not a regular file (a device, pipe or socket); give an image file\n"
    assert not (tmp_path / "never.gif").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "meme.png"
    os.mkfifo(fifo)
    done = run_capped(str(fifo), "-o", str(tmp_path / "never.gif"))  # nobody ever opens the FIFO to write
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    assert "is not a regular file" in done.stderr


def test_at_most_the_byte_cap_is_read(tmp_path: Path) -> None:
    at_cap, over = tmp_path / "at.png", tmp_path / "over.png"
    at_cap.write_bytes(b"x" * 100)
    over.write_bytes(b"x" * 101)
    assert read_image(at_cap, 100) == b"x" * 100
    with pytest.raises(UserError) as caught:
        read_image(over, 100)
    assert caught.value.code == "too_large"
    assert caught.value.message == "That file is too large (101 bytes; the limit is 100 bytes)."


def parse(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int | None, str]:
    """(the parsed value of the last option, None when refused) and the one line on stderr."""
    option = args[-2].lstrip("-").replace("-", "_")
    try:
        namespace = build_parser().parse_args(["animate", "meme.png", *args])
    except SystemExit as exc:
        assert exc.code == 2
        return None, capsys.readouterr().err
    return getattr(namespace, option), capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "low", "high"),
    [("--seed", *SEED), ("--frames", *FRAMES), ("--fps", *FPS), ("--size", *SIZE), ("--max-bytes", 1, None)],
)
def test_numbers_are_checked_at_their_bounds(
    capsys: pytest.CaptureFixture[str], option: str, low: int, high: int | None
) -> None:
    span = f"from {low} to {high}" if high is not None else f"of at least {low}"
    inside = [low, low + 1] + ([high - 1, high] if high is not None else [2**62])
    outside = [low - 1, -1] + ([high + 1] if high is not None else [])
    for value in inside:
        assert parse(capsys, option, str(value)) == (value, "")
    for value in outside:
        parsed, err = parse(capsys, option, str(value))
        assert parsed is None, (option, value)
        assert err.startswith(f"error: argument {option}: {value} is out of range: use a whole number {span}")
        assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("text", ["٣", "３", "1_000", " 7", "7.0", "0x10", "1e3", ""])
def test_numbers_are_ascii_digits(capsys: pytest.CaptureFixture[str], text: str) -> None:
    """int() takes "٣", "1_000" and " 7"; the parser takes whole numbers written in ASCII digits only."""
    parsed, err = parse(capsys, "--seed", text)
    assert parsed is None and f"argument --seed: {text!r} is not a whole number" in err and err.count("\n") == 1


def test_a_number_of_thousands_of_digits_is_out_of_range(capsys: pytest.CaptureFixture[str]) -> None:
    parsed, err = parse(capsys, "--seed", "9" * 5000)  # int() of this raises ValueError, not a usage error
    assert parsed is None and "is out of range: use a whole number from 0 to 2147483647" in err
    assert err.count("\n") == 1 and len(err) < 300
