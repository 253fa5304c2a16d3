"""Storage fixtures: a real SQLite file per test, and a throwaway Postgres database per session."""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from storage.database import upgrade_sync
from storage.records import Limits, NewJob
from storage.repository import Repository

POSTGRES = os.environ.get("MAKEITMOVE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
TABLES = "jobs, job_payloads, bans, settings, gallery, web_sessions"
# Loose enough that only the limit a test is about can bite.
ROOMY = Limits(user_jobs=100, user_window_s=600, user_concurrent=100, chat_jobs=100, chat_window_s=600, queue_max=100)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run `async def` tests in a fresh event loop, so no asyncio plugin is needed."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    arguments = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(asyncio.wait_for(pyfuncitem.obj(**arguments), timeout=60))
    return True


async def _admin(sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(f"{POSTGRES}/postgres", timeout=3)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated Postgres database for this test session, dropped at the end."""
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        pytest.skip("asyncpg is not installed (pip install asyncpg)")
    name = f"makeitmove_test_{uuid4().hex[:12]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncio.TimeoutError) as exc:
        pytest.skip(f"Postgres is unreachable at {POSTGRES}: {exc}")
    url = f"{POSTGRES}/{name}"
    upgrade_sync(url)
    yield url
    asyncio.run(_admin(f'DROP DATABASE "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgres"])
def blank_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each backend in turn, with no tables at all: a new SQLite file, or a new Postgres database dropped after."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'jobs.db'}"
        return
    request.getfixturevalue("postgres_url")  # skips when Postgres is unreachable
    name = f"makeitmove_blank_{uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _empty(url: str) -> None:
    async def truncate() -> None:
        import asyncpg

        connection = await asyncpg.connect(url)
        try:
            await connection.execute(f"TRUNCATE {TABLES}")
        finally:
            await connection.close()

    asyncio.run(truncate())


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file in a directory that does not exist yet."""
    return f"sqlite:///{tmp_path / 'data' / 'jobs.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each backend in turn: a new SQLite file, or the session's Postgres database emptied."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'jobs.db'}"
    postgres: str = request.getfixturevalue("postgres_url")
    _empty(postgres)
    return postgres


@asynccontextmanager
async def opened(url: str, limits: Limits = ROOMY) -> AsyncIterator[Repository]:
    """A repository for the length of a block."""
    repository = await Repository.open(url, default_limits=limits)
    try:
        yield repository
    finally:
        await repository.close()


def new_job(user: str = "u1", chat: str = "c1", *, platform: str = "telegram", **fields: Any) -> NewJob:
    """A submission with a small fake image."""
    values: dict[str, Any] = dict(options={"prompt": "wave"}, seed=42, image=b"PNG" + user.encode(), is_admin=False)
    values.update(fields)
    return NewJob(platform=platform, user_id=user, chat_id=chat, **values)
