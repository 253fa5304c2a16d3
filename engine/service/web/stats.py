"""The Stats page's numbers, computed from job rows: activity per hour, failure reasons, stage times, queue wait.

Pure functions over `storage.records.JobRecord`s: no database, no clock (the caller passes `now`).

The window is `hours` whole clock hours in UTC, the last being the hour `now` is in: with `now` at 14:20
and `hours=24`, the buckets start at 15:00 yesterday, 16:00, ..., 14:00 today. Each job falls in the bucket
of the hour its moment is in (a job created at 10:00:00 counts for 10:00, one at 09:59:59 for 09:00), and a
job outside every bucket is left out. Which moment a figure uses is said where it is computed.

Percentiles: the median is the usual one (the mean of the two middle values of an even count, as
`statistics.median`); p95 is the nearest-rank percentile, the smallest value that at least 95 % of the
values are at or below (so always one of the values seen, never interpolated).
Empty input never raises: counts are zeros, lists are empty and medians are None.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from storage.records import JobRecord

HOUR = timedelta(hours=1)
TOTAL = "total"  # the timings key of the whole run, not a stage
UNKNOWN_CODE = "unknown"  # the code shown for failed jobs stored without one


@dataclass(frozen=True)
class Activity:
    """Jobs created per hour, per platform, in the window."""

    hours: list[datetime]  # the buckets' starts, oldest first, timezone-aware UTC
    per_platform: dict[str, list[int]]  # platform -> a count per bucket; the busiest platform first
    per_status: dict[str, int]  # the same jobs by their status now ("done", "failed", ...)

    @property
    def total(self) -> int:
        """Every job created in the window."""
        return sum(sum(counts) for counts in self.per_platform.values())


@dataclass(frozen=True)
class FailureReason:
    """Failed jobs that share an error code, with the newest one's sentence as an example."""

    code: str
    count: int
    example: str | None  # the `error` sentence of the newest such job that has one


@dataclass(frozen=True)
class StageTime:
    """How long a pipeline stage took over the done jobs of the window."""

    stage: str
    median_s: float
    p95_s: float
    count: int  # the jobs that reported this stage


@dataclass(frozen=True)
class QueueWait:
    """How long jobs waited between submission and a worker starting them."""

    median_s: float | None
    p95_s: float | None
    count: int  # the jobs started in the window
    hours: list[datetime]  # the buckets' starts, as in Activity
    per_hour_median: list[float | None]  # the median wait of the jobs started in each bucket (None: none started)


@dataclass(frozen=True)
class StatsReport:
    """Everything the Stats page shows, for one window."""

    since: datetime  # the first bucket's start
    now: datetime
    activity: Activity
    failures: list[FailureReason]  # the most frequent code first
    stages: list[StageTime]  # in pipeline order, without the total
    total: StageTime | None  # the whole run's time (None: no done job in the window)
    queue_wait: QueueWait


def report(jobs: Iterable[JobRecord], now: datetime, hours: int = 24) -> StatsReport:
    """Every figure of the Stats page for the `hours` clock hours up to and including the one `now` is in."""
    rows = list(jobs)
    buckets = hour_starts(now, hours)
    return StatsReport(
        since=buckets[0],
        now=_utc(now, "now"),
        activity=activity(rows, now, hours),
        failures=failure_reasons(rows, now, hours),
        stages=stage_times(rows, now, hours),
        total=total_time(rows, now, hours),
        queue_wait=queue_wait(rows, now, hours),
    )


def hour_starts(now: datetime, hours: int = 24) -> list[datetime]:
    """The window's buckets: the starts of the `hours` clock hours (UTC) ending with the one `now` is in."""
    if not isinstance(hours, int) or isinstance(hours, bool) or hours < 1:
        raise ValueError(f"hours must be a whole number of hours, at least 1; got {hours!r}")
    last = _utc(now, "now").replace(minute=0, second=0, microsecond=0)
    return [last - (hours - 1 - i) * HOUR for i in range(hours)]


def activity(jobs: Iterable[JobRecord], now: datetime, hours: int = 24) -> Activity:
    """Jobs per hour and platform, by when they were created (every status and kind)."""
    buckets = hour_starts(now, hours)
    per_platform: dict[str, list[int]] = {}
    per_status: dict[str, int] = {}
    for job in jobs:
        index = _bucket(job.created_at, buckets)
        if index is None:
            continue
        per_platform.setdefault(job.platform, [0] * hours)[index] += 1
        per_status[job.status] = per_status.get(job.status, 0) + 1
    # the busiest platform first, so stacked bars keep the biggest series on the baseline
    order = sorted(per_platform, key=lambda platform: (-sum(per_platform[platform]), platform))
    return Activity(
        hours=buckets, per_platform={p: per_platform[p] for p in order}, per_status=dict(sorted(per_status.items()))
    )


def failure_reasons(jobs: Iterable[JobRecord], now: datetime, hours: int = 24) -> list[FailureReason]:
    """Failed jobs by error code, by when they ended; the most frequent first, then by code."""
    buckets = hour_starts(now, hours)
    counts: dict[str, int] = {}
    examples: dict[str, tuple[datetime, str]] = {}
    for job in jobs:
        ended = _ended(job)
        if job.status != "failed" or _bucket(ended, buckets) is None:
            continue
        code = job.error_code or UNKNOWN_CODE
        counts[code] = counts.get(code, 0) + 1
        if job.error and (code not in examples or ended > examples[code][0]):
            examples[code] = (ended, job.error)
    return [
        FailureReason(code=code, count=count, example=examples[code][1] if code in examples else None)
        for code, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]


def stage_times(jobs: Iterable[JobRecord], now: datetime, hours: int = 24) -> list[StageTime]:
    """Median and p95 seconds per pipeline stage over the window's done animations, in pipeline order."""
    samples = _stage_samples(jobs, now, hours)
    return [_stage_time(stage, values) for stage, values in samples.items() if stage != TOTAL]


def total_time(jobs: Iterable[JobRecord], now: datetime, hours: int = 24) -> StageTime | None:
    """Median and p95 of the whole pipeline run over the window's done animations (None: there were none)."""
    values = _stage_samples(jobs, now, hours).get(TOTAL)
    return _stage_time(TOTAL, values) if values else None


def queue_wait(jobs: Iterable[JobRecord], now: datetime, hours: int = 24) -> QueueWait:
    """Seconds from creation to the (last) start, over the jobs started in the window; never-started jobs left out."""
    buckets = hour_starts(now, hours)
    waits: list[float] = []
    per_hour: list[list[float]] = [[] for _ in buckets]
    for job in jobs:
        if job.started_at is None:
            continue
        index = _bucket(job.started_at, buckets)
        if index is None:
            continue
        # the rows' clocks are the workers' and the submitter's, which may disagree by a little
        wait = max(0.0, (_utc(job.started_at, "started_at") - _utc(job.created_at, "created_at")).total_seconds())
        waits.append(wait)
        per_hour[index].append(wait)
    return QueueWait(
        median_s=median(waits),
        p95_s=percentile(waits, 95),
        count=len(waits),
        hours=buckets,
        per_hour_median=[median(values) for values in per_hour],
    )


def median(values: Sequence[float]) -> float | None:
    """The usual median (the mean of the two middle values of an even count); None for no values."""
    return float(statistics.median(values)) if values else None


def percentile(values: Sequence[float], p: int) -> float | None:
    """The nearest-rank p-th percentile (0 < p <= 100): the ceil(p/100 · n)-th smallest value; None for no values."""
    if not 0 < p <= 100:
        raise ValueError(f"p must be a percentage in (0, 100]; got {p!r}")
    if not values:
        return None
    ordered = sorted(values)
    rank = math.ceil(p * len(ordered) / 100)
    return float(ordered[max(rank, 1) - 1])


def _stage_samples(jobs: Iterable[JobRecord], now: datetime, hours: int) -> dict[str, list[float]]:
    """Stage name -> the seconds the window's done animations reported, in the order the stages first appear."""
    buckets = hour_starts(now, hours)
    samples: dict[str, list[float]] = {}
    # remix, tune and train jobs report only a total of other work (training), which would skew the pipeline's
    timed = [job for job in jobs if job.status == "done" and job.kind == "animate" and job.timings]
    # the pipeline writes its timings in stage order, so the oldest job's keys give the order
    for job in sorted(timed, key=lambda job: job.created_at):
        if _bucket(_ended(job), buckets) is None:
            continue
        for stage, seconds in (job.timings or {}).items():
            if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and math.isfinite(seconds):
                samples.setdefault(stage, []).append(float(seconds))
    return samples


def _stage_time(stage: str, values: list[float]) -> StageTime:
    """One stage's figures from its (non-empty) samples."""
    middle, p95 = median(values), percentile(values, 95)
    assert middle is not None and p95 is not None  # the samples are never empty here
    return StageTime(stage=stage, median_s=middle, p95_s=p95, count=len(values))


def _ended(job: JobRecord) -> datetime:
    """When a job ended; a row without `finished_at` (an old or odd one) counts when it was created."""
    return job.finished_at or job.created_at


def _bucket(moment: datetime, buckets: list[datetime]) -> int | None:
    """The index of the bucket `moment` falls in, or None when it is outside the window."""
    index = (_utc(moment, "a job's datetime") - buckets[0]) // HOUR
    return index if 0 <= index < len(buckets) else None


def _utc(moment: datetime, name: str) -> datetime:
    """`moment` in UTC; a naive datetime is refused, since its zone would be a guess."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime; got the naive {moment!r}")
    return moment.astimezone(timezone.utc)
