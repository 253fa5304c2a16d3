"""The i2v backend on tiny random LTX-Video and Wan 2.2 models: sizes, family, progress, LoRA, one model resident."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.backends.video.i2v import family_of
from engine.errors import ConfigError
from engine.geometry import output_size
from tests.engine.video_cases import H, W, animate, resident, tiny_settings


@pytest.mark.parametrize("family", ["ltx", "wan"])
def test_frames_have_the_output_size_at_the_pictures_aspect(tiny_dir: Path, family: str) -> None:
    seen: list[float] = []
    settings = tiny_settings(tiny_dir, backend="i2v", i2v_model=str(tiny_dir / family), steps=3)
    frames = animate(settings, frames=6, progress=seen.append)  # 6 is no valid LTX/Wan count: made, then trimmed
    assert frames.frames.shape == (6, *output_size(W, H, 64)[::-1], 3) and frames.frames.dtype == np.uint8
    assert frames.motion == f"i2v-{family}" and frames.frames.std() > 5
    assert seen == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert resident(settings).key is not None and resident(settings).key.kind == family


def test_one_video_model_is_resident_at_a_time(tiny_dir: Path) -> None:
    t2v = tiny_settings(tiny_dir)
    ltx = tiny_settings(tiny_dir, backend="i2v", i2v_model=str(tiny_dir / "ltx"))
    animate(t2v)
    loads = resident(t2v).loads
    animate(t2v)
    assert resident(t2v).loads == loads  # loaded once, reused
    animate(ltx)
    assert resident(t2v).loads == loads + 1 and resident(t2v).key is not None and resident(t2v).key.kind == "ltx"
    animate(t2v)
    assert resident(t2v).loads == loads + 2 and resident(t2v).key is not None and resident(t2v).key.kind == "t2v"


def test_motion_level_changes_the_ltx_result(tiny_dir: Path) -> None:
    settings = tiny_settings(tiny_dir, backend="i2v", i2v_model=str(tiny_dir / "ltx"))
    low, high = animate(settings, motion="low").frames, animate(settings, motion="high").frames
    assert not np.array_equal(low, high)


def test_a_lora_applies_to_ltx_and_unloads_exactly(tiny_dir: Path, tmp_path: Path) -> None:
    from engine.runtime.tiny.video import make_tiny_lora

    settings = tiny_settings(tiny_dir, backend="i2v", i2v_model=str(tiny_dir / "ltx"))
    lora = make_tiny_lora(tmp_path / "ltx-style.safetensors", "ltx", seed=5)
    base = animate(settings).frames
    styled = animate(settings, checkpoint=str(lora)).frames
    assert np.abs(styled.astype(np.int16) - base).mean() > 1
    assert np.array_equal(animate(settings).frames, base)


def test_the_family_is_read_from_the_model_folder(tiny_dir: Path, tmp_path: Path) -> None:
    assert family_of(str(tiny_dir / "ltx"), "auto") == "ltx"
    assert family_of(str(tiny_dir / "wan"), "auto") == "wan"
    assert family_of(str(tiny_dir / "t2v"), "wan") == "wan"  # as configured, unread
    with pytest.raises(ConfigError, match="TextToVideoSDPipeline.*generate.i2v_family"):
        family_of(str(tiny_dir / "t2v"), "auto")
    with pytest.raises(ConfigError, match="model_index.json"):
        family_of(str(tmp_path), "auto")
