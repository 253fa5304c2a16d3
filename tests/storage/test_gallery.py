"""The gallery on real databases: sharing, the page's order and filters, take-downs, and a job's deletion."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from storage.database import create_engine, writer
from storage.repository import Repository
from tests.storage.conftest import new_job, opened
from tests.storage.test_migrations import migrate, read

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
SCRIPT = {"ocr": [{"text": "MONDAY", "box": [0, 0, 9, 9], "confidence": 0.9}], "meme_text": "MONDAY AGAIN"}


async def done_job(repo: Repository, user: str = "u1", **fields: Any) -> str:
    """A job that ran and made its result; its id."""
    job = (await repo.submit(new_job(user, **fields))).job
    await repo.start(job.id, checkpoint=None)
    data, fmt = (None, None) if fields.get("kind") in ("tune", "train") else (b"GIF89a", "gif")
    await repo.finish(job.id, data=data, format=fmt, script=SCRIPT, timings={})
    return job.id


async def test_sharing_is_idempotent_and_the_entry_says_what_the_job_was(url: str) -> None:
    async with opened(url) as repo:
        job_id = await done_job(repo, "alice", chat="room", options={"prompt": "the cat waves", "format": "gif"})
        entry = await repo.share(job_id, now=T0)
        assert entry is not None and entry.job_id == job_id and not entry.removed
        assert (entry.platform, entry.user_id, entry.chat_id, entry.kind) == ("telegram", "alice", "room", "animate")
        assert (entry.prompt, entry.caption, entry.result_format) == ("the cat waves", "MONDAY AGAIN", "gif")
        assert entry.shared_at == T0 and entry.created_at.tzinfo == timezone.utc

        again = await repo.share(job_id, now=T0 + timedelta(hours=1))
        assert again == entry, "sharing twice keeps the first share"
        assert await repo.gallery_entry(job_id) == entry
        assert await repo.gallery(10) == [entry]
        assert await repo.share("0" * 32) is None, "no such job"
        assert await repo.gallery_entry("0" * 32) is None

        quiet = await done_job(repo, "bob", options={})
        plain = await repo.share(quiet, now=T0)
        assert plain is not None and plain.prompt is None


async def test_the_gallery_is_newest_first_in_pages_and_holds_only_kept_animations_and_remixes(url: str) -> None:
    async with opened(url) as repo:
        expired = await done_job(repo)
        await repo.sweep(retention_days=1, now=datetime.now(timezone.utc) + timedelta(days=2))
        shown = [await done_job(repo, f"u{n}") for n in range(3)]
        remix = await done_job(repo, "r", kind="remix")
        tune = await done_job(repo, "boss", kind="tune", is_admin=True, options={"name": "wiggle"})
        queued = (await repo.submit(new_job("q"))).job.id
        for n, job_id in enumerate([expired, *shown, remix, tune, queued]):
            await repo.share(job_id, now=T0 + timedelta(minutes=n))

        page = await repo.gallery(10)
        assert [e.job_id for e in page] == [remix, *reversed(shown)], "no expired, tune or unfinished job"
        assert page[0].kind == "remix"
        assert [e.job_id for e in await repo.gallery(2, offset=1)] == [shown[2], shown[1]]
        assert await repo.gallery(5, offset=4) == []
        with pytest.raises(ValueError, match="limit"):
            await repo.gallery(0)


async def test_a_take_down_keeps_the_result_out_for_good(url: str) -> None:
    async with opened(url) as repo:
        kept, taken = await done_job(repo, "a"), await done_job(repo, "b")
        never = await done_job(repo, "c")
        await repo.share(kept, now=T0)
        await repo.share(taken, now=T0 + timedelta(minutes=1))
        assert await repo.shared_ids([kept, taken, never, "0" * 32]) == {kept, taken}

        assert await repo.remove_from_gallery(taken, now=T0 + timedelta(hours=1)) is True
        assert await repo.remove_from_gallery(taken) is False, "already taken down"
        assert await repo.remove_from_gallery(never) is False, "never shared"
        assert [e.job_id for e in await repo.gallery(10)] == [kept]
        assert await repo.shared_ids([kept, taken]) == {kept}
        assert await repo.shared_ids([]) == set()

        refused = await repo.share(taken, now=T0 + timedelta(hours=2))
        assert refused is not None and refused.removed_at == T0 + timedelta(hours=1), "the caller can refuse it"
        assert refused.shared_at == T0 + timedelta(minutes=1)
        assert [e.job_id for e in await repo.gallery(10)] == [kept], "sharing again doesn't bring it back"


async def test_a_job_deleted_from_the_database_leaves_the_gallery_with_it(url: str) -> None:
    async with opened(url) as repo:
        gone, stays = await done_job(repo, "a"), await done_job(repo, "b")
        await repo.share(gone, now=T0)
        await repo.share(stays, now=T0)
        engine = create_engine(url)
        try:
            async with writer(engine).begin() as conn:
                await conn.execute(sa.text("DELETE FROM job_payloads WHERE job_id = :id"), {"id": gone})
                await conn.execute(sa.text("DELETE FROM jobs WHERE id = :id"), {"id": gone})
        finally:
            await engine.dispose()
        assert await repo.gallery_entry(gone) is None, "ON DELETE CASCADE"
        assert [e.job_id for e in await repo.gallery(10)] == [stays]


async def test_0005_adds_the_gallery_to_a_database_with_jobs_and_takes_it_away_again(blank_url: str) -> None:
    await migrate(blank_url, "0004")
    async with opened(blank_url) as repo:  # up to the newest revision, through 0005
        job_id = await done_job(repo)
        assert await repo.share(job_id, now=T0) is not None
    await migrate(blank_url, "0004", down=True)
    version, kept, _keys, _columns = await read(blank_url)
    engine = create_engine(blank_url)
    try:
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
    finally:
        await engine.dispose()
    assert version == "0004" and "gallery" not in tables and job_id in kept, "the job stays, its share goes"
    async with opened(blank_url) as repo:  # and up again, with nothing shared
        assert await repo.gallery(10) == [] and (await repo.get(job_id)) is not None
