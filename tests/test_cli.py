"""`makeitmove animate` end to end, on the bundled example and on bad inputs."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from engine.cli import main

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "monday-cat.png"
REPORT_KEYS = {"output", "format", "bytes", "frames", "fps", "width", "height", "ocr", "script", "backends",
               "timings", "fitted"}  # fmt: skip
SCRIPT_KEYS = {"description", "meme_text", "emotion", "motion_prompt", "camera", "explanation", "writer"}
STAGES = {"intake", "ocr", "detext", "caption", "synthesize", "generate", "postprocess", "encode"}


def animate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; returns (status, stdout, stderr)."""
    try:
        status = main(["animate", *args])
    except SystemExit as exc:  # argparse refuses malformed options this way
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def example_gif(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One real run of the installed console script, shared by the tests that only read its output."""
    out = tmp_path_factory.mktemp("cli") / "example.gif"
    exe = shutil.which("makeitmove") or pytest.fail("the makeitmove console script is not installed")
    done = subprocess.run(
        [exe, "animate", str(EXAMPLE), "-o", str(out), "--json"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no progress display and no log noise when stderr is not a terminal
    return out, json.loads(done.stdout)


def test_report_has_every_field(example_gif: tuple[Path, dict]) -> None:
    out, report = example_gif
    assert set(report) == REPORT_KEYS
    assert set(report["script"]) == SCRIPT_KEYS
    assert set(report["backends"]) == STAGES
    assert set(report["timings"]) == STAGES | {"total"}
    assert report["output"] == str(out) and report["bytes"] == out.stat().st_size
    assert (report["format"], report["frames"], report["fitted"]) == ("gif", 48, [])
    assert max(report["width"], report["height"]) == 480


def test_report_reads_the_caption(example_gif: tuple[Path, dict]) -> None:
    _, report = example_gif
    texts = [block["text"].replace("\n", " ") for block in report["ocr"]]
    assert texts == ["ME AT 9 AM ON MONDAY", "PRETENDING TO WORK"]
    top, bottom = (block["box"] for block in report["ocr"])
    assert top[1] < 100 < 450 < bottom[1]  # the example draws them at the top and bottom
    assert "MONDAY" in report["script"]["meme_text"]


def test_the_gif_matches_the_report_and_keeps_its_caption(example_gif: tuple[Path, dict]) -> None:
    out, report = example_gif
    with Image.open(out) as gif:
        assert gif.format == "GIF" and gif.n_frames == report["frames"]
        assert gif.size == (report["width"], report["height"])
        assert gif.info.get("loop") == 0
        frames = []
        for i in range(gif.n_frames):
            gif.seek(i)
            frames.append(np.asarray(gif.convert("RGB"), dtype=np.int16))
    stack = np.stack(frames)
    height = stack.shape[1]
    caption_band = stack[:, : height // 9]  # the top caption's rows
    picture = stack[:, height // 3 : 2 * height // 3]
    # The picture moves while the caption stays where it was, pixel for pixel (up to GIF palette noise).
    assert np.abs(np.diff(picture, axis=0)).mean() > 2.0
    assert np.abs(np.diff(caption_band, axis=0)).mean() < np.abs(np.diff(picture, axis=0)).mean() / 4


def test_same_seed_same_bytes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outputs = []
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        path = tmp_path / f"{name}.gif"
        status, _, err = animate(capsys, str(EXAMPLE), "-o", str(path), "--seed", seed, "--camera", "shake",
                                 "--frames", "16", "--size", "256")  # fmt: skip
        assert status == 0, err
        outputs.append(path.read_bytes())
    assert outputs[0] == outputs[1]
    assert outputs[0] != outputs[2]  # the shake's jitter follows the seed


@pytest.mark.parametrize("budget", [400_000, 120_000, 40_000])
def test_max_bytes_is_always_met(tmp_path: Path, capsys: pytest.CaptureFixture[str], budget: int) -> None:
    path = tmp_path / "fit.gif"
    status, out, err = animate(capsys, str(EXAMPLE), "-o", str(path), "--max-bytes", str(budget), "--json")
    assert status == 0, err
    report = json.loads(out)
    assert path.stat().st_size == report["bytes"] <= budget
    assert report["fitted"], "a 48-frame 480 px GIF cannot fit these budgets without giving something up"


@pytest.mark.parametrize("fmt", ["mp4", "webp"])
def test_other_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    status, out, err = animate(capsys, str(EXAMPLE), "--format", fmt, "-o", str(tmp_path / f"x.{fmt}"),
                               "--frames", "12", "--fps", "12", "--json")  # fmt: skip
    assert status == 0, err
    report = json.loads(out)
    assert report["format"] == fmt and report["frames"] == 12
    path = tmp_path / f"x.{fmt}"
    if fmt == "webp":
        with Image.open(path) as webp:
            assert webp.format == "WEBP" and webp.is_animated
            assert webp.size == (report["width"], report["height"])
        return
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (report["width"], report["height"])
        assert stream.codec_context.name == "h264" and not container.streams.audio
        assert stream.frames == 12


def test_options_reach_the_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--frames", "10", "--fps", "10", "--size", "200", "--camera", "pan-left", "--prompt", "the cat sighs"]
    status, out, err = animate(capsys, str(EXAMPLE), "-o", str(tmp_path / "o.gif"), *args, "--json")
    assert status == 0, err
    report = json.loads(out)
    assert (report["frames"], report["fps"], max(report["width"], report["height"])) == (10, 10, 200)
    assert report["script"]["camera"] == "pan-left"
    assert report["script"]["motion_prompt"] == "the cat sighs"


def test_partial_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "small.toml"
    config.write_text("[generate]\nframes = 8\n[encode]\nsize = 160\n")
    status, out, err = animate(capsys, str(EXAMPLE), "-o", str(tmp_path / "s.gif"), "--config", str(config), "--json")
    assert status == 0, err
    report = json.loads(out)
    assert (report["frames"], max(report["width"], report["height"])) == (8, 160)


def bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Files a user might really pass, and words the one-line error must contain."""
    files = {
        "empty.png": (b"", "empty"),
        "doc.png": (b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", "PDF"),
        "page.png": (b"<!DOCTYPE html><html><body>hi</body></html>", "HTML"),
        "cut.png": (EXAMPLE.read_bytes()[:3000], "damaged"),
    }
    paths = {}
    for name, (data, words) in files.items():
        (tmp_path / name).write_bytes(data)
        paths[name] = (tmp_path / name, words)
    paths["missing.png"] = (tmp_path / "missing.png", "no file")
    paths["folder"] = (tmp_path, "folder")
    return paths


def test_bad_inputs_exit_2_with_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, (path, words) in bad_files(tmp_path).items():
        status, out, err = animate(capsys, str(path), "-o", str(tmp_path / "never.gif"))
        assert status == 2, name
        assert out == "" and err.startswith("error: ") and err.count("\n") == 1, (name, err)
        assert words in err and "Traceback" not in err, (name, err)
    assert not (tmp_path / "never.gif").exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--frames", "0"], "argument --frames: 0 is out of range: use a whole number from 2 to 240"),
        (["--size", "5000"], "argument --size: 5000 is out of range: use a whole number from 64 to 1024"),
        (["--fps", "99"], "argument --fps: 99 is out of range"),
        (["--seed", "-1"], "argument --seed: -1 is out of range: use a whole number from 0 to 2147483647"),
        (["--max-bytes", "0"], "argument --max-bytes: 0 is out of range: use a whole number of at least 1"),
        (["--camera", "dolly"], "invalid choice"),
        (["--motion", "wild"], "invalid choice"),
        (["--format", "avi"], "invalid choice"),
        (["--prompt", "x" * 501], "the prompt is too long (the limit is 500 characters)"),
        (["--frames", "many"], "argument --frames: 'many' is not a whole number"),
        (["--max-bytes", "100"], "small enough"),
    ],
)
def test_bad_options_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], words: str) -> None:
    status, out, err = animate(capsys, str(EXAMPLE), "-o", str(tmp_path / "x.gif"), *args)
    assert status == 2 and out == "", err
    assert err.startswith("error: ") and words in err and err.count("\n") == 1 and "Traceback" not in err, err


def test_bad_config_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[encode]\nqualty = 3\n")
    status, _, err = animate(capsys, str(EXAMPLE), "--config", str(config))
    assert status == 2 and "encode.qualty" in err


def test_refuses_to_overwrite_the_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    meme = tmp_path / "meme.gif"
    Image.open(EXAMPLE).save(meme)
    before = meme.read_bytes()
    status, _, err = animate(capsys, "meme.gif")  # the default output, ./meme.gif, is the input itself
    assert status == 2 and "overwrite" in err
    assert meme.read_bytes() == before


def test_module_entry_point_runs() -> None:
    done = subprocess.run([sys.executable, "-m", "engine.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "animate" in done.stdout


def test_cpu_chain_never_imports_torch(tmp_path: Path) -> None:
    """A `torch` that explodes on import sits first on the path; the whole CPU chain must not touch it."""
    trap = tmp_path / "trap"
    for name in ("torch", "transformers", "diffusers"):
        (trap / name).mkdir(parents=True)
        (trap / name / "__init__.py").write_text(f"raise RuntimeError('the CPU chain imported {name}')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(trap), str(REPO)])}
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "animate", str(EXAMPLE), "-o", str(tmp_path / "t.gif"), "--frames", "4"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "t.gif").stat().st_size > 0


def test_progress_is_drawn_on_a_terminal(tmp_path: Path) -> None:
    """With stderr on a terminal, each stage shows up in the progress display."""
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "engine.cli",
                "animate",
                str(EXAMPLE),
                "-o",
                str(tmp_path / "p.gif"),
                "--frames",
                "4",
            ],
            stdout=subprocess.DEVNULL,
            stderr=terminal,
            env={**os.environ, "COLUMNS": "100", "TERM": "xterm"},
        )
        os.close(terminal)
        chunks = []
        while True:  # bounded: the child closes the terminal when it exits
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO once the child side is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=120) == 0
    finally:
        os.close(controller)
    shown = b"".join(chunks).decode("utf-8", "replace")
    for stage in ("ocr", "generate", "encode"):
        assert stage in shown, shown[-2000:]
    assert "p.gif: GIF" in shown  # the summary line


def test_a_missing_system_library_gets_the_fix_not_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """mediapipe's OpenCV build links libGL: on a slim machine without it, the CLI says what to install."""
    import argparse

    def handler(args: argparse.Namespace) -> int:
        raise ImportError("libGL.so.1: cannot open shared object file: No such file or directory")

    parser = argparse.ArgumentParser()
    parser.set_defaults(handler=handler, verbose=False)
    from engine import cli

    monkeypatch.setattr(cli, "build_parser", lambda: parser)  # a command whose import of cv2 fails
    code = main([])
    err = capsys.readouterr().err
    assert code != 0
    assert "libGL.so.1" in err and "apt-get install libgl1" in err and "opencv-python-headless" in err
    assert "Traceback" not in err
