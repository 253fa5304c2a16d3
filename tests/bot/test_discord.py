"""The Discord bot: the real discord.py client against a loopback fake of Discord and the real engine."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import discord
import pytest
from aiohttp import web
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bot.core import text
from bot.core.pending import PendingJobs
from bot.discord.app import running
from engine.config import Settings, load_settings, replace
from engine.pipeline import Pipeline, PipelineResult, ProgressCallback
from engine.service.app import create_app
from engine.service.state import Tokens
from engine.types import AnimationOptions
from tests.bot import fake_discord as fd
from tests.bot.test_telegram import ADMIN_TOKEN, ENGINE_TOKEN, GENEROUS, SMALL, free_port
from tests.service.test_api import meme

DC_TOKEN = "fake-discord-bot-token"
ENV = {"DISCORD_TOKEN": DC_TOKEN, "ENGINE_TOKEN": ENGINE_TOKEN, "ENGINE_ADMIN_TOKEN": ADMIN_TOKEN}
WAIT_S = 20.0


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    """The real CPU pipeline at small options, shared by the engines of this module."""
    return Pipeline(replace(load_settings(), **SMALL))


@pytest.fixture(autouse=True)
def discord_urls() -> Any:
    """discord.py's two process-wide URLs, put back after each test."""
    base, gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    yield
    Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = base, gateway


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


class World:
    """A fake Discord, the real engine on a loopback port, and bots built from one settings object."""

    def __init__(self, tmp_path: Path, pipeline: Pipeline, fake: fd.FakeDiscord, sections: dict[str, Any]) -> None:
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
        self.settings: Settings = replace(load_settings(), **base)
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

    def bot(self) -> Any:
        """A running bot, as `makeitmove bot discord` runs it: `async with world.bot():`."""
        return running(self.settings, ENV, timeout=WAIT_S, guild_ready_timeout=0.05)

    def pending(self) -> dict[str, dict[str, Any]]:
        return PendingJobs(self.settings.discord.state_file).all()


def run(
    tmp_path: Path, pipeline: Pipeline, scenario: Callable[[World], Awaitable[None]], *, bot: bool = True,
    fake_options: dict[str, Any] | None = None, **sections: dict[str, Any],
) -> None:  # fmt: skip
    """A fresh world; the engine and (unless `bot=False`) a bot running around `scenario`."""

    async def main() -> None:
        fake = fd.FakeDiscord(DC_TOKEN, **(fake_options or {}))
        await fake.start()
        fake.setup_default()
        world = World(tmp_path, pipeline, fake, sections)
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

    asyncio.run(asyncio.wait_for(main(), timeout=120))


def png(width: int = 160, height: int = 120) -> bytes:
    return meme(width, height)


def kind_of(data: bytes) -> str:
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[4:8] == b"ftyp":
        return "mp4"
    return "?"


async def result_of(fake: fd.FakeDiscord, interaction: Any) -> dict[str, Any]:
    """Wait until the interaction's original message carries the result; check what a result must be."""
    message = await fake.wait_until(lambda: _with_file(fake.original(interaction)), timeout=WAIT_S)
    return _checked(message)


def _with_file(message: dict[str, Any] | None) -> dict[str, Any] | None:
    return message if message and message.get("attachments") else None


def _checked(message: dict[str, Any]) -> dict[str, Any]:
    ids = [c["custom_id"] for row in message.get("components", []) for c in row.get("components", [])]
    assert [i.split(":")[1] for i in ids] == ["again", "more", "prompt", "del"], ids
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


# --- the tests ---


def test_slash_command_defers_shows_progress_and_delivers_a_gif_with_buttons(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake
        synced = fake.commands(guild=fd.GUILD)
        assert {"animate", "history", "quota", "cancel", "lora", "stats", "ban", "unban", "limits", "Animate meme"} <= {
            c["name"] for c in synced
        }
        admin_only = {c["name"]: c.get("default_member_permissions") for c in synced}
        assert admin_only["lora"] == admin_only["stats"] == str(discord.Permissions(manage_guild=True).value)
        assert admin_only["animate"] is None

        attachment = fake.add_attachment(png(), "cat.png", "image/png")
        world.gate.close()
        asked = await fake.slash(
            "animate", user=fd.ALICE, options=[{"name": "prompt", "type": 3, "value": "the cat waves @everyone"}],
            attachments=[attachment],
        )  # fmt: skip
        first = (await fake.wait_until(lambda: fake.responses_of(asked), timeout=WAIT_S))[0]
        assert first["type"] == 5 and not (first.get("data") or {}).get("flags"), "a public thinking message"
        await fake.wait_until(lambda: (m := fake.original(asked)) and m.get("content") == "Reading the meme…", WAIT_S)
        shown = [v.get("content") for v in fake.versions(fake.original(asked))]
        assert shown[1:] == ["Queued — #1", "Reading the meme…"], shown  # after the empty "thinking…"
        world.gate.open()
        result = await result_of(fake, asked)
        assert kind_of(fake.attachment_bytes(result["attachments"][0])) == "gif"
        assert "the cat waves" in result["content"] and "@\u200beveryone" in result["content"]
        job = world.pending()[job_of(result)]
        assert job["key"] == f"dc:{asked['id']}" and job["delivered"]
        no_pings(fake)

    run(tmp_path, pipeline, scenario)


def test_context_menu_on_an_embed_and_on_a_message_without_an_image(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake
        picture = fake.add_attachment(png(), "linked.png", "image/png")
        embed = {"type": "image", "url": "https://example.invalid/linked.png",
                 "thumbnail": {"url": "https://example.invalid/linked.png", "proxy_url": picture["url"]}}  # fmt: skip
        linked = await fake.post_message(fd.CHANNEL, fd.BOB, "look", embeds=[embed])
        asked = await fake.context_menu("Animate meme", target_message=linked, user=fd.ALICE)
        result = await result_of(fake, asked)
        assert result["content"].startswith("Meme by bob")
        assert world.pending()[job_of(result)]["source"] == [fd.CHANNEL, int(linked["id"])]

        words = await fake.post_message(fd.CHANNEL, fd.BOB, "just words")
        refused = await fake.context_menu("Animate meme", target_message=words, user=fd.ALICE)
        answer = (await fake.wait_until(lambda: fake.responses_of(refused), WAIT_S))[0]
        assert answer["type"] == 4 and answer["data"]["flags"] == fd.EPHEMERAL
        assert answer["data"]["content"] == text.DISCORD_NO_IMAGE_IN_MESSAGE
        no_pings(fake)

    run(tmp_path, pipeline, scenario)


def test_reply_trigger_with_the_intent_takes_prompt_and_options(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake
        identify = await fake.wait_ready(WAIT_S)
        assert identify["intents"] & fd.MESSAGE_CONTENT
        posted = await fake.post_message(fd.CHANNEL, fd.BOB, "", attachments=[fake.add_attachment(png(), "m.png")])
        trigger = await fake.post_message(
            fd.CHANNEL, fd.ALICE, f"<@{fd.BOT_ID}> make him dance motion=high", reply_to=int(posted["id"])
        )
        replies = await fake.wait_until(lambda: _replies_with_file(fake, trigger), WAIT_S)
        result = _checked(replies[0])
        job = world.pending()[job_of(result)]
        assert job["key"] == f"dc:{trigger['id']}" and job["options"] == {"prompt": "make him dance", "motion": "high"}
        assert "make him dance" in result["content"] and result["content"].startswith("Meme by bob")
        # the "Queued" reply went away once the result was there
        posts = [c for c in fake.calls if c.method == "POST" and c.path == f"/channels/{fd.CHANNEL}/messages"]
        status = next(c for c in posts if (c.json or {}).get("content", "").startswith("Queued"))
        assert int(status.json["message_reference"]["message_id"]) == int(trigger["id"])
        await fake.wait_for(lambda c: c.method == "DELETE" and c.path.startswith(f"/channels/{fd.CHANNEL}/messages/"))
        await fake.post_message(fd.CHANNEL, fd.ALICE, f"<@{fd.BOT_ID}>")  # a mention with no meme anywhere
        await fake.wait_until(lambda: _reply_saying(fake, text.DISCORD_NEED_IMAGE), WAIT_S)
        no_pings(fake)

    run(tmp_path, pipeline, scenario, discord={"reply_trigger": True})


def _replies_with_file(fake: fd.FakeDiscord, trigger: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        m for m in fake.messages_in(fd.CHANNEL)
        if m.get("attachments") and (m.get("message_reference") or {}).get("message_id") == str(trigger["id"])
    ]  # fmt: skip


def _reply_saying(fake: fd.FakeDiscord, line: str) -> dict[str, Any] | None:
    return next((m for m in fake.messages_in(fd.CHANNEL) if m.get("content") == line), None)


def test_reply_trigger_without_the_intent_starts_anyway_and_says_what_to_do(
    tmp_path: Path, pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake
        assert not fake.identify["intents"] & fd.MESSAGE_CONTENT, "the second identify drops the refused intent"
        assert any("Message Content Intent" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
        posted = await fake.post_message(fd.CHANNEL, fd.BOB, "", attachments=[fake.add_attachment(png(), "m.png")])
        await fake.post_message(fd.CHANNEL, fd.ALICE, f"<@{fd.BOT_ID}> dance", reply_to=int(posted["id"]))
        await fake.wait_until(lambda: _reply_saying(fake, text.DISCORD_CANT_SEE_REPLY), WAIT_S)
        asked = await fake.context_menu("Animate meme", target_message=posted, user=fd.ALICE)  # needs no intent
        await result_of(fake, asked)

    caplog.set_level(logging.WARNING, logger="bot.discord")
    run(tmp_path, pipeline, scenario, fake_options={"message_content_intent_allowed": False},
        discord={"reply_trigger": True})  # fmt: skip


def test_reply_trigger_off_ignores_mentions(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake
        assert not fake.identify["intents"] & fd.MESSAGE_CONTENT, "no privileged intent asked for when off"
        posted = await fake.post_message(fd.CHANNEL, fd.BOB, "", attachments=[fake.add_attachment(png(), "m.png")])
        await fake.post_message(fd.CHANNEL, fd.ALICE, f"<@{fd.BOT_ID}> dance", reply_to=int(posted["id"]))
        quota = await fake.slash("quota", user=fd.ALICE)  # a later interaction, answered after the message event
        await fake.wait_until(lambda: fake.responses_of(quota), WAIT_S)
        assert not [c for c in fake.calls if c.path == f"/channels/{fd.CHANNEL}/messages" and c.method == "POST"]

    run(tmp_path, pipeline, scenario)


def test_result_buttons_work_and_keep_working_after_a_restart(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake
        attachment = fake.add_attachment(png(), "cat.png", "image/png")
        async with world.bot():
            asked = await fake.slash("animate", user=fd.ALICE, attachments=[attachment])
            result = await result_of(fake, asked)
        job_id = job_of(result)
        first_seed = world.pending()[job_id]["seed"]
        async with world.bot():  # a new process: the buttons are matched by their custom_id alone
            again = await fake.click(result["id"], f"mim:again:{job_id}", user=fd.BOB)
            more = await fake.click(result["id"], f"mim:more:{job_id}", user=fd.ALICE)
            again_result, more_result = await result_of(fake, again), await result_of(fake, more)
            jobs = world.pending()
            assert jobs[job_of(more_result)]["options"]["motion"] == "high"
            assert jobs[job_of(more_result)]["seed"] == first_seed, "⚡ keeps the seed: only the motion changes"
            assert jobs[job_of(again_result)]["user_id"] == fd.BOB

            prompt = await fake.click(result["id"], f"mim:prompt:{job_id}", user=fd.BOB)
            shown = await fake.wait_until(lambda: [m for m in fake.made_by(prompt) if m.get("content")], WAIT_S)
            assert shown[-1]["flags"] & fd.EPHEMERAL and "Motion:" in shown[-1]["content"]

            refused = await fake.click(result["id"], f"mim:del:{job_id}", user=fd.BOB)
            answer = (await fake.wait_until(lambda: fake.responses_of(refused), WAIT_S))[0]
            assert answer["data"]["content"] == text.NOT_YOUR_JOB and answer["data"]["flags"] == fd.EPHEMERAL
            assert int(result["id"]) in fake.messages

            await fake.click(result["id"], f"mim:del:{job_id}", user=fd.ALICE)
            await fake.wait_until(lambda: int(result["id"]) not in fake.messages, WAIT_S)
            await fake.click(again_result["id"], f"mim:del:{job_of(again_result)}", user=fd.ADMIN)  # an admin may
            await fake.wait_until(lambda: int(again_result["id"]) not in fake.messages, WAIT_S)
        no_pings(fake)

    run(tmp_path, pipeline, scenario, bot=False)
