"""The Discord tests' world: a fake Discord, the real engine behind a gate, bots started as the CLI starts them."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.core.pending import PendingJob, PendingJobs
from bot.discord.app import MakeItMove, running
from engine.pipeline import Pipeline, PipelineResult, ProgressCallback
from engine.service.app import create_app
from engine.service.keys import REPOSITORY, Tokens
from engine.types import AnimationOptions
from storage.repository import Repository
from tests.bot.telegram_world import ADMIN_TOKEN, ENGINE_TOKEN, GENEROUS, SMALL, settings_of
from tests.fakes import discord as fd
from tests.support.memes import meme
from tests.support.ports import free_port

DC_TOKEN = "fake-discord-bot-token"
ENV = {"DISCORD_TOKEN": DC_TOKEN, "ENGINE_TOKEN": ENGINE_TOKEN, "ENGINE_ADMIN_TOKEN": ADMIN_TOKEN}
WAIT_S = fd.WAIT_S  # any one wait: only a guard against a hang, never a speed limit
HANG_S = 600.0  # a whole scenario, larger than any one wait in it
# the names discord.py gives the tasks that run event handlers, app commands and component callbacks
HANDLER_TASKS = ("discord.py: ", "CommandTree-invoker", "discord-ui-")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "monday-cat.png"


class Gate:
    """A pipeline that waits for `open()` before each job, so a test decides when a job may finish."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline, self.settings = pipeline, pipeline.settings
        self._open = threading.Event()
        self._open.set()

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    def resolve(self, options: AnimationOptions) -> AnimationOptions:
        return self.pipeline.resolve(options)

    def run(self, data: bytes, options: AnimationOptions, progress: ProgressCallback | None = None) -> PipelineResult:
        if progress is not None:
            progress("intake", 0.0)
        if not self._open.wait(WAIT_S):
            raise TimeoutError("the test never opened the gate")
        return self.pipeline.run(data, options, progress)

    def __getattr__(self, name: str) -> Any:
        # what remix and training jobs use (the model cache, the encoder) is the pipeline's own, ungated
        return getattr(self.pipeline, name)


class World:
    """A fake Discord, the real engine on a loopback port, and bots built from one settings object."""

    def __init__(
        self, tmp_path: Path, pipeline: Pipeline, fake: fd.FakeDiscord, sections: dict[str, Any],
        config: Path | None = None,
    ) -> None:  # fmt: skip
        self.fake, self.gate = fake, Gate(pipeline)
        port = free_port()
        base: dict[str, dict[str, Any]] = {
            **SMALL,
            "storage": {"url": f"sqlite:///{tmp_path / 'engine.db'}"},
            "checkpoints": {"dir": str(tmp_path / "ckpt")},
            "engine": {"url": f"http://127.0.0.1:{port}", "port": port},
            "limits": GENEROUS,
            "discord": {
                "api_base_url": fake.api_base_url, "gateway_url": fake.gateway_url, "admins": [fd.ADMIN],
                "state_file": str(tmp_path / "pending.json"), "edit_interval_s": 0.2, "dev_guild": fd.GUILD,
            },
        }  # fmt: skip
        for name, values in sections.items():
            base[name] = {**base.get(name, {}), **values}
        self.settings, self.bot_settings = settings_of(base, config)
        if {"generate", "encode"} & set(sections):  # a pipeline of its own for these settings
            self.gate = Gate(Pipeline(self.settings))
        self.client: MakeItMove | None = None  # the bot last started by bot()
        self._runner: web.AppRunner | None = None

    async def start_engine(self) -> None:
        app = create_app(self.settings, tokens=Tokens(ENGINE_TOKEN, ADMIN_TOKEN), pipeline_factory=lambda _: self.gate)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.settings.engine.port).start()

    async def stop_engine(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @contextlib.asynccontextmanager
    async def bot(self) -> AsyncIterator[MakeItMove]:
        """A running bot, as `makeitmove bot discord` runs it: `async with world.bot():`."""
        async with running(self.bot_settings, ENV, timeout=WAIT_S, guild_ready_timeout=0.05) as client:
            self.client = client
            yield client

    async def settled(self) -> None:
        """Wait until the running bot has handled every event the fake sent and delivers nothing any more.

        What proves a message will never come, however slow the machine: the bot's gateway has read the last
        event sent (discord.py starts an event's handlers as it reads it), and no handler, job watcher or
        held-back status edit of the bot is still running.
        """
        client, fake = self.client, self.fake
        assert client is not None, "no bot is running"
        deadline = time.monotonic() + WAIT_S
        while True:
            await fake.wait_until(lambda: client.ws is not None and (client.ws.sequence or 0) >= fake.sequence)
            busy = [t for t in asyncio.all_tasks() if t.get_name().startswith(HANDLER_TASKS) and not t.done()]
            busy += [t for t in (*client.rt.watchers.values(), *client.rt.flushes.values()) if not t.done()]
            if not busy:
                return
            assert time.monotonic() < deadline, f"still running after {WAIT_S} s: {[t.get_name() for t in busy]}"
            await asyncio.wait(busy, timeout=max(deadline - time.monotonic(), 0))

    def repository(self) -> Repository:
        """The running engine's own repository, to look at what it stored."""
        assert self._runner is not None, "the engine isn't running"
        return self._runner.app[REPOSITORY]

    def pending(self) -> dict[str, PendingJob]:
        return PendingJobs(self.bot_settings.discord.state_file).all()

    async def result(self, interaction: dict[str, Any], *, share: bool = False) -> dict[str, Any]:
        """The result in the interaction's message, once the bot has also recorded it as delivered."""
        message = await result_of(self.fake, interaction, share=share)
        await self.fake.wait_until(lambda: (kept := self.pending().get(job_of(message))) and kept.delivered, WAIT_S)
        return message


def run(
    tmp_path: Path, pipeline: Pipeline, scenario: Callable[[World], Awaitable[None]], *, bot: bool = True,
    fake_options: dict[str, Any] | None = None, config: Path | None = None, **sections: dict[str, Any],
) -> None:  # fmt: skip
    """A fresh world; the engine and (unless `bot=False`) a bot running around `scenario`.

    `config` is a config file the engine's settings start from instead of the shipped defaults.
    """

    async def main() -> None:
        fake = fd.FakeDiscord(DC_TOKEN, **(fake_options or {}))
        await fake.start()
        fake.setup_default()
        world = World(tmp_path, pipeline, fake, sections, config)
        try:
            await world.start_engine()
            if bot:
                async with world.bot():
                    await scenario(world)
            else:
                await scenario(world)
        finally:
            await world.stop_engine()
            await fake.stop()

    asyncio.run(asyncio.wait_for(main(), timeout=HANG_S))


def png(width: int = 160, height: int = 120) -> bytes:
    return meme(width, height)


def kind_of(data: bytes) -> str:
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[4:8] == b"ftyp":
        return "mp4"
    return "?"


async def result_of(fake: fd.FakeDiscord, interaction: Any, *, share: bool = False) -> dict[str, Any]:
    """Wait until the interaction's original message carries the result; check what a result must be."""
    message = await fake.wait_until(lambda: with_file(fake.original(interaction)), timeout=WAIT_S)
    return checked(message, share=share)


def with_file(message: dict[str, Any] | None) -> dict[str, Any] | None:
    return message if message and message.get("attachments") else None


def checked(message: dict[str, Any], *, share: bool = False) -> dict[str, Any]:
    """The result's buttons are the four (and 🌐 Share last, if `share`), with ids Discord accepts."""
    ids = [c["custom_id"] for row in message.get("components", []) for c in row.get("components", [])]
    assert [i.split(":")[1] for i in ids] == ["again", "more", "prompt", "del", *(["share"] if share else [])], ids
    assert all(len(i) <= 100 for i in ids)
    return message


def job_of(message: dict[str, Any]) -> str:
    return str(message["components"][0]["components"][0]["custom_id"].split(":")[2])


def no_pings(fake: fd.FakeDiscord) -> None:
    """Every message the bot sent or edited said allowed_mentions: nobody."""
    for call in fake.calls:
        body = call.json if isinstance(call.json, dict) else {}
        data = body.get("data", body) if isinstance(body.get("data"), dict) else body
        if "content" in data and data.get("content"):
            assert data.get("allowed_mentions", {}).get("parse") == [], (call.method, call.path, data)


def replies_with_file(fake: fd.FakeDiscord, trigger: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        m for m in fake.messages_in(fd.CHANNEL)
        if m.get("attachments") and (m.get("message_reference") or {}).get("message_id") == str(trigger["id"])
    ]  # fmt: skip


def reply_saying(fake: fd.FakeDiscord, line: str) -> dict[str, Any] | None:
    return next((m for m in fake.messages_in(fd.CHANNEL) if m.get("content") == line), None)
