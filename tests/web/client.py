"""The dashboard through the real app on aiohttp's test client: serving one, signing in, a page's CSRF token."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiohttp.test_utils import TestClient, TestServer
from safetensors.numpy import save_file

from engine.config import Settings
from engine.service.app import create_app
from engine.service.keys import Tokens
from tests.web.world import ADMIN, BOT, TOKENS, csrf_of

BOT_AUTH = {"Authorization": f"Bearer {BOT}"}
SAMPLE = {"id": "0" * 32, "name": "some-checkpoint", "platform": "telegram", "user_id": "42"}
Scenario = Callable[[TestClient], Awaitable[None]]


def run(settings: Settings, pipeline: Any, scenario: Scenario, tokens: Tokens = TOKENS) -> None:
    """Serve a fresh app and run one scenario against it."""

    async def main() -> None:
        app = create_app(settings, tokens=tokens, pipeline_factory=lambda _: pipeline)
        async with TestClient(TestServer(app)) as client:
            await asyncio.wait_for(scenario(client), 120)

    asyncio.run(main())


def concrete(path: str) -> str:
    """A route's path with sample values in its placeholders."""
    path = path.replace("{id:[0-9a-f]{32}}", SAMPLE["id"])
    return re.sub(r"\{(\w+)(?::[^}]*)?\}", lambda m: SAMPLE[m.group(1)], path)


async def sign_in(client: TestClient, token: str = ADMIN, *, next_page: str = "/admin/queue") -> aiohttp.ClientResponse:
    """Fill in the sign-in form as a browser would (its own CSRF token first)."""
    async with client.get("/admin/signin") as form_page:
        token_field = re.search(r'name="csrf" value="([0-9a-f]{64})"', await form_page.text())
    assert token_field is not None
    data = {"csrf": token_field.group(1), "token": token, "next": next_page}
    response = await client.post("/admin/signin", data=data, allow_redirects=False)
    await response.read()
    return response


async def page_csrf(client: TestClient, path: str = "/admin/queue") -> str:
    async with client.get(path) as response:
        assert response.status == 200, await response.text()
        return csrf_of(await response.text())


def write_lora(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.safetensors"
    save_file({"down.lora_A.weight": np.zeros((2, 4), np.float32)}, str(path), metadata={"rank": "2"})
    return path
