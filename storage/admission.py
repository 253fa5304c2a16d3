"""Admission: a submission checked against idempotency, bans and the limits in one transaction; quotas."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from uuid import uuid4

from sqlalchemy import Connection, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage import limits as rules
from storage.models import Job, Setting, job_record
from storage.records import TRAINING_KINDS, JobRecord, Limits, NewJob, Quota, Rejected, Submitted
from storage.session import Store
from storage.statements import (
    ACTIVE,
    CHAT_LOCK,
    CHECKS,
    INSERT_JOB,
    INSERT_PAYLOAD,
    JOBS,
    USER_LOCK,
    check_params,
    count_jobs,
    idempotency_scope,
    job_columns,
    lock_key,
    training_of,
    utc,
)

log = logging.getLogger(__name__)

TRAINING_BUSY = "You already have a training job queued or running; wait for it to end or cancel it first."
CONFLICT = "That Idempotency-Key was already used for a different request; use a new key."
DIGEST_MAX = 64  # the request_digest column's width: a sha256 hex digest


def check_digest(new: NewJob) -> None:
    """Refuse a request_digest the column cannot hold (Postgres would fail mid-transaction, SQLite keep it whole)."""
    digest = new.request_digest
    if digest is not None and not 0 < len(digest) <= DIGEST_MAX:
        raise ValueError(f"request_digest must be 1 to {DIGEST_MAX} characters, not {len(digest)}")


def conflicts(stored: str | None, asked: str | None) -> bool:
    """A repeated key asks for something else; a digest missing on either side (older jobs, no digest) matches."""
    return stored is not None and asked is not None and stored != asked


class Admission(Store):
    """submit() and what it answers to: the limits in force and each user's quota."""

    async def submit(self, new: NewJob, *, now: datetime | None = None) -> Submitted:
        """Atomically: idempotency check, ban check, limits (admins exempt), insert. Raises Rejected."""
        check_digest(new)
        at = utc(now) if now is not None else None
        try:
            if self._sync_writer is not None:
                async with self._write_lock or contextlib.nullcontext():
                    loop = asyncio.get_running_loop()
                    submitted = await loop.run_in_executor(self._sync_thread, self._submit_blocking, new, at)
            else:
                async with self._write_connection() as conn:
                    submitted = await conn.run_sync(self._submit, new, at)
        except IntegrityError:
            # Keys are per user and one user's submissions are serialised (BEGIN IMMEDIATE, advisory
            # locks), so a repeat always sees the first job; should a race get here all the same,
            # it answers as a repeat would rather than with an error.
            existing = await self._by_scope(new)
            if existing is None:
                raise
            return Submitted(existing, created=False)
        if submitted.created:
            job = submitted.job
            log.info("job %s queued for %s user %s in chat %s", job.id, job.platform, job.user_id, job.chat_id)
        return submitted

    async def precheck(self, new: NewJob, *, now: datetime | None = None) -> JobRecord | None:
        """submit()'s answer without storing anything: the job a repeated key names, else None; raises Rejected."""
        # Read-only and not atomic (a submission in between can change the answer; submit decides):
        # it lets the API refuse a banned, limited or conflicting request before decoding its image.
        check_digest(new)
        at = utc(now)
        async with self._engine.connect() as conn:
            return await conn.run_sync(self._verdict, new, at)

    def _submit_blocking(self, new: NewJob, at: datetime | None) -> Submitted:
        """_submit in its own transaction on the blocking twin engine (on _sync_thread, under the write lock)."""
        assert self._sync_writer is not None
        with self._sync_writer.begin() as conn:
            return self._submit(conn, new, at)

    def _submit(self, conn: Connection, new: NewJob, at: datetime | None) -> Submitted:
        # Blocking code: on SQLite the whole transaction runs on one thread in one hop (see
        # database.sync_twin), elsewhere through run_sync. The checks are one SELECT of scalar
        # subqueries and the rows go in with two plain inserts.
        if self._postgres:
            # SQLite's BEGIN IMMEDIATE already serialises every writer; Postgres needs a lock per
            # user and per chat (always in this order, so two submissions cannot deadlock).
            for space, name in ((USER_LOCK, new.user_id), (CHAT_LOCK, new.chat_id)):
                key = lock_key(f"{new.platform}:{name}")
                conn.execute(select(func.pg_advisory_xact_lock(space, key)))
        # Taken under the write lock, so created_at follows the order jobs are stored (and queued) in.
        now = at or utc(None)
        existing = self._verdict(conn, new, now)
        if existing is not None:
            return Submitted(existing, created=False)
        record = JobRecord(
            id=new.id or uuid4().hex,
            status="queued",
            platform=new.platform,
            user_id=new.user_id,
            chat_id=new.chat_id,
            is_admin=new.is_admin,
            options=dict(new.options),
            seed=new.seed,
            idempotency_key=idempotency_scope(new),
            attempts=0,
            stage=None,
            fraction=0.0,
            error_code=None,
            error=None,
            script=None,
            timings=None,
            checkpoint=None,
            result_format=None,
            result_bytes=None,
            result_expired=False,
            created_at=now,
            started_at=None,
            finished_at=None,
            request_digest=new.request_digest,
            kind=new.kind,
        )
        # Core inserts of statements built once, the values as parameters: cached compiles.
        conn.execute(INSERT_JOB, job_columns(record))
        # After the job row: the payload's foreign key needs it.
        conn.execute(INSERT_PAYLOAD, {"job_id": record.id, "image": new.image})
        return Submitted(record, created=True)

    def _verdict(self, conn: Connection, new: NewJob, now: datetime) -> JobRecord | None:
        """What submit and precheck answer: the job a repeated key names, or None to store `new`; raises Rejected."""
        # The windows depend on the limits, which are read in the same statement: count with the
        # limits seen last and count again only if an admin changed them in between.
        limits = self._limits_seen
        row = (conn.execute(CHECKS, check_params(new, limits, now))).one()
        if row.existing is not None:
            # Before the ban and the limits, as a retry of an accepted job is not a new job.
            if conflicts(row.existing_digest, new.request_digest):
                raise Rejected("idempotency_conflict", CONFLICT)
            return job_record(conn.execute(select(JOBS).where(JOBS.c.seq == row.existing)).one())
        if row.banned:
            raise Rejected("banned", rules.BANNED)
        stored = rules.from_json(row.limits, self._default_limits) if row.limits is not None else self._default_limits
        if stored != limits:
            self._limits_seen = limits = stored
            row = (conn.execute(CHECKS, check_params(new, limits, now))).one()
        usage = rules.Usage(
            user_jobs=row.user_jobs,
            user_leaving=row.user_leaving,
            user_active=row.user_active,
            chat_jobs=row.chat_jobs,
            chat_leaving=row.chat_leaving,
            queued=row.queued,
        )
        rules.check(limits, usage, is_admin=new.is_admin, now=now)
        if new.kind in TRAINING_KINDS and conn.execute(training_of(new.platform, new.user_id)).scalar_one():
            raise Rejected("training_busy", TRAINING_BUSY)
        return None

    async def quota(self, platform: str, user_id: str, *, now: datetime | None = None) -> Quota:
        """What the user has left under the limits in force."""
        now = utc(now)
        async with self._reader() as session:
            limits = await self._limits(session)
            times = await self._user_times(session, platform, user_id, limits, now)
            active = await self._user_active(session, platform, user_id)
        return rules.quota(limits, times, active, now=now)

    async def _user_times(
        self, session: AsyncSession, platform: str, user_id: str, limits: Limits, now: datetime
    ) -> list[datetime]:
        query = (
            select(Job.created_at)
            .where(Job.platform == platform, Job.user_id == user_id)
            .where(Job.created_at > rules.window_start(now, limits.user_window_s))
            .order_by(Job.created_at)
        )
        return list(await session.scalars(query))

    async def _user_active(self, session: AsyncSession, platform: str, user_id: str) -> int:
        return await count_jobs(session, Job.platform == platform, Job.user_id == user_id, Job.status.in_(ACTIVE))

    async def _by_scope(self, new: NewJob) -> JobRecord | None:
        """The job stored under `new`'s key (None without a key); raises Rejected if it was for another request."""
        scope = idempotency_scope(new)
        if scope is None:
            return None
        async with self._reader() as session:
            job = await session.scalar(select(Job).where(Job.idempotency_key == scope))
        if job is not None and conflicts(job.request_digest, new.request_digest):
            raise Rejected("idempotency_conflict", CONFLICT)
        return job.record() if job is not None else None

    # --- admin ------------------------------------------------------------------------------

    async def limits(self) -> Limits:
        """The limits in force."""
        async with self._reader() as session:
            return await self._limits(session)

    async def _limits(self, session: AsyncSession) -> Limits:
        stored = await session.get(Setting, "limits")
        return rules.from_json(stored.value, self._default_limits) if stored is not None else self._default_limits

    async def set_limits(self, limits: Limits) -> Limits:
        """Replace the limits in force (persisted; survives restarts)."""
        rules.validate(limits)
        await self._set_setting("limits", rules.to_json(limits))
        log.info("limits set to %s", limits)
        return limits
