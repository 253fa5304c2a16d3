"""The LoRA checkpoint registry: the `.safetensors` files of one directory, chosen by bare name."""

from __future__ import annotations

import json
import logging
import math
import re
import struct
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from engine.errors import UserError

log = logging.getLogger(__name__)

SUFFIX = ".safetensors"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# The safetensors format caps its JSON header at 100 MB; a longer one is not a safetensors file.
MAX_HEADER_BYTES = 100_000_000
DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip


@dataclass(frozen=True)
class Checkpoint:
    """One `.safetensors` file of the registry, and whether it can be used."""

    name: str  # the file's stem: what users and admins type
    path: Path
    size: int  # bytes
    modified: datetime  # timezone-aware UTC
    tensors: int  # how many tensors the header describes (0 when invalid)
    problem: str | None  # why the file can't be used, or None when it is a sound safetensors file

    @property
    def valid(self) -> bool:
        """The file is a sound safetensors file with a usable name."""
        return self.problem is None


class CheckpointRegistry:
    """Lists the checkpoints of one directory (no recursion) and resolves a bare name to its file."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        # Headers are parsed once per file version: (size, mtime_ns) -> (tensors, problem).
        self._parsed: dict[Path, tuple[int, int, int, str | None]] = {}

    def checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint file, sorted by name; invalid ones are included with their problem."""
        if not self.directory.is_dir():
            return []
        root = self.directory.resolve()
        found: list[Checkpoint] = []
        for path in sorted(self.directory.iterdir()):
            if path.suffix != SUFFIX:
                continue
            # A symlink may point at another file of the directory, never out of it.
            target = path.resolve()
            if target.parent != root or not target.is_file():
                continue
            found.append(self._describe(path, target))
        return found

    def get(self, name: str) -> Checkpoint | None:
        """The checkpoint called `name` exactly, or None."""
        return next((c for c in self.checkpoints() if c.name == name), None)

    def resolve(self, name: str) -> Path:
        """The file of a valid checkpoint called `name`; UserError for any other name."""
        check_name(name)
        checkpoint = self.get(name)
        if checkpoint is None:
            known = ", ".join(c.name for c in self.checkpoints() if c.valid) or "none"
            raise UserError(
                f"There is no checkpoint called {name} (available: {known}).", code="unknown_checkpoint"
            )  # fmt: skip
        if checkpoint.problem is not None:
            raise UserError(f"The checkpoint {name} can't be used: {checkpoint.problem}.", code="invalid_checkpoint")
        return checkpoint.path

    def _describe(self, path: Path, target: Path) -> Checkpoint:
        stat = target.stat()
        cached = self._parsed.get(target)
        if cached is not None and cached[:2] == (stat.st_size, stat.st_mtime_ns):
            tensors, problem = cached[2], cached[3]
        else:
            tensors, problem = 0, None
            try:
                tensors = read_header(target)
            except (OSError, ValueError) as exc:
                problem = str(exc)
                log.warning("checkpoint %s is not usable: %s", path.name, problem)
            self._parsed[target] = (stat.st_size, stat.st_mtime_ns, tensors, problem)
        name = path.name[: -len(SUFFIX)]
        if problem is None and not _is_good_name(name):
            problem = "its file name isn't a usable checkpoint name (letters, digits, '.', '_' and '-' only)"
        modified = datetime.fromtimestamp(stat.st_mtime, tz=timezone.utc)
        return Checkpoint(name, path, stat.st_size, modified, tensors, problem)


def check_name(name: str) -> None:
    """Refuse anything but a bare checkpoint name, with a sentence that says what a name looks like."""
    if not isinstance(name, str) or not name:
        raise UserError("Give the checkpoint's name.", code="bad_checkpoint_name")
    if name.lower().endswith(SUFFIX):
        raise UserError(
            f"Give the checkpoint's name without {SUFFIX} ({name[: -len(SUFFIX)]!r}).", code="bad_checkpoint_name"
        )  # fmt: skip
    if not _is_good_name(name):
        raise UserError(
            "A checkpoint name is up to 100 letters, digits, '.', '_' or '-', starting with a letter or digit, "
            "and never a path.",
            code="bad_checkpoint_name",
        )


def _is_good_name(name: str) -> bool:
    return NAME.fullmatch(name) is not None and ".." not in name and not name.lower().endswith(SUFFIX)


def read_header(path: Path) -> int:
    """Check that `path` is a sound safetensors file from its header alone; return its tensor count."""
    with path.open("rb") as file:
        size = path.stat().st_size
        prefix = file.read(8)
        if len(prefix) < 8:
            raise ValueError("the file is too short to be a safetensors file")
        (length,) = struct.unpack("<Q", prefix)
        if length < 2 or length > MAX_HEADER_BYTES or 8 + length > size:
            raise ValueError("its header length doesn't fit the file")
        raw = file.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("its header isn't valid JSON") from None
    if not isinstance(header, dict):
        raise ValueError("its header isn't a JSON object")
    data_bytes = size - 8 - length
    tensors = 0
    for key, entry in header.items():
        if key == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise ValueError("its metadata isn't a table of strings")
            continue
        _check_tensor(key, entry, data_bytes)
        tensors += 1
    if tensors == 0:
        raise ValueError("it holds no tensors")
    return tensors


def _check_tensor(key: str, entry: Any, data_bytes: int) -> None:
    if not isinstance(entry, dict):
        raise ValueError(f"tensor {key!r} has no description")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"tensor {key!r} has an unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ValueError(f"tensor {key!r} has a bad shape")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
        raise ValueError(f"tensor {key!r} has bad data offsets")
    begin, end = offsets
    if not 0 <= begin <= end <= data_bytes:
        raise ValueError(f"tensor {key!r} lies outside the file (truncated?)")
    if end - begin != math.prod(shape) * DTYPE_BYTES[dtype]:
        raise ValueError(f"tensor {key!r} has {end - begin} bytes for its shape {shape} of {dtype}")
