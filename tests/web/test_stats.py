"""The Stats page's numbers, from hand-made job rows with known answers."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from engine.service.web import stats
from storage.records import JobRecord

UTC = timezone.utc
NOW = datetime(2026, 3, 5, 14, 20, tzinfo=UTC)  # the window's buckets: 15:00 on the 4th .. 14:00 on the 5th


def at(hour: int, minute: int = 0, second: int = 0, microsecond: int = 0, day: int = 5) -> datetime:
    """A moment on the test's days, in UTC."""
    return datetime(2026, 3, day, hour, minute, second, microsecond, tzinfo=UTC)


def job(n: int = 0, **fields: Any) -> JobRecord:
    """A queued telegram job created at 12:00, with `fields` in place of the defaults."""
    values: dict[str, Any] = dict(
        id=f"{n:032x}", status="queued", platform="telegram", user_id="u1", chat_id="c1", is_admin=False,
        options={}, seed=7, idempotency_key=None, attempts=0, stage=None, fraction=0.0, error_code=None,
        error=None, script=None, timings=None, checkpoint=None, result_format=None, result_bytes=None,
        result_expired=False, created_at=at(12), started_at=None, finished_at=None,
    )  # fmt: skip
    values.update(fields)
    return JobRecord(**values)


def test_the_window_is_whole_utc_hours_ending_with_the_current_one() -> None:
    hours = stats.hour_starts(NOW, 24)
    assert len(hours) == 24
    assert hours[0] == at(15, day=4) and hours[-1] == at(14)
    assert all(b - a == timedelta(hours=1) for a, b in zip(hours, hours[1:]))
    assert all(h.tzinfo is not None and h.utcoffset() == timedelta(0) for h in hours)
    # a `now` in another zone names the same instant, so the same buckets
    assert stats.hour_starts(NOW.astimezone(timezone(timedelta(hours=5, minutes=30))), 24) == hours
    assert stats.hour_starts(NOW, 3) == [at(12), at(13), at(14)]


def test_jobs_fall_in_the_bucket_of_their_hour_at_the_boundaries() -> None:
    jobs = [
        job(1, created_at=at(10)),  # exactly on the hour: that hour
        job(2, created_at=at(9, 59, 59, 999999)),  # a microsecond before: the hour before
        job(3, created_at=at(15, day=4)),  # the first bucket's start: in
        job(4, created_at=at(14, 59, 59, 999999, day=4)),  # a microsecond before the window: out
        job(5, created_at=at(14, 59)),  # later in the current hour than `now`: still the current bucket
        job(6, created_at=at(15)),  # the next hour: out
        job(7, created_at=datetime(2026, 3, 5, 13, 30, tzinfo=timezone(timedelta(hours=2)))),  # 11:30 UTC
    ]
    counts = stats.activity(jobs, NOW, 24).per_platform["telegram"]
    hours = stats.hour_starts(NOW, 24)
    assert counts[hours.index(at(10))] == 1
    assert counts[hours.index(at(9))] == 1
    assert counts[0] == 1
    assert counts[-1] == 1
    assert counts[hours.index(at(11))] == 1  # 13:30 at +02:00 is 11:30 UTC
    assert sum(counts) == 5


def test_activity_splits_by_platform_busiest_first_and_counts_statuses() -> None:
    jobs = [
        job(1, platform="cli", created_at=at(13)),
        job(2, platform="discord", created_at=at(13), status="failed"),
        job(3, platform="discord", created_at=at(14, 5), status="done"),
        job(4, platform="api", created_at=at(14, 6), status="done"),
        job(5, platform="telegram", created_at=at(14, 7), status="done"),
        job(6, platform="telegram", created_at=at(14, 8), status="running"),
        job(7, platform="telegram", created_at=at(14, 9)),
    ]
    activity = stats.activity(jobs, NOW, 2)
    assert activity.hours == [at(13), at(14)]
    assert activity.per_platform == {"telegram": [0, 3], "discord": [1, 1], "api": [0, 1], "cli": [1, 0]}
    assert list(activity.per_platform) == ["telegram", "discord", "api", "cli"]  # ties: by name
    assert activity.per_status == {"done": 3, "failed": 1, "queued": 2, "running": 1}
    assert activity.total == 7


@pytest.mark.parametrize(
    ("values", "median", "p95"),
    [
        ([5.0], 5.0, 5.0),
        ([1.0, 2.0], 1.5, 2.0),
        ([4.0, 1.0, 3.0, 2.0], 2.5, 4.0),
        ([float(v) for v in range(1, 21)], 10.5, 19.0),  # ceil(0.95 * 20) = 19th smallest
        ([float(v) for v in range(100, 0, -1)], 50.5, 95.0),
        ([float(v) for v in range(1, 22)], 11.0, 20.0),  # ceil(0.95 * 21) = ceil(19.95) = 20th
    ],
)
def test_median_and_nearest_rank_p95_of_known_lists(values: list[float], median: float, p95: float) -> None:
    assert stats.median(values) == median
    assert stats.percentile(values, 95) == p95


def test_percentiles_of_nothing_are_none_and_a_bad_p_is_refused() -> None:
    assert stats.median([]) is None and stats.percentile([], 95) is None
    assert stats.percentile([3.0, 1.0, 2.0], 100) == 3.0
    assert stats.percentile([3.0, 1.0, 2.0], 1) == 1.0
    for p in (0, 101, -5):
        with pytest.raises(ValueError, match="p must be"):
            stats.percentile([1.0], p)


def test_failure_reasons_are_counted_by_code_most_frequent_first() -> None:
    def failed(n: int, code: str | None, error: str | None, finished: datetime) -> JobRecord:
        return job(n, status="failed", error_code=code, error=error, created_at=at(9), finished_at=finished)

    jobs = [
        failed(1, "timeout", "It took too long (old).", at(10)),
        failed(2, "timeout", "It took too long (newest).", at(13)),
        failed(3, "timeout", None, at(14)),  # newer, but without a sentence to show
        failed(4, "not_an_image", "That file isn't an image I can read (PDF).", at(11)),
        failed(5, "bad_request", "Say it again.", at(11)),
        failed(6, "bad_request", "Say it once more.", at(12)),
        failed(7, None, None, at(12)),
        failed(8, "not_an_image", "Outside the window.", at(13, day=3)),
        job(9, status="done", error_code="timeout", finished_at=at(13)),  # not failed: not counted
    ]
    reasons = stats.failure_reasons(jobs, NOW, 24)
    assert reasons == [
        stats.FailureReason("timeout", 3, "It took too long (newest)."),
        stats.FailureReason("bad_request", 2, "Say it once more."),
        stats.FailureReason("not_an_image", 1, "That file isn't an image I can read (PDF)."),
        stats.FailureReason(stats.UNKNOWN_CODE, 1, None),
    ]


def test_stage_times_ignore_non_numeric_timings_and_keep_pipeline_order() -> None:
    def done(n: int, timings: dict[str, Any], **fields: Any) -> JobRecord:
        created = at(10, n)
        return job(n, **{"status": "done", "timings": timings, "created_at": created, "finished_at": created, **fields})

    jobs = [
        done(2, {"intake": 0.2, "ocr": 2.0, "generate": 20.0, "total": 22.2}),
        done(1, {"intake": 0.1, "ocr": 1.0, "generate": 10.0, "total": 11.1}),
        done(3, {"intake": 0.3, "ocr": "n/a", "generate": None, "total": 30.3}),
        done(4, {"intake": True, "ocr": float("nan"), "generate": 40.0, "total": 40.4}),
        done(5, {"intake": 9.0, "total": 999.0}, kind="train"),  # training time is not the pipeline's
        job(6, status="failed", timings={"intake": 50.0}, finished_at=at(10)),
        done(7, {"intake": 70.0}, created_at=at(10, day=3), finished_at=at(10, day=3)),  # ended before the window
    ]
    rows = stats.stage_times(jobs, NOW, 24)
    assert [row.stage for row in rows] == ["intake", "ocr", "generate"]  # the oldest job's order
    intake, ocr, generate = rows
    assert intake == stats.StageTime("intake", median_s=0.2, p95_s=0.3, count=3)
    assert ocr == stats.StageTime("ocr", median_s=1.5, p95_s=2.0, count=2)
    assert generate == stats.StageTime("generate", median_s=20.0, p95_s=40.0, count=3)
    total = stats.total_time(jobs, NOW, 24)
    assert total is not None and total.count == 4
    assert math.isclose(total.median_s, (22.2 + 30.3) / 2) and total.p95_s == 40.4


def test_queue_wait_excludes_jobs_never_started_and_buckets_by_start() -> None:
    jobs = [
        job(1, created_at=at(12), started_at=at(12, 0, 10), status="done"),  # 10 s, started at 12:00
        job(2, created_at=at(12, 30), started_at=at(12, 30, 30), status="failed"),  # 30 s, 12:00
        job(3, created_at=at(12, 59), started_at=at(13, 0, 20), status="running"),  # 80 s, 13:00
        job(4, created_at=at(13), started_at=None, status="queued"),  # never started: left out
        job(5, created_at=at(13), started_at=None, status="cancelled"),  # never started: left out
        job(6, created_at=at(9), started_at=at(9, 0, 40), status="done"),  # started before the window
    ]
    wait = stats.queue_wait(jobs, NOW, 3)
    assert wait.hours == [at(12), at(13), at(14)]
    assert wait.count == 3
    assert wait.median_s == 30.0 and wait.p95_s == 80.0
    assert wait.per_hour_median == [20.0, 80.0, None]


def test_a_start_a_little_before_the_creation_counts_as_no_wait() -> None:
    wait = stats.queue_wait([job(1, created_at=at(12, 0, 1), started_at=at(12))], NOW, 3)
    assert wait.median_s == 0.0 and wait.per_hour_median == [0.0, None, None]


def test_the_report_of_no_jobs_is_empty_not_an_error() -> None:
    report = stats.report([], NOW)
    assert report.since == at(15, day=4) and report.now == NOW
    assert report.activity.per_platform == {} and report.activity.total == 0 and len(report.activity.hours) == 24
    assert report.failures == [] and report.stages == [] and report.total is None
    assert report.queue_wait.median_s is None and report.queue_wait.p95_s is None and report.queue_wait.count == 0
    assert report.queue_wait.per_hour_median == [None] * 24


def test_the_report_bundles_every_figure_for_one_window() -> None:
    jobs = [
        job(1, status="done", created_at=at(13), started_at=at(13, 0, 5), finished_at=at(13, 1),
            timings={"intake": 1.0, "generate": 3.0, "total": 4.0}),
        job(2, status="failed", platform="discord", created_at=at(14), started_at=at(14, 0, 15),
            finished_at=at(14, 1), error_code="timeout", error="It took too long."),
    ]  # fmt: skip
    report = stats.report(iter(jobs), NOW, hours=2)  # any iterable, read once
    assert report.activity.per_platform == {"discord": [0, 1], "telegram": [1, 0]}
    assert report.failures == [stats.FailureReason("timeout", 1, "It took too long.")]
    assert [s.stage for s in report.stages] == ["intake", "generate"]
    assert report.total == stats.StageTime("total", 4.0, 4.0, 1)
    assert report.queue_wait.per_hour_median == [5.0, 15.0]


def test_naive_datetimes_and_empty_windows_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="now must be a timezone-aware"):
        stats.report([], NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="hours must be"):
        stats.report([], NOW, hours=0)
    with pytest.raises(ValueError, match="timezone-aware"):
        stats.activity([job(1, created_at=at(12).replace(tzinfo=None))], NOW)
