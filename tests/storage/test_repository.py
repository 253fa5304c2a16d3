"""The repository on real databases: a job's whole life, idempotency, bans, recovery, retention, settings."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from storage.database import async_url, upgrade, upgrade_sync
from storage.records import Limits, Rejected
from storage.repository import INTERRUPTED, Repository
from tests.storage.conftest import ROOMY, new_job, opened

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)


async def test_a_job_goes_from_queued_to_done_with_its_result(url: str) -> None:
    async with opened(url) as repo:
        submitted = await repo.submit(new_job(options={"prompt": "wave", "format": "gif"}))
        job = submitted.job
        assert submitted.created and job.status == "queued" and len(job.id) == 32
        assert job.options == {"prompt": "wave", "format": "gif"} and job.attempts == 0
        assert job.created_at.tzinfo == timezone.utc
        assert await repo.position(job.id) == 1
        assert await repo.queued_ids() == [job.id]
        assert await repo.image(job.id) == b"PNGu1"

        running = await repo.start(job.id, checkpoint="pixar")
        assert running is not None and running.status == "running" and running.attempts == 1
        assert running.checkpoint == "pixar" and running.started_at is not None
        assert await repo.start(job.id, checkpoint=None) is None, "a running job cannot start twice"
        assert await repo.position(job.id) is None

        await repo.progress(job.id, "ocr", 0.25)
        got = await repo.get(job.id)
        assert got is not None and (got.stage, got.fraction) == ("ocr", 0.25)

        done = await repo.finish(job.id, data=b"GIF89a", format="gif", script={"text": "hi"}, timings={"ocr": 0.5})
        assert done is not None and done.status == "done" and done.final
        assert (done.result_format, done.result_bytes, done.fraction) == ("gif", 6, 1.0)
        assert done.script == {"text": "hi"} and done.timings == {"ocr": 0.5}
        assert done.finished_at is not None and done.finished_at.tzinfo == timezone.utc
        assert done.finished_at >= done.started_at  # type: ignore[operator]
        assert await repo.result(job.id) == (b"GIF89a", "gif")
        assert await repo.get(job.id) == done

        assert await repo.finish(job.id, data=b"x", format="gif", script={}, timings={}) is None
        assert await repo.fail(job.id, code="x", message="x") is None
        assert await repo.cancel(job.id) == done, "cancelling a final job changes nothing"


async def test_cancel_and_fail_end_active_jobs_only(url: str) -> None:
    async with opened(url) as repo:
        queued = (await repo.submit(new_job("a"))).job
        running = (await repo.submit(new_job("b"))).job
        doomed = (await repo.submit(new_job("c"))).job
        await repo.start(running.id, checkpoint=None)

        cancelled = await repo.cancel(queued.id)
        assert cancelled is not None and cancelled.status == "cancelled" and cancelled.finished_at is not None
        assert await repo.start(queued.id, checkpoint=None) is None, "a cancelled job never runs"
        assert (await repo.cancel(running.id)).status == "cancelled"  # type: ignore[union-attr]
        assert await repo.finish(running.id, data=b"x", format="gif", script={}, timings={}) is None
        assert await repo.result(running.id) is None
        assert await repo.cancel("0" * 32) is None

        failed = await repo.fail(doomed.id, code="bad_image", message="That file isn't an image I can read.")
        assert failed is not None and (failed.status, failed.error_code) == ("failed", "bad_image")
        assert failed.error == "That file isn't an image I can read."
        assert await repo.queued_ids() == []


async def test_an_admin_has_one_training_job_at_a_time_and_a_training_job_keeps_no_result(url: str) -> None:
    async with opened(url) as repo:
        admin = {"is_admin": True, "options": {"name": "wiggle", "prompt": "a cat waves"}}
        tune = (await repo.submit(new_job("boss", kind="tune", **admin))).job
        assert tune.kind == "tune" and tune.training
        with pytest.raises(Rejected) as refused:
            await repo.submit(new_job("boss", kind="train", **admin))
        assert refused.value.code == "training_busy" and "already have a training job" in refused.value.message
        assert (await repo.submit(new_job("boss", **admin))).created, "animations are not held back"
        assert (await repo.submit(new_job("other", kind="train", **admin))).created, "another admin's is not"

        await repo.start(tune.id, checkpoint=None)
        done = await repo.finish(tune.id, data=None, format=None, script={"checkpoint_made": "wiggle"}, timings={})
        assert done is not None and (done.result_format, done.result_bytes) == (None, None)
        assert await repo.result(tune.id) is None, "a checkpoint is not served as a result"
        assert (await repo.submit(new_job("boss", kind="train", **admin))).created, "free again once it ended"


async def test_positions_follow_submission_order_even_within_one_instant(url: str) -> None:
    async with opened(url) as repo:
        ids = [(await repo.submit(new_job(f"u{i}"), now=T0)).job.id for i in range(3)]
        later = (await repo.submit(new_job("u9"), now=T0 + timedelta(seconds=1))).job.id
        assert [await repo.position(i) for i in ids + [later]] == [1, 2, 3, 4]
        assert await repo.queued_ids() == ids + [later]
        await repo.start(ids[0], checkpoint=None)
        assert [await repo.position(i) for i in ids + [later]] == [None, 1, 2, 3]
        assert await repo.position("f" * 32) is None


async def test_the_same_idempotency_key_twice_makes_one_job(url: str) -> None:
    limits = Limits(user_jobs=1, user_window_s=600, user_concurrent=1, chat_jobs=10, chat_window_s=600, queue_max=10)
    async with opened(url, limits) as repo:
        first = await repo.submit(new_job(idempotency_key="tg:update:1"), now=T0)
        # The retry arrives when the user is at every limit: it still gets its own job back.
        again = await repo.submit(new_job(idempotency_key="tg:update:1"), now=T0 + timedelta(seconds=5))
        assert first.created and not again.created
        assert again.job.id == first.job.id
        assert [j.id for j in await repo.history("telegram", "u1")] == [first.job.id]
        # Keys are per user: another user's same key is a job of their own, and never finds this one.
        other = await repo.submit(new_job("u2", idempotency_key="tg:update:1"), now=T0)
        assert other.created and other.job.id != first.job.id and other.job.user_id == "u2"
        mine = await repo.submit(new_job(idempotency_key="tg:update:1"), now=T0 + timedelta(seconds=6))
        assert not mine.created and mine.job.id == first.job.id


async def test_banned_users_are_refused_until_unbanned(url: str) -> None:
    async with opened(url) as repo:
        ban = await repo.ban("discord", "troll", reason="spam")
        assert (ban.platform, ban.user_id, ban.reason) == ("discord", "troll", "spam")
        assert await repo.ban("discord", "troll", reason="again") == ban, "banning twice keeps the first ban"
        assert await repo.bans() == [ban]
        with pytest.raises(Rejected) as refused:
            await repo.submit(new_job("troll", platform="discord", is_admin=True))
        assert refused.value.code == "banned" and refused.value.message == "You can't use this bot right now."
        assert (await repo.submit(new_job("troll", platform="telegram"))).created, "a ban is per platform"

        assert await repo.unban("discord", "troll") is True
        assert await repo.unban("discord", "troll") is False
        assert await repo.bans() == []
        assert (await repo.submit(new_job("troll", platform="discord"))).created


async def test_recover_requeues_interrupted_jobs_and_fails_those_interrupted_too_often(url: str) -> None:
    async with opened(url) as repo:
        fresh = (await repo.submit(new_job("a"))).job
        tired = (await repo.submit(new_job("b"))).job
        waiting = (await repo.submit(new_job("c"))).job
        for _ in range(2):  # started and interrupted twice: still worth another try
            await repo.start(tired.id, checkpoint=None)
            assert await repo.recover(max_attempts=3) == ([tired.id], [])
        await repo.start(tired.id, checkpoint=None)  # the third and last attempt
        await repo.start(fresh.id, checkpoint=None)
        await repo.progress(fresh.id, "generate", 0.6)
        requeued, failed = await repo.recover(max_attempts=3)
        assert (requeued, failed) == ([fresh.id], [tired.id])

        again = await repo.get(fresh.id)
        assert again is not None and again.status == "queued" and again.attempts == 1
        assert (again.stage, again.fraction, again.started_at) == (None, 0.0, None)
        gone = await repo.get(tired.id)
        assert gone is not None and (gone.status, gone.error_code, gone.error) == ("failed", "interrupted", INTERRUPTED)
        assert gone.attempts == 3 and gone.finished_at is not None
        assert (await repo.get(waiting.id)).status == "queued"  # type: ignore[union-attr]
        assert await repo.recover(max_attempts=3) == ([], [])


async def test_sweep_drops_old_blobs_and_keeps_the_rows(url: str) -> None:
    async with opened(url) as repo:
        old = (await repo.submit(new_job("a"))).job
        await repo.start(old.id, checkpoint=None)
        await repo.finish(old.id, data=b"GIF", format="gif", script={}, timings={})
        queued = (await repo.submit(new_job("b"))).job

        assert await repo.sweep(retention_days=7) == 0, "nothing is old enough yet"
        assert await repo.result(old.id) == (b"GIF", "gif")

        eight_days_on = datetime.now(timezone.utc) + timedelta(days=8)
        assert await repo.sweep(retention_days=7, now=eight_days_on) == 1
        swept = await repo.get(old.id)
        assert swept is not None and swept.status == "done" and swept.result_expired
        assert swept.result_bytes == 3, "the row still says what was made"
        assert await repo.result(old.id) is None and await repo.image(old.id) is None
        assert await repo.image(queued.id) == b"PNGb", "a queued job keeps its image whatever its age"
        assert await repo.sweep(retention_days=7, now=eight_days_on) == 0


async def test_history_is_newest_first_and_limited(url: str) -> None:
    async with opened(url) as repo:
        ids = [(await repo.submit(new_job(), now=T0 + timedelta(minutes=i))).job.id for i in range(4)]
        await repo.submit(new_job("someone-else"), now=T0)
        await repo.submit(new_job(platform="discord"), now=T0)
        assert [j.id for j in await repo.history("telegram", "u1")] == ids[::-1]
        assert [j.id for j in await repo.history("telegram", "u1", limit=2)] == [ids[3], ids[2]]
        assert await repo.history("telegram", "nobody") == []


async def test_limits_and_checkpoint_persist_across_reopening(url: str) -> None:
    changed = Limits(user_jobs=2, user_window_s=60, user_concurrent=1, chat_jobs=3, chat_window_s=120, queue_max=9)
    async with opened(url) as repo:
        assert await repo.limits() == ROOMY
        assert await repo.active_checkpoint() is None
        assert await repo.set_limits(changed) == changed
        await repo.set_active_checkpoint("pixar-v2")
        with pytest.raises(ValueError, match="queue_max"):
            await repo.set_limits(Limits(1, 60, 1, 1, 60, 0))
    async with opened(url, ROOMY) as repo:
        assert await repo.limits() == changed
        assert await repo.active_checkpoint() == "pixar-v2"
        await repo.set_active_checkpoint(None)
        assert await repo.active_checkpoint() is None


async def test_stats_count_what_admins_see(url: str) -> None:
    async with opened(url) as repo:
        a = (await repo.submit(new_job("a"))).job
        b = (await repo.submit(new_job("b"))).job
        await repo.submit(new_job("b"))
        await repo.submit(new_job("old"), now=datetime.now(timezone.utc) - timedelta(days=2))
        await repo.start(a.id, checkpoint=None)
        await repo.finish(a.id, data=b"GIF", format="gif", script={}, timings={})
        await repo.cancel(b.id)
        await repo.ban("telegram", "x")
        await repo.set_active_checkpoint("lora")
        stats = await repo.stats()
        assert stats.jobs_by_status == {"queued": 2, "running": 0, "done": 1, "failed": 0, "cancelled": 1}
        assert (stats.queue_depth, stats.jobs_last_24h, stats.users_last_24h) == (2, 3, 2)
        assert (stats.bans, stats.active_checkpoint) == (1, "lora")
        assert stats.mean_seconds_last_100 is not None and 0 <= stats.mean_seconds_last_100 < 5


async def test_opening_twice_migrates_once(url: str) -> None:
    async with opened(url) as first, opened(url) as second:
        job = (await first.submit(new_job())).job
        assert await second.get(job.id) == job
    await upgrade(url)  # what `makeitmove db upgrade` runs: a no-op at head
    async with opened(url) as third:
        assert (await third.get(job.id)) == job


def test_sqlite_file_is_created_in_wal_mode_at_head(sqlite_url: str) -> None:
    upgrade_sync(sqlite_url)
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [("0006",)]


def test_urls_get_an_async_driver_unless_they_name_one() -> None:
    assert async_url("sqlite:///data/x.db").drivername == "sqlite+aiosqlite"
    assert async_url("sqlite:////abs/x.db").database == "/abs/x.db"
    assert async_url("postgresql://u@h/db").drivername == "postgresql+asyncpg"
    assert async_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    with pytest.raises(ValueError, match="mysql"):
        async_url("mysql://u@h/db")


async def test_naive_datetimes_are_refused(sqlite_url: str) -> None:
    async with opened(sqlite_url) as repo:
        with pytest.raises(ValueError, match="timezone-aware"):
            await repo.submit(new_job(), now=datetime(2026, 1, 1))


async def test_open_refuses_invalid_default_limits(sqlite_url: str) -> None:
    with pytest.raises(ValueError, match="user_jobs"):
        await Repository.open(sqlite_url, default_limits=Limits(0, 60, 1, 1, 60, 1))
