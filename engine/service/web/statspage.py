"""The stats page: jobs per hour and platform, failure reasons, time per stage and queue wait, as charts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from aiohttp import web
from markupsafe import Markup

from engine.service.keys import REPOSITORY
from engine.service.web import charts
from engine.service.web.render import page
from engine.service.web.stats import report

WINDOWS = {"24h": 24, "7d": 24 * 7}


async def stats_page(request: web.Request) -> web.StreamResponse:
    """GET /admin/stats?window=24h|7d: the charts, drawn here as SVG (no script)."""
    window = request.query.get("window", "24h")
    hours = WINDOWS.get(window, 24)
    now = datetime.now(timezone.utc)
    jobs = await request.app[REPOSITORY].jobs_since(now - timedelta(hours=hours + 1))
    figures = report(jobs, now, hours=hours)
    # The chart functions escape every label they draw, so their SVG is safe to put in the page as it is.
    svg = {
        "activity": charts.bar_chart_over_time(
            figures.activity.hours, figures.activity.per_platform, title="Jobs per hour, by platform", unit="jobs"
        ),
        "stages": charts.horizontal_bars(
            [(s.stage, [s.median_s, s.p95_s]) for s in figures.stages],
            series_names=["median", "p95"],
            title="Time per stage (done animations)",
            unit="s",
        ),
        "failures": charts.horizontal_bars(
            [(f.code, [float(f.count)]) for f in figures.failures],
            series_names=["failed jobs"],
            title="Failure reasons",
            unit="jobs",
            empty="No failures in this window.",
        ),
        "wait": charts.bar_chart_over_time(
            figures.queue_wait.hours,
            {"median wait": figures.queue_wait.per_hour_median},
            title="Queue wait (median per hour)",
            unit="s",
        ),
    }
    context = {
        "title": "Stats",
        "window": window if window in WINDOWS else "24h",
        "windows": list(WINDOWS),
        "figures": figures,
        "charts": {name: Markup(chart) for name, chart in svg.items()},  # noqa: S704
        "truncated": len(jobs) >= 20_000,
    }
    return page(request, "stats.html", context)
