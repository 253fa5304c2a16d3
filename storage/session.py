"""The repository's base: its connections, and how a write transaction runs on SQLite and on Postgres."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from storage import limits as rules
from storage.database import sync_twin, writer
from storage.models import Setting
from storage.records import Limits

T = TypeVar("T")


class Store:
    """Connections and transactions; the verbs live in the concern classes the Repository combines."""

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

    async def _set_setting(self, key: str, value: Any) -> None:
        insert = postgresql.insert(Setting) if self._postgres else sqlite.insert(Setting)
        query = insert.values(key=key, value=value)
        async with self._write() as session:
            await session.execute(query.on_conflict_do_update(index_elements=[Setting.key], set_={"value": value}))
