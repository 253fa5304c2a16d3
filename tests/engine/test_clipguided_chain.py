"""The clipguided backend through the real CLI on the tiny CLIP: a GIF that moves, with the meme's caption restored."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from engine.config import load_settings
from engine.pipeline import Pipeline
from tests.support.memes import meme

REPO = Path(__file__).resolve().parents[2]


def test_makeitmove_animate_with_the_clipguided_config_keeps_the_caption_and_moves(
    tiny_dir: Path, tmp_path: Path
) -> None:
    image = tmp_path / "meme.png"
    image.write_bytes(meme(192, 144, caption="CLIP GUIDED"))
    output = tmp_path / "meme.gif"
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "animate", str(image), "-o", str(output), "--frames", "6", "--json",
         "--seed", "5", "--config", str(tiny_dir / "tiny-clip.toml")],
        cwd=REPO, capture_output=True, text=True, timeout=180, env={"OMP_NUM_THREADS": "1", "PATH": ""},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["backends"]["generate"] == "clipguided" and report["frames"] == 6
    with Image.open(output) as gif:
        frames = []
        for index in range(gif.n_frames):
            gif.seek(index)
            frames.append(np.asarray(gif.convert("RGB"), dtype=np.int16))
    assert len(frames) == 6 and frames[0].shape[:2] == (report["height"], report["width"])
    assert max(np.abs(f - frames[0]).mean() for f in frames[1:]) > 0.5, "the optimised pixels move"

    # the caption is read back from the animation, as the meme had it
    pipeline = Pipeline(load_settings())
    for frame in (frames[0], frames[-1]):
        buffer = io.BytesIO()
        Image.fromarray(frame.astype(np.uint8)).save(buffer, "PNG")
        read = pipeline.ocr(pipeline.intake(buffer.getvalue())).text
        assert "CLIPGUIDED" in "".join(read.split()).upper(), read  # OCR may read the space or not


def test_the_same_seed_gives_the_same_bytes_through_the_cli(tiny_dir: Path, tmp_path: Path) -> None:
    image = tmp_path / "meme.png"
    image.write_bytes(meme(96, 96, caption="SAME"))
    outputs = []
    for name in ("a", "b"):
        output = tmp_path / f"{name}.gif"
        done = subprocess.run(
            [sys.executable, "-m", "engine.cli", "animate", str(image), "-o", str(output), "--frames", "3",
             "--seed", "9", "--config", str(tiny_dir / "tiny-clip.toml")],
            cwd=REPO, capture_output=True, text=True, timeout=180, env={"OMP_NUM_THREADS": "1", "PATH": ""},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append(output.read_bytes())
    assert outputs[0] == outputs[1]
