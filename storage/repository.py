"""The repository: verb methods over the database that return plain dataclasses, one short transaction each."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import uuid4

from sqlalchemy import (
    Connection,
    and_,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from storage import limits as rules
from storage.database import create_engine, migrate, sync_twin, writer
from storage.models import BanRow, Job, JobPayload, Setting, job_record
from storage.records import JOB_STATUSES, Ban, JobRecord, Limits, NewJob, Quota, Rejected, Stats, Submitted
from storage.statements import (
    ACTIVE,
    CHAT_LOCK,
    CHECKS,
    FINAL,
    INSERT_JOB,
    INSERT_PAYLOAD,
    INTERRUPTED,
    JOBS,
    SWEEP_BATCH,
    USER_LOCK,
    check_params,
    claim_job,
    count_jobs,
    finish_job,
    holding,
    job_columns,
    lock_key,
    read_active_checkpoint,
    take_job,
    utc,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


class Repository:
    """Verb methods over the database; every method is one short transaction."""

    def __init__(self, engine: AsyncEngine, default_limits: Limits) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._default_limits = rules.validate(default_limits)
        self._reader = async_sessionmaker(engine, expire_on_commit=False)
        self._writer_engine = writer(engine)
        self._writer = async_sessionmaker(self._writer_engine, expire_on_commit=False)
        self._limits_seen = self._default_limits  # what submit() expects the stored limits to be
        # SQLite has one write lock per database. Writers on several pooled connections that race
        # for it lose to SQLite's busy handler, which sleeps in growing steps (up to 100 ms) before
        # retrying: 50 concurrent submissions then took seconds. Queueing this process's writers
        # here hands the lock over at once; busy_timeout still covers other processes.
        self._write_lock: asyncio.Lock | None = None if self._postgres else asyncio.Lock()
        # SQLite files: submissions run whole on one thread of their own (see database.sync_twin).
        self._sync_writer = sync_twin(engine)
        self._sync_thread = ThreadPoolExecutor(1, thread_name_prefix="makeitmove-submit") if self._sync_writer else None

    @classmethod
    async def open(cls, url: str, *, default_limits: Limits) -> Repository:
        """Connect (sync SQLAlchemy URL in, async driver chosen here), apply migrations, return a repository."""
        engine = create_engine(url)
        try:
            await migrate(engine)
            return cls(engine, default_limits)
        except BaseException:
            await engine.dispose()
            raise

    async def close(self) -> None:
        """Dispose of the connection pool."""
        if self._sync_writer is not None and self._sync_thread is not None:
            await asyncio.get_running_loop().run_in_executor(self._sync_thread, self._sync_writer.engine.dispose)
            self._sync_thread.shutdown()
        await self._engine.dispose()

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncSession]:
        """A write transaction (SQLite: one at a time in this process), committed on leaving."""
        async with self._write_lock or contextlib.nullcontext(), self._writer.begin() as session:
            yield session

    @contextlib.asynccontextmanager
    async def _write_connection(self) -> AsyncIterator[AsyncConnection]:
        """_write() without the ORM session, for the statements on every submission."""
        async with self._write_lock or contextlib.nullcontext(), self._writer_engine.begin() as conn:
            yield conn

    # --- jobs -------------------------------------------------------------------------------
    async def submit(self, new: NewJob, *, now: datetime | None = None) -> Submitted:
        """Atomically: idempotency check, ban check, limits (admins exempt), insert. Raises Rejected."""
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
            # Only a key reused across users gets here: one user's submissions are serialised.
            existing = await self._by_key(new.idempotency_key) if new.idempotency_key else None
            if existing is None:
                raise
            return Submitted(existing, created=False)
        if submitted.created:
            job = submitted.job
            log.info("job %s queued for %s user %s in chat %s", job.id, job.platform, job.user_id, job.chat_id)
        return submitted

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
        # The windows depend on the limits, which are read in the same statement: count with the
        # limits seen last and count again only if an admin changed them in between.
        limits = self._limits_seen
        row = (conn.execute(CHECKS, check_params(new, limits, now))).one()
        if row.existing is not None:
            job = job_record(conn.execute(select(JOBS).where(JOBS.c.idempotency_key == new.idempotency_key)).one())
            return Submitted(job, created=False)
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
        record = JobRecord(
            id=new.id or uuid4().hex,
            status="queued",
            platform=new.platform,
            user_id=new.user_id,
            chat_id=new.chat_id,
            is_admin=new.is_admin,
            options=dict(new.options),
            seed=new.seed,
            idempotency_key=new.idempotency_key,
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
        )
        # Core inserts of statements built once, the values as parameters: cached compiles.
        conn.execute(INSERT_JOB, job_columns(record))
        # After the job row: the payload's foreign key needs it.
        conn.execute(INSERT_PAYLOAD, {"job_id": record.id, "image": new.image})
        return Submitted(record, created=True)

    async def get(self, job_id: str) -> JobRecord | None:
        """One job, or None."""
        async with self._reader() as session:
            job = await session.scalar(select(Job).where(Job.id == job_id))
            return job.record() if job is not None else None

    async def position(self, job_id: str) -> int | None:
        """1-based place among queued jobs (oldest first), or None when not queued."""
        async with self._reader() as session:
            row = (await session.execute(select(Job.status, Job.created_at, Job.seq).where(Job.id == job_id))).first()
            if row is None or row.status != "queued":
                return None
            ahead = or_(Job.created_at < row.created_at, and_(Job.created_at == row.created_at, Job.seq < row.seq))
            return await count_jobs(session, Job.status == "queued", ahead) + 1

    async def queued_ids(self) -> list[str]:
        """Every queued job id, oldest first."""
        async with self._reader() as session:
            query = select(Job.id).where(Job.status == "queued").order_by(Job.created_at, Job.seq)
            return list(await session.scalars(query))

    async def image(self, job_id: str) -> bytes | None:
        """The submitted image bytes, or None once swept."""
        async with self._reader() as session:
            return await session.scalar(select(JobPayload.image).where(JobPayload.job_id == job_id))

    async def start(self, job_id: str, *, checkpoint: str | None) -> JobRecord | None:
        """queued -> running (attempts + 1, started_at, checkpoint recorded); None if it was not queued."""
        values = dict(status="running", attempts=Job.attempts + 1, started_at=utc(None), checkpoint=checkpoint)
        return await self._transition(job_id, ("queued",), stage=None, fraction=0.0, **values)

    async def take(self, job_id: str) -> tuple[JobRecord, str | None, bytes | None] | None:
        """A worker's start in one transaction: (job now running, active checkpoint, image); None if not queued.

        start() with the checkpoint read before it and image() after, minus two round trips per job:
        on SQLite it runs whole on the submissions' thread (see database.sync_twin), queued with them.
        """
        return await self._blocking(take_job, job_id, utc(None))

    async def claim(
        self, job_id: str, *, worker: str, max_attempts: int
    ) -> tuple[JobRecord, str | None, bytes | None] | None:
        """take() for one of many workers: a queued job, or a running one whose worker was presumed dead.

        The returned record's `attempts` is the claim: pass it to progress, finish and fail. None when
        there is nothing to run (cancelled, final, unknown) or the job was failed for too many attempts.
        """
        claimed = await self._blocking(claim_job, job_id, utc(None), worker, max_attempts)
        if claimed == "failed":
            log.warning("job %s failed: interrupted %d times", job_id, max_attempts)
        return claimed if isinstance(claimed, tuple) else None

    async def active_ids(self, *, created_before: datetime) -> list[str]:
        """Ids of queued and running jobs created before a time, oldest first (to find jobs a queue lost)."""
        async with self._reader() as session:
            query = select(Job.id).where(Job.status.in_(ACTIVE), Job.created_at < utc(created_before))
            return list(await session.scalars(query.order_by(Job.created_at, Job.seq)))

    async def _blocking(self, transaction: Callable[..., T], *args: Any) -> T:
        """transaction(conn, *args) as one write transaction of blocking code; on SQLite, whole on _sync_thread."""
        if self._sync_writer is None:
            async with self._write_connection() as conn:
                return await conn.run_sync(transaction, *args)
        writer = self._sync_writer

        def run() -> T:
            with writer.begin() as conn:
                return transaction(conn, *args)

        async with self._write_lock or contextlib.nullcontext():
            return await asyncio.get_running_loop().run_in_executor(self._sync_thread, run)

    async def progress(self, job_id: str, stage: str, fraction: float, *, attempt: int | None = None) -> bool:
        """Record the running job's stage and fraction; False if it is no longer running (or no longer this claim)."""
        async with self._write() as session:
            query = update(Job).where(*holding(job_id, attempt)).returning(Job.id)
            return await session.scalar(query.values(stage=stage, fraction=min(1.0, max(0.0, fraction)))) is not None

    async def finish(
        self,
        job_id: str,
        *,
        data: bytes,
        format: str,
        script: dict,
        timings: dict[str, float],
        attempt: int | None = None,
    ) -> JobRecord | None:
        """running -> done with its result bytes; None if no longer running (e.g. cancelled).

        Given the attempt a worker claimed, None too if another worker has claimed the job since.
        """
        return await self._blocking(finish_job, job_id, data, format, dict(script), dict(timings), attempt)

    async def fail(self, job_id: str, *, code: str, message: str, attempt: int | None = None) -> JobRecord | None:
        """queued/running -> failed with a message a chat user can read; None if already final.

        Given the attempt a worker claimed, only a running job still under that claim fails.
        """
        if attempt is not None:
            values = dict(status="failed", error_code=code, error=message, finished_at=utc(None))
            async with self._write() as session:
                job = await session.scalar(update(Job).where(*holding(job_id, attempt)).values(**values).returning(Job))
                return job.record() if job is not None else None
        return await self._transition(
            job_id, ACTIVE, status="failed", error_code=code, error=message, finished_at=utc(None)
        )

    async def cancel(self, job_id: str) -> JobRecord | None:
        """queued/running -> cancelled; returns the job as it is now (unchanged if already final), None if unknown."""
        async with self._write() as session:
            query = update(Job).where(Job.id == job_id, Job.status.in_(ACTIVE))
            job = await session.scalar(query.values(status="cancelled", finished_at=utc(None)).returning(Job))
            if job is None:
                job = await session.scalar(select(Job).where(Job.id == job_id))
            return job.record() if job is not None else None

    async def _transition(self, job_id: str, sources: Sequence[str], **values: Any) -> JobRecord | None:
        async with self._write() as session:
            query = update(Job).where(Job.id == job_id, Job.status.in_(sources)).values(**values).returning(Job)
            job = await session.scalar(query)
            return job.record() if job is not None else None

    async def result(self, job_id: str) -> tuple[bytes, str] | None:
        """(bytes, format) of a done job whose result is still kept, else None."""
        async with self._reader() as session:
            query = (
                select(JobPayload.result, Job.result_format)
                .join(Job, Job.id == JobPayload.job_id)
                .where(Job.id == job_id, Job.status == "done", Job.result_expired.is_(False))
            )
            row = (await session.execute(query)).first()
            if row is None or row.result is None or row.result_format is None:
                return None
            return row.result, row.result_format

    async def recover(self, *, max_attempts: int) -> tuple[list[str], list[str]]:
        """After a restart: running jobs go back to queued, or fail once they used max_attempts; (requeued, failed)."""
        requeued: list[str] = []
        failed: list[str] = []
        async with self._write() as session:
            running = await session.scalars(select(Job).where(Job.status == "running").order_by(Job.created_at))
            for job in running:
                if job.attempts >= max_attempts:
                    job.status, job.error_code, job.error = "failed", "interrupted", INTERRUPTED
                    job.finished_at = utc(None)
                    failed.append(job.id)
                else:
                    job.status, job.stage, job.fraction, job.started_at = "queued", None, 0.0, None
                    requeued.append(job.id)
        for job_id in requeued:
            log.info("job %s requeued after a restart", job_id)
        for job_id in failed:
            log.warning("job %s failed: interrupted %d times", job_id, max_attempts)
        return requeued, failed

    async def sweep(self, *, retention_days: float, now: datetime | None = None) -> int:
        """Delete results and images of jobs that ended more than retention_days ago; the rows stay."""
        cutoff = utc(now) - timedelta(days=retention_days)
        swept = 0
        while True:
            async with self._write() as session:
                ids = list(
                    await session.scalars(
                        select(Job.id)
                        .where(Job.status.in_(FINAL), Job.finished_at < cutoff, Job.result_expired.is_(False))
                        .limit(SWEEP_BATCH)
                    )
                )
                if not ids:
                    break
                await session.execute(delete(JobPayload).where(JobPayload.job_id.in_(ids)))
                await session.execute(update(Job).where(Job.id.in_(ids)).values(result_expired=True))
            swept += len(ids)
        if swept:
            log.info("swept the results and images of %d jobs older than %s days", swept, retention_days)
        return swept

    async def history(self, platform: str, user_id: str, *, limit: int = 10) -> list[JobRecord]:
        """A user's newest jobs first."""
        async with self._reader() as session:
            query = (
                select(Job)
                .where(Job.platform == platform, Job.user_id == user_id)
                .order_by(Job.created_at.desc(), Job.seq.desc())
                .limit(limit)
            )
            return [job.record() for job in await session.scalars(query)]

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

    async def _by_key(self, key: str) -> JobRecord | None:
        async with self._reader() as session:
            job = await session.scalar(select(Job).where(Job.idempotency_key == key))
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

    async def ban(self, platform: str, user_id: str, *, reason: str = "") -> Ban:
        """Ban a user (idempotent)."""
        row = dict(platform=platform, user_id=user_id, reason=reason, created_at=utc(None))
        insert = postgresql.insert(BanRow) if self._postgres else sqlite.insert(BanRow)
        async with self._write() as session:
            await session.execute(insert.values(**row).on_conflict_do_nothing())
            ban = await session.get_one(BanRow, (platform, user_id))
            log.info("banned %s user %s", platform, user_id)
            return ban.record()

    async def unban(self, platform: str, user_id: str) -> bool:
        """Lift a ban; False if there was none."""
        async with self._write() as session:
            query = delete(BanRow).where(BanRow.platform == platform, BanRow.user_id == user_id)
            lifted = await session.scalar(query.returning(BanRow.user_id)) is not None
        if lifted:
            log.info("unbanned %s user %s", platform, user_id)
        return lifted

    async def bans(self) -> list[Ban]:
        """Every ban, newest first."""
        async with self._reader() as session:
            return [b.record() for b in await session.scalars(select(BanRow).order_by(BanRow.created_at.desc()))]

    async def active_checkpoint(self) -> str | None:
        """The checkpoint name jobs start with, or None."""
        async with self._reader() as session:
            return await read_active_checkpoint(session)

    async def set_active_checkpoint(self, name: str | None) -> None:
        """Choose the checkpoint for jobs that start from now on."""
        if name is None:
            async with self._write() as session:
                await session.execute(delete(Setting).where(Setting.key == "active_checkpoint"))
        else:
            await self._set_setting("active_checkpoint", name)
        log.info("active checkpoint set to %s", name)

    async def _set_setting(self, key: str, value: Any) -> None:
        insert = postgresql.insert(Setting) if self._postgres else sqlite.insert(Setting)
        query = insert.values(key=key, value=value)
        async with self._write() as session:
            await session.execute(query.on_conflict_do_update(index_elements=[Setting.key], set_={"value": value}))

    async def stats(self) -> Stats:
        """Counts for admins and /metrics."""
        day_ago = utc(None) - timedelta(days=1)
        async with self._reader() as session:
            by_status = dict.fromkeys(JOB_STATUSES, 0)
            for status, n in await session.execute(select(Job.status, func.count()).group_by(Job.status)):
                by_status[status] = n
            users = select(Job.platform, Job.user_id).where(Job.created_at > day_ago).distinct().subquery()
            recent = await session.execute(
                select(Job.started_at, Job.finished_at)
                .where(Job.status == "done", Job.started_at.is_not(None), Job.finished_at.is_not(None))
                .order_by(Job.finished_at.desc())
                .limit(100)
            )
            seconds = [(end - start).total_seconds() for start, end in recent if start is not None and end is not None]
            return Stats(
                jobs_by_status=by_status,
                queue_depth=by_status["queued"],
                jobs_last_24h=await count_jobs(session, Job.created_at > day_ago),
                users_last_24h=await session.scalar(select(func.count()).select_from(users)) or 0,
                bans=await session.scalar(select(func.count()).select_from(BanRow)) or 0,
                active_checkpoint=await read_active_checkpoint(session),
                mean_seconds_last_100=sum(seconds) / len(seconds) if seconds else None,
            )
