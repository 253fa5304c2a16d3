"""What the admin dashboard reads and keeps: job searches, the active queue, stats rows and sign-in sessions."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, case, delete, func, select

from storage.models import Job, WebSession
from storage.records import JobRecord
from storage.session import Store
from storage.statements import ACTIVE, utc

log = logging.getLogger(__name__)

Q = TypeVar("Q", bound=Select[Any])
MAX_STATS_ROWS = 20_000  # a stats window's rows at most: a busy day's charts, not the whole history


@dataclass(frozen=True)
class JobQuery:
    """The history page's filters; None means any."""

    platform: str | None = None
    user_id: str | None = None
    chat_id: str | None = None
    status: str | None = None
    kind: str | None = None
    since: datetime | None = None  # created at or after (UTC)
    until: datetime | None = None  # created before (UTC)

    def where(self, query: Q) -> Q:
        """The query narrowed by every filter that is set."""
        for column, value in (
            (Job.platform, self.platform),
            (Job.user_id, self.user_id),
            (Job.chat_id, self.chat_id),
            (Job.status, self.status),
            (Job.kind, self.kind),
        ):
            if value is not None:
                query = query.where(column == value)
        if self.since is not None:
            query = query.where(Job.created_at >= utc(self.since))
        if self.until is not None:
            query = query.where(Job.created_at < utc(self.until))
        return query


class Dashboard(Store):
    """Reads for the dashboard's pages, and the sessions of signed-in admins."""

    async def search_jobs(self, query: JobQuery, *, limit: int = 50, offset: int = 0) -> tuple[list[JobRecord], int]:
        """A page of jobs matching the filters, newest first, and how many match in all."""
        async with self._reader() as session:
            page = query.where(select(Job)).order_by(Job.created_at.desc(), Job.seq.desc()).limit(limit).offset(offset)
            total = await session.scalar(query.where(select(func.count()).select_from(Job)))
            return [job.record() for job in await session.scalars(page)], int(total or 0)

    async def active_jobs(self, *, limit: int = 500) -> list[JobRecord]:
        """Running jobs, then queued ones in the order they will start."""
        running_first = case((Job.status == "running", 0), else_=1)
        async with self._reader() as session:
            query = (
                select(Job).where(Job.status.in_(ACTIVE)).order_by(running_first, Job.created_at, Job.seq).limit(limit)
            )
            return [job.record() for job in await session.scalars(query)]

    async def jobs_since(self, since: datetime, *, limit: int = MAX_STATS_ROWS) -> list[JobRecord]:
        """Jobs created at or after `since`, newest first, at most `limit` (the stats page's rows)."""
        async with self._reader() as session:
            query = (
                select(Job)
                .where(Job.created_at >= utc(since))
                .order_by(Job.created_at.desc(), Job.seq.desc())
                .limit(limit)
            )
            return [job.record() for job in await session.scalars(query)]

    async def platforms(self) -> list[str]:
        """Every platform that has jobs, for the history filter."""
        async with self._reader() as session:
            return sorted(await session.scalars(select(Job.platform).distinct()))

    # --- sessions of the dashboard's signed-in admins (stored as digests: the cookie alone opens one) ---
    async def open_session(self, digest: str, *, expires_at: datetime) -> None:
        """Record a new session; expired ones are dropped on the way."""
        now = utc(None)
        async with self._write() as session:
            await session.execute(delete(WebSession).where(WebSession.expires_at <= now))
            session.add(WebSession(digest=digest, created_at=now, expires_at=utc(expires_at)))

    async def session_expiry(self, digest: str) -> datetime | None:
        """When the session expires, or None if there is no such session (or it has expired)."""
        async with self._reader() as session:
            expires = await session.scalar(select(WebSession.expires_at).where(WebSession.digest == digest))
        return expires if expires is not None and expires > utc(None) else None

    async def close_session(self, digest: str) -> bool:
        """End a session (sign-out); False if there was none."""
        async with self._write() as session:
            ended = await session.scalar(
                delete(WebSession).where(WebSession.digest == digest).returning(WebSession.digest)
            )
        return ended is not None

    async def close_all_sessions(self) -> int:
        """End every dashboard session (the admin token was rotated, or a sign-out everywhere)."""
        async with self._write() as session:
            result = await session.execute(delete(WebSession))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
