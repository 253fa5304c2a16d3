"""Connecting to SQLite or Postgres with the right async driver, and applying the Alembic migrations."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}
BUSY_TIMEOUT_MS = 30_000
# An arbitrary constant: every process migrating the same Postgres database queues on this lock.
MIGRATION_LOCK = 0x6D696D6D  # "mimm"
# Execution option that makes a SQLite transaction take the write lock when it begins.
BEGIN_IMMEDIATE = "makeitmove_begin_immediate"


def async_url(url: str) -> URL:
    """The URL with its async driver: sqlite -> sqlite+aiosqlite, postgresql -> postgresql+asyncpg; '+driver' kept."""
    parsed = make_url(url)
    if "+" in parsed.drivername:
        return parsed
    if parsed.drivername not in ASYNC_DRIVERS:
        raise ValueError(f"storage url must be sqlite:// or postgresql://, not {parsed.drivername}://")
    return parsed.set(drivername=ASYNC_DRIVERS[parsed.drivername])


def create_engine(url: str) -> AsyncEngine:
    """An async engine; on SQLite: parent directory created, WAL, busy timeout, foreign keys, BEGIN IMMEDIATE writes."""
    parsed = async_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(parsed, pool_pre_ping=True)
    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(parsed)
    event.listen(engine.sync_engine, "connect", _sqlite_connect)
    event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


def sync_twin(engine: AsyncEngine) -> Engine | None:
    """A blocking engine on the same SQLite file (same pragmas, BEGIN IMMEDIATE), or None if there is none to share.

    A transaction run whole on one thread costs one hop to the event loop; through aiosqlite each
    statement (and cursor, fetch, close) is a hop, and a writer holds SQLite's lock across them all.
    """
    url = engine.url
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return None
    twin = create_sync_engine(url.set(drivername="sqlite"))
    event.listen(twin, "connect", _sqlite_connect)
    event.listen(twin, "begin", _sqlite_begin)
    return twin.execution_options(**{BEGIN_IMMEDIATE: True})


def _sqlite_connect(dbapi_connection: Any, connection_record: Any) -> None:
    # SQLAlchemy's documented recipe: stop the driver from emitting its own (deferred) BEGIN so
    # _sqlite_begin decides; a deferred transaction that later writes fails at once with
    # "database is locked" instead of waiting, so writers must begin IMMEDIATE.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    immediate = connection.get_execution_options().get(BEGIN_IMMEDIATE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def writer(engine: AsyncEngine) -> AsyncEngine:
    """The same engine and pool, with transactions that take SQLite's write lock up front."""
    return engine.execution_options(**{BEGIN_IMMEDIATE: True})


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for the shipped migrations, optionally bound to an open connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision; safe to run from several processes at once."""
    async with writer(engine).begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), "head"))


async def upgrade(url: str) -> None:
    """Apply every migration to the database at `url` (for `makeitmove db upgrade`)."""
    engine = create_engine(url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    log.info("database %s is at the newest schema", make_url(url).render_as_string(hide_password=True))


def upgrade_sync(url: str) -> None:
    """upgrade() for callers without an event loop."""
    asyncio.run(upgrade(url))
