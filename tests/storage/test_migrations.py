"""Migrations on databases that hold jobs: 0003 keeps every payload and moves keys to their per-user scope and
back; 0004 makes every earlier job an animation and gives the column back on a downgrade."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from alembic import command

from storage.database import alembic_config, create_engine, writer
from storage.models import UtcDateTime
from storage.statements import idempotency_scope
from tests.storage.conftest import new_job, opened

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
HEAD = "0006"
KEYED = 1037  # more than two of the migration's batches of 500, and a part of a third
# The tables as revision 0002 left them, frozen here as the migrations freeze theirs.
OLD_JOBS = sa.table(
    "jobs",
    *(sa.column(name, sa.String()) for name in ("id", "status", "platform", "user_id", "chat_id", "idempotency_key")),
    sa.column("is_admin", sa.Boolean()),
    sa.column("options", sa.JSON()),
    sa.column("seed", sa.BigInteger()),
    sa.column("attempts", sa.Integer()),
    sa.column("fraction", sa.Float()),
    sa.column("result_expired", sa.Boolean()),
    sa.column("created_at", UtcDateTime()),
)
PAYLOADS = sa.table(
    "job_payloads", sa.column("job_id", sa.String()), sa.column("image", sa.LargeBinary()),
    sa.column("result", sa.LargeBinary()),
)  # fmt: skip


def old_job(n: int, key: str | None) -> dict[str, object]:
    """A finished job as a 0002-era engine stored it (finished, so no limit counts it)."""
    return {
        "id": f"{n:032x}", "status": "done", "platform": ("telegram", "discord")[n % 2], "user_id": f"u{n % 7}",
        "chat_id": "c", "idempotency_key": key, "is_admin": False, "options": {"prompt": "wave"}, "seed": n,
        "attempts": 1, "fraction": 1.0, "result_expired": False, "created_at": NOW - timedelta(days=30),
    }  # fmt: skip


def payload(n: int) -> dict[str, object]:
    """The job's image, and for every other job a result too."""
    return {"job_id": f"{n:032x}", "image": b"PNG%d" % n, "result": b"GIF%d" % n if n % 2 else None}


async def migrate(url: str, revision: str, *, down: bool = False) -> None:
    """Upgrade or downgrade to `revision` on the engine the repository uses (SQLite: foreign keys on)."""
    engine = create_engine(url)
    step = command.downgrade if down else command.upgrade
    try:
        async with writer(engine).begin() as conn:
            if conn.dialect.name == "sqlite":
                # The premise of this test: with foreign keys on, a rebuilt jobs table empties job_payloads.
                assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
            await conn.run_sync(lambda sync: step(alembic_config(sync), revision))
    finally:
        await engine.dispose()


async def read(url: str) -> tuple[str, dict[str, tuple], dict[str, str | None], list[str]]:
    """The revision, every payload, every job's stored key, and the jobs table's columns."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            version = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar_one()
            blobs = {row[0]: tuple(row[1:]) for row in await conn.execute(sa.select(PAYLOADS))}
            keys = {row[0]: row[1] for row in await conn.execute(sa.select(OLD_JOBS.c.id, OLD_JOBS.c.idempotency_key))}
            columns = await conn.run_sync(lambda sync: [c["name"] for c in sa.inspect(sync).get_columns("jobs")])
    finally:
        await engine.dispose()
    return version, blobs, keys, columns


async def test_0003_keeps_every_payload_and_scopes_each_key_to_its_user_both_ways(blank_url: str) -> None:
    await migrate(blank_url, "0002")
    rows = [old_job(n, f"key-{n}") for n in range(KEYED)] + [old_job(KEYED + n, None) for n in range(3)]
    engine = create_engine(blank_url)
    try:
        async with writer(engine).begin() as conn:
            await conn.execute(sa.insert(OLD_JOBS), rows)
            await conn.execute(sa.insert(PAYLOADS), [payload(n) for n in range(len(rows))])
    finally:
        await engine.dispose()
    blobs = {f"{n:032x}": (b"PNG%d" % n, b"GIF%d" % n if n % 2 else None) for n in range(len(rows))}

    async with opened(blank_url) as repo:  # what an engine does on start: upgrade to the newest revision
        version, kept, keys, columns = await read(blank_url)
        assert version == HEAD and "request_digest" in columns
        assert kept == blobs, "every image and result survives the upgrade"
        asked = (new_job(r["user_id"], platform=r["platform"], idempotency_key=r["idempotency_key"]) for r in rows)
        scoped = {r["id"]: idempotency_scope(job) for r, job in zip(rows, asked)}
        assert keys == scoped, "each key became the scope the repository looks up, in every batch"
        # The owner's retry still finds the job (stored without a digest: any request matches) ...
        again = await repo.submit(new_job("u0", platform="telegram", idempotency_key="key-0", request_digest="d"))
        assert not again.created and again.job.id == f"{0:032x}" and again.job.request_digest is None
        # ... and another user's same key is a job of their own.
        other = await repo.submit(new_job("u1", platform="telegram", idempotency_key="key-0", request_digest="d"))
        assert other.created

    await migrate(blank_url, "0002", down=True)
    version, kept, keys, columns = await read(blank_url)
    assert version == "0002" and "request_digest" not in columns
    assert kept == {**blobs, other.job.id: (b"PNGu1", None)}, "every image and result survives the downgrade"
    assert set(keys.values()) == {None}, "a digest is not a key the old code could look up"

    async with opened(blank_url) as repo:  # and up again
        assert (await read(blank_url))[1] == kept
        assert (await repo.get(f"{0:032x}")).idempotency_key is None  # type: ignore[union-attr]


async def test_0004_makes_every_earlier_job_an_animation_and_drops_the_kind_on_the_way_down(blank_url: str) -> None:
    await migrate(blank_url, "0003")
    engine = create_engine(blank_url)
    try:
        async with writer(engine).begin() as conn:
            await conn.execute(sa.insert(OLD_JOBS), [old_job(n, None) for n in range(3)])
            await conn.execute(sa.insert(PAYLOADS), [payload(n) for n in range(3)])
    finally:
        await engine.dispose()

    async with opened(blank_url) as repo:
        assert {(await repo.get(f"{n:032x}")).kind for n in range(3)} == {"animate"}  # type: ignore[union-attr]
        tuned = await repo.submit(new_job("admin", platform="telegram", kind="tune"))
        assert (await repo.get(tuned.job.id)).kind == "tune"  # type: ignore[union-attr]

    await migrate(blank_url, "0003", down=True)
    version, kept, _keys, columns = await read(blank_url)
    assert version == "0003" and "kind" not in columns
    assert set(kept) == {f"{n:032x}" for n in range(3)} | {tuned.job.id}, "every job's payload survives"
