"""A shutdown ends the long-lived event streams at once and cleanly, instead of holding the engine's stop.

A bot following a job and a dashboard watching the queue each keep a stream open; before, a stop waited for the
next keep-alive (15 s by default) or aiohttp's 60 s shutdown timeout, which then cut the connection mid-chunk.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer
from yarl import URL

from engine.service.app import create_app
from engine.types import AnimationOptions
from tests.service.api_world import ADMIN, AUTH, BOTH, SMALL, make_settings
from tests.support.memes import meme

BOUND_S = 30.0  # far below aiohttp's 60 s shutdown timeout, so a stream that only the timeout ends fails here


class HeldPipeline:
    """Holds every job until released, then fails it: a job that stays running while the engine stops."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def run(self, data: bytes, options: AnimationOptions, progress: object = None) -> object:
        self.started.set()
        self.release.wait(BOUND_S)
        raise RuntimeError("released by the test")


async def submit(session: aiohttp.ClientSession, url: URL) -> tuple[int, dict[str, object]]:
    form = aiohttp.FormData({"platform": "test", "user_id": "u1", "chat_id": "c1", "options": json.dumps(SMALL)})
    form.add_field("image", meme(), filename="meme.png", content_type="image/png")
    async with session.post(url, data=form, headers=AUTH) as response:
        return response.status, await response.json()


async def sign_in(session: aiohttp.ClientSession, url: URL) -> None:
    """The dashboard's sign-in form, as a browser fills it in."""
    async with session.get(url) as form:
        csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', await form.text())
    assert csrf is not None
    data = {"csrf": csrf.group(1), "token": ADMIN, "next": "/admin/queue"}
    async with session.post(url, data=data, allow_redirects=False) as answer:
        assert answer.status == 303, await answer.text()


def test_a_stop_ends_job_and_queue_streams_cleanly_while_a_job_runs(tmp_path: Path) -> None:
    held = HeldPipeline()
    # keep-alives far apart, so only the shutdown can end the streams within the bound
    settings = make_settings(tmp_path, engine={"sse_keepalive_s": 300.0})

    async def main() -> None:
        server = TestServer(create_app(settings, tokens=BOTH, pipeline_factory=lambda _: held))
        await server.start_server()
        try:
            async with (
                aiohttp.ClientSession() as bot,
                aiohttp.ClientSession(
                    cookie_jar=aiohttp.CookieJar(unsafe=True)  # the session cookie of a server at 127.0.0.1
                ) as admin,
            ):
                status, body = await submit(bot, server.make_url("/v1/jobs"))
                assert status == 202, body
                assert await asyncio.to_thread(held.started.wait, BOUND_S), "the job never started"
                job = await bot.get(server.make_url(f"/v1/jobs/{body['id']}/events"), headers=AUTH)
                assert job.status == 200
                assert (await asyncio.wait_for(job.content.readline(), BOUND_S)).startswith(b"data: ")
                await sign_in(admin, server.make_url("/admin/signin"))
                queue = await admin.get(server.make_url("/admin/queue/events"))
                assert queue.status == 200
                assert (await asyncio.wait_for(queue.content.readline(), BOUND_S)) == b"event: queue\n"

                stopping = asyncio.create_task(server.close())
                # each stream reaches its end (a clean end of the chunked body, no payload error) within the bound
                rest = await asyncio.wait_for(asyncio.gather(job.content.read(), queue.content.read()), BOUND_S)
                assert job.content.at_eof() and queue.content.at_eof(), rest
                held.release.set()
                await asyncio.wait_for(stopping, BOUND_S)
        finally:
            held.release.set()
            await server.close()

    asyncio.run(main())
