"""`makeitmove tune` and `checkpoints list` on the tiny models, and the refusal of a LoRA for another base."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from engine.backends.video import t2v  # noqa: E402
from engine.backends.video.resident import Resident, check_base, loaded_key, model_fingerprint  # noqa: E402
from engine.cli import main  # noqa: E402
from engine.config import load_settings  # noqa: E402
from engine.errors import UserError  # noqa: E402
from engine.runtime.tiny.video import make_tiny_lora  # noqa: E402
from engine.training.output import read_metadata, save_lora  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engine.runtime.tiny import make_tiny

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("tiny")
    make_tiny(folder)
    return folder


def sliding_gif(path: Path) -> Path:
    pictures = []
    for i in range(10):
        canvas = np.full((48, 64, 3), 30, np.uint8)
        canvas[16:32, 4 + 4 * i : 20 + 4 * i] = (220, 60, 60)
        pictures.append(Image.fromarray(canvas))
    out = io.BytesIO()
    pictures[0].save(out, "GIF", save_all=True, append_images=pictures[1:], duration=100, loop=0)
    path.write_bytes(out.getvalue())
    return path


def test_tune_writes_a_temporal_checkpoint_that_the_listing_describes(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "engine.toml"
    config.write_text(
        (tiny / "tiny.toml").read_text("utf-8")
        .replace(f'dir = "{tiny.as_posix()}/checkpoints"', f'dir = "{(tmp_path / "ckpt").as_posix()}"')
        .replace(f'work_dir = "{tiny.as_posix()}/training"', f'work_dir = "{(tmp_path / "work").as_posix()}"'),
        "utf-8",
    )  # fmt: skip
    clip = sliding_gif(tmp_path / "slide.gif")

    assert main(["tune", str(clip), "--name", "slide", "--prompt", "a red square slides right", "--config",
                 str(config)]) == 0  # fmt: skip
    said = capsys.readouterr().out
    assert "checkpoint slide written" in said and "/lora use slide" in said
    metadata = read_metadata(tmp_path / "ckpt" / "slide.safetensors")
    assert (metadata["kind"], metadata["targets"], metadata["family"]) == ("tune", "temporal", "t2v")
    assert json.loads(metadata["examples"]) == ["a red square slides right"]

    assert main(["checkpoints", "list", "--config", str(config)]) == 0
    listing = capsys.readouterr().out
    assert listing.splitlines()[0].startswith("slide ") and " ok" in listing.splitlines()[0]
    assert "tuned on one clip: t2v" in listing and "steps 4" in listing and '"a red square slides right"' in listing

    # refusals are one sentence and status 2
    assert main(["tune", str(tmp_path / "missing.gif"), "--name", "x", "--config", str(config)]) == 2
    assert main(["tune", str(clip), "--name", "../escape", "--config", str(config)]) == 2
    (tmp_path / "text.gif").write_bytes(b"just some words, not a GIF")
    assert main(["tune", str(tmp_path / "text.gif"), "--name", "x", "--config", str(config)]) == 2
    errors = capsys.readouterr().err
    assert "cannot read" in errors and "never a path" in errors and "Traceback" not in errors
    assert not (tmp_path / "ckpt" / "x.safetensors").exists()


def test_the_listing_marks_a_bad_file_and_says_nothing_of_files_made_elsewhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    make_tiny_lora(folder / "plain.safetensors", "t2v", seed=1)
    (folder / ".half.safetensors.partial-1").write_bytes(b"")
    config = tmp_path / "engine.toml"
    config.write_text(f'[checkpoints]\ndir = "{folder.as_posix()}"\n', "utf-8")
    assert main(["checkpoints", "list", "--config", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["broken", "plain"], lines
    assert "unusable:" in lines[0] and lines[1].endswith(" ok")


def test_a_checkpoint_for_another_family_or_base_is_refused_before_it_is_loaded(tiny: Path, tmp_path: Path) -> None:
    settings = load_settings(tiny / "tiny.toml")
    path = str(tiny / "t2v")
    resident = Resident()
    resident.get(loaded_key("t2v", path, settings.runtime), lambda: t2v.load(path, settings.runtime))
    tensors = {}
    from safetensors.torch import load_file

    tensors = load_file(str(make_tiny_lora(tmp_path / "raw.safetensors", "t2v", seed=2)))
    fingerprint = model_fingerprint(path, "t2v")
    assert len(fingerprint) == 16 and fingerprint != model_fingerprint(tiny / "ltx", "ltx")

    def saved(name: str, **metadata: str) -> Path:
        return save_lora(tensors, tmp_path / "ckpt", name, {"format": "pt", **metadata})

    wrong_family = saved("for-ltx", family="ltx", base_fingerprint="0" * 16)
    wrong_base = saved("other-base", family="t2v", base_fingerprint="f" * 16, base_model="someone/else")
    right = saved("right", family="t2v", base_fingerprint=fingerprint)
    unknown = saved("made-elsewhere")

    with pytest.raises(UserError) as refused:
        resident.use_checkpoint(str(wrong_family), 1.0)
    assert refused.value.code == "wrong_base_model" and "LTX-Video" in refused.value.message
    with pytest.raises(UserError) as refused:
        check_base(wrong_base, "t2v", path)
    assert "trained on someone/else" in refused.value.message
    before = resident.loads
    resident.use_checkpoint(str(right), 1.0)  # fits: loaded
    resident.use_checkpoint(str(unknown), 1.0)  # says nothing of its base: loading decides, and it fits
    assert resident.loads == before, "a LoRA switch never reloads the base model"
