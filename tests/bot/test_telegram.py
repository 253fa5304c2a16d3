"""The Telegram bot: the real python-telegram-bot Application against a loopback fake Bot API and the real engine."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import numpy as np
import pytest
import safetensors.numpy

from bot.core import messages
from bot.core.engine_client import EngineClient
from bot.telegram.app import build_application, webhook, webhook_of
from engine.config import load_settings, replace
from engine.errors import ConfigError
from engine.pipeline import Pipeline
from tests.bot.telegram_world import (
    ADMIN,
    ALICE,
    BOB,
    ENGINE_TOKEN,
    ENV,
    GROUP,
    SMALL,
    World,
    delivered,
    gif,
    replying_to,
    run,
    webp,
)
from tests.fakes.telegram import BOT_USERNAME
from tests.support.memes import meme
from tests.support.ports import free_port


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    """The real CPU pipeline at small options, shared by the engines of this module."""
    return Pipeline(replace(load_settings(), **SMALL))


def test_caption_trigger_result_buttons_history_and_quota(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(world: World) -> None:
        fake, users = world.fake, world.users
        await fake.wait_for("setMyCommands")
        photo = users.message(ALICE, text="/animate the cat waves", **users.photo(meme()))
        queued = (await fake.wait_for("sendMessage", replying_to(photo)))[0]
        assert queued.text.startswith("Queued")
        result = (await delivered(world, photo))[0]
        assert "the cat waves" in result.text and "user2" in result.text
        await fake.wait_for("deleteMessage", lambda c: int(c.params["message_id"]) == queued.result["message_id"])
        job_id = result.buttons[0]["callback_data"].split(":")[2]
        shown = result.result

        users.tap(ALICE, shown, f"mim:prompt:{job_id}")
        await fake.wait_for("sendMessage", lambda c: "Motion: the cat waves" in c.text)
        users.tap(BOB, shown, f"mim:again:{job_id}")
        users.tap(ALICE, shown, f"mim:more:{job_id}")
        again, more = (await delivered(world, photo, 3))[1:]
        assert {again.buttons[0]["callback_data"], more.buttons[0]["callback_data"]} != {f"mim:again:{job_id}"}
        users.tap(BOB, shown, f"mim:del:{job_id}")
        refused = await fake.wait_for("answerCallbackQuery", lambda c: c.text == messages.NOT_YOUR_JOB)
        assert refused[0].params.get("show_alert") in ("true", "True", True)
        users.tap(ALICE, shown, f"mim:del:{job_id}")
        await fake.wait_for("deleteMessage", lambda c: int(c.params["message_id"]) == shown["message_id"])
        await world.settled()
        assert len(fake.of("answerCallbackQuery")) == 5, "every tap is answered exactly once"

        users.message(ALICE, text="/quota")
        await fake.wait_for("sendMessage", lambda c: " left" in c.text and c.chat_id == ALICE)
        listing = users.message(ALICE, text="/history")
        history = (await fake.wait_for("sendMessage", replying_to(listing)))[0]
        assert history.text.startswith("Your last animations") and len(history.buttons) == 2
        users.tap(ALICE, history.result, history.buttons[0]["callback_data"])
        await fake.wait_for("sendAnimation", replying_to(history.result))

    run(tmp_path, pipeline, scenario)


def test_reply_triggers_photo_document_sticker_animation_and_group_mention(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(world: World) -> None:
        users, image = world.users, meme(seed=3)
        memes = [
            users.message(ALICE, **users.photo(image)),
            users.message(ALICE, **users.document(image, "meme.png", "image/png")),
            users.message(ALICE, **users.sticker(webp(image))),
            users.message(ALICE, **users.document(gif(image), "meme.gif", "image/gif"),
                          animation={"file_id": "", "file_unique_id": "a", "width": 160, "height": 120,
                                     "duration": 1, "mime_type": "image/gif"}),
        ]  # fmt: skip
        memes[3]["animation"]["file_id"] = memes[3]["document"]["file_id"]
        group_meme = users.message(BOB, GROUP, **users.photo(image))
        for meme_message in memes:
            users.message(ALICE, text="/animate", reply_to=meme_message)
        users.message(BOB, GROUP, text="/animate@someone_else_bot", reply_to=group_meme)
        users.message(BOB, GROUP, text=f"/animate@{BOT_USERNAME} camera=zoom-in", reply_to=group_meme)
        for meme_message in [*memes, group_meme]:
            await delivered(world, meme_message)
        await world.settled()
        assert len(world.fake.of("sendAnimation", GROUP)) == 1, "the command for another bot is not ours"

    run(tmp_path, pipeline, scenario)


def test_private_photo_gets_an_animate_button(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(world: World) -> None:
        photo = world.users.message(ALICE, **world.users.photo(meme()))
        offer = (await world.fake.wait_for("sendMessage", replying_to(photo)))[0]
        assert offer.text == messages.OFFER_TEXT and offer.buttons[0]["callback_data"] == "mim:go"
        world.users.tap(ALICE, offer.result, "mim:go")
        await delivered(world, photo)
        group_photo = world.users.message(BOB, GROUP, **world.users.photo(meme()))
        await world.settled()
        assert not world.fake.of("sendMessage", GROUP), f"no button in groups: {group_photo['message_id']}"

    run(tmp_path, pipeline, scenario)


def test_admin_commands_and_refusals(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(world: World) -> None:
        fake, users = world.fake, world.users
        world.checkpoints.mkdir(exist_ok=True)
        lora = {"down.weight": np.zeros((4, 8), np.float32), "up.weight": np.zeros((8, 4), np.float32)}
        safetensors.numpy.save_file(lora, str(world.checkpoints / "tiny.safetensors"))

        async def ask(user: int, line: str) -> str:
            message = users.message(user, text=line)
            return (await fake.wait_for("sendMessage", replying_to(message)))[0].text

        assert await ask(BOB, "/stats") == messages.ONLY_ADMINS
        assert await ask(BOB, "/lora use tiny") == messages.ONLY_ADMINS
        assert await ask(ADMIN, "/lora use tiny") == messages.checkpoint_activated_text("tiny")
        assert "▶ tiny" in await ask(ADMIN, "/lora")
        assert (await ask(ADMIN, "/stats")).startswith("Queue:")
        assert (
            await ask(ADMIN, "/ban ² spam") == messages.BAN_USAGE
            and await ask(ADMIN, "/unban ٣") == messages.UNBAN_USAGE
        )
        assert await ask(ADMIN, f"/ban {BOB} spam") == f"Banned {BOB} on telegram (spam)."
        assert await ask(BOB, "/animate") == messages.NEED_IMAGE
        photo = users.message(BOB, text="/animate", **users.photo(meme()))
        assert (await fake.wait_for("sendMessage", replying_to(photo)))[0].text == messages.BANNED
        assert await ask(ADMIN, f"/unban {BOB}") == f"Lifted the ban on {BOB}."
        assert "7 jobs per" in await ask(ADMIN, "/limits user_jobs=7")
        assert "isn't a limit" in await ask(ADMIN, "/limits nonsense=1")
        assert await ask(ADMIN, "/lora off") == messages.checkpoint_activated_text(None)

    run(tmp_path, pipeline, scenario)


def test_rate_limit_bad_file_and_bad_options_get_one_sentence(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(world: World) -> None:
        fake, users = world.fake, world.users
        first = users.message(ALICE, text="/animate", **users.photo(meme()))
        await delivered(world, first)
        second = users.message(ALICE, text="/animate", **users.photo(meme(seed=1)))
        limited = (await fake.wait_for("sendMessage", replying_to(second)))[0].text
        assert limited.startswith("You've made a lot of animations")
        pdf = users.message(BOB, text="/animate", **users.document(b"%PDF-1.4\n%...", "doc.pdf", "application/pdf"))
        refusal = (await fake.wait_for("sendMessage", replying_to(pdf)))[0].text
        assert "PDF" in refusal and "Traceback" not in refusal
        bad = users.message(BOB, text="/animate motion=wild", **users.photo(meme()))
        usage = (await fake.wait_for("sendMessage", replying_to(bad)))[0].text
        assert "motion=wild" in usage and "motion=low or motion=high" in usage

    run(tmp_path, pipeline, scenario, limits={"user": {"jobs": 1}})


def test_engine_down_then_back(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(world: World) -> None:
        early = world.users.message(ALICE, text="/animate", **world.users.photo(meme()))
        offline = (await world.fake.wait_for("sendMessage", replying_to(early)))[0].text
        assert offline == messages.ENGINE_OFFLINE
        await world.start_engine()
        later = world.users.message(ALICE, text="/animate", **world.users.photo(meme()))
        await delivered(world, later)

    run(tmp_path, pipeline, scenario, engine=False)


def test_a_duplicate_update_makes_one_job_and_one_reply(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake
        photo = world.users.message(ALICE, text="/animate", **world.users.photo(meme()))
        update_id = next(u["update_id"] for u in fake._updates if u.get("message") is photo)
        fake.repush(update_id)
        await delivered(world, photo)
        fake.repush(update_id)  # once more after the result went out
        await world.settled()
        assert len(fake.of("sendMessage", ALICE)) == 1 and len(fake.of("sendAnimation", ALICE)) == 1

    run(tmp_path, pipeline, scenario)


def test_a_job_queued_before_a_restart_is_delivered_once_after_it(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake
        async with EngineClient(world.settings.engine.url, ENGINE_TOKEN) as engine:  # keeps the worker busy
            slow = {"frames": 240, "size": 1024, "format": "gif"}
            blocker = await engine.submit(
                meme(640, 480), filename="big.png", options=slow, platform="test", user_id="x", chat_id="x"
            )
            photo = world.users.message(ALICE, text="/animate", **world.users.photo(meme()))
            async with world.bot():
                await fake.wait_for("sendMessage", replying_to(photo))
            assert (await engine.get(blocker.id)).status == "running", "the blocker must outlast the first bot"
            assert not fake.of("sendAnimation")
            async with world.bot():
                await delivered(world, photo)
                await world.settled()
        assert len(fake.of("sendMessage", ALICE)) == 1 and len(fake.of("sendAnimation", ALICE)) == 1

    run(tmp_path, pipeline, scenario, bot=False)


def test_a_telegram_429_is_waited_out_and_retried_once(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake
        fake.fail_next("sendAnimation", retry_after=1)
        photo = world.users.message(ALICE, text="/animate", **world.users.photo(meme()))
        await delivered(world, photo)
        tries = fake.of("sendAnimation")
        assert [c.result == "429" for c in tries] == [True, False]
        assert tries[1].at - tries[0].at >= 0.9

    run(tmp_path, pipeline, scenario)


def test_cancel_a_queued_job_and_nothing_to_cancel(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(world: World) -> None:
        fake, users = world.fake, world.users
        async with EngineClient(world.settings.engine.url, ENGINE_TOKEN) as engine:  # keeps the worker busy
            blocker = await engine.submit(
                meme(640, 480), filename="big.png", options={"frames": 240, "size": 1024, "format": "gif"},
                platform="test", user_id="x", chat_id="x",
            )  # fmt: skip
            photo = users.message(ALICE, text="/animate", **users.photo(meme()))
            queued = (await fake.wait_for("sendMessage", replying_to(photo)))[0]
            job_id = next(iter(world.pending()))
            assert (await engine.get(job_id)).status == "queued"

            users.message(ALICE, text="/cancel")
            status_id = queued.result["message_id"]
            await fake.wait_for("editMessageText", lambda c: int(c.params["message_id"]) == status_id
                                and c.text == messages.CANCELLED)  # fmt: skip
            assert (await engine.get(job_id)).status == "cancelled"
            assert fake.messages[(ALICE, status_id)]["text"] == messages.CANCELLED

            again = users.message(ALICE, text="/cancel")
            assert (await fake.wait_for("sendMessage", replying_to(again)))[0].text == messages.NOTHING_TO_CANCEL
            bob = users.message(BOB, text="/cancel")
            assert (await fake.wait_for("sendMessage", replying_to(bob)))[0].text == messages.NOTHING_TO_CANCEL

            await engine.cancel(blocker.id, platform="test", user_id="x")  # the worker is free for the next job
            later = users.message(BOB, text="/animate", **users.photo(meme(seed=2)))
            await delivered(world, later)  # the worker ran the jobs after the cancelled one
            await world.settled()
        assert not fake.of("sendAnimation", ALICE), "a cancelled job is never delivered"
        assert not [c for c in fake.of("sendMessage", ALICE) if c.text == messages.CANCELLED], "the edit is the answer"

    run(tmp_path, pipeline, scenario)


def test_webhook_mode_checks_the_secret_and_delivers(tmp_path: Path, pipeline: Pipeline) -> None:
    port, secret = free_port(), "s3cret_-token"
    url = f"http://127.0.0.1:{port}/tg/hook"

    async def scenario(world: World) -> None:
        fake, users = world.fake, world.users
        env = {**ENV, "TELEGRAM_WEBHOOK_SECRET": secret}
        hook = webhook_of(world.bot_settings.telegram, env)
        assert hook is not None and secret not in repr(hook)
        for missing in ({}, {"TELEGRAM_WEBHOOK_SECRET": "spaces are not allowed"}):
            with pytest.raises(ConfigError, match="TELEGRAM_WEBHOOK_SECRET"):
                webhook_of(world.bot_settings.telegram, {**ENV, **missing})
        async with webhook(build_application(world.bot_settings, env), hook), aiohttp.ClientSession() as http:
            registered = (await fake.wait_for("setWebhook"))[0].params
            assert registered["url"] == url and registered["secret_token"] == secret
            assert "callback_query" in registered["allowed_updates"]

            forged = users.message(BOB, text="/animate", **users.photo(meme()))
            async with http.post(
                url, json=fake._updates[-1], headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"}
            ) as r:
                assert r.status == 403
            photo = users.message(ALICE, text="/animate", **users.photo(meme()))
            headers = {"X-Telegram-Bot-Api-Secret-Token": secret}
            async with http.post(url, json=fake._updates[-1], headers=headers) as r:
                assert r.status == 200
            queued = (await fake.wait_for("sendMessage", replying_to(photo)))[0]
            assert queued.text.startswith("Queued")
            await delivered(world, photo)
            assert not fake.of("sendMessage", BOB), f"a forged update is refused: {forged['message_id']}"
            assert not fake.of("deleteWebhook") and fake.webhook["url"] == url

    run(tmp_path, pipeline, scenario, bot=False, telegram={"webhook_url": url, "webhook_port": port})


def test_a_bot_stopped_while_sending_sends_again_saying_so(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake
        fake.hold("sendAnimation")  # the upload is under way when the bot goes down
        photo = world.users.message(ALICE, text="/animate", **world.users.photo(meme()))
        async with world.bot():
            await fake.wait_for("sendAnimation")
            assert next(iter(world.pending().values())).sending is True, "recorded before the send"
        fake.release("sendAnimation")  # Telegram may well have got it: the bot can't tell
        async with world.bot():
            first, again = await delivered(world, photo, count=2)
            await world.settled()
        assert messages.SENT_AGAIN not in first.text and again.text.startswith(messages.SENT_AGAIN)
        assert len(fake.of("sendAnimation")) == 2 and len(fake.of("sendMessage", ALICE)) == 1
        assert all(kept.delivered for kept in world.pending().values())

    run(tmp_path, pipeline, scenario, bot=False)
