"""Throwaway PostgreSQL databases for the scale-out tests: a migrated template per session, a copy per test.

Copying a template (CREATE DATABASE ... TEMPLATE) costs a few milliseconds; migrating from scratch
and applying Procrastinate's schema for every test would cost far more.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from uuid import uuid4

import pytest

from engine.config import Settings, replace

POSTGRES = os.environ.get("MAKEITMOVE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
# Small, so a killed worker's job is back in the queue within seconds (heartbeat 1 s, dead after 3 s).
FAST_QUEUE = {"backend": "procrastinate", "heartbeat_s": 1, "stalled_after_s": 3}


async def _admin(*statements: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(f"{POSTGRES}/postgres", timeout=3)
    try:
        for sql in statements:
            await connection.execute(sql)
    finally:
        await connection.close()


def admin(*statements: str) -> None:
    """Run statements on the server's maintenance database."""
    asyncio.run(_admin(*statements))


def scale_out(settings: Settings, url: str) -> Settings:
    """The settings with storage on `url` and the procrastinate backend at test speed."""
    return replace(settings, storage={"url": url}, queue=FAST_QUEUE)


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A database with our migrations and Procrastinate's schema, to copy; skips if Postgres is unreachable."""
    pytest.importorskip("asyncpg", reason="asyncpg is not installed (pip install -e '.[test]')")
    pytest.importorskip("procrastinate", reason="procrastinate is not installed (pip install -e '.[test]')")
    from engine.service.queue.procrastinate.app import apply_schema
    from storage.database import upgrade_sync

    name = f"makeitmove_tpl_{uuid4().hex[:12]}"
    try:
        admin(f'CREATE DATABASE "{name}"')
    except (OSError, asyncio.TimeoutError) as exc:
        pytest.skip(f"Postgres is unreachable at {POSTGRES}: {exc}")
    url = f"{POSTGRES}/{name}"
    try:
        upgrade_sync(url)
        asyncio.run(apply_schema(url))
        yield name
    finally:
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_postgres(postgres_template: str) -> Iterator[str]:
    """A fresh database for one test, already at the newest schema; dropped after it."""
    name = f"makeitmove_t_{uuid4().hex[:12]}"
    admin(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"')
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
