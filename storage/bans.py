"""Bans: who may not submit."""

from __future__ import annotations

import logging

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from storage.models import BanRow
from storage.records import Ban
from storage.session import Store
from storage.statements import utc

log = logging.getLogger(__name__)


class Bans(Store):
    """ban, unban and the list of bans."""

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
