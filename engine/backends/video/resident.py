"""The one resident video pipeline of the t2v and i2v backends: loaded lazily, LoRA switched between jobs.

A video model fills most of a GPU, so one process keeps exactly one loaded: asking for another (t2v
after i2v, or another folder) frees the first. The job's LoRA checkpoint is loaded on top of the
resident base model and unloaded again when a job runs with another one or none; the base weights
are never touched (adapters sit beside them), so unloading restores the base model exactly.
torch and diffusers are imported by the functions that need them: the CPU install has neither.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engine.config import RuntimeSettings
from engine.errors import UserError
from engine.runtime.gpu import free_memory, torch_device, torch_dtype

log = logging.getLogger(__name__)

ADAPTER = "checkpoint"  # the one adapter name: at most one LoRA is loaded at a time
DENOISER = {"t2v": "unet", "ltx": "transformer", "wan": "transformer"}  # the part a LoRA adapts, per family
FAMILY_NAMES = {"t2v": "ModelScope text-to-video", "ltx": "LTX-Video", "wan": "Wan"}
StepProgress = Callable[[float], None]
"""Called with the fraction of the generate stage done, 0..1; may raise to stop the job."""


@dataclass(frozen=True)
class Loaded:
    """What the resident pipeline was loaded from: a different key means a different model."""

    kind: str  # "t2v", "ltx" or "wan"
    path: str
    device: str
    dtype: str


class Resident:
    """Holds the one loaded pipeline and its LoRA state; the worker thread is its only user, the lock a guard."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.key: Loaded | None = None
        self.pipe: Any = None
        self.loads = 0  # base models loaded by this process: a LoRA switch must not add to it
        self._lora: tuple[str, int, int] | None = None  # (path, size, mtime_ns) of the loaded checkpoint

    def get(self, key: Loaded, load: Callable[[], Any]) -> Any:
        """The pipeline for `key`, loading it (and freeing any other) on first use."""
        with self._lock:
            if self.key != key:
                self.release()
                started = time.perf_counter()
                self.pipe = load()
                self.key, self.loads = key, self.loads + 1
                log.info("loaded the %s model from %s in %.1f s", key.kind, key.path, time.perf_counter() - started)
            return self.pipe

    def release(self) -> None:
        """Drop the loaded pipeline and free its memory."""
        if self.pipe is not None:
            log.info("unloading the %s model", self.key.kind if self.key else "video")
        self.pipe, self.key, self._lora = None, None, None
        free_memory()

    def use_checkpoint(self, checkpoint: str | None, weight: float) -> None:
        """Make the job's LoRA file (or none) the active adapter at `weight`, without reloading the base model.

        A file made for another base model (its metadata says so) is refused with a sentence before loading.
        """
        pipe = self.pipe
        wanted = _identity(checkpoint) if checkpoint is not None else None
        if wanted is not None and self.key is not None:
            check_base(Path(wanted[0]), self.key.kind, self.key.path)
        if wanted != self._lora:
            if self._lora is not None:
                pipe.unload_lora_weights()
                log.info("unloaded LoRA %s", Path(self._lora[0]).stem)
                self._lora = None
            if wanted is not None:
                _load_lora(pipe, wanted[0])
                self._lora = wanted
                log.info("loaded LoRA %s", Path(wanted[0]).stem)
        if wanted is not None:
            pipe.set_adapters([ADAPTER], adapter_weights=[weight])


def model_fingerprint(path: str | Path, family: str) -> str:
    """A short digest of the denoiser's architecture (its config.json, less diffusers' own "_" keys).

    A LoRA trained on one base model records it; a job on a model with another fingerprint refuses the
    file, since its adapter shapes or meaning would not match.
    """
    config = Path(path) / DENOISER[family] / "config.json"
    try:
        values = json.loads(config.read_text("utf-8"))
    except (OSError, ValueError):
        return ""
    kept = {k: v for k, v in values.items() if not k.startswith("_")} if isinstance(values, dict) else values
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def check_base(checkpoint: Path, family: str, model: str) -> None:
    """Refuse a checkpoint whose metadata names another model family or base model than the loaded one."""
    from safetensors import safe_open

    try:  # the registry checked the file's header before the job started
        with safe_open(str(checkpoint), framework="np") as opened:
            metadata = opened.metadata() or {}
    except Exception:  # noqa: BLE001 - a file that changed since: loading it says what is wrong
        return
    name = checkpoint.stem
    trained_for = metadata.get("family")
    if trained_for is not None and trained_for != family:
        raise UserError(
            f"The checkpoint {name} was made for {FAMILY_NAMES.get(trained_for, 'another')} models, and the engine "
            f"runs a {FAMILY_NAMES[family]} model; ask an admin to choose another.",
            code="wrong_base_model",
        )
    fingerprint = metadata.get("base_fingerprint")
    if fingerprint and fingerprint != model_fingerprint(model, family):
        base = metadata.get("base_model", "another model")
        raise UserError(
            f"The checkpoint {name} was trained on {base[:80]}, not on the engine's video model; "
            "ask an admin to choose another.",
            code="wrong_base_model",
        )


def _identity(checkpoint: str) -> tuple[str, int, int]:
    """A checkpoint file and its version: a file replaced under the same name is loaded again."""
    stat = Path(checkpoint).stat()
    return (checkpoint, stat.st_size, stat.st_mtime_ns)


def _load_lora(pipe: Any, path: str) -> None:
    name = Path(path).stem
    try:
        pipe.load_lora_weights(path, adapter_name=ADAPTER)
    except (ValueError, KeyError, RuntimeError) as exc:
        log.warning("LoRA %s does not fit the loaded model: %s", name, exc)
        pipe.unload_lora_weights()
        raise UserError(
            f"The checkpoint {name} doesn't fit the engine's video model; ask an admin to choose another.",
            code="invalid_checkpoint",
        ) from None
    if ADAPTER not in _adapters(pipe):
        pipe.unload_lora_weights()
        raise UserError(
            f"The checkpoint {name} holds no weights for the engine's video model; ask an admin to choose another.",
            code="invalid_checkpoint",
        )


def _adapters(pipe: Any) -> set[str]:
    listed: dict[str, list[str]] = pipe.get_list_adapters()
    return {name for names in listed.values() for name in names}


def prepare(pipe: Any, rt: RuntimeSettings) -> Any:
    """Place a freshly loaded pipeline as [runtime] says: device or CPU offload, VAE slicing and tiling."""
    import torch

    # Inference only; and PEFT freezes the base weights when it loads an adapter, which changes the
    # kernels some layers use: frozen from the start, unloading an adapter restores the output bitwise.
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.requires_grad_(False)
    device = torch_device(rt)
    if rt.cpu_offload and device.type == "cuda":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if rt.vae_slicing:
        pipe.vae.enable_slicing()
    if rt.vae_tiling:
        pipe.vae.enable_tiling()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def loaded_key(kind: str, path: str, rt: RuntimeSettings) -> Loaded:
    """The resident key for a model folder under the runtime settings."""
    device = torch_device(rt)
    return Loaded(kind, path, str(device), str(torch_dtype(rt, device)))


def generation_size(width: int, height: int, side: int, multiple: int) -> tuple[int, int]:
    """The model's (width, height): longer side about `side`, the picture's aspect, both multiples of `multiple`."""
    scale = side / max(width, height)
    return (
        max(multiple, multiple * round(width * scale / multiple)),
        max(multiple, multiple * round(height * scale / multiple)),
    )


def to_frames(video: Any) -> np.ndarray:
    """A pipeline's "np" output (batch, frames, H, W, 3) floats in 0..1 -> (frames, H, W, 3) uint8."""
    array = np.asarray(video)
    if array.ndim != 5 or array.shape[-1] != 3:
        raise ValueError(f"expected the pipeline's video as (1, N, H, W, 3), got {array.shape}")
    return (np.clip(array[0], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def resize_frames(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """Every frame at (width, height): area averaging to shrink, cubic to enlarge."""
    if frames.shape[1:3] == (height, width):
        return frames
    shrink = width * height < frames.shape[1] * frames.shape[2]
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    return np.stack([cv2.resize(f, (width, height), interpolation=interpolation) for f in frames])


def run_guarded(call: Callable[[], Any], what: str) -> Any:
    """Run one generation; on CUDA out-of-memory free what can be freed and re-raise for the worker to report."""
    import torch

    try:
        with torch.inference_mode():
            return call()
    except Exception as exc:
        if any(cls.__name__ == "OutOfMemoryError" for cls in type(exc).__mro__):
            log.warning("the %s model ran out of memory: %s", what, exc)
            free_memory()
        raise


def generator(seed: int) -> Any:
    """A CPU generator: the same seed makes the same starting noise on any device."""
    import torch

    return torch.Generator(device="cpu").manual_seed(seed)
