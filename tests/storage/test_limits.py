"""Rate limits, enforced atomically by the repository: every limit, admin exemption, and races."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from datetime import datetime, timedelta, timezone

import pytest

from storage.limits import duration
from storage.records import Limits, Rejected, Submitted
from storage.repository import Repository
from tests.storage.conftest import ROOMY, new_job, opened

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)


def limits(**changes: int) -> Limits:
    """Roomy limits with a few tightened."""
    return dataclasses.replace(ROOMY, **changes)


async def refused(repo: Repository, *args: object, now: datetime, **kwargs: object) -> Rejected:
    """The Rejected a submission raises (fails the test if it is accepted)."""
    with pytest.raises(Rejected) as caught:
        await repo.submit(new_job(*args, **kwargs), now=now)  # type: ignore[arg-type]
    return caught.value


async def test_the_user_window_refuses_with_when_to_retry(url: str) -> None:
    async with opened(url, limits(user_jobs=3, user_window_s=600)) as repo:
        for minute in (0, 1, 2):
            await repo.submit(new_job(), now=T0 + timedelta(minutes=minute))
        rejected = await refused(repo, now=T0 + timedelta(minutes=3))
        assert rejected.code == "rate_limited"
        assert rejected.retry_after == pytest.approx(420), "the job from T0 leaves the window at T0 + 10 min"
        assert "7 minutes" in rejected.message and rejected.message.endswith(".")
        assert (await repo.submit(new_job("u2"), now=T0 + timedelta(minutes=3))).created, "other users are not affected"
        late = await refused(repo, now=T0 + timedelta(seconds=599))
        assert late.retry_after == pytest.approx(1)
        assert (await repo.submit(new_job(), now=T0 + timedelta(seconds=601))).created


async def test_a_lowered_limit_waits_for_enough_jobs_to_leave(url: str) -> None:
    async with opened(url, limits(user_jobs=4, user_window_s=600)) as repo:
        for minute in (0, 1, 2, 3):
            await repo.submit(new_job(), now=T0 + timedelta(minutes=minute))
        await repo.set_limits(limits(user_jobs=2, user_window_s=600))
        rejected = await refused(repo, now=T0 + timedelta(minutes=5))
        # Three of the four must leave before one more fits under 2: the one from minute 2 is the last.
        assert rejected.retry_after == pytest.approx(7 * 60)


async def test_too_many_jobs_at_once_are_refused_until_one_ends(url: str) -> None:
    async with opened(url, limits(user_concurrent=2)) as repo:
        first = (await repo.submit(new_job(), now=T0)).job
        second = (await repo.submit(new_job(), now=T0)).job
        await repo.start(first.id, checkpoint=None)
        rejected = await refused(repo, now=T0)
        assert rejected.code == "rate_limited" and 0 < rejected.retry_after <= 60  # type: ignore[operator]
        assert "2 animations" in rejected.message
        await repo.cancel(second.id)
        assert (await repo.submit(new_job(), now=T0)).created


async def test_a_busy_chat_is_refused_whoever_asks(url: str) -> None:
    async with opened(url, limits(chat_jobs=2, chat_window_s=300)) as repo:
        await repo.submit(new_job("a", "group"), now=T0)
        await repo.submit(new_job("b", "group"), now=T0 + timedelta(seconds=60))
        rejected = await refused(repo, "c", "group", now=T0 + timedelta(seconds=100))
        assert rejected.code == "rate_limited" and rejected.retry_after == pytest.approx(200)
        assert "chat" in rejected.message
        assert (await repo.submit(new_job("c", "elsewhere"), now=T0)).created
        assert (await repo.submit(new_job("c", "group", platform="discord"), now=T0)).created


async def test_a_full_queue_refuses_everyone_even_admins(url: str) -> None:
    async with opened(url, limits(queue_max=2)) as repo:
        first = (await repo.submit(new_job("a"), now=T0)).job
        await repo.submit(new_job("b"), now=T0)
        assert (await refused(repo, "c", now=T0)).code == "queue_full"
        assert (await refused(repo, "root", now=T0, is_admin=True)).code == "queue_full"
        await repo.start(first.id, checkpoint=None)  # running jobs have left the queue
        assert (await repo.submit(new_job("c"), now=T0)).created


async def test_admins_skip_the_user_and_chat_limits(url: str) -> None:
    async with opened(url, limits(user_jobs=1, user_concurrent=1, chat_jobs=1)) as repo:
        for _ in range(3):
            assert (await repo.submit(new_job("root", is_admin=True), now=T0)).created
        assert (await refused(repo, "u2", now=T0)).code == "rate_limited", "the admin's jobs still fill the chat"


async def test_quota_reports_what_is_left(url: str) -> None:
    async with opened(url, limits(user_jobs=5, user_window_s=600, user_concurrent=2)) as repo:
        empty = await repo.quota("telegram", "u1", now=T0)
        assert (empty.jobs_left, empty.jobs_limit, empty.window_s) == (5, 5, 600)
        assert (empty.concurrent_left, empty.concurrent_limit, empty.refills_at) == (2, 2, None)
        first = (await repo.submit(new_job(), now=T0)).job
        await repo.submit(new_job(), now=T0 + timedelta(minutes=2))
        await repo.start(first.id, checkpoint=None)
        await repo.finish(first.id, data=b"GIF", format="gif", script={}, timings={})
        used = await repo.quota("telegram", "u1", now=T0 + timedelta(minutes=5))
        assert (used.jobs_left, used.concurrent_left) == (3, 1)
        assert used.refills_at == T0 + timedelta(minutes=10)
        later = await repo.quota("telegram", "u1", now=T0 + timedelta(minutes=11))
        assert (later.jobs_left, later.refills_at) == (4, T0 + timedelta(minutes=12))


def test_waits_read_like_a_person_wrote_them() -> None:
    assert [duration(s) for s in (0.2, 1, 45, 60, 75, 420, 3600, 5400, 7201)] == [
        "1 second", "1 second", "45 seconds", "1 minute", "75 seconds", "7 minutes", "1 hour", "90 minutes", "3 hours"
    ]  # fmt: skip


async def race(repos: list[Repository], submissions: int) -> list[Submitted | Rejected]:
    """One user submitting `submissions` times at once, spread over the repositories."""

    async def one(repo: Repository) -> Submitted | Rejected:
        try:
            return await repo.submit(new_job(), now=T0)
        except Rejected as rejected:
            return rejected

    return await asyncio.gather(*(one(repo) for repo, _ in zip(itertools.cycle(repos), range(submissions))))


async def check_race(url: str, instances: int) -> None:
    """100 simultaneous submissions with a limit of 5: exactly 5 jobs, 95 refusals."""
    rules = limits(user_jobs=5, user_concurrent=1000, chat_jobs=1000, queue_max=1000)
    repos = [await Repository.open(url, default_limits=rules) for _ in range(instances)]
    try:
        outcomes = await race(repos, 100)
        accepted = [o for o in outcomes if isinstance(o, Submitted)]
        assert len(accepted) == 5
        assert all(isinstance(o, Rejected) and o.code == "rate_limited" for o in outcomes if o not in accepted)
        assert len(await repos[0].history("telegram", "u1", limit=1000)) == 5
    finally:
        for repo in repos:
            await repo.close()


async def test_simultaneous_submissions_on_sqlite_from_several_processes(sqlite_url: str) -> None:
    await check_race(sqlite_url, instances=4)


async def test_simultaneous_submissions_on_postgres(postgres_url: str) -> None:
    from tests.storage.conftest import _empty

    await asyncio.to_thread(_empty, postgres_url)
    await check_race(postgres_url, instances=3)
