"""The rate-limit rules as pure functions: what the repository counted in, a verdict or a quota out."""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timedelta
from typing import Any

from storage.records import Limits, Quota, Rejected

# A user at their concurrency limit waits for a job to finish; this is a guess at "soon", not a promise.
CONCURRENT_RETRY_S = 30.0
BANNED = "You can't use this bot right now."
QUEUE_FULL = "I'm very busy right now and can't take more animations; please try again in a few minutes."


@dataclasses.dataclass(frozen=True)
class Usage:
    """What the repository counted, inside the submission's transaction."""

    user_jobs: int  # the user's jobs created inside the user window
    # The user_jobs-th newest of them (None when fewer): when it leaves the window the count drops
    # below the limit, so one number and one time say all a refusal needs, whatever the count.
    user_leaving: datetime | None
    user_active: int  # the user's queued + running jobs
    chat_jobs: int  # the chat's jobs created inside the chat window
    chat_leaving: datetime | None  # the chat_jobs-th newest of them, as user_leaving
    queued: int  # every queued job


def validate(limits: Limits) -> Limits:
    """Refuse limits that are not positive whole numbers, naming the field."""
    for field in dataclasses.fields(limits):
        value = getattr(limits, field.name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"limit '{field.name}' must be a positive integer, not {value!r}")
    return limits


def to_json(limits: Limits) -> dict[str, int]:
    """Limits as stored in the settings table."""
    return dataclasses.asdict(limits)


def from_json(value: Any, default: Limits) -> Limits:
    """Stored limits; keys a newer or older version did not store keep their defaults."""
    known = {f.name for f in dataclasses.fields(Limits)}
    stored = {k: v for k, v in dict(value).items() if k in known}
    return dataclasses.replace(default, **stored)


def check(limits: Limits, usage: Usage, *, is_admin: bool, now: datetime) -> None:
    """Raise Rejected if a new job would break a limit; admins skip the per-user and per-chat ones."""
    if not is_admin:
        if usage.user_jobs >= limits.user_jobs:
            wait = _wait(usage.user_leaving, limits.user_window_s, now)
            raise Rejected(
                "rate_limited",
                f"You've reached your limit of {_count(limits.user_jobs)} every {duration(limits.user_window_s)}; "
                f"please try again in {duration(wait)}.",
                retry_after=wait,
            )
        if usage.user_active >= limits.user_concurrent:
            raise Rejected(
                "rate_limited",
                f"You already have {_count(usage.user_active)} on the way; "
                "please send the next one when one of them is done.",
                retry_after=CONCURRENT_RETRY_S,
            )
        if usage.chat_jobs >= limits.chat_jobs:
            wait = _wait(usage.chat_leaving, limits.chat_window_s, now)
            raise Rejected(
                "rate_limited",
                f"This chat has reached its limit of {_count(limits.chat_jobs)} every "
                f"{duration(limits.chat_window_s)}; please try again in {duration(wait)}.",
                retry_after=wait,
            )
    # Not waived for admins: queue_max protects the machine, not fairness between users.
    if usage.queued >= limits.queue_max:
        raise Rejected("queue_full", QUEUE_FULL, retry_after=None)


def quota(limits: Limits, user_times: list[datetime], user_active: int, *, now: datetime) -> Quota:
    """What a user has left, from their jobs in the window (oldest first) and their queued + running count."""
    return Quota(
        jobs_left=max(0, limits.user_jobs - len(user_times)),
        jobs_limit=limits.user_jobs,
        window_s=limits.user_window_s,
        concurrent_left=max(0, limits.user_concurrent - user_active),
        concurrent_limit=limits.user_concurrent,
        refills_at=user_times[0] + timedelta(seconds=limits.user_window_s) if user_times else None,
    )


def window_start(now: datetime, window_s: int) -> datetime:
    """Jobs created after this count against a window of window_s seconds ending now."""
    return now - timedelta(seconds=window_s)


def duration(seconds: float) -> str:
    """A wait a chat user can read: '45 seconds', '3 minutes', '2 hours' (rounded up)."""
    if seconds >= 7200 or (seconds >= 3600 and seconds % 3600 == 0):
        unit, n = "hour", math.ceil(seconds / 3600)
    elif seconds > 90 or (seconds >= 60 and seconds % 60 == 0):
        unit, n = "minute", math.ceil(seconds / 60)
    else:
        unit, n = "second", max(1, math.ceil(seconds))
    return f"{n} {unit}{'s' if n != 1 else ''}"


def _wait(leaving: datetime | None, window_s: int, now: datetime) -> float:
    # Enough jobs must leave the window for the count to drop below the limit; the last of them
    # to leave is the limit-th newest (the (count - limit)-th oldest).
    if leaving is None:
        return 1.0  # counted at the limit but none found by rank: cannot happen in one transaction
    return max(1.0, (leaving + timedelta(seconds=window_s) - now).total_seconds())


def _count(n: int) -> str:
    return f"{n} animation{'s' if n != 1 else ''}"
