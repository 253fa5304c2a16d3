"""GET /v1/jobs/{id}/events: a job's changes as Server-Sent Events, with keep-alive comments."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from engine.service.api.handlers.jobs import find_job
from engine.service.api.models import JobView
from engine.service.keys import CLOSING, QUEUE, SETTINGS
from engine.service.queue.protocol import JobUpdate

log = logging.getLogger(__name__)

KEEP_ALIVE = b": keep-alive\n\n"


async def _next(updates: AsyncIterator[JobUpdate]) -> JobUpdate:
    return await updates.__anext__()


async def job_events(request: web.Request) -> web.StreamResponse:
    """Send the job's JSON view on every change; close after its final state."""
    job = await find_job(request)
    keepalive = request.app[SETTINGS].engine.sse_keepalive_s
    gallery = request.app[SETTINGS].gallery.public
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    updates = request.app[QUEUE].watch(job.id)
    # The watcher runs as its own task: a keep-alive timeout must not cancel (and so end) the generator.
    pending: asyncio.Task[JobUpdate] = asyncio.ensure_future(_next(updates))
    # A shutdown ends the stream cleanly; the client follows the job again once the engine is back.
    closing = asyncio.ensure_future(request.app[CLOSING].wait())
    last = ""
    try:
        while True:
            done, _ = await asyncio.wait({pending, closing}, timeout=keepalive, return_when=asyncio.FIRST_COMPLETED)
            if closing in done:
                break
            if not done:
                await response.write(KEEP_ALIVE)
                continue
            try:
                record, position = pending.result()
            except StopAsyncIteration:
                break
            # The position comes with the record: no second query per watcher per change.
            data = JobView.of(record, position, gallery=gallery).model_dump_json()
            if data != last:
                await response.write(f"data: {data}\n\n".encode())
                last = data
            if record.final:
                break
            pending = asyncio.ensure_future(_next(updates))
    except ConnectionResetError:
        log.debug("event stream of job %s closed by the client", job.id)
        return response
    finally:
        closing.cancel()
        pending.cancel()
        await asyncio.wait({pending})  # a generator still running cannot be closed
        aclose = getattr(updates, "aclose", None)
        if aclose is not None:
            await aclose()
    await response.write_eof()
    return response
