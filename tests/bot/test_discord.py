"""The Discord bot: the real discord.py client against a loopback fake of Discord and the real engine."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
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
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "monday-cat.png"


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


@pytest.fixture(autouse=True)
def nothing_crashed(caplog: pytest.LogCaptureFixture) -> Any:
    """No traceback logged by the bot or discord.py: every failure in these tests is one the bot handles."""
    caplog.set_level(logging.INFO)
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith(("bot.", "discord"))]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors]


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
        if {"generate", "encode"} & set(sections):  # a pipeline of its own for these settings
            self.gate = Gate(Pipeline(self.settings))
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

    async def result(self, interaction: dict[str, Any]) -> dict[str, Any]:
        """The result in the interaction's message, once the bot has also recorded it as delivered."""
        message = await result_of(self.fake, interaction)
        await self.fake.wait_until(lambda: (self.pending().get(job_of(message)) or {}).get("delivered"), WAIT_S)
        return message


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
        result = await world.result(asked)
        assert kind_of(fake.attachment_bytes(result["attachments"][0])) == "gif"
        assert "the cat waves" in result["content"] and "@\u200beveryone" in result["content"]
        edits = [c.at for c in fake.calls if c.method == "PATCH" and asked["token"] in c.path and not c.files]
        assert len(edits) >= 2 and all(b - a >= 0.19 for a, b in zip(edits, edits[1:])), "≤ 1 edit per interval"
        job = await fake.wait_until(lambda: (j := world.pending()[job_of(result)]).get("delivered") and j, WAIT_S)
        assert job["key"] == f"dc:{asked['id']}"
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
        result = await world.result(asked)
        assert result["content"].startswith("Meme by bob")
        assert world.pending()[job_of(result)]["source"] == [fd.CHANNEL, int(linked["id"])]
        listing = await fake.slash("history", user=fd.ALICE)
        said = await fake.wait_until(lambda: [m for m in fake.made_by(listing) if m.get("content")], WAIT_S)
        assert said[-1]["content"].startswith("Your last animations") and said[-1]["flags"] & fd.EPHEMERAL
        assert len(said[-1]["content"].splitlines()) == 2 and "— done" in said[-1]["content"]

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
        await world.result(asked)

    run(tmp_path, pipeline, scenario, fake_options={"message_content_intent_allowed": False},
        discord={"reply_trigger": True})  # fmt: skip


def test_reply_trigger_off_ignores_mentions_and_commands_sync_globally(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake
        assert not fake.identify["intents"] & fd.MESSAGE_CONTENT, "no privileged intent asked for when off"
        assert "animate" in {c["name"] for c in fake.commands()} and not fake.commands(guild=fd.GUILD)
        posted = await fake.post_message(fd.CHANNEL, fd.BOB, "", attachments=[fake.add_attachment(png(), "m.png")])
        await fake.post_message(fd.CHANNEL, fd.ALICE, f"<@{fd.BOT_ID}> dance", reply_to=int(posted["id"]))
        quota = await fake.slash("quota", user=fd.ALICE)  # a later interaction, answered after the message event
        await fake.wait_until(lambda: fake.responses_of(quota), WAIT_S)
        assert not [c for c in fake.calls if c.path == f"/channels/{fd.CHANNEL}/messages" and c.method == "POST"]

    run(tmp_path, pipeline, scenario, discord={"dev_guild": 0})


def test_result_buttons_work_and_keep_working_after_a_restart(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake
        attachment = fake.add_attachment(png(), "cat.png", "image/png")
        async with world.bot():
            asked = await fake.slash("animate", user=fd.ALICE, attachments=[attachment])
            result = await world.result(asked)
        job_id = job_of(result)
        first_seed = world.pending()[job_id]["seed"]
        async with world.bot():  # a new process: the buttons are matched by their custom_id alone
            again = await fake.click(result["id"], f"mim:again:{job_id}", user=fd.BOB)
            more = await fake.click(result["id"], f"mim:more:{job_id}", user=fd.ALICE)
            again_result, more_result = await world.result(again), await world.result(more)
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


def test_admin_commands_for_admins_only(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake

        async def answer(name: str, user: int, **kwargs: Any) -> str:
            asked = await fake.slash(name, user=user, **kwargs)
            said = await fake.wait_until(lambda: [m for m in fake.made_by(asked) if m.get("content")], WAIT_S)
            assert said[-1]["flags"] & fd.EPHEMERAL, f"/{name} answers privately"
            return str(said[-1]["content"])

        assert await answer("stats", fd.ALICE) == text.ONLY_ADMINS
        assert await answer("lora", fd.BOB, subcommand="list") == text.ONLY_ADMINS
        assert (await answer("stats", fd.ADMIN)).startswith("Queue:")
        assert "No checkpoints" in await answer("lora", fd.ADMIN, subcommand="list")
        assert "no checkpoint" in (await answer("lora", fd.ADMIN, subcommand="use", options=[
            {"name": "name", "value": "nope"}])).lower()  # fmt: skip
        limits = await answer("limits", fd.ADMIN, options=[{"name": "user_jobs", "value": 1}])
        assert "1 jobs per" in limits and "now in force" in limits
        banned = await answer("ban", fd.ADMIN, options=[{"name": "user", "value": str(fd.BOB)}])
        assert banned.startswith(f"Banned {fd.BOB}")

        attachment = fake.add_attachment(png(), "cat.png", "image/png")
        asked = await fake.slash("animate", user=fd.BOB, attachments=[attachment])
        refusal = await fake.wait_until(lambda: [m for m in fake.made_by(asked) if m.get("content")], WAIT_S)
        assert refusal[-1]["content"] == text.BANNED and refusal[-1]["flags"] & fd.EPHEMERAL
        await fake.wait_until(lambda: fake.original(asked) is None, WAIT_S)  # the "thinking…" went away

        lifted = await answer("unban", fd.ADMIN, options=[{"name": "user", "value": str(fd.BOB)}])
        assert lifted.startswith("Lifted")
        assert (await answer("quota", fd.BOB)).startswith("1 of 1 left")
        no_pings(fake)

    run(tmp_path, pipeline, scenario)


def test_admins_by_role_id(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake
        asked = await fake.slash("stats", user=fd.ADMIN)  # ADMIN holds ROLE_MODS; no user id is listed
        said = await fake.wait_until(lambda: [m for m in fake.made_by(asked) if m.get("content")], WAIT_S)
        assert said[-1]["content"].startswith("Queue:")

    run(tmp_path, pipeline, scenario, discord={"admins": [fd.ROLE_MODS]})


def test_a_small_upload_limit_gets_an_mp4(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake
        attachment = fake.add_attachment(EXAMPLE.read_bytes(), "monday-cat.png", "image/png")
        fake.attachment_size_limit = 5000  # a GIF this small would be a thumbnail; the MP4 keeps the size
        asked = await fake.slash("animate", user=fd.ALICE, attachments=[attachment])
        result = await world.result(asked)
        uploaded = result["attachments"][0]
        assert uploaded["filename"].endswith(".mp4") and kind_of(fake.attachment_bytes(uploaded)) == "mp4"
        assert uploaded["size"] <= 5000
        fake.attachment_size_limit = 10 * fd.MIB
        roomy = await fake.slash("animate", user=fd.ALICE, attachments=[attachment])
        assert (await world.result(roomy))["attachments"][0]["filename"].endswith(".gif")

    run(tmp_path, pipeline, scenario, generate={"frames": 8}, encode={"size": 256})


@pytest.mark.parametrize("how", ["the bot sees the token run out", "Discord refuses the token early"])
def test_a_job_outliving_the_interaction_token_is_posted_in_the_channel(
    tmp_path: Path, pipeline: Pipeline, how: str
) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake
        fake.callback_window_s = 10**4  # the forged-old interaction may still be answered
        if how.startswith("Discord"):
            fake.token_lifetime_s = 2.0  # the webhook calls fail while the bot still trusts its token
            created = None
        else:  # 13 min 58 s old: the bot stops using the token 60 s before its end, 2 s from now
            created = datetime.now(timezone.utc) - timedelta(seconds=15 * 60 - 62)
        world.gate.close()
        attachment = fake.add_attachment(png(), "cat.png", "image/png")
        asked = await fake.slash("animate", user=fd.ALICE, attachments=[attachment], created_at=created)
        await fake.wait_until(lambda: (m := fake.original(asked)) and m.get("content"), WAIT_S)
        await asyncio.sleep(2.5)
        world.gate.open()
        posted = await fake.wait_until(
            lambda: [m for m in fake.messages_in(fd.CHANNEL) if m.get("attachments") and not m.get("interaction_id")],
            WAIT_S,
        )
        result = _checked(posted[0])
        assert int(result["message_reference"]["message_id"]) == int(fake.original(asked)["id"])
        await fake.wait_until(lambda: world.pending()[job_of(result)].get("delivered"), WAIT_S)
        if how.startswith("the bot"):  # it stopped using the token, and said so in the status message
            await fake.wait_until(lambda: fake.original(asked)["content"] == text.DISCORD_SEE_BELOW, WAIT_S)
        no_pings(fake)

    run(tmp_path, pipeline, scenario)


def test_bad_files_and_options_get_one_private_sentence(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake

        async def refusal(asked: dict[str, Any]) -> str:
            said = await fake.wait_until(lambda: [m for m in fake.made_by(asked) if m.get("content")], WAIT_S)
            assert said[-1]["flags"] & fd.EPHEMERAL
            await fake.wait_until(lambda: all(m["flags"] & fd.EPHEMERAL for m in fake.made_by(asked)), WAIT_S)
            return str(said[-1]["content"])

        text_file = fake.add_attachment(b"not a meme", "notes.txt", "text/plain")
        assert await refusal(await fake.slash("animate", attachments=[text_file])) == text.DISCORD_NO_IMAGE_IN_MESSAGE
        fake_png = fake.add_attachment(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50, "broken.png", "image/png")
        said = await refusal(await fake.slash("animate", attachments=[fake_png]))
        assert "image" in said and "Traceback" not in said
        huge = fake.add_attachment(png(), "huge.png", "image/png")
        huge["size"] = 100 * fd.MIB  # what Discord says the file weighs: refused before downloading
        assert "too large" in await refusal(await fake.slash("animate", attachments=[huge]))
        assert not [c for c in fake.calls if c.path.endswith("/huge.png")]
        assert not world.pending()

    run(tmp_path, pipeline, scenario)


def test_engine_down_then_back(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake
        attachment = fake.add_attachment(png(), "cat.png", "image/png")
        await world.stop_engine()
        asked = await fake.slash("animate", user=fd.ALICE, attachments=[attachment])
        said = await fake.wait_until(lambda: [m for m in fake.made_by(asked) if m.get("content")], WAIT_S)
        assert said[-1]["content"] == text.ENGINE_OFFLINE and said[-1]["flags"] & fd.EPHEMERAL
        quota = await fake.slash("quota", user=fd.ALICE)
        said = await fake.wait_until(lambda: [m for m in fake.made_by(quota) if m.get("content")], WAIT_S)
        assert said[-1]["content"] == text.ENGINE_OFFLINE
        await world.start_engine()
        again = await fake.slash("animate", user=fd.ALICE, attachments=[attachment])
        await world.result(again)

    run(tmp_path, pipeline, scenario)


def test_a_job_in_flight_across_a_bot_restart_and_an_engine_restart_is_delivered_once(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake
        attachment = fake.add_attachment(png(), "cat.png", "image/png")
        world.gate.close()
        async with world.bot():
            asked = await fake.slash("animate", user=fd.ALICE, attachments=[attachment])
            await fake.wait_until(lambda: (m := fake.original(asked)) and m.get("content"), WAIT_S)
        assert [info.get("delivered") for info in world.pending().values()] == [None], "in flight at the stop"
        async with world.bot():
            await fake.drop_gateway()  # a gateway reconnect on top, while the job waits
            world.gate.open()
            result = await world.result(asked)
            await fake.wait_until(lambda: world.pending()[job_of(result)].get("delivered"), WAIT_S)
            await asyncio.sleep(0.5)
        uploads = [c for c in fake.calls if c.files]
        assert len(uploads) == 1, "one upload: the job was delivered exactly once"

    run(tmp_path, pipeline, scenario, bot=False)


def test_cancel_shows_cancelled_in_place(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake
        nothing = await fake.slash("cancel", user=fd.ALICE)
        said = await fake.wait_until(lambda: [m for m in fake.made_by(nothing) if m.get("content")], WAIT_S)
        assert said[-1]["content"] == text.NOTHING_TO_CANCEL
        world.gate.close()
        attachment = fake.add_attachment(png(), "cat.png", "image/png")
        first = await fake.slash("animate", user=fd.BOB, attachments=[attachment])  # runs, held by the gate
        asked = await fake.slash("animate", user=fd.ALICE, attachments=[attachment])  # waits behind it
        await fake.wait_until(lambda: (m := fake.original(asked)) and m.get("content") == "Queued — #1", WAIT_S)
        cancel = await fake.slash("cancel", user=fd.ALICE)
        said = await fake.wait_until(lambda: [m for m in fake.made_by(cancel) if m.get("content")], WAIT_S)
        assert said[-1]["content"] == text.CANCELLED and said[-1]["flags"] & fd.EPHEMERAL
        assert fake.original(asked)["content"] == text.CANCELLED
        world.gate.open()
        await world.result(first)
        await asyncio.sleep(0.3)
        assert fake.original(asked)["content"] == text.CANCELLED and not fake.original(asked).get("attachments")

    run(tmp_path, pipeline, scenario)


def test_a_discord_429_on_the_upload_is_waited_out(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake
        fake.rate_limit_next("/messages/", retry_after=0.5)
        attachment = fake.add_attachment(png(), "cat.png", "image/png")
        asked = await fake.slash("animate", user=fd.ALICE, attachments=[attachment])
        await world.result(asked)
        assert [c.status for c in fake.calls if c.status == 429], "the 429 happened"

    run(tmp_path, pipeline, scenario)


def test_the_cli_runs_the_bot_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    async def main() -> None:
        fake = fd.FakeDiscord(DC_TOKEN)
        await fake.start()
        fake.setup_default()
        config = tmp_path / "bot.toml"
        config.write_text(
            f'[discord]\napi_base_url = "{fake.api_base_url}"\ngateway_url = "{fake.gateway_url}"\n'
            f'state_file = "{tmp_path / "pending.json"}"\ndev_guild = {fd.GUILD}\n'
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "engine.cli", "bot", "discord", "--config", str(config),
            env={**os.environ, **ENV}, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            await fake.wait_ready(WAIT_S)
            await fake.wait_until(lambda: fake.commands(guild=fd.GUILD), WAIT_S)
            asked = await fake.slash("help", user=fd.ALICE)
            said = await fake.wait_until(lambda: [m for m in fake.made_by(asked) if m.get("content")], WAIT_S)
            assert "Apps → Animate meme" in said[-1]["content"] and "/lora" not in said[-1]["content"]
            process.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(process.wait(), WAIT_S) == 0
            assert process.stderr is not None
            log = (await process.stderr.read()).decode()
            assert DC_TOKEN not in log and "Traceback" not in log
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            await fake.stop()

    asyncio.run(asyncio.wait_for(main(), timeout=60))


def test_the_cli_without_a_token_says_where_to_get_one() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DISCORD_TOKEN"}
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "bot", "discord"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode != 0 and "DISCORD_TOKEN" in done.stderr and "Traceback" not in done.stderr


def test_a_result_that_cannot_be_posted_ends_with_a_sentence_not_a_retry_loop(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake
        fake.callback_window_s = 10**4
        fake.read_only.add(fd.CHANNEL)  # the token is past its use, and the channel refuses the bot's posts
        old = datetime.now(timezone.utc) - timedelta(seconds=15 * 60 - 30)
        attachment = fake.add_attachment(png(), "cat.png", "image/png")
        asked = await fake.slash("animate", user=fd.ALICE, attachments=[attachment], created_at=old)
        await fake.wait_until(lambda: next(iter(world.pending().values()), {}).get("delivered"), WAIT_S)
        await asyncio.sleep(0.5)
        info = next(iter(world.pending().values()))
        assert info["status_text"] == text.DISCORD_CANT_POST
        posts = [c for c in fake.calls if c.method == "POST" and c.path == f"/channels/{fd.CHANNEL}/messages"]
        assert [c.status for c in posts] == [403], "one try at the result, then no retries"
        assert fake.original(asked)["content"] == text.DISCORD_CANT_POST  # its status message says why

    run(tmp_path, pipeline, scenario)
