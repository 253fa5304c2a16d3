"""Jobs in flight, kept in a small JSON file so a restarted bot resumes watching them and still delivers.

Each job is a typed PendingJob, checked when the file is read: an entry a broken or foreign run left behind
is dropped with a warning, never trusted half-way. Files written by version 1 (untyped dicts) are read too.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from bot.core.errors import OptionError
from bot.core.options import Request, request_of
from engine import safejson

log = logging.getLogger(__name__)

VERSION = 2
MAX_FILE_BYTES = 64 * 1024 * 1024  # 500 delivered jobs kept plus those in flight make a file of about 1 MB


@dataclass(frozen=True)
class PendingJob:
    """One job a bot follows: who asked for what, where its status and result go, and how far delivery got."""

    key: str  # the idempotency key it was submitted with: tg:…, dc:…
    user_id: int
    chat_id: int  # Telegram's chat; Discord's channel
    request: Request  # an animation, a remix or a tune; the state file keeps its kind beside its options
    poster: str | None  # who posted the meme, credited under the result
    image: str  # where the meme can be fetched again: Telegram's file_id, Discord's attachment URL
    filename: str
    status_id: int | None  # the message showing the job's status; None if it could not be shown
    status_text: str  # what that message said when this record was written
    at: float  # when this record was last written, Unix seconds
    reply_to: int | None = None  # the message the status and result answer (the meme, or the reply trigger)
    source: tuple[int, int] | None = None  # Discord: (channel id, message id) of the message holding the meme
    token: str | None = None  # Discord: the interaction's token, its application, and when the token dies
    app_id: int | None = None
    token_expires: float | None = None
    sending: bool = False  # the upload of the result began; a restart can't tell whether it landed
    delivered: bool = False  # the result, or a sentence saying why there is none, went out
    seed: int | None = None  # the result's seed, so ⚡ More motion changes only the motion
    result_id: int | None = None  # the result's message

    def to_json(self) -> dict[str, Any]:
        """The record as the state file keeps it: the request as its options JSON, nothing else nested."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["request"] = self.request.options
        data["kind"] = self.request.kind
        data["source"] = list(self.source) if self.source is not None else None
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PendingJob:
        """A record from the state file; ValueError naming the first field that is unknown, missing or wrong."""
        names = {f.name for f in dataclasses.fields(cls)} | {"kind"}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown field {unknown[0]!r}")
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                if f.default is dataclasses.MISSING:
                    raise ValueError(f"{f.name} is missing")
                continue
            value = data[f.name]
            if f.name == "request":
                if not isinstance(value, Mapping):
                    raise ValueError("request is not an object")
                kind = data.get("kind", "animate")  # files written before remixes hold animations only
                if not isinstance(kind, str):
                    raise ValueError("kind is not text")
                try:
                    value = request_of(kind, value)
                except OptionError as exc:
                    raise ValueError(f"request: {exc.message}") from None
            elif f.name == "source":
                if value is not None:
                    if not (isinstance(value, list) and len(value) == 2 and all(_is(v, int) for v in value)):
                        raise ValueError("source is not [channel id, message id]")
                    value = (value[0], value[1])
            elif not _is(value, hints[f.name]):
                raise ValueError(f"{f.name} is {type(value).__name__}, not {hints[f.name]}")
            values[f.name] = value
        return cls(**values)


class PendingJobs:
    """job id → its PendingJob, written through to the state file on every change."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._jobs: dict[str, PendingJob] = self._load()

    def add(self, job_id: str, job: PendingJob) -> None:
        """Remember a job (replacing what was kept for it) and write the file."""
        self._jobs[job_id] = job
        self._save()

    def update(self, job_id: str, **changes: Any) -> PendingJob:
        """Change some fields of a kept job, write the file and return the new record; KeyError if not kept."""
        job = dataclasses.replace(self._jobs[job_id], **changes)
        self.add(job_id, job)
        return job

    def get(self, job_id: str) -> PendingJob | None:
        """What is kept for a job, or None."""
        return self._jobs.get(job_id)

    def remove(self, job_id: str) -> None:
        """Forget a delivered (or abandoned) job; no error if it wasn't kept."""
        if self._jobs.pop(job_id, None) is not None:
            self._save()

    def all(self) -> dict[str, PendingJob]:
        """Every job kept, by id."""
        return dict(self._jobs)

    def in_flight(self) -> list[str]:
        """The jobs not delivered yet, oldest first: those a restarted bot watches again."""
        return [job_id for job_id, job in self._jobs.items() if not job.delivered]

    def find(self, key: str) -> str | None:
        """The job kept for an idempotency key, if any."""
        return next((job_id for job_id, job in self._jobs.items() if job.key == key), None)

    def forget_old(self, keep: int) -> None:
        """Keep only the newest `keep` delivered jobs (for the result buttons and duplicate updates)."""
        delivered = sorted((job.at, job_id) for job_id, job in self._jobs.items() if job.delivered)
        old = [job_id for _, job_id in delivered[: max(0, len(delivered) - keep)]]
        for job_id in old:
            del self._jobs[job_id]
        if old:
            self._save()

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    def _load(self) -> dict[str, PendingJob]:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            data = safejson.loads_object(raw, what="state file", max_bytes=MAX_FILE_BYTES)
            version, jobs = data.get("version", 1), data["jobs"]
            if version not in (1, VERSION) or not isinstance(jobs, dict):
                raise ValueError(f"version {version!r} with jobs of type {type(jobs).__name__}")
        except (safejson.BadJSON, ValueError, KeyError, TypeError) as exc:
            log.warning("pending-jobs file %s is unreadable (%s); starting with no jobs in flight", self.path, exc)
            return {}
        kept: dict[str, PendingJob] = {}
        for job_id, entry in jobs.items():
            try:
                if not isinstance(entry, dict):
                    raise ValueError("not an object")
                kept[str(job_id)] = PendingJob.from_json(entry if version == VERSION else _from_version_1(entry))
            except ValueError as exc:
                log.warning("pending-jobs file %s: job %.40s is unreadable (%s); dropped", self.path, job_id, exc)
        return kept

    def _save(self) -> None:
        """Write a temporary file beside the real one and rename it over: a crash leaves the old or the new file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        jobs = {job_id: job.to_json() for job_id, job in self._jobs.items()}
        # compact: with an indent the json module falls back to its pure-Python encoder, far slower on a big file
        body = json.dumps({"version": VERSION, "jobs": jobs}, ensure_ascii=False, separators=(",", ":"))
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


def _is(value: Any, hint: Any) -> bool:
    """`value` is of the annotated type (int and float never accept a bool)."""
    if get_origin(hint) in (Union, types.UnionType):
        return any(_is(value, arg) for arg in get_args(hint))
    if hint is type(None):
        return value is None
    if isinstance(value, bool):
        return hint is bool
    if hint is float:
        return isinstance(value, (int, float))
    return isinstance(value, hint)


def _from_version_1(entry: dict[str, Any]) -> dict[str, Any]:
    """A job as version 1 kept it (each adapter its own dict) in version 2's names; unknown keys stay to fail."""
    renamed = {"options": "request", "channel_id": "chat_id", "status_message_id": "status_id",
               "result_message_id": "result_id", "file_id": "image"}  # fmt: skip
    new = {renamed.get(k, k): v for k, v in entry.items()}
    image = new.get("image")
    if isinstance(image, dict):  # Discord kept {"url", "filename"}
        new["image"], new["filename"] = image.get("url"), image.get("filename")
    return new
