"""The dashboard's reads and sessions on real databases: the history search, the live queue, stats rows, sign-ins."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import uuid4

import pytest

from storage.dashboard import JobQuery
from storage.records import JobRecord
from storage.repository import Repository
from tests.storage.conftest import new_job, opened

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
PARIS = timezone(timedelta(hours=2))


def minute(n: float) -> datetime:
    """`n` minutes after T0."""
    return T0 + timedelta(minutes=n)


def ids(jobs: list[JobRecord]) -> list[str]:
    """The jobs' ids, in the order given."""
    return [job.id for job in jobs]


def a_digest() -> str:
    """A session digest no other test uses (the Postgres database is shared across tests)."""
    return hashlib.sha256(uuid4().bytes).hexdigest()


async def submit(repo: Repository, at: datetime, user: str = "u1", chat: str = "c1", **fields: Any) -> str:
    """A queued job created at `at`; its id."""
    return (await repo.submit(new_job(user, chat, **fields), now=at)).job.id


async def done(repo: Repository, job_id: str) -> None:
    """Run the job to a finished result."""
    assert await repo.start(job_id, checkpoint=None) is not None
    assert await repo.finish(job_id, data=b"GIF", format="gif", script={}, timings={}) is not None


async def a_mixed_history(repo: Repository) -> dict[str, str]:
    """Five jobs, one per status, spread over platforms, users, chats and kinds; their ids by name."""
    jobs = {
        "a": await submit(repo, minute(0), "u1", "c1", platform="telegram"),
        "b": await submit(repo, minute(1), "u2", "c1", platform="telegram", kind="remix"),
        "c": await submit(repo, minute(2), "u1", "c2", platform="discord"),
        "d": await submit(
            repo, minute(3), "u3", "c2", platform="discord", kind="tune", is_admin=True, options={"name": "wiggle"}
        ),
        "e": await submit(repo, minute(4), "u1", "c3", platform="telegram"),
    }
    await done(repo, jobs["a"])
    assert await repo.fail(jobs["b"], code="bad_image", message="That file isn't an image I can read.") is not None
    assert await repo.cancel(jobs["c"]) is not None
    assert await repo.start(jobs["d"], checkpoint=None) is not None
    return jobs


async def test_each_filter_alone_narrows_the_history_to_its_matches_newest_first(url: str) -> None:
    async with opened(url) as repo:
        j = await a_mixed_history(repo)
        queries = {
            "nothing set": JobQuery(),
            "platform telegram": JobQuery(platform="telegram"),
            "platform discord": JobQuery(platform="discord"),
            "platform nobody uses": JobQuery(platform="matrix"),
            "user u1 (on both platforms)": JobQuery(user_id="u1"),
            "user u2": JobQuery(user_id="u2"),
            "chat c2": JobQuery(chat_id="c2"),
            "status done": JobQuery(status="done"),
            "status failed": JobQuery(status="failed"),
            "status cancelled": JobQuery(status="cancelled"),
            "status running": JobQuery(status="running"),
            "status queued": JobQuery(status="queued"),
            "kind animate": JobQuery(kind="animate"),
            "kind remix": JobQuery(kind="remix"),
            "kind tune": JobQuery(kind="tune"),
            "kind train": JobQuery(kind="train"),
        }
        expected = {
            "nothing set": ["e", "d", "c", "b", "a"],
            "platform telegram": ["e", "b", "a"],
            "platform discord": ["d", "c"],
            "platform nobody uses": [],
            "user u1 (on both platforms)": ["e", "c", "a"],
            "user u2": ["b"],
            "chat c2": ["d", "c"],
            "status done": ["a"],
            "status failed": ["b"],
            "status cancelled": ["c"],
            "status running": ["d"],
            "status queued": ["e"],
            "kind animate": ["e", "c", "a"],
            "kind remix": ["b"],
            "kind tune": ["d"],
            "kind train": [],
        }
        name = {job_id: n for n, job_id in j.items()}
        got = {}
        for label, query in queries.items():
            jobs, total = await repo.search_jobs(query)
            got[label] = [name[job.id] for job in jobs]
            assert total == len(jobs), f"{label}: total {total} for {len(jobs)} jobs on one page"
        assert got == expected


async def test_since_is_inclusive_and_until_exclusive_to_the_microsecond(url: str) -> None:
    async with opened(url) as repo:
        at = [minute(0), minute(1), minute(2) - timedelta(microseconds=1), minute(2), minute(3)]
        j = [await submit(repo, moment, f"u{n}") for n, moment in enumerate(at)]

        async def found(query: JobQuery) -> list[str]:
            jobs, total = await repo.search_jobs(query)
            assert total == len(jobs)
            return ids(jobs)

        assert await found(JobQuery(since=minute(1))) == [j[4], j[3], j[2], j[1]]
        assert await found(JobQuery(until=minute(2))) == [j[2], j[1], j[0]], "a job just before `until` counts"
        assert await found(JobQuery(since=minute(1), until=minute(3))) == [j[3], j[2], j[1]]
        assert await found(JobQuery(since=minute(2), until=minute(2))) == []
        assert await found(JobQuery(since=minute(3) + timedelta(microseconds=1))) == []
        # The same instants in another zone select the same jobs.
        assert await found(JobQuery(since=minute(1).astimezone(PARIS), until=minute(2).astimezone(PARIS))) == [
            j[2],
            j[1],
        ]
        with pytest.raises(ValueError, match="timezone-aware"):
            await repo.search_jobs(JobQuery(since=datetime(2026, 1, 5, 12, 1)))


async def test_filters_combine_and_every_one_must_hold(url: str) -> None:
    async with opened(url) as repo:
        j = await a_mixed_history(repo)
        cases = [
            (JobQuery(platform="telegram", user_id="u1"), ["e", "a"]),
            (JobQuery(platform="telegram", user_id="u1", status="done"), ["a"]),
            (JobQuery(platform="telegram", user_id="u1", kind="animate", since=minute(0), until=minute(1)), ["a"]),
            (JobQuery(platform="discord", chat_id="c2", status="running", kind="tune"), ["d"]),
            (JobQuery(chat_id="c1", since=minute(1)), ["b"]),
            (JobQuery(user_id="u1", until=minute(4)), ["c", "a"]),
            (JobQuery(platform="telegram", kind="tune"), []),
            (JobQuery(user_id="u2", status="done"), []),
        ]
        for query, names in cases:
            jobs, total = await repo.search_jobs(query)
            assert (ids(jobs), total) == ([j[n] for n in names], len(names)), query


async def test_pages_walk_the_matches_newest_first_and_total_counts_them_all(url: str) -> None:
    async with opened(url) as repo:
        # Three jobs in one instant: the later submission is the newer.
        same_instant = [await submit(repo, minute(0), f"u{n}") for n in range(3)]
        later = [await submit(repo, minute(n), f"v{n}") for n in (1, 2, 3, 4)]
        elsewhere = [await submit(repo, minute(n), "w", platform="discord") for n in (0.5, 5)]
        newest_first = later[::-1] + same_instant[::-1]

        everything, total = await repo.search_jobs(JobQuery(), limit=50)
        assert total == 9 and ids(everything) == [elsewhere[1]] + later[::-1] + [elsewhere[0]] + same_instant[::-1]

        telegram = JobQuery(platform="telegram")
        pages = [await repo.search_jobs(telegram, limit=3, offset=offset) for offset in (0, 3, 6)]
        assert [total for _, total in pages] == [7, 7, 7]
        assert [ids(jobs) for jobs, _ in pages] == [newest_first[:3], newest_first[3:6], newest_first[6:]]
        assert await repo.search_jobs(telegram, limit=3, offset=7) == ([], 7), "past the end: no rows, same total"
        jobs, total = await repo.search_jobs(telegram, limit=2, offset=5)
        assert (ids(jobs), total) == (newest_first[5:7], 7)
        assert (await repo.search_jobs(JobQuery(platform="matrix"))) == ([], 0)


async def test_active_jobs_are_the_running_then_the_queued_in_the_order_they_will_start(url: str) -> None:
    async with opened(url) as repo:
        queued_first = await submit(repo, minute(0), "q0")
        queued_tied = [await submit(repo, minute(1), f"q{n}") for n in (1, 2)]
        finished = await submit(repo, minute(-1), "f0")
        failed = await submit(repo, minute(2), "f1")
        cancelled = await submit(repo, minute(3), "f2")
        running_early = await submit(repo, minute(4), "r0")
        running_late = await submit(repo, minute(5), "r1")
        await repo.start(running_late, checkpoint=None)  # started first: the start order does not matter
        await repo.start(running_early, checkpoint=None)
        await done(repo, finished)
        await repo.fail(failed, code="x", message="x")
        await repo.cancel(cancelled)

        active = await repo.active_jobs()
        assert ids(active) == [running_early, running_late, queued_first, *queued_tied]
        assert [job.status for job in active] == ["running", "running", "queued", "queued", "queued"]
        assert ids(await repo.active_jobs(limit=3)) == [running_early, running_late, queued_first]
        assert await repo.active_jobs(limit=0) == []


async def test_active_jobs_is_empty_when_everything_has_ended(url: str) -> None:
    async with opened(url) as repo:
        assert await repo.active_jobs() == []
        job = await submit(repo, minute(0))
        assert ids(await repo.active_jobs()) == [job]
        await done(repo, job)
        assert await repo.active_jobs() == []


async def test_jobs_since_are_the_newest_from_a_moment_on_at_most_limit(url: str) -> None:
    async with opened(url) as repo:
        j = [await submit(repo, minute(n), f"u{n}") for n in range(5)]
        await done(repo, j[3])  # final or not, every job counts in the stats
        await repo.cancel(j[2])

        assert ids(await repo.jobs_since(minute(2))) == [j[4], j[3], j[2]], "`since` itself is included"
        assert ids(await repo.jobs_since(minute(2) + timedelta(microseconds=1))) == [j[4], j[3]]
        assert ids(await repo.jobs_since(minute(2).astimezone(PARIS))) == [j[4], j[3], j[2]]
        assert ids(await repo.jobs_since(minute(0), limit=2)) == [j[4], j[3]], "the limit keeps the newest"
        assert ids(await repo.jobs_since(minute(-60))) == j[::-1]
        assert await repo.jobs_since(minute(5)) == []


async def test_platforms_are_those_with_jobs_each_once_in_order(url: str) -> None:
    async with opened(url) as repo:
        assert await repo.platforms() == []
        for n, platform in enumerate(["telegram", "discord", "telegram", "api", "discord"]):
            await submit(repo, minute(n), f"u{n}", platform=platform)
        assert await repo.platforms() == ["api", "discord", "telegram"]


async def test_a_session_is_found_until_it_expires_and_a_digest_never_opened_is_not(url: str) -> None:
    async with opened(url) as repo:
        now = datetime.now(timezone.utc)
        live, expired = a_digest(), a_digest()
        expires = (now + timedelta(hours=12, microseconds=7)).astimezone(PARIS)
        await repo.open_session(live, expires_at=expires)
        await repo.open_session(expired, expires_at=now - timedelta(seconds=1))

        found = await repo.session_expiry(live)
        assert found == expires and found is not None and found.utcoffset() == timedelta(0)
        assert await repo.session_expiry(expired) is None, "an expired session opens nothing"
        assert await repo.session_expiry(a_digest()) is None

        # Opening any session drops the expired ones on the way: there is nothing left to close.
        await repo.open_session(a_digest(), expires_at=now + timedelta(hours=1))
        assert await repo.close_session(expired) is False
        assert await repo.session_expiry(live) == expires, "a live session is not dropped"


async def test_a_session_closes_once_and_only_itself(url: str) -> None:
    async with opened(url) as repo:
        expires = datetime.now(timezone.utc) + timedelta(hours=1)
        mine, theirs = a_digest(), a_digest()
        await repo.open_session(mine, expires_at=expires)
        await repo.open_session(theirs, expires_at=expires)

        assert await repo.close_session(mine) is True
        assert await repo.session_expiry(mine) is None
        assert await repo.close_session(mine) is False, "a second sign-out finds nothing"
        assert await repo.close_session(a_digest()) is False
        assert await repo.session_expiry(theirs) == expires


async def test_close_all_sessions_ends_every_one_and_counts_them(url: str) -> None:
    async with opened(url) as repo:
        await repo.close_all_sessions()  # the Postgres database is shared: start from none
        expires = datetime.now(timezone.utc) + timedelta(hours=1)
        digests = [a_digest() for _ in range(3)]
        for d in digests:
            await repo.open_session(d, expires_at=expires)
        assert [await repo.session_expiry(d) for d in digests] == [expires] * 3

        assert await repo.close_all_sessions() == 3
        assert [await repo.session_expiry(d) for d in digests] == [None] * 3
        assert await repo.close_all_sessions() == 0


async def test_a_sign_out_holds_for_every_replica_on_the_same_database(url: str) -> None:
    async with opened(url) as one, opened(url) as other:
        expires = datetime.now(timezone.utc) + timedelta(hours=1)
        d = a_digest()
        await one.open_session(d, expires_at=expires)
        assert await other.session_expiry(d) == expires
        assert await other.close_session(d) is True
        assert await one.session_expiry(d) is None
