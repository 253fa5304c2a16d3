"""Claims on real databases: one result per job however many workers believe they hold it."""

from __future__ import annotations

import asyncio
import json

import pytest
from alembic import command
from sqlalchemy import text

from storage.database import alembic_config, create_engine, writer
from storage.repository import INTERRUPTED
from tests.storage.conftest import new_job, opened


async def test_a_worker_that_lost_its_claim_can_neither_progress_nor_finish(url: str) -> None:
    async with opened(url) as repo:
        job = (await repo.submit(new_job())).job
        first = await repo.claim(job.id, worker="host-a:1", max_attempts=3)
        assert first is not None
        record, checkpoint, image = first
        assert (record.status, record.attempts, record.worker, checkpoint, image) == ("running", 1, "host-a:1", None,
                                                                                      b"PNGu1")  # fmt: skip
        assert await repo.progress(job.id, "ocr", 0.2, attempt=1)
        # host-a went silent: its job was handed to host-b, which claims it as attempt 2
        second = await repo.claim(job.id, worker="host-b:2", max_attempts=3)
        assert second is not None and second[0].attempts == 2 and second[0].worker == "host-b:2"
        assert not await repo.progress(job.id, "generate", 0.6, attempt=1)
        assert await repo.finish(job.id, data=b"A", format="gif", script={}, timings={}, attempt=1) is None
        assert await repo.fail(job.id, code="internal_error", message="x.", attempt=1) is None
        assert await repo.progress(job.id, "generate", 0.6, attempt=2)
        done = await repo.finish(job.id, data=b"B", format="gif", script={}, timings={}, attempt=2)
        assert done is not None and done.status == "done" and done.worker == "host-b:2"
        assert await repo.result(job.id) == (b"B", "gif")
        assert await repo.claim(job.id, worker="host-c:3", max_attempts=3) is None, "a final job is never claimed"


async def test_cancel_reaches_the_claim_holder_through_its_next_progress(url: str) -> None:
    async with opened(url) as repo:
        job = (await repo.submit(new_job())).job
        claimed = await repo.claim(job.id, worker="w", max_attempts=3)
        assert claimed is not None
        await repo.cancel(job.id)
        assert not await repo.progress(job.id, "detext", 0.3, attempt=1)
        assert (await repo.get(job.id)).status == "cancelled"  # type: ignore[union-attr]
        queued = (await repo.submit(new_job("u2"))).job
        await repo.cancel(queued.id)
        assert await repo.claim(queued.id, worker="w", max_attempts=3) is None, "a cancelled job never starts"


async def test_a_job_claimed_max_attempts_times_fails_instead_of_running_again(url: str) -> None:
    async with opened(url) as repo:
        job = (await repo.submit(new_job())).job
        for attempt in (1, 2):
            claimed = await repo.claim(job.id, worker=f"w{attempt}", max_attempts=2)
            assert claimed is not None and claimed[0].attempts == attempt
        assert await repo.claim(job.id, worker="w3", max_attempts=2) is None
        failed = await repo.get(job.id)
        assert failed is not None and (failed.status, failed.error_code, failed.error) == ("failed", "interrupted",
                                                                                             INTERRUPTED)  # fmt: skip
        assert failed.attempts == 2


async def test_active_ids_lists_queued_and_running_jobs_oldest_first(url: str) -> None:
    async with opened(url) as repo:
        ids = [(await repo.submit(new_job(f"u{n}"))).job.id for n in range(3)]
        await repo.claim(ids[1], worker="w", max_attempts=3)
        await repo.cancel(ids[2])
        later = (await repo.get(ids[0])).created_at  # type: ignore[union-attr]
        assert await repo.active_ids(created_before=later) == []
        newest = (await repo.get(ids[2])).created_at  # type: ignore[union-attr]
        assert await repo.active_ids(created_before=newest) == ids[:2]


async def test_downgrading_the_claims_keeps_every_job_and_its_payload(url: str) -> None:
    async with opened(url) as repo:
        job = (await repo.submit(new_job())).job
        await repo.claim(job.id, worker="w", max_attempts=3)
    engine = create_engine(url)
    try:
        async with writer(engine).begin() as conn:
            await conn.run_sync(lambda sync: command.downgrade(alembic_config(sync), "0001"))
        async with engine.connect() as conn:
            rows = (
                await conn.execute(text("SELECT j.status, p.image FROM jobs j JOIN job_payloads p ON p.job_id = j.id"))
            ).all()
    finally:
        await engine.dispose()
    assert [tuple(row) for row in rows] == [("running", b"PNGu1")]
    async with opened(url) as repo:  # and back up to the newest revision
        assert await repo.image(job.id) == b"PNGu1"
        assert (await repo.get(job.id)).worker is None  # type: ignore[union-attr]


async def test_postgres_notifies_every_change_to_a_job(postgres_url: str) -> None:
    asyncpg = pytest.importorskip("asyncpg")
    heard: asyncio.Queue[dict] = asyncio.Queue()
    listener = await asyncpg.connect(postgres_url)
    await listener.add_listener("makeitmove_jobs", lambda *args: heard.put_nowait(json.loads(args[-1])))
    try:
        async with opened(postgres_url) as repo:
            job = (await repo.submit(new_job("notify-user"))).job
            await repo.claim(job.id, worker="w", max_attempts=3)
            assert await asyncio.wait_for(heard.get(), 5) == {"id": job.id, "moved": True}  # it left the queue
            await repo.progress(job.id, "ocr", 0.1, attempt=1)
            assert await asyncio.wait_for(heard.get(), 5) == {"id": job.id, "moved": False}
            await repo.finish(job.id, data=b"x", format="gif", script={}, timings={}, attempt=1)
            assert await asyncio.wait_for(heard.get(), 5) == {"id": job.id, "moved": False}
            await repo.sweep(retention_days=0.0)
            await asyncio.sleep(0.2)
            assert heard.empty(), "the sweep touches no watched column"
    finally:
        await listener.close()
