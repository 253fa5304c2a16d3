"""engine.runtime.gpu (device, dtype, local-only model lookup) and `makeitmove models check`."""

from __future__ import annotations

import gc
import sys
import weakref
from pathlib import Path

import pytest
import torch

from engine.cli import main
from engine.config import load_settings, replace
from engine.errors import ConfigError
from engine.runtime import gpu

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "monday-cat.png"


def runtime(**changes: object):
    return replace(load_settings(), runtime=changes).runtime


def fake_hub_cache(root: Path, model: str, files: dict[str, bytes]) -> Path:
    """A Hugging Face cache entry laid out as huggingface_hub writes it: blobs, a snapshot of symlinks, refs/main."""
    repo = root / ("models--" + model.replace("/", "--"))
    snapshot = repo / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for name, data in files.items():
        blob = repo / "blobs" / f"blob-{len(data)}-{name}"
        blob.write_bytes(data)
        (snapshot / name).symlink_to(blob)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    return snapshot


def test_cpu_runtime_picks_cpu_and_fp32() -> None:
    rt = runtime(device="cpu")
    assert gpu.torch_device(rt) == torch.device("cpu")
    assert gpu.torch_dtype(rt, "cpu") == torch.float32
    assert gpu.torch_dtype(runtime(dtype="bf16"), "cpu") == torch.bfloat16
    assert gpu.torch_dtype(runtime(dtype="fp16"), "cuda") == torch.float16
    auto = gpu.torch_device(runtime(device="auto"))
    assert auto.type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_cuda_without_a_gpu_names_the_key() -> None:
    with pytest.raises(ConfigError, match="runtime.device"):
        gpu.torch_device(runtime(device="cuda"))


def test_runtime_choices_are_checked() -> None:
    with pytest.raises(ConfigError, match="runtime.dtype"):
        runtime(dtype="int4")


def test_model_path_returns_a_local_folder_as_is(tmp_path: Path) -> None:
    assert gpu.model_path(str(tmp_path), key="caption.blip2_model") == str(tmp_path)


def test_model_path_finds_a_hub_id_in_the_local_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    snapshot = fake_hub_cache(tmp_path, "org/tiny", {"config.json": b"{}", "model.safetensors": b"x" * 1000})
    assert gpu.model_path("org/tiny", key="caption.blip2_model") == str(snapshot)
    assert gpu.size_on_disk(snapshot) == 1002  # the blobs' sizes, through the symlinks


def test_a_missing_model_says_how_to_fetch_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ConfigError) as caught:
        gpu.model_path("Salesforce/blip2-opt-2.7b", key="caption.blip2_model")
    assert str(caught.value) == (
        "model 'Salesforce/blip2-opt-2.7b' (config key 'caption.blip2_model') is not on this machine: "
        "fetch it with `hf download Salesforce/blip2-opt-2.7b` or set caption.blip2_model to a local folder"
    )


def test_require_torch_names_the_backend_and_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu.require_torch("blip2 caption backend")  # installed here: no error
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    with pytest.raises(ConfigError) as caught:
        gpu.require_torch("blip2 caption backend")
    assert str(caught.value) == (
        "the blip2 caption backend needs pip install 'makeitmove[gpu]' (transformers is missing)"
    )


def test_free_memory_collects_what_a_failed_job_left_in_cycles_without_a_gpu() -> None:
    class Frames:
        pass

    gc.disable()  # only free_memory may collect here
    try:
        held = Frames()
        held.me = held  # type: ignore[attr-defined]  # a cycle, as a traceback's frames make
        gone = weakref.ref(held)
        del held
        assert gone() is not None
        gpu.free_memory()
        assert gone() is None
    finally:
        gc.enable()


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, "utf-8")
    return path


def test_models_check_passes_when_the_selected_model_is_a_local_folder(
    tiny_blip2: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    config = write_config(tmp_path / "c.toml", f'[caption]\nbackend = "blip2"\nblip2_model = "{tiny_blip2}"\n')
    assert main(["models", "check", "--config", str(config)]) == 0
    out = capsys.readouterr()
    line = next(ln for ln in out.out.splitlines() if ln.startswith("caption.blip2_model"))
    assert line.split()[1:4] == ["in", "use", "folder"] and line.endswith(str(tiny_blip2))
    assert " KB" in line  # its size; the tiny model is a few hundred KB
    # models of backends that are not selected are listed but do not fail the check
    assert any(ln.startswith("caption.florence2_model") and "unused" in ln for ln in out.out.splitlines())
    assert out.err == ""


def test_models_check_fails_on_a_missing_selected_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    config = write_config(tmp_path / "c.toml", '[caption]\nbackend = "blip2"\nblip2_model = "nobody/no-such-model"\n')
    assert main(["models", "check", "--config", str(config)]) == 1
    out = capsys.readouterr()
    assert any(ln.startswith("caption.blip2_model") and "missing" in ln for ln in out.out.splitlines())
    assert "model 'nobody/no-such-model' (config key 'caption.blip2_model') is not on this machine" in out.err
    assert "hf download nobody/no-such-model" in out.err


def test_models_check_reads_the_hf_cache_and_marks_interrupted_downloads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    fake_hub_cache(tmp_path, "org/complete", {"config.json": b"{}", "model.safetensors": b"x" * 2000})
    fake_hub_cache(tmp_path, "org/partial", {"model.safetensors": b"x" * 10})
    config = write_config(
        tmp_path / "c.toml",
        '[caption]\nbackend = "florence2"\nflorence2_model = "org/complete"\n'
        '[ocr]\nbackend = "florence2"\nflorence2_model = "org/partial"\n',
    )
    assert main(["models", "check", "--config", str(config)]) == 1  # the OCR model is incomplete
    out = capsys.readouterr()
    rows = {ln.split()[0]: ln for ln in out.out.splitlines()}
    assert "hf cache" in rows["caption.florence2_model"] and "2 KB" in rows["caption.florence2_model"]
    assert "incomplete" in rows["ocr.florence2_model"]
    assert "ocr.florence2_model" in out.err and "caption.florence2_model" not in out.err


def test_models_check_passes_on_the_cpu_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "check"]) == 0  # nothing selected needs a model
    assert "in use" not in capsys.readouterr().out


def test_models_check_knows_both_clip_models_of_the_clipguided_backend(
    tiny_blip2: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.runtime.model_files import configured_models

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    clip = {"clip_model": str(tiny_blip2), "clip_model2": "nobody/second-clip"}  # any model folder will do
    used = {e.key: e.selected for e in configured_models(replace(load_settings(), generate=clip))}
    assert used["generate.clip_model"] is False and used["generate.clip_model2"] is False
    assert used["generate.t2v_model"] is False and used["generate.i2v_model"] is False
    chosen = replace(load_settings(), generate={"backend": "clipguided", **clip})
    used = {e.key: e.selected for e in configured_models(chosen)}
    assert used["generate.clip_model"] and used["generate.clip_model2"]
    assert not used["generate.t2v_model"] and not used["generate.i2v_model"]
    assert "generate.clip_model2" not in {e.key for e in configured_models(load_settings())}  # "" is no model

    config = write_config(
        tmp_path / "c.toml",
        f'[generate]\nbackend = "clipguided"\nclip_model = "{tiny_blip2}"\nclip_model2 = "nobody/second-clip"\n',
    )
    assert main(["models", "check", "--config", str(config)]) == 1  # the second CLIP is not here
    out = capsys.readouterr()
    assert "config key 'generate.clip_model2'" in out.err and "generate.clip_model'" not in out.err


def test_animate_with_a_missing_model_prints_the_fix_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    config = write_config(tmp_path / "c.toml", '[caption]\nbackend = "blip2"\n')
    code = main(["animate", str(EXAMPLE), "-o", str(tmp_path / "out.gif"), "--config", str(config)])
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        "error: model 'Salesforce/blip2-opt-2.7b' (config key 'caption.blip2_model') is not on this machine: "
        "fetch it with `hf download Salesforce/blip2-opt-2.7b` or set caption.blip2_model to a local folder\n"
    )
    assert not (tmp_path / "out.gif").exists()


@pytest.mark.parametrize("backend", ["t2v", "i2v"])
def test_a_missing_video_model_stops_the_pipeline_being_built(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.pipeline import Pipeline

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    settings = replace(load_settings(), generate={"backend": backend})
    model = getattr(settings.generate, f"{backend}_model")
    with pytest.raises(ConfigError) as caught:
        Pipeline(settings)  # serve builds it at start: no job gets to fail on it with a traceback
    assert str(caught.value) == (
        f"model '{model}' (config key 'generate.{backend}_model') is not on this machine: "
        f"fetch it with `hf download {model}` or set generate.{backend}_model to a local folder"
    )
