"""A loopback OpenAI-compatible server: a real aiohttp `/v1/chat/completions` that plays scripted replies."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Reply = Callable[[dict[str, Any]], Any]
"""Given the request body, returns a web.Response, or a dict to send as the message's JSON content.
May be a coroutine function (to sleep)."""


@dataclass
class FakeOpenAI:
    """Replies are taken in order, one per request; the last one repeats. Every request is recorded."""

    replies: list[Reply] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    base_url: str = ""

    async def completions(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        result = reply(body)
        if asyncio.iscoroutine(result):
            result = await result
        if isinstance(result, web.Response):
            return result
        content = result if isinstance(result, str) else json.dumps(result)
        return web.json_response(completion(body, content))


def completion(body: dict[str, Any], content: str) -> dict[str, Any]:
    """A chat.completion object as OpenAI's API returns it."""
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": body.get("model", "fake"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def error(status: int) -> Reply:
    """An OpenAI-style error body with this status."""
    return lambda body: web.json_response(
        {"error": {"message": "scripted", "type": "fake", "code": None}}, status=status
    )


def sleeps(seconds: float, then: Reply) -> Reply:
    """Answers like `then`, after a delay."""

    async def reply(body: dict[str, Any]) -> Any:
        await asyncio.sleep(seconds)
        return then(body)

    return reply


@contextmanager
def serve(fake: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """Run the fake on 127.0.0.1 (a free port) in its own thread and event loop."""
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.completions)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    ready = threading.Event()

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        fake.base_url = f"http://127.0.0.1:{port}/v1"
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    ready.wait(10)
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
