"""GET /v1/jobs/{id}/events: a job's changes as Server-Sent Events, with keep-alive comments."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from engine.service.handlers_jobs import find_job, view_of
from engine.service.state import QUEUE, SETTINGS
from storage.records import JobRecord

log = logging.getLogger(__name__)

KEEP_ALIVE = b": keep-alive\n\n"


async def _next(records: AsyncIterator[JobRecord]) -> JobRecord:
    return await records.__anext__()


async def job_events(request: web.Request) -> web.StreamResponse:
    """Send the job's JSON view on every change; close after its final state."""
    job = await find_job(request)
    keepalive = request.app[SETTINGS].engine.sse_keepalive_s
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    records = request.app[QUEUE].watch(job.id)
    # The watcher runs as its own task: a keep-alive timeout must not cancel (and so end) the generator.
    pending: asyncio.Task[JobRecord] = asyncio.ensure_future(_next(records))
    last = ""
    try:
        while True:
            done, _ = await asyncio.wait({pending}, timeout=keepalive)
            if not done:
                await response.write(KEEP_ALIVE)
                continue
            try:
                record = pending.result()
            except StopAsyncIteration:
                break
            data = (await view_of(request, record)).model_dump_json()
            if data != last:
                await response.write(f"data: {data}\n\n".encode())
                last = data
            if record.final:
                break
            pending = asyncio.ensure_future(_next(records))
    except ConnectionResetError:
        log.debug("event stream of job %s closed by the client", job.id)
        return response
    finally:
        pending.cancel()
        await asyncio.wait({pending})  # a generator still running cannot be closed
        aclose = getattr(records, "aclose", None)
        if aclose is not None:
            await aclose()
    await response.write_eof()
    return response
