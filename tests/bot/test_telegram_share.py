"""Telegram's 🌐 Share button: the real python-telegram-bot against the fake Bot API and the real engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.core import messages
from engine.config import load_settings, replace
from engine.pipeline import Pipeline
from engine.service.api.handlers.gallery import GALLERY_OFF
from tests.bot.telegram_world import ALICE, BOB, SMALL, World, delivered, run
from tests.fakes.telegram import Call
from tests.support.memes import meme

PUBLIC = {"public": True}


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    """The real CPU pipeline at small options, shared by the engines of this module."""
    return Pipeline(replace(load_settings(), **SMALL))


def answered(query_id: str) -> Any:
    """The answerCallbackQuery of this tap."""
    return lambda c: c.params.get("callback_query_id") == query_id


async def answer_to(world: World, query_id: str) -> Call:
    """The one answer the bot gave this tap, which only the presser sees."""
    return (await world.fake.wait_for("answerCallbackQuery", answered(query_id)))[0]


async def shared_ids(world: World, job_id: str) -> set[str]:
    """{job_id} once the engine holds it in the gallery, else nothing."""
    return await world.repository().shared_ids([job_id])


def test_the_requester_shares_and_the_button_says_so_while_others_are_refused(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    async def scenario(world: World) -> None:
        fake, users = world.fake, world.users
        photo = users.message(ALICE, text="/animate the cat waves", **users.photo(meme()))
        result = (await delivered(world, photo, share=True))[0]
        share = result.buttons[-1]
        job_id = share["callback_data"].split(":")[2]
        assert share == {"text": "🌐 Share", "callback_data": f"mim:share:{job_id}"}
        await world.delivered_job(job_id)

        refused = await answer_to(world, users.tap(BOB, result.result, f"mim:share:{job_id}"))
        assert refused.text == messages.NOT_REQUESTER and refused.params.get("show_alert") in (True, "true", "True")
        await world.settled()
        assert await shared_ids(world, job_id) == set(), "another user's press shares nothing"
        assert not fake.of("editMessageReplyMarkup")

        assert (await answer_to(world, users.tap(ALICE, result.result, f"mim:share:{job_id}"))).text == messages.SHARED
        edit = (await fake.wait_for("editMessageReplyMarkup"))[0]
        assert int(edit.params["message_id"]) == result.result["message_id"]
        buttons = [b for row in edit.params["reply_markup"]["inline_keyboard"] for b in row]
        assert buttons[:4] == result.buttons[:4], "the other buttons stay as they were"
        assert buttons[4] == {"text": "🌐 Shared", "callback_data": f"mim:shared:{job_id}"}
        assert await shared_ids(world, job_id) == {job_id}

        now = fake.messages[(ALICE, result.result["message_id"])]
        assert (await answer_to(world, users.tap(ALICE, now, f"mim:shared:{job_id}"))).text == messages.ALREADY_SHARED
        await world.settled()
        assert len(fake.of("editMessageReplyMarkup")) == 1

    run(tmp_path, pipeline, scenario, gallery=PUBLIC)


def test_the_engine_refuses_another_user_when_the_bot_has_forgotten_the_result(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    async def scenario(world: World) -> None:
        users = world.users
        async with world.bot():
            photo = users.message(ALICE, text="/animate", **users.photo(meme()))
            result = (await delivered(world, photo, share=True))[0]
            job_id = result.buttons[-1]["callback_data"].split(":")[2]
            await world.delivered_job(job_id)
            await world.settled()
        Path(world.bot_settings.telegram.state_file).unlink()  # an old result: the bot keeps no record of it
        async with world.bot():
            refused = await answer_to(world, users.tap(BOB, result.result, f"mim:share:{job_id}"))
            assert refused.text == messages.NOT_REQUESTER, "the engine's own sentence"
            assert await shared_ids(world, job_id) == set()
            assert (await answer_to(world, users.tap(ALICE, result.result, f"mim:share:{job_id}"))).text == (
                messages.SHARED
            )
            assert await shared_ids(world, job_id) == {job_id}

    run(tmp_path, pipeline, scenario, bot=False, gallery=PUBLIC)


def test_with_the_gallery_off_there_is_no_share_button(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(world: World) -> None:
        users = world.users
        photo = users.message(ALICE, text="/animate", **users.photo(meme()))
        result = (await delivered(world, photo))[0]  # the four buttons, no 🌐 Share
        job_id = result.buttons[0]["callback_data"].split(":")[2]
        forged = await answer_to(world, users.tap(ALICE, result.result, f"mim:share:{job_id}"))
        assert forged.text == GALLERY_OFF, "a press the engine refuses is answered with its sentence"
        await world.settled()
        assert await shared_ids(world, job_id) == set() and not world.fake.of("editMessageReplyMarkup")

    run(tmp_path, pipeline, scenario)
