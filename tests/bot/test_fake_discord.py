"""The loopback fake of Discord, proved with a plain discord.py Client and CommandTree (no project bot code)."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import discord
import pytest
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from tests.bot.discord_probe import HANG_S, NONE, TOKEN, Buttons, Probe, calls_to, png, run, running
from tests.fakes import discord as fd


@pytest.fixture(autouse=True)
def discord_urls() -> Any:
    """discord.py's two process-wide URLs, put back after each test; its loggers quieter meanwhile."""
    base, gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    logger = logging.getLogger("discord")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = base, gateway
    logger.setLevel(level)


# --- the tests ---


def test_login_ready_and_guild_sync() -> None:
    async def scenario(fake: fd.FakeDiscord, client: Probe) -> None:
        identify = await fake.wait_ready()
        assert identify["intents"] == discord.Intents.default().value
        assert client.user is not None and client.user.id == fd.BOT_ID and client.application_id == fd.APPLICATION_ID
        guild = client.get_guild(fd.GUILD)
        assert guild is not None and guild.get_channel(fd.CHANNEL) is not None
        assert guild.get_role(fd.ROLE_MODS) is not None and guild.me is not None
        synced = {c["name"]: c for c in fake.commands(guild=fd.GUILD)}
        assert set(synced) == {"animate", "slow", "ping", "lora", "ban", "Animate meme"} and fake.commands() == []
        assert (
            synced["lora"]["default_member_permissions"] == "32"
            and synced["ping"]["default_member_permissions"] is None
        )
        assert synced["Animate meme"]["type"] == 3
        assert [c.path for c in fake.calls[:2]] == ["/users/@me", "/oauth2/applications/@me"]
        assert [c.status for c in fake.calls if c.status != 200] == []

    run(scenario)


def test_members_intent_gets_every_member_and_ready_comes_without_chunk_requests() -> None:
    async def scenario(fake: fd.FakeDiscord, client: Probe) -> None:
        guild = client.get_guild(fd.GUILD)
        assert guild is not None and guild.chunked
        alice, admin = guild.get_member(fd.ALICE), guild.get_member(fd.ADMIN)
        assert alice is not None and admin is not None
        assert admin.guild_permissions.manage_guild and not alice.guild_permissions.manage_guild

    intents = discord.Intents.default()
    intents.members = True
    run(scenario, client=lambda: Probe(intents=intents, chunk_guilds_at_startup=True))


def test_slash_defers_edits_then_follows_up_with_a_file_and_no_pings() -> None:
    async def scenario(fake: fd.FakeDiscord, client: Probe) -> None:
        image = png()
        attachment = fake.add_attachment(image, "cat.png", "image/png")
        assert (attachment["width"], attachment["height"], attachment["size"]) == (40, 30, len(image))
        asked = await fake.slash("animate", user=fd.ALICE, options=[{"name": "prompt", "value": "wave"}],
                                 attachments=[attachment])  # fmt: skip
        followup = await fake.wait_until(lambda: client.seen.get("followup"))

        assert fake.responses_of(asked) == [{"type": 5}]
        deferred = client.seen["deferred"]
        assert deferred.is_thinking() and not deferred.is_ephemeral()
        original = fake.original(asked)
        assert original is not None and original["content"] == "Queued" and original["flags"] == 0
        assert deferred.message_id == int(original["id"])
        assert [(v["content"], v["flags"]) for v in fake.versions(original)] == [("", fd.LOADING), ("Queued", 0)]
        assert client.seen["image"] == (image, fake.attachment_size_limit, fd.ALICE, "wave")

        [post] = calls_to(fake, "POST", f"/webhooks/{fd.APPLICATION_ID}/{asked['token']}")
        assert post.files == {"out.gif": image[::-1]} and post.query.get("wait") == "1"
        assert post.json["allowed_mentions"] == {"parse": []}
        stored = fake.messages[followup.id]
        assert fake.attachment_bytes(stored["attachments"][0]) == image[::-1]
        assert stored["interaction_id"] == int(asked["id"]) and stored["channel_id"] == str(fd.CHANNEL)
        assert stored["mentions"] == [] and stored["mention_everyone"] is False, "allowed_mentions none pings nobody"
        assert stored["components"][0]["components"][0]["custom_id"] == "probe:again:job1"
        assert [m["id"] for m in fake.made_by(asked)] == [original["id"], stored["id"]]
        assert followup.attachments[0].filename == "out.gif"
        order = [(c.method, c.path.split("/")[1]) for c in fake.calls if c.path.startswith(("/interactions", "/web"))]
        assert order == [("POST", "interactions"), ("PATCH", "webhooks"), ("POST", "webhooks")]
        assert calls_to(fake, "GET", "/cdn/attachments/")[0].status == 200

    run(scenario)


def test_context_menu_reads_the_target_attachment_from_the_cdn() -> None:
    async def scenario(fake: fd.FakeDiscord, client: Probe) -> None:
        image = png(64, 48)
        posted = await fake.post_message(fd.CHANNEL, fd.BOB, "look", attachments=[fake.add_attachment(image, "m.png")])
        asked = await fake.context_menu("Animate meme", target_message=posted, user=fd.ALICE)
        original = await fake.wait_until(lambda: fake.original(asked))
        assert original["content"] == f"{len(image)} bytes from {posted['id']}"
        assert original["flags"] == fd.EPHEMERAL and fake.responses_of(asked)[0]["type"] == 4
        assert original["type"] == 23

    run(scenario)


def test_a_persistent_button_works_after_a_restart() -> None:
    async def scenario(fake: fd.FakeDiscord, client: Probe) -> None:
        channel = client.get_channel(fd.CHANNEL)
        assert isinstance(channel, discord.TextChannel)
        sent = await channel.send("result", view=Buttons(), allowed_mentions=NONE)
        await client.close()
        async with running(Probe()):
            clicked = await fake.click(sent.id, "probe:again:job1", user=fd.BOB)
            await fake.wait_until(lambda: fake.responses_of(clicked))
            assert fake.responses_of(clicked)[0]["type"] == 7
            assert fake.messages[sent.id]["content"] == f"again by {fd.BOB}"
            assert fake.original(clicked) == fake.messages[sent.id]
        assert fake.connections == 2
        with pytest.raises(AssertionError, match="no component"):
            await fake.click(sent.id, "probe:nope")

    run(scenario)


def test_message_content_arrives_only_when_the_bot_is_mentioned_and_a_reply_is_sent_back() -> None:
    async def scenario(fake: fd.FakeDiscord, client: Probe) -> None:
        meme = await fake.post_message(fd.CHANNEL, fd.BOB, "a meme", attachments=[fake.add_attachment(png(), "m.png")])
        asking = await fake.post_message(fd.CHANNEL, fd.ALICE, f"<@{fd.BOT_ID}> animate", reply_to=int(meme["id"]))
        reply = await fake.wait_for(lambda c: c.method == "POST" and c.path == f"/channels/{fd.CHANNEL}/messages")
        first, second = client.messages[:2]
        assert first.content == "" and first.attachments == [], "no Message Content intent, not mentioned"
        assert second.content == f"<@{fd.BOT_ID}> animate" and second.reference is not None
        assert second.reference.message_id == int(meme["id"]) and client.user in second.mentions
        assert isinstance(second.reference.resolved, discord.Message) and second.reference.resolved.content == ""
        assert int(reply.json["message_reference"]["message_id"]) == int(asking["id"])
        assert reply.json["allowed_mentions"] == {"parse": [], "replied_user": False}
        [stored] = [m for m in fake.messages_in(fd.CHANNEL) if m["author"]["id"] == str(fd.BOT_ID)]
        assert stored["type"] == 19 and stored["mentions"] == [] and stored["content"] == "on it"
        echo = await fake.wait_until(lambda: [m for m in client.messages if m.author == client.user])
        assert echo[0].content == "on it", "Discord echoes the bot's own messages, as it does for real"

    run(scenario)


def test_an_expired_token_and_a_late_callback_fail_as_discord_fails_them() -> None:
    async def scenario(fake: fd.FakeDiscord, client: Probe) -> None:
        fake.token_lifetime_s = 0.3
        asked = await fake.slash("slow", options=[{"name": "wait", "value": 0.5}])
        error = await fake.wait_until(lambda: client.seen.get("slow"))
        assert isinstance(error, discord.HTTPException) and (error.status, error.code) == (401, 50027)
        assert fake.responses_of(asked)[0]["type"] == 5

        client.seen.clear()
        fake.token_lifetime_s = 900
        old = datetime.now(timezone.utc) - timedelta(seconds=10)
        await fake.slash("slow", created_at=old)
        late = await fake.wait_until(lambda: client.seen.get("slow"))
        assert isinstance(late, discord.NotFound) and late.code == 10062

    run(scenario)


def test_a_429_is_waited_out_and_retried() -> None:
    async def scenario(fake: fd.FakeDiscord, client: Probe) -> None:
        channel = client.get_channel(fd.CHANNEL)
        assert isinstance(channel, discord.TextChannel)
        fake.rate_limit_next(f"/channels/{fd.CHANNEL}/messages", 0.3)
        started = time.monotonic()
        sent = await channel.send("after the wait", allowed_mentions=NONE)
        assert time.monotonic() - started >= 0.3
        assert [c.status for c in calls_to(fake, "POST", "/messages")] == [429, 200]
        assert [m["content"] for m in fake.messages_in(fd.CHANNEL)] == ["after the wait"] and sent.id

    run(scenario)


def test_gateway_drop_resumes_and_replays_what_was_missed() -> None:
    async def scenario(fake: fd.FakeDiscord, client: Probe) -> None:
        await fake.drop_gateway()
        missed = await fake.post_message(fd.CHANNEL, fd.ALICE, "while you were away")
        await asyncio.wait_for(client.resumed.wait(), fd.WAIT_S)
        assert fake.resumes == 1 and fake.connections == 2
        await fake.wait_until(lambda: [m for m in client.messages if m.id == int(missed["id"])])
        asked = await fake.slash("ping")
        pong = await fake.wait_until(lambda: fake.original(asked))
        assert pong["content"] == "pong" and pong["flags"] == fd.EPHEMERAL
        assert fake.responses_of(asked) == [{"type": 4, "data": {"content": "pong", "tts": False, "flags": 64}}]

    run(scenario)


def test_the_message_content_intent_refused_closes_with_4014() -> None:
    async def main() -> None:
        fake = fd.FakeDiscord(TOKEN, message_content_intent_allowed=False)
        await fake.start()
        fake.setup_default()
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = fake.api_base_url, yarl.URL(fake.gateway_url)
        try:
            with pytest.raises(discord.PrivilegedIntentsRequired):
                async with running(Probe(intents=discord.Intents.default() | discord.Intents(message_content=True))):
                    pass
            assert fake.identify is not None and fake.identify["intents"] & fd.MESSAGE_CONTENT
            refused = Probe()
            with pytest.raises(discord.LoginFailure):
                await refused.login("a-wrong-token")
            await refused.close()
        finally:
            await fake.stop()

    asyncio.run(asyncio.wait_for(main(), timeout=HANG_S))


def test_upload_limit_double_answer_and_unknown_routes() -> None:
    async def scenario(fake: fd.FakeDiscord, client: Probe) -> None:
        channel = client.get_channel(fd.CHANNEL)
        assert isinstance(channel, discord.TextChannel)
        fake.upload_limit = 100
        with pytest.raises(discord.HTTPException) as too_big:
            await channel.send(file=discord.File(io.BytesIO(b"x" * 101), "big.gif"))
        assert (too_big.value.status, too_big.value.code) == (413, 40005)

        asked = await fake.slash("ping")
        await fake.wait_until(lambda: fake.responses_of(asked))
        async with aiohttp.ClientSession() as http:
            url = f"{fake.api_base_url}/interactions/{asked['id']}/{asked['token']}/callback"
            async with http.post(url, json={"type": 4, "data": {"content": "again"}}) as answer:
                assert answer.status == 400 and answer.headers["Content-Type"] == "application/json"
                assert (await answer.json())["code"] == 40060
            async with http.get(f"{fake.api_base_url}/no/such/route") as answer:
                assert answer.status == 404 and (await answer.json()) == {"code": 0, "message": "404: Not Found"}
        assert [c.status for c in fake.calls if c.path == "/no/such/route"] == [404]
        assert len(fake.responses_of(asked)) == 1

    run(scenario)


def test_a_subcommand_its_autocomplete_a_user_option_and_a_modal() -> None:
    async def scenario(fake: fd.FakeDiscord, client: Probe) -> None:
        typed = await fake.autocomplete("lora", subcommand="use", focused="name", value="pi", user=fd.ADMIN)
        choices = await fake.wait_until(lambda: fake.responses_of(typed))
        assert choices == [{"type": 8, "data": {"choices": [{"name": "pixel", "value": "pixel"}]}}]
        used = await fake.slash("lora", subcommand="use", options=[{"name": "name", "value": "pixel"}], user=fd.ADMIN)
        assert (await fake.wait_until(lambda: fake.original(used)))["content"] == "using pixel"
        assert client.seen["lora"] == ("pixel", True)
        assert used["data"]["options"] == [
            {"name": "use", "type": 1, "options": [{"type": 3, "name": "name", "value": "pixel"}]}
        ]

        asked = await fake.slash("ban", user=fd.ADMIN, options=[{"name": "user", "value": str(fd.BOB)}])
        modal = await fake.wait_until(lambda: fake.responses_of(asked))
        assert modal[0]["type"] == 9 and fake.original(asked) is None
        submitted = await fake.submit_modal(asked, {"why": "spam"}, user=fd.ADMIN)
        answer = await fake.wait_until(lambda: fake.original(submitted))
        assert answer["content"] == f"banned {fd.BOB} for spam"
        with pytest.raises(AssertionError, match="never synced"):
            await fake.slash("nope")

    run(scenario)
