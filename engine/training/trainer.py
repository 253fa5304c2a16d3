"""LoRA training on a dataset folder (`makeitmove train`, and the tuner's one-clip sets): the loop around a family.

1. the dataset and the base model's family; 2. latents and text embeddings encoded once and cached on disk,
so the VAE and the text encoder are gone before the denoiser loads; 3. the denoiser with a PEFT LoRA on its
attention projections (only those train, in fp32; the base stays frozen in the runtime's dtype, bf16 autocast
on a GPU); 4. AdamW with a linear warm-up then a constant rate, gradient clipping at 1.0, batch 1, and a
resumable state every `checkpoint_every` steps; 5. the LoRA in diffusers' PEFT key format, written atomically
into the checkpoint registry with its training metadata.
Every random draw of step s (its clip, noise and noise level) comes from a generator seeded with (seed, s),
so a run resumed after a kill takes exactly the steps the uninterrupted run would have taken.
torch is imported by the functions: the service may build a TrainSpec on a machine without it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import statistics
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.config import Settings
from engine.errors import UserError
from engine.runtime.gpu import free_memory, require_torch, torch_device, torch_dtype
from engine.service.checkpoints import check_name
from engine.training.output import write_atomically

if TYPE_CHECKING:
    import torch

    from engine.training.families import Family

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
"""Called with the fraction of the training done and a short detail; may raise to cancel."""
WEIGHT_DECAY = 1e-4
GRAD_CLIP = 1.0
STATE = "state.pt"
EXAMPLES = 3  # training captions shown with the checkpoint
RATE_WINDOW = 20  # steps the shown seconds per step and ETA are the median of
DEFAULT_FPS = 8.0  # LTX's token positions need a frame rate; a dataset always states one
OOM_SENTENCE = (
    "Training ran out of GPU memory {where}; try a lower --rank, fewer frames ([training] frames) "
    "or a smaller size ([training] side)."
)


@dataclass(frozen=True)
class TrainSpec:
    """One training run: the dataset, the checkpoint's name, the base model and the LoRA's hyperparameters."""

    dataset: Path
    name: str
    base: str  # "t2v" | "i2v": the [generate] t2v_model or i2v_model
    rank: int
    alpha: int  # 0: equal to the rank
    steps: int
    lr: float
    warmup: int
    checkpoint_every: int
    resume: bool
    seed: int = 0
    which: str = "all"  # the layers trained: "all" attention projections, or t2v's "temporal" ones only
    save_which: str = "all"  # the layers saved: "temporal" drops the spatial LoRA (one-shot tuning)
    kind: str = "train"  # "train" | "tune"
    source_sha256: str = ""  # tune: the GIF's hash

    @classmethod
    def from_settings(cls, settings: Settings, dataset: Path | str, name: str, **overrides: Any) -> TrainSpec:
        """The spec [training] describes for `dataset` and `name`; keyword arguments override single values."""
        t = settings.training
        values: dict[str, Any] = dict(
            dataset=Path(dataset), name=name, base=t.base, rank=t.rank, alpha=t.alpha, steps=t.steps, lr=t.lr,
            warmup=t.warmup, checkpoint_every=t.checkpoint_every, resume=False,
        )  # fmt: skip
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"TrainSpec has no field {sorted(unknown)}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def lora_alpha(self) -> int:
        """The LoRA's alpha: as given, or the rank."""
        return self.alpha or self.rank


@dataclass(frozen=True)
class TrainResult:
    """What a finished run wrote and how it went."""

    path: Path  # the checkpoint file in the registry
    steps: int
    losses: list[float]  # one per step, the resumed-from steps included
    seconds_per_step: float  # the median over the steps this call ran (0 when none were left)


@dataclass(frozen=True)
class Dataset:
    """A dataset folder as the trainer reads it."""

    folder: Path
    sha256: str
    trigger: str
    fps: float
    rows: list[dict[str, Any]]  # metadata.jsonl, sorted by id


def train(
    spec: TrainSpec, settings: Settings, *, progress: Progress | None = None, registry_dir: Path | None = None
) -> TrainResult:
    """Train the spec's LoRA and write it into the registry (default: [checkpoints] dir); resumable, cancellable."""
    check_name(spec.name)
    require_torch("trainer")
    from engine.training.families import Family, base_fingerprint, family_of_base

    report = progress or (lambda _fraction, _detail: None)
    # 1. the dataset, and the model it trains
    dataset = read_dataset(spec.dataset)
    family_name, path = family_of_base(settings, spec.base)
    family = Family(family_name, path)
    fingerprint = base_fingerprint(path, family_name)
    device = torch_device(settings.runtime)
    dtype = torch_dtype(settings.runtime, device)
    work = Path(settings.training.work_dir).expanduser()
    for which in (spec.which, spec.save_which):
        family.check_which(which)
    where = ["while encoding the clips"]
    try:
        with _oom_sentence(where):
            # 2. latents and text, once; the encoders leave memory before the denoiser comes
            cache = work / "cache" / dataset.sha256 / f"{family.name}-{fingerprint}"
            files = cache_samples(family, dataset, cache, device, dtype, report)
            free_memory()
            # 3. the denoiser, its LoRA, the optimizer; the last state when resuming
            report(0.0, f"loading the {family.name} model")
            where[0] = "while loading the model"
            run = Run(spec, family, fingerprint, dataset.sha256, device, dtype, work / "runs" / spec.name)
            # 4. the loop
            durations: list[float] = []
            for step in range(run.step, spec.steps):
                where[0] = f"at step {step + 1}"
                started = time.perf_counter()
                run.step_once(files, step)
                durations.append(time.perf_counter() - started)
                per_step = statistics.median(durations[-RATE_WINDOW:])  # the first steps warm up: not the rate
                if (step + 1) % spec.checkpoint_every == 0 and step + 1 < spec.steps:
                    run.save_state()
                report(
                    (step + 1) / spec.steps,
                    f"step {step + 1}/{spec.steps}, loss {run.losses[-1]:.4f}, {per_step:.3g} s/step, "
                    f"ETA {eta_text(per_step * (spec.steps - step - 1))}",
                )  # fmt: skip
            # 5. the checkpoint; the last chance to cancel comes first, so a cancelled run never writes one
            report(1.0, "saving the checkpoint")
            target = save_checkpoint(run, spec, settings, dataset, registry_dir)
            seconds = statistics.median(durations) if durations else 0.0
            losses = list(run.losses)
            run.forget()
    finally:
        free_memory()
    log.info("trained %s: %d steps, %.3g s/step, written to %s", spec.name, spec.steps, seconds, target)
    return TrainResult(path=target, steps=spec.steps, losses=losses, seconds_per_step=seconds)


def read_dataset(folder: Path) -> Dataset:
    """The manifest and metadata of a dataset folder built by `makeitmove dataset build`."""
    if not folder.is_dir():
        raise UserError(f"There is no dataset folder at {folder}.", code="bad_dataset")
    for part in ("manifest.json", "metadata.jsonl"):
        if not (folder / part).is_file():
            raise UserError(
                f"{folder} has no {part}: it isn't a dataset from `makeitmove dataset build`.", code="bad_dataset"
            )  # fmt: skip
    try:
        manifest = json.loads((folder / "manifest.json").read_text("utf-8"))
        lines = (folder / "metadata.jsonl").read_text("utf-8").splitlines()
        rows = sorted((json.loads(line) for line in lines if line.strip()), key=lambda r: str(r["id"]))
        sha256 = str(manifest["dataset_sha256"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(
            f"The dataset {folder} can't be read ({type(exc).__name__}: {exc}).", code="bad_dataset"
        ) from None
    if not rows:
        raise UserError(f"The dataset {folder} holds no clips.", code="bad_dataset")
    root = folder.resolve()
    for row in rows:
        if not isinstance(row.get("caption"), str) or not (root / str(row.get("clip"))).resolve().is_relative_to(root):
            raise UserError(f"The dataset {folder} has a bad entry for clip {row.get('id')!r}.", code="bad_dataset")
    return Dataset(folder, sha256, str(manifest.get("trigger", "")), float(manifest.get("fps") or 0), rows)


def cache_samples(
    family: Family, dataset: Dataset, cache: Path, device: torch.device, dtype: torch.dtype, report: Progress
) -> list[Path]:
    """One cached file per clip (its latents and text tensors), encoding the missing ones; the encoders freed after."""
    import numpy as np
    import torch

    files = [cache / f"{row['id']}.pt" for row in dataset.rows]
    missing = [(row, file) for row, file in zip(dataset.rows, files) if not file.is_file()]
    if not missing:
        return files
    report(0.0, "loading the VAE and the text encoder")
    cache.mkdir(parents=True, exist_ok=True)
    pipe = family.load_encoders(device, dtype)
    for done, (row, file) in enumerate(missing):
        report(0.0, f"encoding clip {done + 1}/{len(missing)}")
        clip = np.load(dataset.folder / str(row["clip"]), allow_pickle=False)
        fps = float(row.get("fps") or dataset.fps or DEFAULT_FPS)
        sample = family.encode(pipe, clip, str(row["caption"]), fps, str(row["id"]))
        write_atomically(file, functools.partial(torch.save, sample))
    del pipe
    log.info("encoded %d clips into %s", len(missing), cache)
    return files


class Run:
    """The denoiser with its LoRA, the optimizer and the step: what a state file holds and restores."""

    def __init__(
        self, spec: TrainSpec, family: Family, fingerprint: str, dataset_sha256: str, device: torch.device,
        dtype: torch.dtype, folder: Path,
    ) -> None:  # fmt: skip
        import torch
        from peft import LoraConfig

        self.spec, self.family, self.device, self.folder = spec, family, device, folder
        self.identity = {
            "dataset_sha256": dataset_sha256, "family": family.name, "base_fingerprint": fingerprint,
            "rank": spec.rank, "alpha": spec.lora_alpha, "lr": spec.lr, "warmup": spec.warmup, "which": spec.which,
            "seed": spec.seed,
        }  # fmt: skip
        denoiser = family.load_denoiser(dtype)
        denoiser.requires_grad_(False)  # before the adapter: only the LoRA trains
        targets = family.targets(denoiser, spec.which)
        config = LoraConfig(r=spec.rank, lora_alpha=spec.lora_alpha, init_lora_weights=True, target_modules=targets)
        with torch.random.fork_rng(devices=[]):  # lora_A starts random: seeded, so a run is reproducible
            torch.manual_seed(int(rng(spec.seed, "init", 0).initial_seed()))
            denoiser.add_adapter(config)
        self.trainable = [(n, p) for n, p in denoiser.named_parameters() if p.requires_grad]
        for _, parameter in self.trainable:
            parameter.data = parameter.data.float()
        if device.type == "cuda" and getattr(denoiser, "_supports_gradient_checkpointing", False):
            denoiser.enable_gradient_checkpointing()
        self.denoiser = denoiser.to(device).train()
        self.autocast = device.type == "cuda" and dtype != torch.float32
        self.dtype = dtype
        params = [p for _, p in self.trainable]
        self.optimizer = torch.optim.AdamW(params, lr=spec.lr, weight_decay=WEIGHT_DECAY)

        def warmed(step: int) -> float:  # linear warm-up, then constant
            return min(1.0, (step + 1) / (spec.warmup + 1))

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, warmed)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.autocast and dtype == torch.float16)
        self.step, self.losses = 0, list[float]()
        if spec.resume:
            self._restore()

    def step_once(self, files: list[Path], step: int) -> None:
        """Train on step `step`'s clip, noise and noise level."""
        import torch

        order = torch.randperm(len(files), generator=rng(self.spec.seed, "order", step // len(files)))
        sample = torch.load(files[int(order[step % len(files)])], weights_only=True)
        sample = {key: value.to(self.device) for key, value in sample.items()}
        generator = rng(self.spec.seed, "step", step)
        level = self.family.draw(generator)
        noise = torch.randn(sample["latents"].shape, generator=generator).to(self.device)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.autocast):
            loss = train_step(self.family, self.denoiser, sample, noise, level)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_([p for _, p in self.trainable], GRAD_CLIP)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.losses.append(float(loss.detach()))
        self.step = step + 1

    def save_state(self) -> None:
        """Write the resumable state (LoRA, optimizer, schedule, step, losses) atomically."""
        import torch

        state = {
            "identity": self.identity, "step": self.step, "losses": self.losses,
            "lora": {n: p.detach().cpu() for n, p in self.trainable}, "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
        }  # fmt: skip
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomically(self.folder / STATE, functools.partial(torch.save, state))
        log.info("training state of %s saved at step %d", self.spec.name, self.step)

    def _restore(self) -> None:
        import torch

        path = self.folder / STATE
        if not path.is_file():
            log.info("no training state of %s to resume: starting at step 0", self.spec.name)
            return
        state = torch.load(path, weights_only=True, map_location="cpu")
        changed = sorted(k for k, v in self.identity.items() if state["identity"].get(k) != v)
        if changed:
            raise UserError(
                f"The saved training of {self.spec.name} was made with another {', '.join(changed)}; "
                "train without --resume to start over.",
                code="resume_mismatch",
            )  # fmt: skip
        with torch.no_grad():
            for name, parameter in self.trainable:
                parameter.copy_(state["lora"][name])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.losses = int(state["step"]), [float(x) for x in state["losses"]]
        log.info("resuming %s at step %d", self.spec.name, self.step)

    def forget(self) -> None:
        """Drop the state file of a finished run, and the model."""
        (self.folder / STATE).unlink(missing_ok=True)
        if self.folder.is_dir() and not any(self.folder.iterdir()):
            self.folder.rmdir()
        del self.denoiser, self.optimizer, self.trainable


def train_step(family: Family, denoiser: Any, sample: dict[str, Any], noise: Any, level: float) -> Any:
    """The loss of one step, with the autograd graph for backward()."""
    return family.loss(denoiser, sample, noise, level)


def save_checkpoint(run: Run, spec: TrainSpec, settings: Settings, dataset: Dataset, registry_dir: Path | None) -> Path:
    """The trained LoRA (the spec's `save_which` layers) into the registry, with the training's metadata."""
    from engine.training.families import PREFIX, TARGETS
    from engine.training.output import lora_tensors, save_lora

    pattern = TARGETS[(run.family.name, spec.save_which)]

    def keep(module: str) -> bool:
        return pattern.search(module) is not None

    tensors = lora_tensors(run.denoiser, PREFIX[run.family.name], spec.lora_alpha / spec.rank, keep, run.dtype)
    model = settings.generate.t2v_model if spec.base == "t2v" else settings.generate.i2v_model
    metadata = {
        "format": "pt", "makeitmove": "1", "name": spec.name, "family": run.family.name, "base_model": model,
        "base_fingerprint": str(run.identity["base_fingerprint"]), "rank": str(spec.rank),
        "alpha": str(spec.lora_alpha), "steps": str(spec.steps), "lr": repr(spec.lr),
        "dataset_sha256": dataset.sha256, "trigger": dataset.trigger,
        "examples": json.dumps([str(r["caption"]) for r in dataset.rows[:EXAMPLES]]), "kind": spec.kind,
        "targets": spec.save_which, "source_sha256": spec.source_sha256,
    }  # fmt: skip
    return save_lora(tensors, Path(registry_dir or settings.checkpoints.dir).expanduser(), spec.name, metadata)


def rng(seed: int, what: str, index: int) -> torch.Generator:
    """A CPU generator for one draw of the run: the same (seed, what, index), the same numbers."""
    import torch

    digest = hashlib.sha256(f"{seed}/{what}/{index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def eta_text(seconds: float) -> str:
    """A remaining time as people say it: "40 s", "2 min", "1 h 5 min"."""
    if not math.isfinite(seconds) or seconds < 60:
        return f"{round(seconds) if math.isfinite(seconds) else 0} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


@contextmanager
def _oom_sentence(where: list[str]) -> Iterator[None]:
    """Turn CUDA's out-of-memory error into a sentence naming the knobs to turn; `where[0]` says when."""
    try:
        yield
    except Exception as exc:
        if not any(cls.__name__ == "OutOfMemoryError" for cls in type(exc).__mro__):
            raise
        log.warning("training ran out of memory %s: %s", where[0], exc)
        traceback.clear_frames(exc.__traceback__)  # the frames hold the model and its activations
        free_memory()
        raise UserError(OOM_SENTENCE.format(where=where[0]), code="out_of_memory") from None
