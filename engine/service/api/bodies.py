"""Reading request bodies from untrusted clients: a deadline and a minimum rate, size caps, the one JSON parser."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar

from aiohttp import web

from engine import safejson
from engine.service.api.middleware import Refused
from engine.service.keys import SETTINGS

T = TypeVar("T")

JSON_BODY_BYTES = 64 * 1024  # every JSON body the API takes (admin changes, a requester) is a few hundred bytes
TOO_SLOW = "That request arrived too slowly; please send it again."


async def within_deadline(request: web.Request, reading: Awaitable[T]) -> T:
    """Await `reading` (something that reads the body) under [engine] body_timeout_s and body_min_rate.

    A 408 with a sentence when the body takes longer than the timeout, or, after a grace period, arrives
    slower than the minimum rate: a client dripping bytes must not hold a connection and a buffer for minutes.
    """
    engine = request.app[SETTINGS].engine
    timeout, min_rate = engine.body_timeout_s, engine.body_min_rate
    grace = min(5.0, timeout / 4)  # a slow start (TCP, a proxy) is not a slow body
    tick = min(1.0, grace / 2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    task = asyncio.ensure_future(reading)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=tick)
            if done:
                return task.result()
            elapsed = loop.time() - started
            if elapsed > timeout or (elapsed > grace and request.content.total_bytes < min_rate * elapsed):
                raise Refused(408, "too_slow", TOO_SLOW)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def read_json_object(request: web.Request, what: str) -> dict[str, Any]:
    """The body as a JSON object (415 unless application/json; 400 or 413 with a sentence when it isn't one)."""
    if request.content_type != "application/json":
        raise Refused(415, "not_json", f"Send the {what} as application/json.")
    if request.content_length is not None and request.content_length > JSON_BODY_BYTES:
        raise Refused(413, "too_large", f"The {what} is too large (the limit is {JSON_BODY_BYTES // 1024} KB).")
    raw = await within_deadline(request, _read_capped(request, JSON_BODY_BYTES, what))
    return safejson.loads_object(raw, what=what, max_bytes=JSON_BODY_BYTES)


async def _read_capped(request: web.Request, cap: int, what: str) -> bytes:
    """At most `cap` bytes of the body, whatever Content-Length claimed (a chunked body has none)."""
    body = bytearray()
    while chunk := await request.content.read(min(cap + 1 - len(body), 64 * 1024) or 1):
        body.extend(chunk)
        if len(body) > cap:
            raise Refused(413, "too_large", f"The {what} is too large (the limit is {cap // 1024} KB).")
    return bytes(body)
