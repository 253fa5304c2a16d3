"""Prebuilt SQL, row conversion and the blocking transactions the repository runs on its writer thread."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    Connection,
    Integer,
    Select,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from storage import limits as rules
from storage.models import RECORD_FIELDS, BanRow, Job, JobPayload, Setting, job_record
from storage.records import TRAINING_KINDS, JobRecord, Limits, NewJob

ACTIVE = ("queued", "running")
FINAL = ("done", "failed", "cancelled")
INTERRUPTED = "The engine restarted while making this animation too many times; please try again."
INTERRUPTED_TRAINING = "The engine restarted while making this checkpoint too many times; please try again."
# Namespaces of the two-key Postgres advisory locks that serialise one user's (one chat's) submissions.
USER_LOCK, CHAT_LOCK = 1, 2
SWEEP_BATCH = 500
JOBS = Job.__table__
PAYLOADS = JobPayload.__table__
SETTINGS = Setting.__table__


def interrupted(kind: str) -> str:
    """The sentence a job given up after too many restarts ends with: an animation's, or a checkpoint's."""
    return INTERRUPTED_TRAINING if kind in TRAINING_KINDS else INTERRUPTED


# The same choice in SQL, for an update that gives a job up without reading it first.
INTERRUPTED_FOR_KIND = case((Job.kind.in_(sorted(TRAINING_KINDS)), INTERRUPTED_TRAINING), else_=INTERRUPTED)


def build_checks() -> Select[Any]:
    """One row: the stored limits, whether the key is known or the user banned, and the usage to check.

    Built once with bound parameters (see check_params): building the statement and its cache key
    per submission cost more than running it.
    """
    platform: Any = bindparam("platform")
    user_id: Any = bindparam("user_id")
    chat_id: Any = bindparam("chat_id")
    user = and_(Job.platform == platform, Job.user_id == user_id)
    chat = and_(Job.platform == platform, Job.chat_id == chat_id)
    in_user_window = and_(user, Job.created_at > bindparam("user_since"))
    in_chat_window = and_(chat, Job.created_at > bindparam("chat_since"))
    return select(
        select(Setting.value).where(Setting.key == "limits").scalar_subquery().label("limits"),
        # With no key this compares with NULL, which matches nothing: existing is NULL.
        select(Job.seq).where(Job.idempotency_key == bindparam("key")).scalar_subquery().label("existing"),
        # Apart from `existing`: a NULL here is also a job stored without a digest.
        select(Job.request_digest)
        .where(Job.idempotency_key == bindparam("key"))
        .scalar_subquery()
        .label("existing_digest"),
        exists().where(BanRow.platform == platform, BanRow.user_id == user_id).label("banned"),
        counted(in_user_window).label("user_jobs"),
        newest_time(in_user_window, "user_skip").label("user_leaving"),
        counted(user, Job.status.in_(ACTIVE)).label("user_active"),
        counted(in_chat_window).label("chat_jobs"),
        newest_time(in_chat_window, "chat_skip").label("chat_leaving"),
        counted(Job.status == "queued").label("queued"),
    )


def check_params(new: NewJob, limits: Limits, now: datetime) -> dict[str, Any]:
    """CHECKS's parameters for this submission under these limits."""
    return {
        "platform": new.platform,
        "user_id": new.user_id,
        "chat_id": new.chat_id,
        "key": idempotency_scope(new),
        "user_since": rules.window_start(now, limits.user_window_s),
        "chat_since": rules.window_start(now, limits.chat_window_s),
        "user_skip": limits.user_jobs - 1,
        "chat_skip": limits.chat_jobs - 1,
    }


def take_job(conn: Connection, job_id: str, now: datetime) -> tuple[JobRecord, str | None, bytes | None] | None:
    stored = conn.scalar(select(SETTINGS.c.value).where(SETTINGS.c.key == "active_checkpoint"))
    checkpoint = str(stored) if stored is not None else None
    row = conn.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued")
        .values(
            status="running", attempts=Job.attempts + 1, started_at=now, checkpoint=checkpoint, stage=None,
            fraction=0.0,
        )
        .returning(*JOBS.c)
    ).first()  # fmt: skip
    if row is None:
        return None
    image = conn.scalar(select(PAYLOADS.c.image).where(PAYLOADS.c.job_id == job_id))
    return job_record(row), checkpoint, image


def claim_job(
    conn: Connection, job_id: str, now: datetime, worker: str, max_attempts: int
) -> tuple[JobRecord, str | None, bytes | None] | str | None:
    """take_job for one of many workers: also takes a job whose last attempt was interrupted (still running).

    The claim is the new attempt number (the row also names the worker): whoever held the job before can
    no longer progress, finish or fail it. A job interrupted max_attempts times is failed instead, and
    "failed" returned.
    """
    stored = conn.scalar(select(SETTINGS.c.value).where(SETTINGS.c.key == "active_checkpoint"))
    checkpoint = str(stored) if stored is not None else None
    claimable = or_(Job.status == "queued", and_(Job.status == "running", Job.attempts < max_attempts))
    row = conn.execute(
        update(Job)
        .where(Job.id == job_id, claimable)
        .values(
            status="running", attempts=Job.attempts + 1, started_at=now, checkpoint=checkpoint, stage=None,
            fraction=0.0, worker=worker,
        )
        .returning(*JOBS.c)
    ).first()  # fmt: skip
    if row is None:
        gave_up = conn.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == "running")
            .values(status="failed", error_code="interrupted", error=INTERRUPTED_FOR_KIND, finished_at=now)
            .returning(Job.id)
        ).first()
        return "failed" if gave_up is not None else None
    image = conn.scalar(select(PAYLOADS.c.image).where(PAYLOADS.c.job_id == job_id))
    return job_record(row), checkpoint, image


def holding(job_id: str, attempt: int | None) -> tuple[Any, ...]:
    """WHERE clauses for a running job, and, given the attempt a worker claimed, only while it still holds it."""
    running = (Job.id == job_id, Job.status == "running")
    return running if attempt is None else (*running, Job.attempts == attempt)


def finish_job(
    conn: Connection,
    job_id: str,
    data: bytes | None,
    format: str | None,
    script: dict,
    timings: dict[str, float],
    attempt: int | None = None,
) -> JobRecord | None:
    row = conn.execute(
        update(Job)
        .where(*holding(job_id, attempt))
        .values(
            status="done", fraction=1.0, script=script, timings=timings, result_format=format,
            result_bytes=None if data is None else len(data), finished_at=utc(None),
        )
        .returning(*JOBS.c)
    ).first()  # fmt: skip
    if row is None:
        return None
    if data is not None:  # a training job makes a checkpoint file, not bytes to keep
        conn.execute(update(JobPayload).where(JobPayload.job_id == job_id).values(result=data))
    return job_record(row)


def training_of(platform: str, user_id: str) -> Any:
    """How many training or tuning jobs the user has queued or running (one at a time per admin)."""
    mine = and_(Job.platform == platform, Job.user_id == user_id, Job.status.in_(ACTIVE))
    return select(func.count()).select_from(Job).where(mine, Job.kind.in_(sorted(TRAINING_KINDS)))


def counted(*where: Any) -> Any:
    return select(func.count()).select_from(Job).where(*where).scalar_subquery()


def newest_time(where: Any, skip: str) -> Any:
    """The created_at of the rank-th newest job matching `where` (NULL when fewer); `skip` names rank - 1."""
    return (
        select(Job.created_at)
        .where(where)
        .order_by(Job.created_at.desc())
        .limit(1)
        .offset(bindparam(skip, type_=Integer()))
        .scalar_subquery()
    )


CHECKS = build_checks()
INSERT_JOB = insert(Job)
INSERT_PAYLOAD = insert(JobPayload)


def job_columns(record: JobRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in RECORD_FIELDS}


async def count_jobs(session: AsyncSession, *where: Any) -> int:
    return await session.scalar(select(func.count()).select_from(Job).where(*where)) or 0


async def read_active_checkpoint(session: AsyncSession) -> str | None:
    stored = await session.get(Setting, "active_checkpoint")
    return str(stored.value) if stored is not None else None


def utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(timezone.utc)
    if now.tzinfo is None:
        raise ValueError(f"now must be timezone-aware, not {now!r}")
    return now.astimezone(timezone.utc)


def idempotency_scope(new: NewJob) -> str | None:
    """What the jobs table stores for the submission's key: sha256 hex of (platform, user_id, key); None without one."""
    if new.idempotency_key is None:
        return None
    # A JSON array keeps the parts apart whatever they contain ("a:b" + "c" never meets "a" + "b:c").
    # Migration 0003 holds a frozen copy of this: change one, and stored keys stop matching.
    parts = json.dumps([new.platform, new.user_id, new.idempotency_key], separators=(",", ":"))
    return hashlib.sha256(parts.encode("ascii")).hexdigest()


def lock_key(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest(), "big", signed=True)
