"""The gallery: results their requesters shared, newest first, and admins' take-downs."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from storage.models import GalleryRow, Job
from storage.records import SHAREABLE_KINDS, GalleryEntry
from storage.session import Store
from storage.statements import utc

log = logging.getLogger(__name__)

# What an entry shows of its job, beside the gallery row's own columns.
ENTRY = select(
    GalleryRow.job_id, GalleryRow.shared_at, GalleryRow.removed_at, Job.platform, Job.user_id, Job.chat_id, Job.kind,
    Job.result_format, Job.options, Job.script, Job.created_at,
).join(Job, Job.id == GalleryRow.job_id)  # fmt: skip


def entry_of(row: Any) -> GalleryEntry:
    """A GalleryEntry from one row of ENTRY."""
    prompt = (row.options or {}).get("prompt")
    caption = (row.script or {}).get("meme_text")  # what the OCR read and the script kept (runner.script_of)
    return GalleryEntry(
        job_id=row.job_id, shared_at=row.shared_at, removed_at=row.removed_at, platform=row.platform,
        user_id=row.user_id, chat_id=row.chat_id, kind=row.kind, result_format=row.result_format,
        prompt=prompt if isinstance(prompt, str) and prompt else None,
        caption=caption if isinstance(caption, str) and caption.strip() else None, created_at=row.created_at,
    )  # fmt: skip


class Gallery(Store):
    """share, the gallery's page, one entry, take-downs, and which jobs are shared."""

    async def share(self, job_id: str, *, now: datetime | None = None) -> GalleryEntry | None:
        """Put a job in the gallery (idempotent): its entry (removed_at set if taken down); None for no such job.

        Whether the job may be shared (done, an animation or remix, result kept) is the caller's check;
        the gallery page leaves out any that are not.
        """
        insert = postgresql.insert(GalleryRow) if self._postgres else sqlite.insert(GalleryRow)
        async with self._write() as session:
            if await session.scalar(select(Job.id).where(Job.id == job_id)) is None:
                return None
            added = await session.scalar(
                insert.values(job_id=job_id, shared_at=utc(now), removed_at=None)
                .on_conflict_do_nothing(index_elements=[GalleryRow.job_id])
                .returning(GalleryRow.job_id)
            )
            row = (await session.execute(ENTRY.where(GalleryRow.job_id == job_id))).one()
        if added is not None:
            log.info("job %s shared to the gallery", job_id)
        return entry_of(row)

    async def gallery(self, limit: int, offset: int = 0) -> list[GalleryEntry]:
        """One page of the gallery, newest share first: not taken down, and the job still a kept animation or remix."""
        if limit < 1 or offset < 0:
            raise ValueError(f"limit must be 1 or more and offset 0 or more, not {limit} and {offset}")
        query = (
            ENTRY.where(
                GalleryRow.removed_at.is_(None),
                Job.status == "done",
                Job.result_expired.is_(False),
                Job.kind.in_(sorted(SHAREABLE_KINDS)),
            )
            .order_by(GalleryRow.shared_at.desc(), GalleryRow.job_id.desc())
            .limit(limit)
            .offset(offset)
        )
        async with self._reader() as session:
            return [entry_of(row) for row in await session.execute(query)]

    async def gallery_entry(self, job_id: str) -> GalleryEntry | None:
        """The job's gallery entry, taken down or not; None if it was never shared."""
        async with self._reader() as session:
            row = (await session.execute(ENTRY.where(GalleryRow.job_id == job_id))).first()
            return entry_of(row) if row is not None else None

    async def remove_from_gallery(self, job_id: str, *, now: datetime | None = None) -> bool:
        """An admin's take-down; False if the job wasn't in the gallery or was already taken down."""
        query = (
            update(GalleryRow)
            .where(GalleryRow.job_id == job_id, GalleryRow.removed_at.is_(None))
            .values(removed_at=utc(now))
            .returning(GalleryRow.job_id)
        )
        async with self._write() as session:
            removed = await session.scalar(query) is not None
        if removed:
            log.info("job %s taken down from the gallery", job_id)
        return removed

    async def shared_ids(self, job_ids: Iterable[str]) -> set[str]:
        """Which of these jobs are in the gallery now (shared and not taken down)."""
        wanted = sorted(set(job_ids))
        if not wanted:
            return set()
        query = select(GalleryRow.job_id).where(GalleryRow.job_id.in_(wanted), GalleryRow.removed_at.is_(None))
        async with self._reader() as session:
            return set(await session.scalars(query))
