"""The live queue: running and queued jobs and the workers, kept current over Server-Sent Events; cancel."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from engine.service.keys import CLOSING, QUEUE, REPOSITORY, SETTINGS, until_set
from engine.service.web.guard import PageError, current_session
from engine.service.web.render import fragment, page
from storage.records import JobRecord

log = logging.getLogger(__name__)

COALESCE_S = 0.25  # changes within this long reach the page as one update (a job's steps come fast)


@dataclass(frozen=True)
class QueueRow:
    """One active job as the queue table shows it."""

    job: JobRecord
    position: int | None  # 1-based among queued jobs


async def queue_state(request: web.Request) -> dict[str, Any]:
    """The active jobs (running first, with their live stage), their positions, and the workers."""
    queue = request.app[QUEUE]
    rows, position = [], 0
    for job in await request.app[REPOSITORY].active_jobs():
        if job.status == "running":
            job = await queue.get(job.id) or job  # the local queue keeps a running job's progress in memory
            rows.append(QueueRow(job, None))
        else:
            position += 1
            rows.append(QueueRow(job, position))
    try:
        workers = await queue.workers()
    except Exception:  # the dashboard shows the queue even when the workers' registry can't be read
        log.exception("could not list the workers")
        workers = []
    return {"rows": rows, "workers": workers, "now": datetime.now(timezone.utc)}


async def queue_page(request: web.Request) -> web.StreamResponse:
    """GET /admin/queue: the queue and the workers, then live over /admin/queue/events."""
    return page(request, "queue.html", {"title": "Queue", **await queue_state(request)})


async def queue_events(request: web.Request) -> web.StreamResponse:
    """GET /admin/queue/events: the queue's rows as HTML on every change; `signedout` when the session ends."""
    queue = request.app[QUEUE]
    keepalive = request.app[SETTINGS].engine.sse_keepalive_s
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    last = ""
    try:
        while True:
            changed = queue.changed()  # taken before reading, so a change while reading is not missed
            if await current_session(request) is None:
                await response.write(b"event: signedout\ndata: \n\n")
                break
            html = fragment(request, "_queue_live.html", await queue_state(request))
            if html != last:
                await response.write(_event("queue", html))
                last = html
            else:
                await response.write(b": keep-alive\n\n")
            # Woken by a change, or after `keepalive` to refresh the workers' heartbeat ages; ended by a shutdown
            # (the browser's EventSource reconnects by itself once the engine is back).
            if await until_set(changed, request.app[CLOSING], keepalive):
                break
            if changed.is_set():
                await asyncio.sleep(COALESCE_S)
    except (ConnectionResetError, ConnectionError):
        log.debug("a dashboard's queue stream closed")
        return response
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response


def _event(name: str, data: str) -> bytes:
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"event: {name}\n{lines}\n".encode()


async def cancel_job(request: web.Request) -> web.StreamResponse:
    """POST /admin/jobs/{id}/cancel: a queued job never runs, a running one stops at its next step."""
    job_id = request.match_info["id"]
    record = await request.app[QUEUE].cancel(job_id)
    if record is None:
        raise PageError(404, "There is no such job.")
    log.info("job %s cancelled from the dashboard (%s)", job_id, record.status)
    back = "/admin/queue" if request.query.get("from") != "job" else f"/admin/jobs/{job_id}"
    raise web.HTTPSeeOther(back)
