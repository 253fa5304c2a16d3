"""The LoRA checkpoint registry: the `.safetensors` files of one directory, chosen by bare name.

Every file is untrusted: whatever is wrong with one (its header, its kind, where it links to) makes it an
invalid entry with a short reason, never an exception out of the listing. A job start reads only the active
checkpoint's own file, so no other file of the directory can fail it.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import struct
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from engine.errors import UserError
from engine.safejson import BadJSON, loads_object
from engine.units import human_bytes

log = logging.getLogger(__name__)

SUFFIX = ".safetensors"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# safetensors itself allows a 100 MB header, but a LoRA's is ~150 bytes per tensor: a few hundred KB for
# thousands of tensors, training metadata included. 4 MB leaves ample room for the biggest, while the worst
# hostile header (4 MB of `{},`) costs ~200 MB of Python objects and about a second, once per file version.
MAX_HEADER_BYTES = 4 * 1024 * 1024
# safejson's default (100,000 values) would refuse a big LoRA (~9 values a tensor); the byte cap bounds the cost.
MAX_HEADER_VALUES = 1_000_000
DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
EPOCH = datetime.fromtimestamp(0, tz=timezone.utc)


@dataclass(frozen=True)
class Checkpoint:
    """One `.safetensors` file of the registry, and whether it can be used."""

    name: str  # the file's stem: what users and admins type (undecodable bytes shown as U+FFFD)
    path: Path
    size: int  # bytes
    modified: datetime  # timezone-aware UTC
    tensors: int  # how many tensors the header describes (0 when invalid)
    problem: str | None  # why the file can't be used, or None when it is a sound safetensors file
    # The header's __metadata__ (strings; empty when invalid): a checkpoint made here names its family,
    # base model, rank, steps, dataset and training captions (engine/training/output.py writes them).
    metadata: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def valid(self) -> bool:
        """The file is a sound safetensors file with a usable name."""
        return self.problem is None


class CheckpointRegistry:
    """Lists the checkpoints of one directory (no recursion) and resolves a bare name to its file."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        # Headers are parsed once per file version:
        # path -> ((dev, inode, size, mtime, ctime), tensors, metadata, problem).
        # The ctime makes a chmod or a rename over the file a new version too.
        self._parsed: dict[Path, tuple[tuple[int, ...], int, dict[str, str], str | None]] = {}
        self._lock = threading.Lock()  # the listing (an API thread) and job starts (the worker) share the cache

    def checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint file, sorted by name; invalid ones are included with their problem; never raises."""
        try:
            # A dot-file is one being written (a trainer's partial file, renamed into place when whole).
            paths = sorted(p for p in self.directory.iterdir() if p.name.endswith(SUFFIX) and p.name[0] != ".")
        except OSError as exc:  # missing, not a directory, unreadable: an empty registry (logged unless missing)
            if self.directory.exists():
                log.warning("checkpoint folder %s can't be listed: %s", self.directory, exc)
            return []
        with self._lock:
            for gone in self._parsed.keys() - set(paths):
                del self._parsed[gone]
        return [self._describe(path) for path in paths]

    def get(self, name: str) -> Checkpoint | None:
        """The checkpoint called `name` exactly, or None; reads that one file only."""
        if not _is_good_name(name):
            return None
        path = self.directory / f"{name}{SUFFIX}"
        return self._describe(path) if os.path.lexists(path) else None

    def resolve(self, name: str) -> Path:
        """At job start: the file of the valid checkpoint `name`, else a UserError a chat user can read."""
        check_name(name)
        checkpoint = self.get(name)
        if checkpoint is None:
            raise UserError(
                f"The checkpoint {name} is no longer there; ask an admin to choose another.", code="unknown_checkpoint"
            )  # fmt: skip
        if checkpoint.problem is not None:
            raise UserError(
                f"The checkpoint {name} can't be used: {checkpoint.problem}; ask an admin to choose another.",
                code="invalid_checkpoint",
            )
        return checkpoint.path

    def choose(self, name: str) -> Checkpoint:
        """For an admin activating `name`: the valid checkpoint, else a UserError naming the usable ones."""
        check_name(name)
        checkpoint = self.get(name)
        if checkpoint is None:
            known = ", ".join(c.name for c in self.checkpoints() if c.valid) or "none"
            raise UserError(
                f"There is no checkpoint called {name} (available: {known}).", code="unknown_checkpoint"
            )  # fmt: skip
        if checkpoint.problem is not None:
            raise UserError(f"The checkpoint {name} can't be used: {checkpoint.problem}.", code="invalid_checkpoint")
        return checkpoint

    def add(self, name: str, source: Path) -> Checkpoint:
        """Move the uploaded file `source` (in this directory, a dot-file) in as `name`, once it checks out.

        The file is checked exactly as a listing checks it; a bad one is a UserError with the reason and is
        removed. An existing checkpoint is never replaced: the link into place fails instead.
        """
        check_name(name)
        try:
            try:
                tensors, _ = read_header(source)
                if tensors == 0:
                    raise ValueError("it holds no tensors")
            except (OSError, ValueError) as exc:
                reason = _reason(exc, source)
                raise UserError(f"That file isn't a checkpoint I can use: {reason}.", code="bad_upload") from None
            target = self.directory / f"{name}{SUFFIX}"
            try:
                os.link(source, target)  # fails if the name is taken: no check-then-write race
            except FileExistsError:
                raise UserError(
                    f"There is already a checkpoint called {name}; delete it first or choose another name.",
                    code="checkpoint_exists",
                ) from None
        finally:
            source.unlink(missing_ok=True)
        log.info("checkpoint %s added (%s)", name, human_bytes(target.stat().st_size))
        return self._describe(target)

    def delete(self, name: str) -> None:
        """Remove the checkpoint `name` (a link is removed, never what it points at); a UserError if absent."""
        check_name(name)
        path = self.directory / f"{name}{SUFFIX}"
        try:
            path.unlink()
        except FileNotFoundError:
            raise UserError(f"There is no checkpoint called {name}.", code="unknown_checkpoint") from None
        with self._lock:
            self._parsed.pop(path, None)
        log.info("checkpoint %s deleted", name)

    def _describe(self, path: Path) -> Checkpoint:
        """One directory entry as a Checkpoint: whatever is wrong with it becomes its problem."""
        name = _shown(path.name[: -len(SUFFIX)])
        size, modified, tensors, metadata, version = 0, EPOCH, 0, {}, None
        try:
            target = _inside(path, self.directory)
            info = target.stat()
            size, modified = info.st_size, _when(info.st_mtime)
            _check_regular(info.st_mode)  # before opening: opening a device or a FIFO can block or act
            version = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
            with self._lock:
                cached = self._parsed.get(path)
            if cached is not None and cached[0] == version:
                tensors, metadata, problem = cached[1], cached[2], cached[3]
            else:
                (tensors, metadata), problem = _parse(target), None
        except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: a symlink loop, on Python < 3.13
            problem = _reason(exc, path)
            log.warning("checkpoint %s is not usable: %s", name, problem)
        if version is not None:
            with self._lock:
                self._parsed[path] = (version, tensors, metadata, problem)
        if problem is None and not _is_good_name(path.name[: -len(SUFFIX)]):
            problem = "its file name isn't a usable checkpoint name (letters, digits, '.', '_' and '-' only)"
        if problem is not None:
            tensors, metadata = 0, {}
        return Checkpoint(name, path, size, modified, tensors, problem, dict(metadata))


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


def _shown(name: str) -> str:
    """A file name as text: bytes that aren't UTF-8 (surrogate-escaped by os) can't be sent as JSON."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _when(timestamp: float) -> datetime:
    """A file time as UTC; a time out of datetime's range (touch can set one) reads as the epoch."""
    try:
        return datetime.fromtimestamp(timestamp, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return EPOCH


def _inside(path: Path, directory: Path) -> Path:
    """The file `path` stands for; a symlink may point at another file of the directory, never out of it."""
    target = path.resolve()
    if target.parent != directory.resolve():
        raise ValueError("it is a link to a file outside the checkpoint folder")
    return target


def _check_regular(mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise ValueError("it is a folder, not a file")
    if stat.S_ISFIFO(mode):
        raise ValueError("it is a pipe, not a file")
    if not stat.S_ISREG(mode):
        raise ValueError("it isn't a regular file")


def _reason(exc: BaseException, path: Path) -> str:
    """A short reason for the listing and the job's sentence: never a path, a traceback or an errno."""
    if isinstance(exc, ValueError):
        return str(exc)
    if isinstance(exc, RuntimeError) or (isinstance(exc, OSError) and exc.errno == errno.ELOOP):
        return "it is a symlink loop"
    if isinstance(exc, FileNotFoundError):
        return "it is a link to nothing" if path.is_symlink() else "it was removed"
    if isinstance(exc, PermissionError):
        return "the engine isn't allowed to read it"
    return f"it can't be read ({getattr(exc, 'strerror', None) or type(exc).__name__})"


def _parse(target: Path) -> tuple[int, dict[str, str]]:
    """Open `target` as a regular file, without ever blocking, and check its header."""
    # O_NONBLOCK: had the file become a FIFO since it was checked, opening it would wait for a writer forever.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(target, flags)
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        _check_regular(info.st_mode)
        return _read_header(file, info.st_size)


def read_header(path: Path) -> tuple[int, dict[str, str]]:
    """Check that `path` is a sound safetensors file from its header alone; return its tensor count and metadata.

    Raises ValueError with a short reason for a file that isn't one, OSError for one that can't be read.
    """
    _check_regular(path.stat().st_mode)
    return _parse(path)


def _read_header(file: BinaryIO, size: int) -> tuple[int, dict[str, str]]:
    prefix = file.read(8)
    if len(prefix) < 8:
        raise ValueError("the file is too short to be a safetensors file")
    (length,) = struct.unpack("<Q", prefix)
    if length > MAX_HEADER_BYTES:  # refused before reading: at most the cap is ever read
        raise ValueError(f"its header length ({length:,} bytes) is over the {human_bytes(MAX_HEADER_BYTES)} limit")
    if length < 2 or 8 + length > size:
        raise ValueError("its header length doesn't fit the file (truncated?)")
    raw = file.read(length)
    if len(raw) < length:
        raise ValueError("its header is cut short (truncated?)")
    try:
        # safetensors headers are UTF-8 only; json.loads(bytes) would also take UTF-16 and UTF-32.
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("its header isn't UTF-8 text") from None
    try:
        header = loads_object(text, what="checkpoint header", max_bytes=MAX_HEADER_BYTES, max_items=MAX_HEADER_VALUES)
    except BadJSON as exc:  # "The checkpoint header is nested too deeply." -> the listing's short reason
        raise ValueError(exc.message[:1].lower() + exc.message[1:].rstrip(".")) from None
    data_bytes = size - 8 - length
    tensors = 0
    metadata: dict[str, str] = {}
    for key, entry in header.items():
        if key == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise ValueError("its metadata isn't a table of strings")
            metadata = entry
            continue
        _check_tensor(_label(key), entry, data_bytes)
        tensors += 1
    if tensors == 0:
        raise ValueError("it holds no tensors")
    return tensors, metadata


def _label(key: str) -> str:
    """A tensor's name for a reason: quoted, escaped and short, whatever the header holds."""
    return repr(key[:60] + "…" if len(key) > 60 else key)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_tensor(label: str, entry: Any, data_bytes: int) -> None:
    if not isinstance(entry, dict):
        raise ValueError(f"tensor {label} has no description")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:  # a list or an object isn't even hashable
        raise ValueError(f"tensor {label} has an unknown dtype {_label(str(dtype))}")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise ValueError(f"tensor {label} has a bad shape")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
        raise ValueError(f"tensor {label} has bad data offsets")
    begin, end = offsets
    if not begin <= end <= data_bytes:
        raise ValueError(f"tensor {label} lies outside the file (truncated?)")
    if end - begin != _nbytes(shape, DTYPE_BYTES[dtype], data_bytes):
        dims = str(shape) if len(shape) <= 8 else f"of {len(shape)} dimensions"
        raise ValueError(f"tensor {label} has {end - begin:,} bytes, wrong for its shape {dims} of {dtype}")


def _nbytes(shape: list[int], itemsize: int, limit: int) -> int:
    """The tensor's byte size, or limit + 1 once it is bigger: huge dimensions never make a huge product."""
    if 0 in shape:
        return 0
    total = itemsize
    for dim in shape:
        total *= dim
        if total > limit:
            return limit + 1
    return total
