"""Device, dtype and local model files for the model-backed backends.

torch is imported inside the functions, so the CPU install (no torch) imports this module fast.
Models are never downloaded at run time: a hub id must already be in the local Hugging Face
cache (`hf download ID`), or the config key must name a local folder. A job that starts a
multi-gigabyte download on a worker thread would look like a hang and could fill the disk.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from engine.config import RuntimeSettings

_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def require_torch(what: str) -> None:
    """Raise a ConfigError naming `what` when torch or transformers cannot be imported."""
    for module in ("torch", "transformers"):
        try:
            __import__(module)
        except ImportError:
            raise ConfigError(f"the {what} needs pip install 'makeitmove[gpu]' ({module} is missing)") from None


def torch_device(rt: RuntimeSettings) -> torch.device:
    """The device the runtime settings ask for; "auto" is cuda when torch sees a GPU, else cpu."""
    import torch

    if rt.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if rt.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config key 'runtime.device' is 'cuda' but torch sees no CUDA GPU; set it to 'auto' or 'cpu'")
    return torch.device(rt.device)


def torch_dtype(rt: RuntimeSettings, device: torch.device | str) -> torch.dtype:
    """The weights' dtype; "auto" is bf16 on a GPU that supports it, else fp16, and fp32 on cpu."""
    import torch

    kind = torch.device(device).type
    if rt.dtype != "auto":
        dtype: torch.dtype = getattr(torch, _DTYPES[rt.dtype])
        return dtype
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32  # half precision on CPU is slow or unsupported for many kernels


def model_path(model: str, *, key: str) -> str:
    """A local folder for `model` (a folder, or a hub id in the local HF cache); never downloads."""
    if not model:
        raise ConfigError(f"config key '{key}' is empty: set it to a model id or a local folder")
    local = Path(model).expanduser()
    if local.is_dir():
        return str(local)
    snapshot = cached_snapshot(model)
    if snapshot is None:
        raise ConfigError(
            f"model '{model}' (config key '{key}') is not on this machine: "
            f"fetch it with `hf download {model}` or set {key} to a local folder"
        )
    return str(snapshot)


def cached_snapshot(model: str) -> Path | None:
    """The folder of `model`'s newest snapshot in the local Hugging Face cache, or None."""
    if model.count("/") != 1 or model.startswith((".", "/", "~")):
        return None
    repo = hub_cache() / ("models--" + model.replace("/", "--"))
    ref = repo / "refs" / "main"
    snapshots = repo / "snapshots"
    if ref.is_file():
        candidate = snapshots / ref.read_text("utf-8").strip()
        if candidate.is_dir():
            return candidate
    if snapshots.is_dir():
        found = sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        if found:
            return found[-1]
    return None


def hub_cache() -> Path:
    """The Hugging Face hub cache folder, honouring HF_HUB_CACHE and HF_HOME like huggingface_hub does."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def size_on_disk(folder: str | Path) -> int:
    """Bytes of every file under `folder`, following the HF cache's symlinks to their blobs."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                continue  # a dangling symlink: an interrupted download
    return total


def quiet_loading() -> None:
    """No progress bar per model load from diffusers or transformers: noise on a terminal and in a service log."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


def free_memory() -> None:
    """Collect garbage, and return cached CUDA memory to the driver when torch has used the GPU."""
    gc.collect()
    torch = sys.modules.get("torch")  # never import torch just to free memory
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
