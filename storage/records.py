"""What the repository returns: plain frozen dataclasses, no ORM objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

JOB_STATUSES = ("queued", "running", "done", "failed", "cancelled")
FINAL_STATUSES = frozenset({"done", "failed", "cancelled"})
# animate: a meme -> an animation; remix: a GIF's motion with a new subject -> an animation;
# tune: one GIF -> a checkpoint; train: a dataset -> a checkpoint. The last two are admins' only.
JOB_KINDS = ("animate", "remix", "tune", "train")
TRAINING_KINDS = frozenset({"tune", "train"})
SHAREABLE_KINDS = frozenset({"animate", "remix"})  # the jobs whose result can go to the gallery


@dataclass(frozen=True)
class JobRecord:
    """One job as stored: the request, where it is, and what it made."""

    id: str  # 32 hex chars (uuid4().hex)
    status: str  # one of JOB_STATUSES
    platform: str  # "telegram", "discord", "cli", ...
    user_id: str
    chat_id: str
    is_admin: bool
    options: dict[str, Any]  # the request's options as JSON (prompt, motion, camera, format, ...)
    seed: int
    # Not the client's key: a digest of (platform, user_id, key), so keys are per user (idempotency_scope)
    idempotency_key: str | None
    attempts: int  # how many times a worker started it
    stage: str | None  # the stage running now, or the last one reached
    fraction: float  # 0..1 of the whole job
    error_code: str | None
    error: str | None  # a sentence a chat user can read
    script: dict[str, Any] | None  # OCR text, description, motion prompt, explanation, ...
    timings: dict[str, float] | None
    checkpoint: str | None  # the LoRA checkpoint the job ran with (None: none)
    result_format: str | None  # "gif", "mp4", "webp" once done
    result_bytes: int | None
    result_expired: bool  # swept by retention
    created_at: datetime  # timezone-aware UTC
    started_at: datetime | None
    finished_at: datetime | None
    worker: str | None = None  # the `makeitmove worker` that claimed it last (None: the local queue)
    request_digest: str | None = None  # NewJob.request_digest as submitted (None: not given, or made before 0003)
    kind: str = "animate"  # one of JOB_KINDS

    @property
    def training(self) -> bool:
        """A training or tuning job: it makes a checkpoint, not an animation."""
        return self.kind in TRAINING_KINDS

    @property
    def final(self) -> bool:
        """The job has ended and will not change again."""
        return self.status in FINAL_STATUSES

    @property
    def shareable(self) -> bool:
        """A done animation or remix whose result is still kept: what the gallery can show."""
        return self.status == "done" and self.kind in SHAREABLE_KINDS and not self.result_expired


@dataclass(frozen=True)
class Limits:
    """The rate limits in force (config defaults, possibly changed by an admin)."""

    user_jobs: int
    user_window_s: int
    user_concurrent: int
    chat_jobs: int
    chat_window_s: int
    queue_max: int


@dataclass(frozen=True)
class Quota:
    """What one user has left."""

    jobs_left: int
    jobs_limit: int
    window_s: int
    concurrent_left: int
    concurrent_limit: int
    refills_at: datetime | None  # when the oldest job in the window leaves it; None if nothing used


@dataclass(frozen=True)
class Ban:
    """A banned user."""

    platform: str
    user_id: str
    reason: str
    created_at: datetime


@dataclass(frozen=True)
class GalleryEntry:
    """A result its requester shared to the gallery, with what a gallery page shows of its job."""

    job_id: str
    shared_at: datetime
    removed_at: datetime | None  # an admin took it down: out of the gallery, and it can't be shared again
    platform: str
    user_id: str
    chat_id: str
    kind: str  # "animate" or "remix"
    result_format: str | None
    prompt: str | None  # what the requester asked for, if they said
    caption: str | None  # the meme's text as the engine read it
    created_at: datetime

    @property
    def removed(self) -> bool:
        """An admin took it down."""
        return self.removed_at is not None


@dataclass(frozen=True)
class Stats:
    """Numbers for admins and /metrics."""

    jobs_by_status: dict[str, int]
    queue_depth: int
    jobs_last_24h: int
    users_last_24h: int
    bans: int
    active_checkpoint: str | None
    mean_seconds_last_100: float | None  # mean pipeline time of the last 100 done jobs


@dataclass(frozen=True)
class NewJob:
    """A submission, before the limits are checked."""

    platform: str
    user_id: str
    chat_id: str
    is_admin: bool
    options: dict[str, Any]
    seed: int
    image: bytes  # kept until the retention sweep so a restart can run the job again
    idempotency_key: str | None = None  # the client's key; scoped to platform + user_id by the repository
    # A digest of what was asked (the API: sha256 hex of the image bytes and the canonical options):
    # a repeated key with a different digest is refused; None on either side matches anything.
    request_digest: str | None = None
    id: str = field(default="")  # empty: the repository makes one
    kind: str = "animate"  # one of JOB_KINDS; a tune or train job is refused while the user has another


@dataclass(frozen=True)
class Submitted:
    """The outcome of an accepted submission."""

    job: JobRecord
    created: bool  # False when the idempotency key matched an existing job


class Rejected(Exception):
    """A submission the limits refuse; `message` is a sentence a chat user can read."""

    def __init__(self, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code  # "rate_limited", "banned", "queue_full" or "idempotency_conflict"
        self.message = message
        self.retry_after = retry_after  # seconds, for "rate_limited"
