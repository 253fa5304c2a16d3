"""Job history: every job with filters, a thumbnail of what was sent and a preview of what was made; a job's report."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections import OrderedDict
from dataclasses import replace
from datetime import date, datetime, time, timedelta, timezone
from urllib.parse import urlencode

from aiohttp import web
from PIL import Image

from engine.errors import UserError
from engine.service.keys import QUEUE, REPOSITORY, SETTINGS
from engine.service.web.guard import PageError
from engine.service.web.render import page
from engine.stages.intake import Intake
from storage.dashboard import JobQuery
from storage.records import JOB_KINDS, JOB_STATUSES

log = logging.getLogger(__name__)

PAGE_SIZE = 50
THUMB_SIDE = 192
THUMBS = web.AppKey("thumbnails", OrderedDict)  # job id -> PNG bytes (or b"" for none), the newest THUMB_CACHE
THUMB_CACHE = 512
MEDIA_TYPES = {"gif": "image/gif", "mp4": "video/mp4", "webp": "image/webp"}
FILTERS = ("platform", "user", "chat", "status", "kind", "since", "until")


def parse_filters(query: dict[str, str]) -> tuple[JobQuery, dict[str, str], list[str]]:
    """The history filters from the query string: the query, the values to show back, and what was wrong."""
    shown = {name: query.get(name, "").strip()[:64] for name in FILTERS}
    problems: list[str] = []
    status = shown["status"] or None
    if status is not None and status not in JOB_STATUSES:
        problems.append(f"The status filter must be one of {', '.join(JOB_STATUSES)}; it was ignored.")
        status = None
    kind = shown["kind"] or None
    if kind is not None and kind not in JOB_KINDS:
        problems.append(f"The kind filter must be one of {', '.join(JOB_KINDS)}; it was ignored.")
        kind = None
    since = _day(shown["since"], "from", problems)
    until = _day(shown["until"], "to", problems)
    job_query = JobQuery(
        platform=shown["platform"] or None,
        user_id=shown["user"] or None,
        chat_id=shown["chat"] or None,
        status=status,
        kind=kind,
        since=since,
        until=until + timedelta(days=1) if until is not None else None,  # "to" includes that whole day
    )
    return job_query, shown, problems


def _day(text: str, label: str, problems: list[str]) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.combine(date.fromisoformat(text), time(), tzinfo=timezone.utc)
    except ValueError:
        problems.append(f"The '{label}' date must look like 2026-12-31; it was ignored.")
        return None


def _page_number(text: str | None) -> int:
    try:
        return max(1, min(10_000, int(text or "1")))
    except ValueError:
        return 1


async def history_page(request: web.Request) -> web.StreamResponse:
    """GET /admin/jobs: every job, newest first, filtered by user, chat, platform, status, kind and date."""
    job_query, shown, problems = parse_filters(dict(request.query))
    number = _page_number(request.query.get("page"))
    repository = request.app[REPOSITORY]
    jobs, total = await repository.search_jobs(job_query, limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE)
    shared = await repository.shared_ids([job.id for job in jobs])
    kept = {k: v for k, v in shown.items() if v}
    pages = max(1, -(-total // PAGE_SIZE))
    context = {
        "title": "History",
        "jobs": jobs,
        "total": total,
        "shared": shared,
        "filters": shown,
        "statuses": JOB_STATUSES,
        "kinds": JOB_KINDS,
        "platforms": await repository.platforms(),
        "problem": " ".join(problems) or None,
        "page_number": number,
        "pages": pages,
        "newer": f"?{urlencode({**kept, 'page': number - 1})}" if number > 1 else None,
        "older": f"?{urlencode({**kept, 'page': number + 1})}" if number < pages else None,
        "media_types": MEDIA_TYPES,
    }
    return page(request, "history.html", context)


async def job_page(request: web.Request) -> web.StreamResponse:
    """GET /admin/jobs/{id}: the whole report of one job."""
    job_id = request.match_info["id"]
    job = await request.app[QUEUE].get(job_id)
    if job is None:
        raise PageError(404, "There is no such job.")
    script = dict(job.script or {})
    backends = script.pop("backends", None)
    ocr = script.pop("ocr", None)
    context = {
        "title": f"Job {job_id[:8]}",
        "job": job,
        "position": await request.app[QUEUE].position(job_id) if job.status == "queued" else None,
        "options": json.dumps(job.options, indent=2, ensure_ascii=False, sort_keys=True),
        "script": script,
        "ocr": ocr if isinstance(ocr, list) else [],
        "backends": backends if isinstance(backends, dict) else {},
        "timings": sorted((job.timings or {}).items(), key=lambda kv: -kv[1] if isinstance(kv[1], float) else 0),
        "shared": job_id in await request.app[REPOSITORY].shared_ids([job_id]),
        "media_types": MEDIA_TYPES,
    }
    return page(request, "job.html", context)


async def job_result(request: web.Request) -> web.StreamResponse:
    """GET /admin/jobs/{id}/result: the animation, while it is kept, to preview in the page."""
    found = await request.app[REPOSITORY].result(request.match_info["id"])
    if found is None:
        raise PageError(404, "That job has no result to show (not done, or no longer kept).")
    data, fmt = found
    return web.Response(
        body=data,
        content_type=MEDIA_TYPES.get(fmt, "application/octet-stream"),
        headers={"Cache-Control": "private, max-age=3600", "Content-Disposition": "inline"},
    )


async def job_input(request: web.Request) -> web.StreamResponse:
    """GET /admin/jobs/{id}/input: a small PNG of what was sent (decoded as safely as a job's image)."""
    job_id = request.match_info["id"]
    cache: OrderedDict[str, bytes] = request.app[THUMBS]
    thumb = cache.get(job_id)
    if thumb is None:
        data = await request.app[REPOSITORY].image(job_id)
        thumb = b""
        if data:
            intake = Intake(replace(request.app[SETTINGS].intake, working_side=THUMB_SIDE))
            thumb = await asyncio.to_thread(thumbnail, intake, data)
        cache[job_id] = thumb
        while len(cache) > THUMB_CACHE:
            cache.popitem(last=False)
    if not thumb:
        raise PageError(404, "There is no picture to show for that job (a video, or no longer kept).")
    return web.Response(body=thumb, content_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


def thumbnail(intake: Intake, data: bytes) -> bytes:
    """A PNG at most THUMB_SIDE on its longer side; b"" for what isn't an image the intake reads (videos)."""
    try:
        decoded = intake(data)
    except UserError:
        return b""
    out = io.BytesIO()
    Image.fromarray(decoded.pixels).save(out, format="PNG", optimize=True)
    return out.getvalue()
