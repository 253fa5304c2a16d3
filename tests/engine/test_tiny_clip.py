"""The tiny random CLIP of `makeitmove models make-tiny`, DIR/tiny-clip.toml, and `models check` on the CLIP keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine.cli import main
from engine.config import load_settings
from engine.runtime.tiny.clip import IMAGE_SIDE, PROJECTION


def rows(out: str) -> dict[str, list[str]]:
    """`models check` output by config key: the key's columns after it."""
    return {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}


def test_the_tiny_clip_loads_like_the_hubs_and_its_image_side_stays_differentiable(tiny_dir: Path) -> None:
    from transformers import CLIPModel, CLIPTokenizer

    folder = tiny_dir / "clip"
    model = CLIPModel.from_pretrained(folder).eval()
    tokenizer = CLIPTokenizer.from_pretrained(folder)
    assert model.config.vision_config.image_size == IMAGE_SIDE
    assert sum(p.numel() for p in model.parameters()) < 100_000

    prompts = ["a cat", "Words and text."]
    batch = tokenizer(prompts, padding=True, return_tensors="pt")
    text = model.get_text_features(**batch).pooler_output
    assert text.shape == (2, PROJECTION) and not torch.allclose(text[0], text[1])
    # pooled at the end-of-text token, so padding a prompt does not change its embedding
    alone = model.get_text_features(**tokenizer(prompts[:1], return_tensors="pt")).pooler_output
    torch.testing.assert_close(alone[0], text[0])

    pixels = torch.rand(3, 3, IMAGE_SIDE, IMAGE_SIDE, generator=torch.Generator().manual_seed(0), requires_grad=True)
    image = model.get_image_features(pixel_values=pixels).pooler_output
    assert image.shape == (3, PROJECTION)
    torch.nn.functional.cosine_similarity(image, text[:1]).sum().backward()
    assert pixels.grad is not None and pixels.grad.abs().sum() > 0

    processor = json.loads((folder / "preprocessor_config.json").read_text("utf-8"))
    assert processor["image_mean"] == pytest.approx([0.48145466, 0.4578275, 0.40821073])
    assert processor["image_std"] == pytest.approx([0.26862954, 0.26130258, 0.27577711])
    assert processor["crop_size"] == {"height": IMAGE_SIDE, "width": IMAGE_SIDE}
    assert (folder / "model.safetensors").is_file() and (folder / "TINY.json").is_file()


def test_make_tiny_writes_a_config_selecting_clipguided_on_the_tiny_clip(tiny_dir: Path) -> None:
    settings = load_settings(tiny_dir / "tiny-clip.toml")
    assert settings.generate.backend == "clipguided" and settings.caption.backend == "none"
    assert Path(settings.generate.clip_model) == (tiny_dir / "clip").resolve()
    assert settings.generate.clip_model2 == "" and 0 < settings.generate.clip_side <= 64
    assert settings.runtime.device == "cpu"


def test_models_check_passes_on_tiny_clip_toml_with_the_clip_in_use(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    assert main(["models", "check", "--config", str(tiny_dir / "tiny-clip.toml")]) == 0
    out = capsys.readouterr()
    found = rows(out.out)
    assert found["generate.clip_model"][:3] == ["in", "use", "folder"]
    assert found["generate.t2v_model"][0] == "unused" and "generate.clip_model2" not in found
    assert out.err == ""


def test_with_the_defaults_the_absent_clip_is_listed_unused_and_not_required(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert main(["models", "check"]) == 0
    found = rows(capsys.readouterr().out)
    assert found["generate.clip_model"][:2] == ["unused", "missing"]
    assert found["generate.clip_model"][-1] == load_settings().generate.clip_model
