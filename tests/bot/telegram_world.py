"""The Telegram tests' world: a fake Bot API, the real engine on a loopback port, bots from one settings object."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from PIL import Image
from telegram.ext import Application

from bot.core.pending import PendingJob, PendingJobs
from bot.settings import BotSettings
from bot.telegram.app import build_application, polling
from bot.telegram.runtime import runtime_of
from engine.config import Settings, load_settings, replace
from engine.pipeline import Pipeline
from engine.service.app import create_app
from engine.service.keys import REPOSITORY, Tokens
from storage.repository import Repository
from tests.fakes.telegram import WAIT_S, Call, FakeTelegram, Users
from tests.support.ports import free_port
from tests.support.settings import BOT_SECTIONS, both

TG_TOKEN = "4242:fake-telegram-token"
ENGINE_TOKEN, ADMIN_TOKEN = "engine-bot-token", "engine-admin-token"
ENV = {"TELEGRAM_TOKEN": TG_TOKEN, "ENGINE_TOKEN": ENGINE_TOKEN, "ENGINE_ADMIN_TOKEN": ADMIN_TOKEN}
ADMIN, ALICE, BOB = 1, 2, 3
GROUP = -100
SMALL = {"ocr": {"backend": "none"}, "generate": {"frames": 2}, "encode": {"size": 64}}
GENEROUS = {"user": {"jobs": 100, "concurrent": 50}, "chat": {"jobs": 100}}
HANG_S = 600.0  # a whole scenario: only a guard against a hang, larger than any one wait in it


class World:
    """A fake Telegram, the real engine on a fixed loopback port, and bots built from one settings object."""

    def __init__(
        self, tmp_path: Path, pipeline: Pipeline, fake: FakeTelegram, sections: dict[str, Any],
        config: Path | None = None,
    ) -> None:  # fmt: skip
        self.fake, self.users, self.pipeline = fake, Users(fake), pipeline
        port = free_port()
        self.checkpoints = tmp_path / "ckpt"
        base: dict[str, dict[str, Any]] = {
            **SMALL,
            "storage": {"url": f"sqlite:///{tmp_path / 'engine.db'}"},
            "checkpoints": {"dir": str(self.checkpoints)},
            "engine": {"url": f"http://127.0.0.1:{port}", "port": port},
            "limits": GENEROUS,
            "telegram": {
                "api_base_url": fake.api_base_url, "file_base_url": fake.file_base_url, "admins": [ADMIN],
                "state_file": str(tmp_path / "pending.json"),
            },
        }  # fmt: skip
        for name, values in sections.items():
            base[name] = {**base.get(name, {}), **values}
        self.settings, self.bot_settings = settings_of(base, config)
        self.application: Application | None = None  # the bot last started by bot()
        self._fetches_before = 0  # how many getUpdates the fake had answered before that bot started
        self._runner: web.AppRunner | None = None

    async def start_engine(self) -> None:
        """Serve the real engine app on its port."""
        app = create_app(
            self.settings, tokens=Tokens(ENGINE_TOKEN, ADMIN_TOKEN), pipeline_factory=lambda _: self.pipeline
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.settings.engine.port).start()

    async def stop_engine(self) -> None:
        """Stop the engine (its database stays)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def repository(self) -> Repository:
        """The running engine's own repository, to look at what it stored."""
        assert self._runner is not None, "the engine isn't running"
        return self._runner.app[REPOSITORY]

    def pending(self) -> dict[str, PendingJob]:
        """The jobs the bots' state file holds, by engine job id."""
        return PendingJobs(self.bot_settings.telegram.state_file).all()

    async def delivered_job(self, job_id: str | None = None) -> PendingJob:
        """The kept job (the only one when no id is given) once the bot has recorded it delivered.

        The record is written after the message goes out, so a test that saw the message waits for it.
        """
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while True:
            kept = self.pending()
            job = kept.get(job_id) if job_id is not None else (next(iter(kept.values())) if len(kept) == 1 else None)
            if job is not None and job.delivered:
                return job
            assert asyncio.get_running_loop().time() < deadline, f"never recorded as delivered: {job_id} in {kept}"
            await asyncio.sleep(0.02)

    def bot(self) -> Any:
        """A running bot: `async with world.bot():`."""
        self.application = build_application(self.bot_settings, ENV)
        # the fake serves every update again to a new bot, so only this bot's own getUpdates say what it took
        self._fetches_before = len(self.fake.offsets)
        return polling(self.application, poll_timeout=1)

    async def settled(self) -> None:
        """Wait until the running bot has handled every update pushed so far and delivers nothing any more.

        What proves a message will never come, however slow the machine: the bot asked for the updates after
        the last one (PTB queues an update before it asks for the next), its update queue is done (PTB marks
        an update done once its handler returned) and every job watcher the handlers started has ended.
        """
        application = self.application
        assert application is not None, "no bot is running"
        if self.fake.last_update_id:
            await self.fake.wait_fetched(self.fake.last_update_id, since=self._fetches_before)
        await asyncio.wait_for(application.update_queue.join(), WAIT_S)
        watchers = runtime_of(application.bot_data).watchers
        while busy := [task for task in watchers.values() if not task.done()]:
            _, still = await asyncio.wait(busy, timeout=WAIT_S)
            assert not still, f"job watchers still running after {WAIT_S} s: {[t.get_name() for t in still]}"


def settings_of(base: dict[str, Any], config: Path | None) -> tuple[Settings, BotSettings]:
    """Both processes' settings: `base` over the shipped defaults, or over the config file at `config`."""
    settings, bots = both(base)
    if config is not None:  # e.g. DIR/tiny.toml: the GPU backend on tiny models, for /remix and /lora tune
        settings = replace(load_settings(config), **{k: v for k, v in base.items() if k not in BOT_SECTIONS})
    return settings, bots


def run(
    tmp_path: Path, pipeline: Pipeline, scenario: Callable[[World], Awaitable[None]], *, engine: bool = True,
    bot: bool = True, config: Path | None = None, **sections: dict[str, Any],
) -> None:  # fmt: skip
    """A fresh world; the engine and a bot running around `scenario` (without `bot`, the scenario starts them).

    `config` is a config file the engine's settings start from instead of the shipped defaults.
    """

    async def main() -> None:
        fake = FakeTelegram(TG_TOKEN)
        await fake.start()
        world = World(tmp_path, pipeline, fake, sections, config)
        try:
            if engine:
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


def replying_to(message: dict[str, Any]) -> Callable[[Call], bool]:
    """The call replies to this message, in its chat."""
    return lambda c: (
        c.chat_id == message["chat"]["id"]
        and (c.params.get("reply_parameters") or {}).get("message_id") == message["message_id"]
    )


def with_text(line: str) -> Callable[[Call], bool]:
    """The call sends exactly this text."""
    return lambda c: c.text == line


async def delivered(world: World, meme_message: dict[str, Any], count: int = 1, *, share: bool = False) -> list[Call]:
    """Wait for `count` results replying to the meme; check what a result must be (🌐 Share last, if `share`)."""
    replied = replying_to(meme_message)
    results = await world.fake.wait_for("sendAnimation", lambda c: replied(c) and c.result != "429", count=count)
    for call in results:
        assert call.uploads["animation"][4:8] == b"ftyp", "the result is an MP4"
        assert "parse_mode" not in call.params
        actions = ["again", "more", "prompt", "del", *(["share"] if share else [])]
        assert [b["callback_data"].split(":")[1] for b in call.buttons] == actions
        assert all(len(b["callback_data"].encode()) <= 64 for b in call.buttons)
    return results


def webp(data: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).save(out, "WEBP")
    return out.getvalue()


def gif(data: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("P").save(out, "GIF")
    return out.getvalue()
