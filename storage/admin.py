"""What admins set and see: the active checkpoint and the counts behind /stats and /metrics."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import delete, func, select

from storage.models import BanRow, Job, Setting
from storage.records import JOB_STATUSES, Stats
from storage.session import Store
from storage.statements import count_jobs, read_active_checkpoint, utc

log = logging.getLogger(__name__)


class Admin(Store):
    """The checkpoint jobs start with, and the stats."""

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
