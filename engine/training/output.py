"""A trained LoRA into the checkpoint registry: written whole or not at all, with its training metadata.

The registry lists only names that end in `.safetensors` and do not start with a dot, so the partial
file (`.NAME.safetensors.partial-RANDOM`) is never listed, and os.replace makes the finished file appear
in one step: a job never reads a half-written checkpoint, even when training is killed while saving.
"""

from __future__ import annotations

import os
import secrets
import struct
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.safejson import BadJSON, loads_object

if TYPE_CHECKING:
    import torch

SUFFIX = ".safetensors"
MAX_METADATA_BYTES = 4 * 1024 * 1024  # the registry refuses bigger headers; ours are a few KB


def lora_tensors(
    denoiser: Any, prefix: str, scale: float, keep: Callable[[str], bool], dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """The denoiser's PEFT adapter in diffusers' key format ("unet.<module>.lora_A.weight"), on the CPU.

    diffusers reads a LoRA file without alpha at alpha = rank, so the adapter's alpha/rank scale is folded into
    lora_B: the loaded product B @ A is the trained one. `keep(module name)` picks the layers saved.
    """
    from peft.utils import get_peft_model_state_dict

    tensors = {}
    for key, value in get_peft_model_state_dict(denoiser).items():
        if keep(key.split(".lora_")[0]):
            value = value.detach().float() * (scale if ".lora_B." in key else 1.0)
            tensors[f"{prefix}.{key}"] = value.to("cpu", dtype).contiguous()
    return tensors


def save_lora(tensors: dict[str, torch.Tensor], registry_dir: Path, name: str, metadata: dict[str, str]) -> Path:
    """Write `tensors` as `registry_dir/NAME.safetensors` atomically, with `metadata` (strings) in its header."""
    from safetensors.torch import save_file

    bad = sorted(key for key, value in metadata.items() if not isinstance(value, str))
    if bad:
        raise TypeError(f"safetensors metadata values must be strings; not for {bad}")
    registry_dir.mkdir(parents=True, exist_ok=True)
    target = registry_dir / f"{name}{SUFFIX}"
    write_atomically(target, lambda partial: save_file(tensors, partial, metadata=metadata))
    return target


def write_atomically(path: Path, write: Callable[[str], None]) -> None:
    """Write `path` by calling `write` on a dot-prefixed partial file beside it, then renaming: whole or absent."""
    partial = path.with_name(f".{path.name}.partial-{secrets.token_hex(4)}")
    try:
        write(str(partial))
        with open(partial, "rb") as file:  # on disk before the rename makes it visible
            os.fsync(file.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def read_metadata(path: Path) -> dict[str, str]:
    """The `__metadata__` table of a safetensors file, read from its header alone ({} when it has none)."""
    with open(path, "rb") as file:
        prefix = file.read(8)
        if len(prefix) < 8:
            raise ValueError(f"{path.name} is too short to be a safetensors file")
        (length,) = struct.unpack("<Q", prefix)
        if length > MAX_METADATA_BYTES:
            raise ValueError(f"{path.name} has a {length:,}-byte header, over the {MAX_METADATA_BYTES:,} limit")
        try:  # the engine's one parser for outside JSON: a hostile header is a ValueError, never a RecursionError
            header = loads_object(
                file.read(length), what="checkpoint header", max_bytes=MAX_METADATA_BYTES, max_items=1_000_000
            )
        except BadJSON as exc:
            raise ValueError(f"{path.name}: {exc.message}") from None
    table = header.get("__metadata__") or {}
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise ValueError(f"{path.name} has metadata that isn't a table of strings")
    return table
