"""The real engine for the dashboard's tests: its app on a loopback port, a pipeline a test can hold, helpers.

Playwright's sync API owns the test's thread, so the engine runs its own event loop on a thread of its own.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from engine.config import Settings, load_settings, replace
from engine.pipeline import Pipeline, PipelineResult, ProgressCallback
from engine.service.app import create_app
from engine.service.keys import Tokens
from engine.types import AnimationOptions
from tests.support.memes import meme
from tests.support.ports import free_port

T = TypeVar("T")
BOT, ADMIN = "web-bot-token", "web-admin-token"
TOKENS = Tokens(BOT, ADMIN)
SMALL = {"frames": 4, "size": 96, "format": "gif"}
WAIT_S = 30.0
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts" / "web"  # screenshots of every page, kept after the run (gitignored)


def settings_for(tmp_path: Path, **sections: dict[str, Any]) -> Settings:
    """Defaults with a database, a checkpoint folder and a datasets folder in tmp_path, and the sections given."""
    base: dict[str, dict[str, Any]] = {
        "storage": {"url": f"sqlite:///{tmp_path / 'engine.db'}"},
        "checkpoints": {"dir": str(tmp_path / "ckpt")},
        "training": {"datasets_dir": str(tmp_path / "datasets"), "work_dir": str(tmp_path / "work")},
        "generate": {"backend": "procedural"},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return replace(load_settings(), **base)


class SteppingPipeline:
    """The REAL pipeline, held at the start of each stage in `holds` until the test lets it go on."""

    def __init__(self, pipeline: Pipeline, holds: tuple[str, ...] = ()) -> None:
        self.pipeline = pipeline
        self.settings = pipeline.settings
        self.holds = holds
        self.reached: dict[str, threading.Event] = {stage: threading.Event() for stage in holds}
        self.go: dict[str, threading.Event] = {stage: threading.Event() for stage in holds}

    def run(self, data: bytes, options: AnimationOptions, progress: ProgressCallback | None = None) -> PipelineResult:
        """Run the real pipeline, pausing at each held stage until released."""

        def held(stage: str, fraction: float) -> None:
            if progress is not None:
                progress(stage, fraction)
            if stage in self.reached and not self.go[stage].is_set():
                self.reached[stage].set()
                if not self.go[stage].wait(WAIT_S):
                    raise TimeoutError(f"the test never released the pipeline at {stage}")

        return self.pipeline.run(data, options, progress=held)

    def release_all(self) -> None:
        """Let every held job through (the end of a test)."""
        for event in self.go.values():
            event.set()


class Engine:
    """`create_app` served on 127.0.0.1 from a thread with its own loop; `call` runs a coroutine there."""

    def __init__(self, settings: Settings, pipeline: Any, tokens: Tokens = TOKENS) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.tokens = tokens
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="engine-under-test", daemon=True)
        self._runner: web.AppRunner | None = None
        self.app: web.Application | None = None

    def __enter__(self) -> Engine:
        self._thread.start()
        self.call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        release = getattr(self.pipeline, "release_all", None)
        if release is not None:
            release()
        try:
            if self._runner is not None:
                self.call(self._runner.cleanup(), timeout=60)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    async def _start(self) -> None:
        self.app = create_app(self.settings, tokens=self.tokens, pipeline_factory=lambda _: self.pipeline)
        self._runner = web.AppRunner(self.app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = WAIT_S) -> T:
        """Run `coroutine` on the engine's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    # --- the JSON API, as a bot would use it ---------------------------------------------------------
    def submit(self, *, user: str = "u1", chat: str = "c1", platform: str = "telegram", image: bytes | None = None,
               options: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:  # fmt: skip
        """POST /v1/jobs: (status, body)."""

        async def post() -> tuple[int, dict[str, Any]]:
            form = aiohttp.FormData()
            form.add_field("image", meme() if image is None else image, filename="meme.png", content_type="image/png")
            form.add_field("options", json.dumps(options or SMALL))
            for name, value in {"platform": platform, "user_id": user, "chat_id": chat}.items():
                form.add_field(name, value)
            async with (
                aiohttp.ClientSession() as session,
                session.post(f"{self.url}/v1/jobs", data=form, headers={"Authorization": f"Bearer {BOT}"}) as response,
            ):
                return response.status, await response.json()

        return self.call(post())

    def job(self, job_id: str) -> dict[str, Any]:
        """GET /v1/jobs/{id}."""

        async def get() -> dict[str, Any]:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{self.url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {BOT}"}) as response,
            ):
                assert response.status == 200, await response.text()
                return dict(await response.json())

        return self.call(get())

    def share(self, job_id: str, user: str, platform: str = "telegram") -> tuple[int, dict[str, Any]]:
        """POST /v1/jobs/{id}/share for the requester (the bot's 🌐 Share)."""

        async def post() -> tuple[int, dict[str, Any]]:
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    f"{self.url}/v1/jobs/{job_id}/share",
                    json={"platform": platform, "user_id": user},
                    headers={"Authorization": f"Bearer {BOT}"},
                ) as response,
            ):
                return response.status, await response.json()

        return self.call(post())

    def wait_final(self, job_id: str) -> dict[str, Any]:
        """Follow the job's event stream until its final state."""

        async def follow() -> dict[str, Any]:
            last: dict[str, Any] = {}
            async with (
                aiohttp.ClientSession() as session,
                session.get(
                    f"{self.url}/v1/jobs/{job_id}/events", headers={"Authorization": f"Bearer {BOT}"}
                ) as response,
            ):
                async for line in response.content:
                    if line.startswith(b"data: "):
                        last = json.loads(line[6:])
            return last

        return self.call(follow(), timeout=WAIT_S * 2)


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)
