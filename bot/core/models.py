"""What the engine answers, as small frozen dataclasses parsed from its JSON."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

FINAL = frozenset({"done", "failed", "cancelled"})
KINDS = ("animate", "remix", "tune", "train")  # what a job makes: an animation, a remix, or a checkpoint
LIMIT_KEYS = ("user_jobs", "user_window_s", "user_concurrent", "chat_jobs", "chat_window_s", "queue_max")


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 timestamp from the engine as an aware datetime (naive ones are UTC)."""
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Job:
    """A job as the engine reports it; a just-submitted job only knows id, status and position."""

    id: str
    status: str  # queued | running | done | failed | cancelled
    position: int | None = None  # 1-based place in the queue while queued
    # animate: intake, ocr, detext, caption, synthesize, generate, postprocess, encode; remix: tuning, sampling,
    # encode; tune and train: preparing, training, saving; every kind ends with done
    stage: str | None = None
    fraction: float = 0.0  # of the whole job, 0..1
    error_code: str | None = None
    error_message: str | None = None
    script: dict[str, Any] | None = None
    checkpoint: str | None = None
    seed: int | None = None
    timings: dict[str, float] | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    kind: str = "animate"  # one of KINDS; an engine older than remixes says nothing: an animation
    made: str | None = None  # the checkpoint a done tune or train job wrote
    shareable: bool = False  # its requester may put it in the engine's gallery (🌐 Share); older engines: never

    @property
    def final(self) -> bool:
        """The job will not change any more."""
        return self.status in FINAL

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        """A JobView or JobAccepted body."""
        progress = data.get("progress") or {}
        error = data.get("error") or {}
        return cls(
            id=str(data["id"]), status=str(data["status"]), position=data.get("position"),
            stage=progress.get("stage"), fraction=float(progress.get("fraction") or 0.0),
            error_code=error.get("code"), error_message=error.get("message"), script=data.get("script"),
            checkpoint=data.get("checkpoint"), seed=data.get("seed"), timings=data.get("timings"),
            created_at=parse_time(data.get("created_at")), finished_at=parse_time(data.get("finished_at")),
            kind=str(data.get("kind") or "animate"), made=_text(data.get("made")),
            shareable=data.get("shareable") is True,
        )  # fmt: skip


@dataclass(frozen=True)
class Shared:
    """A result in the engine's gallery."""

    job_id: str
    shared_at: datetime | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Shared:
        """A ShareView body."""
        return cls(str(data["job_id"]), parse_time(data.get("shared_at")))


@dataclass(frozen=True)
class Quota:
    """What one user has left."""

    jobs_left: int
    jobs_limit: int
    window_s: int
    concurrent_left: int
    concurrent_limit: int
    refills_at: datetime | None  # when the oldest job in the window leaves it; None if nothing used

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Quota:
        """A QuotaView body."""
        return cls(
            jobs_left=int(data["jobs_left"]), jobs_limit=int(data["jobs_limit"]), window_s=int(data["window_s"]),
            concurrent_left=int(data["concurrent_left"]), concurrent_limit=int(data["concurrent_limit"]),
            refills_at=parse_time(data.get("refills_at")),
        )  # fmt: skip


@dataclass(frozen=True)
class Training:
    """How a checkpoint was made, as its file's metadata says: untrusted text, every field optional."""

    kind: str | None  # "train" (on a dataset) or "tune" (on one GIF)
    family: str | None  # t2v, ltx or wan
    base_model: str | None
    rank: int | None
    alpha: int | None
    steps: int | None
    dataset_sha256: str | None
    trigger: str | None
    examples: tuple[str, ...]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Training:
        """A Training body."""
        examples = data.get("examples") or []
        return cls(
            kind=_text(data.get("kind")), family=_text(data.get("family")), base_model=_text(data.get("base_model")),
            rank=_number(data.get("rank")), alpha=_number(data.get("alpha")), steps=_number(data.get("steps")),
            dataset_sha256=_text(data.get("dataset_sha256")), trigger=_text(data.get("trigger")),
            examples=tuple(str(e) for e in examples if isinstance(e, str)) if isinstance(examples, list) else (),
        )  # fmt: skip


@dataclass(frozen=True)
class Checkpoint:
    """One LoRA checkpoint in the engine's registry."""

    name: str
    size_bytes: int
    valid: bool
    problem: str | None
    active: bool
    training: Training | None = None  # how it was made, when its file says

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        """A CheckpointInfo body."""
        training = data.get("training")
        return cls(
            name=str(data["name"]), size_bytes=int(data["size_bytes"]), valid=bool(data["valid"]),
            problem=data.get("problem"), active=bool(data["active"]),
            training=Training.from_json(training) if isinstance(training, dict) else None,
        )  # fmt: skip


@dataclass(frozen=True)
class Checkpoints:
    """The registry and the checkpoint jobs start with."""

    checkpoints: tuple[Checkpoint, ...]
    active: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoints:
        """A CheckpointList body."""
        return cls(tuple(Checkpoint.from_json(c) for c in data["checkpoints"]), data.get("active"))


@dataclass(frozen=True)
class Stats:
    """Numbers for admins."""

    jobs_by_status: dict[str, int]
    queue_depth: int
    jobs_last_24h: int
    users_last_24h: int
    bans: int
    active_checkpoint: str | None
    mean_seconds_last_100: float | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Stats:
        """A StatsView body."""
        return cls(
            jobs_by_status={str(k): int(v) for k, v in data["jobs_by_status"].items()},
            queue_depth=int(data["queue_depth"]), jobs_last_24h=int(data["jobs_last_24h"]),
            users_last_24h=int(data["users_last_24h"]), bans=int(data["bans"]),
            active_checkpoint=data.get("active_checkpoint"), mean_seconds_last_100=data.get("mean_seconds_last_100"),
        )  # fmt: skip


@dataclass(frozen=True)
class Ban:
    """A ban in force."""

    platform: str
    user_id: str
    reason: str
    created_at: datetime | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Ban:
        """A BanView body."""
        return cls(str(data["platform"]), str(data["user_id"]), str(data.get("reason") or ""),
                   parse_time(data.get("created_at")))  # fmt: skip


@dataclass(frozen=True)
class Limits:
    """The six rate-limit numbers in force."""

    user_jobs: int
    user_window_s: int
    user_concurrent: int
    chat_jobs: int
    chat_window_s: int
    queue_max: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Limits:
        """A LimitsBody body."""
        return cls(**{key: int(data[key]) for key in LIMIT_KEYS})


def _text(value: Any) -> str | None:
    """A string field, or None when absent or not a string."""
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> int | None:
    """A whole-number field, or None when absent or not one (a bool is not a number)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None
