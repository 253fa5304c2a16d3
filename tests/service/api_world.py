"""The engine API under test: the real app on a test client, a shared pipeline, and request helpers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient, TestServer

from engine.config import Settings, load_settings, replace
from engine.service.app import create_app
from engine.service.keys import Tokens
from tests.support.memes import meme

TOKEN, ADMIN = "bot-test-token", "admin-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN}"}
SMALL = {"frames": 4, "size": 96, "format": "gif"}
SLOW = {"frames": 48, "size": 320, "format": "gif"}  # keeps the worker busy while a test looks at the queue
FINAL = {"done", "failed", "cancelled"}
BOTH = Tokens(TOKEN, ADMIN)


def make_settings(tmp_path: Path, **sections: dict[str, Any]) -> Settings:
    """Defaults, a database and a checkpoint folder in tmp_path, and the sections given."""
    base = {"storage": {"url": f"sqlite:///{tmp_path / 'engine.db'}"}, "checkpoints": {"dir": str(tmp_path / "ckpt")}}
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return replace(load_settings(), **base)


def run(
    tmp_path: Path,
    pipeline: Any,
    scenario: Callable[[TestClient], Awaitable[None]],
    *,
    tokens: Tokens = BOTH,
    **sections: dict[str, Any],
) -> None:
    """Serve a fresh app and run one scenario against it."""

    async def main() -> None:
        async with engine(make_settings(tmp_path, **sections), pipeline, tokens) as client:
            await scenario(client)

    asyncio.run(main())


@asynccontextmanager
async def engine(settings: Settings, pipeline: Any, tokens: Tokens) -> AsyncIterator[TestClient]:
    app = create_app(settings, tokens=tokens, pipeline_factory=lambda _: pipeline)
    async with TestClient(TestServer(app)) as client:
        yield client


async def submit(
    client: TestClient,
    image: bytes | None = None,
    options: dict[str, Any] | str | None = None,
    *,
    user: str = "u1",
    chat: str = "c1",
    key: str | None = None,
    headers: dict[str, str] = AUTH,
    **fields: str,
) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    form = aiohttp.FormData()
    form.add_field("image", meme() if image is None else image, filename="meme.png", content_type="image/png")
    sent_options = options if isinstance(options, str) else json.dumps(SMALL if options is None else options)
    form.add_field("options", sent_options)
    for name, value in {"platform": "test", "user_id": user, "chat_id": chat, **fields}.items():
        form.add_field(name, value)
    sent = dict(headers, **({"Idempotency-Key": key} if key else {}))
    async with client.post("/v1/jobs", data=form, headers=sent) as response:
        return response.status, await response.json(), response


async def events(client: TestClient, job_id: str) -> list[dict[str, Any]]:
    """Every event of the job's stream, until the server closes it."""
    seen = []
    async with client.get(f"/v1/jobs/{job_id}/events", headers=AUTH) as response:
        assert response.status == 200 and response.content_type == "text/event-stream"
        async for line in response.content:
            if line.startswith(b"data: "):
                seen.append(json.loads(line[6:]))
    return seen


async def get_json(client: TestClient, path: str, headers: dict[str, str] = AUTH) -> tuple[int, Any]:
    async with client.get(path, headers=headers) as response:
        return response.status, await response.json()


def assert_error(status: int, body: dict[str, Any], expected_status: int, code: str | None = None) -> None:
    assert status == expected_status, body
    assert set(body) >= {"code", "message"} and body["message"].endswith((".", "?", ")")), body
    assert code is None or body["code"] == code, body
    assert "Traceback" not in body["message"]
