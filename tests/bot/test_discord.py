"""The Discord bot's jobs end to end: the real discord.py client, a loopback fake of Discord, the real engine."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import discord
import pytest

from bot.core import messages
from bot.core.options import AnimateRequest
from bot.discord.runtime import TOKEN_LIFETIME_S, TOKEN_MARGIN_S
from engine.pipeline import Pipeline
from tests.bot.discord_world import (
    EXAMPLE,
    WAIT_S,
    World,
    checked,
    job_of,
    kind_of,
    no_pings,
    png,
    replies_with_file,
    reply_saying,
    run,
)
from tests.fakes import discord as fd


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
        job = await fake.wait_until(lambda: (j := world.pending()[job_of(result)]).delivered and j, WAIT_S)
        assert job.key == f"dc:{asked['id']}"
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
        assert world.pending()[job_of(result)].source == (fd.CHANNEL, int(linked["id"]))
        listing = await fake.slash("history", user=fd.ALICE)
        said = await fake.wait_until(lambda: [m for m in fake.made_by(listing) if m.get("content")], WAIT_S)
        assert said[-1]["content"].startswith("Your last animations") and said[-1]["flags"] & fd.EPHEMERAL
        assert len(said[-1]["content"].splitlines()) == 2 and "— done" in said[-1]["content"]

        words = await fake.post_message(fd.CHANNEL, fd.BOB, "just words")
        refused = await fake.context_menu("Animate meme", target_message=words, user=fd.ALICE)
        answer = (await fake.wait_until(lambda: fake.responses_of(refused), WAIT_S))[0]
        assert answer["type"] == 4 and answer["data"]["flags"] == fd.EPHEMERAL
        assert answer["data"]["content"] == messages.DISCORD_NO_IMAGE_IN_MESSAGE
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
        replies = await fake.wait_until(lambda: replies_with_file(fake, trigger), WAIT_S)
        result = checked(replies[0])
        job = world.pending()[job_of(result)]
        assert job.key == f"dc:{trigger['id']}" and job.request == AnimateRequest("make him dance", motion="high")
        assert "make him dance" in result["content"] and result["content"].startswith("Meme by bob")
        # the "Queued" reply went away once the result was there
        posts = [c for c in fake.calls if c.method == "POST" and c.path == f"/channels/{fd.CHANNEL}/messages"]
        status = next(c for c in posts if (c.json or {}).get("content", "").startswith("Queued"))
        assert int(status.json["message_reference"]["message_id"]) == int(trigger["id"])
        await fake.wait_for(lambda c: c.method == "DELETE" and c.path.startswith(f"/channels/{fd.CHANNEL}/messages/"))
        await fake.post_message(fd.CHANNEL, fd.ALICE, "lol", reply_to=int(result["id"]))  # pings the bot, names it not
        await fake.post_message(fd.CHANNEL, fd.ALICE, f"<@{fd.BOT_ID}>")  # a mention with no meme anywhere
        await fake.wait_until(lambda: reply_saying(fake, messages.DISCORD_NEED_IMAGE), WAIT_S)
        await world.settled()  # the handler of the reply to the result has ended too
        assert len(world.pending()) == 1, "the reply to the result started nothing"
        no_pings(fake)

    run(tmp_path, pipeline, scenario, discord={"reply_trigger": True})


def test_reply_trigger_without_the_intent_starts_anyway_and_says_what_to_do(
    tmp_path: Path, pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake
        assert not fake.identify["intents"] & fd.MESSAGE_CONTENT, "the second identify drops the refused intent"
        assert any("Message Content Intent" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
        posted = await fake.post_message(fd.CHANNEL, fd.BOB, "", attachments=[fake.add_attachment(png(), "m.png")])
        await fake.post_message(fd.CHANNEL, fd.ALICE, f"<@{fd.BOT_ID}> dance", reply_to=int(posted["id"]))
        await fake.wait_until(lambda: reply_saying(fake, messages.DISCORD_CANT_SEE_REPLY), WAIT_S)
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
        await world.settled()  # the message event's handler has ended too
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
        first_seed = world.pending()[job_id].seed
        async with world.bot():  # a new process: the buttons are matched by their custom_id alone
            again = await fake.click(result["id"], f"mim:again:{job_id}", user=fd.BOB)
            more = await fake.click(result["id"], f"mim:more:{job_id}", user=fd.ALICE)
            again_result, more_result = await world.result(again), await world.result(more)
            jobs = world.pending()
            assert jobs[job_of(more_result)].request.motion == "high"
            assert jobs[job_of(more_result)].seed == first_seed, "⚡ keeps the seed: only the motion changes"
            assert jobs[job_of(again_result)].user_id == fd.BOB

            prompt = await fake.click(result["id"], f"mim:prompt:{job_id}", user=fd.BOB)
            shown = await fake.wait_until(lambda: [m for m in fake.made_by(prompt) if m.get("content")], WAIT_S)
            assert shown[-1]["flags"] & fd.EPHEMERAL and "Motion:" in shown[-1]["content"]

            refused = await fake.click(result["id"], f"mim:del:{job_id}", user=fd.BOB)
            answer = (await fake.wait_until(lambda: fake.responses_of(refused), WAIT_S))[0]
            assert answer["data"]["content"] == messages.NOT_YOUR_JOB and answer["data"]["flags"] == fd.EPHEMERAL
            assert int(result["id"]) in fake.messages

            await fake.click(result["id"], f"mim:del:{job_id}", user=fd.ALICE)
            await fake.wait_until(lambda: int(result["id"]) not in fake.messages, WAIT_S)
            await fake.click(again_result["id"], f"mim:del:{job_of(again_result)}", user=fd.ADMIN)  # an admin may
            await fake.wait_until(lambda: int(again_result["id"]) not in fake.messages, WAIT_S)
        no_pings(fake)

    run(tmp_path, pipeline, scenario, bot=False)


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
        # the clock past the token's end as the one who stops using it sees it: Discord, or the bot 60 s early
        end = fake.token_lifetime_s if how.startswith("Discord") else TOKEN_LIFETIME_S - TOKEN_MARGIN_S
        await fake.wait_until(lambda: fake.token_age(asked) > end, WAIT_S)
        world.gate.open()
        posted = await fake.wait_until(
            lambda: [m for m in fake.messages_in(fd.CHANNEL) if m.get("attachments") and not m.get("interaction_id")],
            WAIT_S,
        )
        result = checked(posted[0])
        assert int(result["message_reference"]["message_id"]) == int(fake.original(asked)["id"])
        await fake.wait_until(lambda: world.pending()[job_of(result)].delivered, WAIT_S)
        if how.startswith("the bot"):  # it stopped using the token, and said so in the status message
            await fake.wait_until(lambda: fake.original(asked)["content"] == messages.DISCORD_SEE_BELOW, WAIT_S)
        no_pings(fake)

    run(tmp_path, pipeline, scenario)


def test_a_job_in_flight_across_a_bot_restart_and_a_gateway_drop_is_delivered_once(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake
        attachment = fake.add_attachment(png(), "cat.png", "image/png")
        world.gate.close()
        async with world.bot():
            asked = await fake.slash("animate", user=fd.ALICE, attachments=[attachment])
            await fake.wait_until(lambda: (m := fake.original(asked)) and m.get("content"), WAIT_S)
        assert [kept.delivered for kept in world.pending().values()] == [False], "in flight at the stop"
        async with world.bot():
            await fake.drop_gateway()  # a gateway reconnect on top, while the job waits
            world.gate.open()
            result = await world.result(asked)
            await fake.wait_until(lambda: world.pending()[job_of(result)].delivered, WAIT_S)
            await world.settled()
        uploads = [c for c in fake.calls if c.files]
        assert len(uploads) == 1, "one upload: the job was delivered exactly once"

    run(tmp_path, pipeline, scenario, bot=False)


def test_a_discord_429_on_the_upload_is_waited_out(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake
        fake.rate_limit_next("/messages/", retry_after=0.5)
        attachment = fake.add_attachment(png(), "cat.png", "image/png")
        asked = await fake.slash("animate", user=fd.ALICE, attachments=[attachment])
        await world.result(asked)
        assert [c.status for c in fake.calls if c.status == 429], "the 429 happened"

    run(tmp_path, pipeline, scenario)


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
        await fake.wait_until(lambda: any(kept.delivered for kept in world.pending().values()), WAIT_S)
        await world.settled()
        kept = next(iter(world.pending().values()))
        assert kept.status_text == messages.DISCORD_CANT_POST
        posts = [c for c in fake.calls if c.method == "POST" and c.path == f"/channels/{fd.CHANNEL}/messages"]
        assert [c.status for c in posts] == [403], "one try at the result, then no retries"
        assert fake.original(asked)["content"] == messages.DISCORD_CANT_POST  # its status message says why

    run(tmp_path, pipeline, scenario)
