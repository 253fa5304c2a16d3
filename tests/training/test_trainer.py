"""The LoRA trainer on the tiny random models of each family: the loss, what trains, the file, resume, OOM."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from engine.backends.video import i2v, t2v
from engine.backends.video.resident import Resident, loaded_key
from engine.config import Settings, load_settings, replace
from engine.errors import UserError
from engine.training import trainer
from engine.training.families import Family, base_fingerprint, family_of_base
from engine.training.output import read_metadata
from engine.training.trainer import Run, TrainSpec, read_dataset, save_checkpoint, train

REPO = Path(__file__).resolve().parents[2]
SIDE = 32
# family -> (the --base that trains it, frames per clip: t2v any, LTX's tiny VAE 4k+1, Wan 4k+1)
CASES = {"t2v": ("t2v", 8), "ltx": ("i2v", 9), "wan": ("i2v", 9)}


class Cancelled(Exception):
    pass


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engine.runtime.tiny import config_text
    from engine.runtime.tiny.video import make_tiny_ltx, make_tiny_t2v, make_tiny_wan

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny")
    make_tiny_t2v(root / "t2v")
    make_tiny_ltx(root / "ltx")
    make_tiny_wan(root / "wan")
    (root / "tiny.toml").write_text(config_text(root, caption="blip2", generate="t2v", i2v="ltx"), "utf-8")
    for family, (_, frames) in CASES.items():
        write_dataset(root / "datasets" / family, family, frames)
    return root


def settings_for(tiny: Path, family: str) -> Settings:
    return replace(
        load_settings(tiny / "tiny.toml"), generate={"i2v_model": str(tiny / ("wan" if family == "wan" else "ltx"))}
    )


def write_dataset(folder: Path, family: str, frames: int, count: int = 2) -> Path:
    """A dataset folder in the builder's format: moving stripes as clips, one caption each."""
    (folder / "clips").mkdir(parents=True)
    rows, files = [], {}
    y, x = np.mgrid[:SIDE, :SIDE]
    for i in range(count):
        clip = np.stack(
            [np.stack([(x * 8 + t * 24 + i * 60) % 256, (y * 8 + t * 8) % 256, np.full_like(x, 90 + 60 * i)], -1)
             for t in range(frames)]
        ).astype(np.uint8)  # fmt: skip
        name = f"clips/{i:012x}.npy"
        np.save(folder / name, clip)
        files[name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        rows.append({
            "id": f"{i:012x}", "clip": name, "keyframe": f"keyframes/{i:012x}.png", "caption": f"cat {i} dances",
            "meme_text": "", "source": f"{i}.gif", "source_sha256": "0" * 64, "frames": frames, "fps": 8,
            "width": SIDE, "height": SIDE, "family": family, "keyframe_index": 0,
        })  # fmt: skip
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows), "utf-8")
    digest = hashlib.sha256("".join(f"{p} {h}\n" for p, h in sorted(files.items())).encode()).hexdigest()
    manifest = {"version": 1, "family": family, "fps": 8, "frames": frames, "side": SIDE, "trigger": "",
                "files": files, "dataset_sha256": digest, "skipped": [], "built_with": {}}  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest, sort_keys=True), "utf-8")
    return folder


def spec_for(tiny: Path, family: str, name: str, **overrides: Any) -> TrainSpec:
    return TrainSpec.from_settings(
        settings_for(tiny, family), tiny / "datasets" / family, name, base=CASES[family][0], **overrides
    )


def load_production(tiny: Path, family: str) -> tuple[Resident, Any]:
    """The family's pipeline loaded the way the generate backends load it."""
    settings = settings_for(tiny, family)
    path = str(tiny / family)
    resident = Resident()
    if family == "t2v":
        pipe = resident.get(loaded_key(family, path, settings.runtime), lambda: t2v.load(path, settings.runtime))
    else:
        pipe = resident.get(
            loaded_key(family, path, settings.runtime), lambda: i2v.load(family, path, settings.runtime)
        )
    return resident, pipe


def denoiser_of(pipe: Any) -> Any:
    return pipe.unet if hasattr(pipe, "unet") else pipe.transformer


def generate(pipe: Any, family: str) -> np.ndarray:
    """A few denoising steps to latents from fixed noise."""
    from PIL import Image

    frames = CASES[family][1]
    common: dict[str, Any] = dict(
        prompt="a cat dances", height=SIDE, width=SIDE, num_frames=frames, num_inference_steps=2,
        generator=torch.Generator().manual_seed(0), output_type="latent",
    )  # fmt: skip
    if family != "t2v":
        common["image"] = Image.new("RGB", (SIDE, SIDE), (120, 80, 40))
    with torch.inference_mode():
        return np.asarray(pipe(**common).frames)


@pytest.mark.parametrize("family", list(CASES))
def test_on_a_fixed_batch_the_loss_falls_and_only_the_lora_trains(tiny: Path, family: str, tmp_path: Path) -> None:
    settings = settings_for(tiny, family)
    spec = spec_for(tiny, family, f"fixed-{family}", lr=1e-2, alpha=8)  # alpha != rank: the saved scale counts
    name, path = family_of_base(settings, spec.base)
    assert name == family
    fam, dataset = Family(name, path), read_dataset(spec.dataset)
    cache = tmp_path / "cache"
    files = trainer.cache_samples(fam, dataset, cache, torch.device("cpu"), torch.float32, lambda f, d: None)
    run = Run(spec, fam, base_fingerprint(path), dataset.sha256, torch.device("cpu"), torch.float32, tmp_path / "run")
    sample = torch.load(files[0], weights_only=True)
    noise = torch.randn(sample["latents"].shape, generator=torch.Generator().manual_seed(1))
    base = {n: p.detach().clone() for n, p in run.denoiser.named_parameters() if "lora_" not in n}
    assert base and all(not p.requires_grad for n, p in run.denoiser.named_parameters() if n in base)

    losses = []
    for _ in range(6):
        loss = fam.loss(run.denoiser, sample, noise, 0.5)
        loss.backward()
        run.optimizer.step()
        run.optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    after = dict(run.denoiser.named_parameters())
    assert all(torch.equal(after[n], value) for n, value in base.items()), "a base weight changed"
    lora_b = [p for n, p in after.items() if ".lora_B." in n]
    assert lora_b and all(bool(p.abs().sum() > 0) for p in lora_b)

    # the saved file, loaded the production way, reproduces the trained model (alpha/rank folded in)
    with torch.no_grad():
        trained = fam.loss(run.denoiser, sample, noise, 0.5).item()
    file = save_checkpoint(run, spec, settings, dataset, tmp_path / "registry")
    resident, pipe = load_production(tiny, family)
    with torch.no_grad():
        plain = fam.loss(denoiser_of(pipe), sample, noise, 0.5).item()
        resident.use_checkpoint(str(file), 1.0)
        loaded = fam.loss(denoiser_of(pipe), sample, noise, 0.5).item()
    assert loaded == pytest.approx(trained, rel=1e-4) and abs(plain - trained) > 1e-4


@pytest.mark.parametrize("family", list(CASES))
def test_a_trained_checkpoint_changes_the_output_and_unloads_bitwise(tiny: Path, family: str) -> None:
    seen: list[tuple[float, str]] = []
    spec = spec_for(tiny, family, f"trained-{family}", steps=3, checkpoint_every=2)
    result = train(spec, settings_for(tiny, family), progress=lambda f, d: seen.append((f, d)))

    assert result.path == tiny / "checkpoints" / f"trained-{family}.safetensors" and result.steps == 3
    assert len(result.losses) == 3 and result.seconds_per_step > 0
    assert seen[-2][0] == 1.0 and seen[-2][1].startswith("step 3/3, loss ") and "s/step, ETA" in seen[-2][1]
    assert seen[-1] == (1.0, "saving the checkpoint"), "the last chance to cancel comes before the file"
    assert not list(result.path.parent.glob(".*")), "a partial file was left in the registry"
    meta = read_metadata(result.path)
    assert meta["family"] == family and meta["makeitmove"] == "1" and meta["kind"] == "train"
    assert meta["base_fingerprint"] == base_fingerprint(tiny / family) and meta["targets"] == "all"
    assert (meta["rank"], meta["alpha"], meta["steps"]) == ("4", "4", "3")
    assert meta["dataset_sha256"] == read_dataset(spec.dataset).sha256
    assert json.loads(meta["examples"]) == ["cat 0 dances", "cat 1 dances"]
    assert meta["base_model"] == str(tiny / family)

    resident, pipe = load_production(tiny, family)
    before = generate(pipe, family)
    resident.use_checkpoint(str(result.path), 1.0)
    assert not np.array_equal(generate(pipe, family), before)
    resident.use_checkpoint(None, 1.0)
    assert np.array_equal(generate(pipe, family), before)


def test_a_tune_saves_only_the_temporal_lora(tiny: Path) -> None:
    spec = spec_for(tiny, "t2v", "tuned", steps=2, save_which="temporal", kind="tune", source_sha256="ab" * 32)
    result = train(spec, settings_for(tiny, "t2v"))
    from safetensors import safe_open

    with safe_open(str(result.path), "pt") as file:
        keys = list(file.keys())
    assert keys and all(k.startswith("unet.") and ".temp_attentions." in k for k in keys)
    meta = read_metadata(result.path)
    assert (meta["kind"], meta["targets"], meta["source_sha256"]) == ("tune", "temporal", "ab" * 32)
    resident, pipe = load_production(tiny, "t2v")
    resident.use_checkpoint(str(result.path), 1.0)  # the production loader takes it

    with pytest.raises(UserError, match="temporal"):
        train(spec_for(tiny, "ltx", "tuned-ltx", steps=1, which="temporal"), settings_for(tiny, "ltx"))


KILLED_RUN = """
import sys, torch
torch.set_num_threads(1)
from pathlib import Path
from engine.config import load_settings
from engine.training.trainer import TrainSpec, train

settings = load_settings(sys.argv[1])
spec = TrainSpec.from_settings(settings, sys.argv[2], "resumed", steps=6, checkpoint_every=2)

def progress(fraction, detail):
    if detail.startswith("step 3/"):  # the state of step 2 is on disk: wait here to be killed
        print("ready", flush=True)
        sys.stdin.readline()

train(spec, settings, progress=progress)
"""


def test_training_resumes_after_a_kill_from_the_last_state(tiny: Path) -> None:
    settings = settings_for(tiny, "t2v")
    dataset = tiny / "datasets" / "t2v"
    state = Path(settings.training.work_dir) / "runs" / "resumed" / trainer.STATE
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(tiny / "tiny.toml"), str(dataset)],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = process.stdout.readline() if process.stdout else ""  # returns "" if the run dies first
        assert line.strip() == "ready", process.stderr.read() if process.stderr else ""
        assert state.is_file()
    finally:
        process.kill()  # SIGKILL: no handler runs, no state is flushed
        process.communicate()
    saved = torch.load(state, weights_only=True)
    assert saved["step"] == 2 and len(saved["losses"]) == 2

    seen: list[str] = []
    spec = TrainSpec.from_settings(settings, dataset, "resumed", steps=6, checkpoint_every=2, resume=True)
    resumed = train(spec, settings, progress=lambda f, d: seen.append(d))
    steps = [d for d in seen if d.startswith("step ")]
    assert steps[0].startswith("step 3/6") and len(steps) == 4
    assert not state.exists(), "a finished run keeps no state"

    whole = train(TrainSpec.from_settings(settings, dataset, "uninterrupted", steps=6, checkpoint_every=2), settings)
    assert resumed.losses == whole.losses and resumed.losses[:2] == saved["losses"]
    from safetensors.torch import load_file

    a, b = load_file(resumed.path), load_file(whole.path)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_out_of_memory_names_the_knobs(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class OutOfMemoryError(RuntimeError):
        """Named like torch.cuda.OutOfMemoryError, which a CPU cannot raise."""

    def step(*_args: Any) -> Any:
        raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trainer, "train_step", step)
    with pytest.raises(UserError) as caught:
        train(spec_for(tiny, "t2v", "oom", steps=2), settings_for(tiny, "t2v"))
    assert caught.value.code == "out_of_memory"
    assert "step 1" in caught.value.message
    assert all(k in caught.value.message for k in ("--rank", "[training] frames", "[training] side"))
    assert not (tiny / "checkpoints" / "oom.safetensors").exists()


def test_a_cancel_from_progress_propagates_and_writes_nothing(tiny: Path) -> None:
    def cancel(fraction: float, detail: str) -> None:
        if detail.startswith("step 2/"):
            raise Cancelled

    with pytest.raises(Cancelled):
        train(spec_for(tiny, "ltx", "cancelled", steps=4), settings_for(tiny, "ltx"), progress=cancel)
    assert not (tiny / "checkpoints" / "cancelled.safetensors").exists()


@pytest.mark.parametrize("name", ["../escape", "x.safetensors", ""])
def test_a_bad_name_is_refused_before_any_work(tiny: Path, name: str) -> None:
    with pytest.raises(UserError) as caught:
        train(spec_for(tiny, "t2v", name), settings_for(tiny, "t2v"))
    assert caught.value.code == "bad_checkpoint_name"


def test_a_clip_the_model_cannot_take_is_refused_with_a_sentence(tiny: Path) -> None:
    folder = write_dataset(tiny / "datasets" / "ltx-8-frames", "ltx", 8, count=1)
    with pytest.raises(UserError, match=r"8 frames of 32x32, but the ltx model needs 4k\+1 frames"):
        train(TrainSpec.from_settings(settings_for(tiny, "ltx"), folder, "bad", base="i2v"), settings_for(tiny, "ltx"))


def test_the_fingerprint_tells_the_bases_apart(tiny: Path) -> None:
    prints = {family: base_fingerprint(tiny / family) for family in CASES}
    assert len(set(prints.values())) == 3 and all(len(p) == 16 for p in prints.values())
    assert base_fingerprint(str(tiny / "t2v")) == prints["t2v"]


def test_the_train_command_shows_progress_and_names_the_checkpoint(
    tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.cli import ArgumentParser
    from engine.cli import train as train_cli

    parser = ArgumentParser(prog="makeitmove")
    train_cli.register(parser.add_subparsers(dest="command", parser_class=ArgumentParser))
    argv = ["train", str(tiny / "datasets" / "ltx"), "--name", "from-cli", "--base", "i2v", "--steps", "2"]
    args = parser.parse_args([*argv, "--rank", "2", "--lr", "0.001", "--config", str(tiny / "tiny.toml")])
    assert args.handler(args) == 0
    out, err = capsys.readouterr()
    assert "step 2/2, loss" in err  # one line per tenth of the run when stderr is not a terminal
    assert f"checkpoint from-cli written to {tiny / 'checkpoints' / 'from-cli.safetensors'}" in out
    assert "/lora use from-cli" in out
    meta = read_metadata(tiny / "checkpoints" / "from-cli.safetensors")
    assert (meta["family"], meta["rank"], meta["steps"], meta["lr"]) == ("ltx", "2", "2", "0.001")
