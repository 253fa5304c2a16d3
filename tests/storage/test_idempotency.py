"""Idempotency keys per user with a request digest, and precheck(): submit()'s answer without storing anything."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from storage.records import JobRecord, Limits, NewJob, Rejected
from storage.repository import Repository
from storage.statements import idempotency_scope
from tests.storage.conftest import ROOMY, new_job, opened

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
CONFLICT = "That Idempotency-Key was already used for a different request; use a new key."
A, B = "a" * 64, "b" * 64  # two request digests


def limits(**changes: int) -> Limits:
    """Roomy limits with a few tightened."""
    return dataclasses.replace(ROOMY, **changes)


def keyed(user: str = "u1", digest: str | None = A, **fields: Any) -> NewJob:
    """A submission with the key "k" and a request digest."""
    return new_job(user, idempotency_key="k", request_digest=digest, **fields)


async def total(repo: Repository) -> int:
    """Every stored job, whatever its status."""
    return sum((await repo.stats()).jobs_by_status.values())


async def test_the_same_key_from_two_users_makes_two_jobs_each_found_again_by_its_owner(url: str) -> None:
    async with opened(url) as repo:
        mine = await repo.submit(keyed("u1", A))
        theirs = await repo.submit(keyed("u2", B))
        elsewhere = await repo.submit(keyed("u1", B, platform="discord"))
        assert mine.created and theirs.created and elsewhere.created
        assert len({mine.job.id, theirs.job.id, elsewhere.job.id}) == 3
        again = await repo.submit(keyed("u1", A))
        assert not again.created and again.job == mine.job == await repo.get(mine.job.id)
        assert not (await repo.submit(keyed("u2", B))).created
        assert await total(repo) == 3
        # The column holds the key's scope, never the key: one user's key cannot be looked up by another.
        assert mine.job.idempotency_key == idempotency_scope(keyed("u1")) != idempotency_scope(keyed("u2"))
        assert mine.job.request_digest == A


async def test_a_repeated_key_asking_for_something_else_is_refused_and_stores_nothing(url: str) -> None:
    async with opened(url) as repo:
        first = (await repo.submit(keyed(digest=A))).job
        for call in (repo.submit, repo.precheck):
            with pytest.raises(Rejected) as refused:
                await call(keyed(digest=B))
            assert (refused.value.code, refused.value.message, refused.value.retry_after) == (
                "idempotency_conflict", CONFLICT, None
            )  # fmt: skip
        assert await total(repo) == 1
        assert (await repo.submit(keyed(digest=A))).job == first, "the original request still finds its job"


async def test_a_digest_missing_on_either_side_matches_any_request(url: str) -> None:
    async with opened(url) as repo:
        older = (await repo.submit(new_job("u1", idempotency_key="old"))).job  # stored before digests existed
        assert older.request_digest is None
        assert (await repo.submit(new_job("u1", idempotency_key="old", request_digest=B))).job == older
        newer = (await repo.submit(keyed(digest=A))).job
        assert (await repo.submit(keyed(digest=None))).job == newer
        assert await total(repo) == 2


async def test_a_digest_the_column_cannot_hold_is_refused_before_any_work(sqlite_url: str) -> None:
    async with opened(sqlite_url) as repo:
        for call in (repo.submit, repo.precheck):
            for digest in ("", "f" * 65):
                with pytest.raises(ValueError, match="request_digest"):
                    await call(keyed(digest=digest))
        assert await total(repo) == 0


# --- precheck agrees with submit ------------------------------------------------------------------

Setup = Callable[[Repository], Awaitable[dict[str, JobRecord]]]


async def nothing(repo: Repository) -> dict[str, JobRecord]:
    return {}


def jobs(*submissions: NewJob, ban: bool = False, end_first: bool = False, tighten: Limits | None = None) -> Setup:
    """Store these submissions a minute apart before NOW (the first named "first"), then change the state."""

    async def setup(repo: Repository) -> dict[str, JobRecord]:
        stored = {}
        for n, submission in enumerate(submissions):
            when = NOW - timedelta(minutes=len(submissions) - n)
            stored["first" if n == 0 else str(n)] = (await repo.submit(submission, now=when)).job
        if end_first:
            await repo.cancel(stored["first"].id)
        if ban:
            await repo.ban("telegram", "u1")
        if tighten is not None:
            await repo.set_limits(tighten)  # after the submissions: the repository still counts with ROOMY
        return stored

    return setup


ADMIN = new_job(is_admin=True)
# name: (limits, setup, the probe, what both must answer: "new", "first" (that stored job) or a Rejected code)
CASES: dict[str, tuple[Limits, Setup, NewJob, str]] = {
    "nothing in the way": (ROOMY, nothing, new_job(), "new"),
    "banned": (ROOMY, jobs(ban=True), new_job(), "banned"),
    "banned admin": (ROOMY, jobs(ban=True), ADMIN, "banned"),
    "user window": (limits(user_jobs=2), jobs(new_job(), new_job()), new_job(), "rate_limited"),
    "user window, admin": (limits(user_jobs=2), jobs(new_job(), new_job()), ADMIN, "new"),
    "concurrent": (limits(user_concurrent=1), jobs(new_job()), new_job(), "rate_limited"),
    "concurrent, the job ended": (limits(user_concurrent=1), jobs(new_job(), end_first=True), new_job(), "new"),
    "concurrent, admin": (limits(user_concurrent=1), jobs(new_job()), ADMIN, "new"),
    "chat window": (limits(chat_jobs=2), jobs(new_job("u2"), new_job("u3")), new_job(), "rate_limited"),
    "chat window, admin": (limits(chat_jobs=2), jobs(new_job("u2"), new_job("u3")), ADMIN, "new"),
    "queue full": (limits(queue_max=2), jobs(new_job("u2", "c2"), new_job("u3", "c3")), new_job(), "queue_full"),
    "queue full, admin": (limits(queue_max=2), jobs(new_job("u2", "c2"), new_job("u3", "c3")), ADMIN, "queue_full"),
    "limits an admin set": (ROOMY, jobs(new_job(), tighten=limits(user_jobs=1)), new_job(), "rate_limited"),
    "repeated key": (limits(user_jobs=1, user_concurrent=1), jobs(keyed(digest=A)), keyed(digest=A), "first"),
    "repeated key, banned since": (ROOMY, jobs(keyed(digest=A), ban=True), keyed(digest=A), "first"),
    "repeated key, queue full": (limits(queue_max=1), jobs(keyed(digest=A)), keyed(digest=A), "first"),
    "repeated key, other request": (ROOMY, jobs(keyed(digest=A)), keyed(digest=B), "idempotency_conflict"),
    "repeated key, other request, banned": (
        ROOMY,
        jobs(keyed(digest=A), ban=True),
        keyed(digest=B),
        "idempotency_conflict",
    ),
    "repeated key, stored without digest": (ROOMY, jobs(keyed(digest=None)), keyed(digest=B), "first"),
    "repeated key, asked without digest": (ROOMY, jobs(keyed(digest=A)), keyed(digest=None), "first"),
    "same key, other user": (limits(user_jobs=1), jobs(keyed("u2", A, chat="c2")), keyed(digest=B), "new"),
    "same key, other user, at my limit": (
        limits(user_jobs=1),
        jobs(new_job(), keyed("u2", A, chat="c2")),
        keyed(digest=A),
        "rate_limited",
    ),
    "same key, other user, banned": (ROOMY, jobs(keyed("u2", A), ban=True), keyed(digest=A), "banned"),
    "same key and user id, other platform": (ROOMY, jobs(keyed(digest=A, platform="discord")), keyed(digest=B), "new"),
}


async def answer(call: Awaitable[Any]) -> tuple[Any, ...]:
    """What a precheck or a submission answered, in one vocabulary: ("new",), ("job", record) or the refusal."""
    try:
        result = await call
    except Rejected as refused:
        return (refused.code, refused.message, refused.retry_after)
    if result is None or getattr(result, "created", False):
        return ("new",)
    return ("job", getattr(result, "job", result))


@pytest.mark.parametrize("case", list(CASES))
async def test_precheck_answers_as_submit_would_on_the_same_state(url: str, case: str) -> None:
    rules, setup, probe, expected = CASES[case]
    async with opened(url, rules) as repo:
        stored = await setup(repo)
        before = await total(repo)
        checked = await answer(repo.precheck(probe, now=NOW))
        assert await total(repo) == before, "precheck stores nothing"
        submitted = await answer(repo.submit(probe, now=NOW))
    assert checked == submitted
    if expected == "new":
        assert checked == ("new",)
    elif expected in stored:
        assert checked == ("job", stored[expected])
    else:
        assert checked[0] == expected, checked
        assert expected != "rate_limited" or checked[2] >= 1.0, "a rate limit says when to retry"
