"""bot.core.engine_client against the real engine app (real SQLite, real CPU pipeline) on a loopback port."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from PIL import Image, ImageDraw

from bot.core import engine_client, messages
from bot.core.engine_client import EngineClient
from bot.core.errors import EngineError, EngineUnavailable, OptionError
from bot.core.models import Job
from engine.config import load_settings, replace
from engine.pipeline import Pipeline
from engine.service.app import create_app
from engine.service.keys import Tokens
from tests.support.ports import free_port

TOKEN, ADMIN = "bot-test-token", "admin-test-token"
SMALL = {"frames": 4, "size": 96, "format": "gif"}
WAIT_S = 90.0  # how long a wait may take before the test fails: only a guard against a hang, never a speed limit
Scenario = Callable[[EngineClient], Awaitable[None]]


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    """The real CPU pipeline, built once for the module."""
    return Pipeline(load_settings())


def meme(seed: int = 0) -> bytes:
    """A small PNG: a sky, a ground and a round subject."""
    im = Image.new("RGB", (160, 120), (90 + seed, 140, 200))
    draw = ImageDraw.Draw(im)
    draw.rectangle((0, 80, 160, 120), fill=(70, 120, 60))
    draw.ellipse((53, 30, 107, 90), fill=(230, 180, 40))
    out = io.BytesIO()
    im.save(out, "PNG")
    return out.getvalue()


@asynccontextmanager
async def engine(tmp_path: Path, pipeline: Pipeline, **sections: dict[str, Any]) -> AsyncIterator[str]:
    """The real engine app served on a loopback port; yields its base URL."""
    base = {"storage": {"url": f"sqlite:///{tmp_path / 'engine.db'}"}, "checkpoints": {"dir": str(tmp_path / "ckpt")}}
    settings = replace(load_settings(), **{**base, **sections})
    app = create_app(settings, tokens=Tokens(TOKEN, ADMIN), pipeline_factory=lambda _: pipeline)
    async with TestServer(app) as server:
        yield str(server.make_url("")).rstrip("/")


def run(tmp_path: Path, pipeline: Pipeline, scenario: Scenario, **sections: dict[str, Any]) -> None:
    """Serve a fresh engine and run one scenario with a client that has both tokens."""

    async def main() -> None:
        async with engine(tmp_path, pipeline, **sections) as url, EngineClient(url, TOKEN, admin_token=ADMIN) as client:
            await scenario(client)

    asyncio.run(main())


async def submit(client: EngineClient, user: str = "u1", **kwargs: Any) -> Job:
    fields: dict[str, Any] = {"options": SMALL, "platform": "test", "user_id": user, "chat_id": "c1"}
    return await client.submit(meme(), filename="meme.png", **{**fields, **kwargs})


def test_submit_follow_and_fetch_the_gif(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(client: EngineClient) -> None:
        first = await submit(client, options=SMALL | {"prompt": "the sun bounces"}, idempotency_key="k1")
        second = await submit(client)  # queued behind the first, so its stream starts before it runs
        assert first.status == "queued" and first.id != second.id
        seen = [job async for job in client.events(second.id)]
        assert seen[-1].status == "done" and seen[-1].fraction == 1.0 and seen[-1].finished_at is not None
        assert all(not job.final for job in seen[:-1]) and len(seen) == len(set(map(repr, seen)))
        stages = [job.stage for job in seen if job.status == "running" and job.stage]  # None: just started
        # Updates that arrive faster than the stream is read are coalesced, so stages may be skipped,
        # but those seen come in pipeline order and the job is followed through more than one.
        order = ["intake", "ocr", "detext", "caption", "synthesize", "generate", "postprocess", "encode", "done"]
        assert len(set(stages)) >= 2 and stages == sorted(stages, key=order.index), stages
        assert messages.status_text(seen[0]) in ("Queued", "Queued — #1")
        assert [j.fraction for j in seen] == sorted(j.fraction for j in seen)

        data, content_type = await client.result(second.id)
        gif = Image.open(io.BytesIO(data))
        assert content_type == "image/gif" and gif.format == "GIF" and gif.n_frames == 4

        again = await submit(client, options=SMALL | {"prompt": "the sun bounces"}, idempotency_key="k1")
        assert again.id == first.id  # the same key finds the same job
        done = [job async for job in client.events(first.id)][-1]
        assert done == await client.get(first.id) and done.script and done.seed is not None
        assert done.script["motion_prompt"] and done.created_at and done.created_at.tzinfo is not None

        assert [job.id for job in await client.history("test", "u1")] == [second.id, first.id]
        quota = await client.quota("test", "u1")
        assert quota.jobs_left == quota.jobs_limit - 2 and quota.refills_at is not None
        assert (await client.cancel(first.id, platform="test", user_id="u1")).status == "done"
        with pytest.raises(EngineError) as caught:
            await client.cancel(first.id, platform="test", user_id="someone-else")
        assert caught.value.status == 403 and caught.value.code == "not_your_job"
        with pytest.raises(EngineError) as caught:
            await client.get("0" * 32)
        assert caught.value.code == "job_not_found" and messages.error_text(caught.value) == messages.UNKNOWN_JOB
        with pytest.raises(EngineError) as caught:
            await client.result("0" * 32)
        assert caught.value.status == 404

    run(tmp_path, pipeline, scenario)


def test_refusals_are_engine_errors(tmp_path: Path, pipeline: Pipeline, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(client: EngineClient) -> None:
        assert TOKEN not in repr(client) and ADMIN not in repr(client)
        async with EngineClient(client.base_url, "wrong-token", admin_token="wrong") as stranger:
            for call in (stranger.quota("test", "u1"), stranger.stats(), submit(stranger)):
                with pytest.raises(EngineError) as caught:
                    await call
                assert caught.value.status == 401 and caught.value.code == "unauthorized"
        async with EngineClient(client.base_url, TOKEN) as bot_only:
            with pytest.raises(EngineError) as caught:
                await bot_only.stats()  # admin calls need the admin token
            assert caught.value.status == 401

        assert (await submit(client)).status == "queued"
        with pytest.raises(EngineError) as caught:
            await submit(client)
        error = caught.value
        assert error.status == 429 and error.code == "rate_limited" and error.retry_after is not None
        assert 0 < error.retry_after <= 600 and "try again in" in messages.error_text(error)
        assert (await submit(client, is_admin=True)).status == "queued"  # admins are exempt

        with pytest.raises(EngineError) as caught:
            await client.submit(b"%PDF-1.4 nope", filename="x.pdf", options={}, platform="test", user_id="u2",
                                chat_id="c1")  # fmt: skip
        assert caught.value.code == "not_an_image" and messages.error_text(caught.value) == caught.value.message
        with pytest.raises(EngineError) as caught:
            await submit(client, user="u3", options={"fps": 500})
        assert caught.value.status == 400 and "fps" in caught.value.message

    with caplog.at_level(logging.DEBUG):
        run(tmp_path, pipeline, scenario, limits={"user": {"jobs": 1}})
    assert "bot.core.engine_client" in caplog.text and "/v1/jobs" in caplog.text
    assert TOKEN not in caplog.text and ADMIN not in caplog.text and "wrong-token" not in caplog.text


def test_admin_calls(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(client: EngineClient) -> None:
        listing = await client.checkpoints()
        assert listing.checkpoints == () and listing.active is None
        assert (await client.activate_checkpoint(None)).active is None
        with pytest.raises(EngineError) as caught:
            await client.activate_checkpoint("missing")
        assert caught.value.status == 400

        ban = await client.ban("test", "u9", "spam")
        assert (ban.platform, ban.user_id, ban.reason) == ("test", "u9", "spam")
        with pytest.raises(EngineError) as caught:
            await submit(client, user="u9")
        assert caught.value.code == "banned" and messages.error_text(caught.value) == messages.BANNED
        assert await client.unban("test", "u9") is True and await client.unban("test", "u9") is False
        assert (await submit(client, user="u9")).status == "queued"

        stats = await client.stats()
        assert stats.bans == 0 and sum(stats.jobs_by_status.values()) == 1
        before = await client.limits()
        after = await client.set_limits(user_jobs=9, queue_max=50)
        assert (after.user_jobs, after.queue_max, after.chat_jobs) == (9, 50, before.chat_jobs)
        assert await client.limits() == after
        with pytest.raises(OptionError, match="speed"):
            await client.set_limits(speed=3)

    run(tmp_path, pipeline, scenario)


def test_an_engine_that_is_down_is_unavailable_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Quickly by its schedule, not the clock: each call gives up after RETRIES short, doubling waits."""
    waits: list[float] = []
    sleep = asyncio.sleep

    async def counted(delay: float, *args: Any) -> Any:
        waits.append(delay)
        return await sleep(delay, *args)

    async def main() -> None:
        async with EngineClient(f"http://127.0.0.1:{free_port()}", TOKEN, timeout=2) as client:
            monkeypatch.setattr(asyncio, "sleep", counted)
            for call in (client.get("0" * 32), client.quota("test", "u1"), submit(client)):
                waits.clear()
                with pytest.raises(EngineUnavailable) as caught:
                    await call
                assert str(caught.value) == messages.ENGINE_OFFLINE
                assert waits == [engine_client.RETRY_DELAY_S * 2**n for n in range(engine_client.RETRIES)]
                assert sum(waits) <= 2.0, "a chat user waits for this sentence"
            monkeypatch.setattr(asyncio, "sleep", sleep)
            monkeypatch.setattr(engine_client, "STREAM_BACKOFF_S", (0.01,))
            with pytest.raises(EngineUnavailable):  # reconnects, then polls, then gives up
                [job async for job in client.events("0" * 32)]

    asyncio.run(main())


def test_events_reconnect_then_fall_back_to_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    """A loopback fake: the stream drops after one event, then fails; the job is finished by polling."""
    monkeypatch.setattr(engine_client, "STREAM_BACKOFF_S", (0.01,))
    monkeypatch.setattr(engine_client, "POLL_INTERVAL_S", 0.01)
    job_id = "a" * 32
    calls = {"events": 0, "get": 0}

    def view(status: str, stage: str | None, fraction: float) -> dict[str, Any]:
        return {"id": job_id, "status": status, "position": None, "progress": {"stage": stage, "fraction": fraction},
                "error": None, "script": None, "checkpoint": None, "seed": 1, "timings": None,
                "created_at": "2025-05-01T12:00:00Z", "finished_at": None}  # fmt: skip

    async def events(request: web.Request) -> web.StreamResponse:
        calls["events"] += 1
        if calls["events"] > 1:
            return web.json_response({"code": "internal", "message": "Boom."}, status=500)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b": keep-alive\n\n")
        await response.write(f"data: {__import__('json').dumps(view('running', 'ocr', 0.25))}\n\n".encode())
        return response  # closed before the job is final

    async def get(request: web.Request) -> web.Response:
        calls["get"] += 1
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        return web.json_response(view("running", "generate", 0.6) if calls["get"] == 1 else view("done", "done", 1))

    async def main() -> list[Job]:
        app = web.Application()
        app.router.add_get("/v1/jobs/{id}/events", events)
        app.router.add_get("/v1/jobs/{id}", get)
        async with TestServer(app) as server, EngineClient(str(server.make_url("")), TOKEN) as client:
            return [job async for job in client.events(job_id)]

    seen = asyncio.run(main())
    assert [(j.status, j.stage) for j in seen] == [("running", "ocr"), ("running", "generate"), ("done", "done")]
    assert calls == {"events": 2, "get": 2}


class FakeEvents:
    """A loopback fake of the engine's job endpoints: streams stay open, running, until `finish()`."""

    def __init__(self) -> None:
        self.open = 0
        self.most_open = 0
        self.polled: set[str] = set()
        self.polls: dict[str, int] = {}  # job id -> how often it was polled
        self.done = asyncio.Event()

    def app(self) -> web.Application:
        """The routes: events, get and result."""
        app = web.Application()
        app.router.add_get("/v1/jobs/{id}/events", self.events)
        app.router.add_get("/v1/jobs/{id}/result", self.result)
        app.router.add_get("/v1/jobs/{id}", self.get)
        return app

    def view(self, job_id: str) -> dict[str, Any]:
        status = "done" if self.done.is_set() else "running"
        return {"id": job_id, "status": status, "progress": {"stage": status, "fraction": 0.5}}

    async def events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            job_id = request.match_info["id"]
            await response.write(f"data: {json.dumps(self.view(job_id))}\n\n".encode())
            await self.done.wait()
            await response.write(f"data: {json.dumps(self.view(job_id))}\n\n".encode())
        finally:
            self.open -= 1
        return response

    async def get(self, request: web.Request) -> web.Response:
        self.polled.add(request.match_info["id"])
        self.polls[request.match_info["id"]] = self.polls.get(request.match_info["id"], 0) + 1
        return web.json_response(self.view(request.match_info["id"]))

    async def result(self, request: web.Request) -> web.Response:
        return web.Response(body=b"GIF89a-result", content_type="image/gif")

    def finish(self) -> None:
        """Every job is done: streams send their final event, polls answer done."""
        self.done.set()


async def follow(client: EngineClient, job_id: str) -> list[str]:
    return [job.status async for job in client.events(job_id)]


async def until(condition: Callable[[], bool], timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_many_open_event_streams_do_not_starve_a_result_download() -> None:
    """130 jobs followed at once (more than aiohttp's pool of 100): a download still goes through at once."""
    fake = FakeEvents()

    async def main() -> None:
        async with TestServer(fake.app()) as server, EngineClient(str(server.make_url("")), TOKEN) as client:
            followers = [asyncio.create_task(follow(client, f"job{n}")) for n in range(130)]
            await until(lambda: fake.open == 130)
            assert await asyncio.wait_for(client.result("job0"), timeout=WAIT_S) == (b"GIF89a-result", "image/gif")
            fake.finish()
            statuses = await asyncio.wait_for(asyncio.gather(*followers), timeout=WAIT_S)
            assert all(seen == ["running", "done"] for seen in statuses)
            assert not fake.polled and client.open_streams == 0

    asyncio.run(main())


def test_jobs_past_max_streams_are_polled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_client, "POLL_INTERVAL_S", 0.01)
    fake = FakeEvents()

    async def main() -> None:
        async with TestServer(fake.app()) as server:
            client = EngineClient(str(server.make_url("")), TOKEN, max_streams=4)
            async with client:
                followers = [asyncio.create_task(follow(client, f"job{n}")) for n in range(6)]
                await until(lambda: fake.open + len(fake.polled) >= 6)  # every follower chose: a stream or a poll
                # each polling job went round its loop twice more, each time choosing a poll over a 5th stream
                before = dict(fake.polls)
                await until(lambda: all(fake.polls[job] >= polls + 2 for job, polls in before.items()))
                assert fake.most_open == 4 and client.open_streams == 4 and len(fake.polled) == 2
                fake.finish()
                statuses = await asyncio.wait_for(asyncio.gather(*followers), timeout=WAIT_S)
                assert all(seen == ["running", "done"] for seen in statuses)

    asyncio.run(main())
