"""A job's life after admission: reads, the worker's claim, progress, results, recovery and the sweep."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select, update

from storage.models import Job, JobPayload
from storage.records import JobRecord
from storage.session import Store
from storage.statements import (
    ACTIVE,
    FINAL,
    SWEEP_BATCH,
    claim_job,
    count_jobs,
    finish_job,
    holding,
    interrupted,
    take_job,
    utc,
)

log = logging.getLogger(__name__)


class Jobs(Store):
    """Every verb on jobs that exist."""

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

    async def progress(self, job_id: str, stage: str, fraction: float, *, attempt: int | None = None) -> bool:
        """Record the running job's stage and fraction; False if it is no longer running (or no longer this claim)."""
        async with self._write() as session:
            query = update(Job).where(*holding(job_id, attempt)).returning(Job.id)
            return await session.scalar(query.values(stage=stage, fraction=min(1.0, max(0.0, fraction)))) is not None

    async def finish(
        self,
        job_id: str,
        *,
        data: bytes | None,
        format: str | None,
        script: dict,
        timings: dict[str, float],
        attempt: int | None = None,
    ) -> JobRecord | None:
        """running -> done with its result bytes (None for a training job); None if no longer running (e.g. cancelled).

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
                    job.status, job.error_code, job.error = "failed", "interrupted", interrupted(job.kind)
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
