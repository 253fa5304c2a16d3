"""Discord's 🌐 Share button: the real discord.py client, a loopback fake of Discord, the real engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.core import messages
from engine.pipeline import Pipeline
from tests.bot.discord_world import WAIT_S, World, job_of, no_pings, png, run
from tests.fakes import discord as fd

PUBLIC = {"public": True}


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The message's buttons, every row's, in order."""
    return [c for row in message.get("components", []) for c in row.get("components", [])]


async def said_to(world: World, click: dict[str, Any]) -> dict[str, Any]:
    """The one sentence the bot answered a click with: ephemeral, so only the presser sees it."""
    fake = world.fake
    answer = await fake.wait_until(lambda: [m for m in fake.made_by(click) if m.get("content")], WAIT_S)
    assert len(answer) == 1 and answer[0]["flags"] & fd.EPHEMERAL, answer
    return answer[0]


async def animated(world: World) -> dict[str, Any]:
    """ALICE's finished animation, with its 🌐 Share button."""
    attachment = world.fake.add_attachment(png(), "cat.png", "image/png")
    asked = await world.fake.slash("animate", user=fd.ALICE, attachments=[attachment])
    return await world.result(asked, share=True)


def test_the_requester_shares_and_the_button_turns_to_shared_while_others_are_refused(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake
        result = await animated(world)
        job_id = job_of(result)
        share = buttons(result)[-1]
        assert (share["label"], share["custom_id"]) == ("🌐 Share", f"mim:share:{job_id}")
        assert share.get("disabled") is not True and len(result["components"]) == 2, "a row of its own"

        refused = await said_to(world, await fake.click(result["id"], f"mim:share:{job_id}", user=fd.BOB))
        assert refused["content"] == messages.NOT_REQUESTER
        await world.settled()
        assert await world.repository().shared_ids([job_id]) == set(), "another user's press shares nothing"
        assert buttons(fake.messages[int(result["id"])]) == buttons(result)

        pressed = await fake.click(result["id"], f"mim:share:{job_id}", user=fd.ALICE)
        assert (await said_to(world, pressed))["content"] == messages.SHARED
        assert fake.responses_of(pressed)[0]["type"] == 6, "the press updates the result's own message"
        now = buttons(fake.messages[int(result["id"])])
        assert now[:4] == buttons(result)[:4], "the other buttons stay as they were"
        assert (now[4]["label"], now[4]["custom_id"], now[4]["disabled"]) == ("🌐 Shared", f"mim:shared:{job_id}", True)
        assert await world.repository().shared_ids([job_id]) == {job_id}
        no_pings(fake)

    run(tmp_path, pipeline, scenario, gallery=PUBLIC)


def test_an_old_result_shares_after_a_restart_and_the_engine_refuses_another_user(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake
        async with world.bot():
            result = await animated(world)
            job_id = job_of(result)
            await world.settled()
        Path(world.bot_settings.discord.state_file).unlink()  # an old result: the bot keeps no record of it
        async with world.bot():  # a new process: the button is matched by its custom_id alone
            refused = await fake.click(result["id"], f"mim:share:{job_id}", user=fd.BOB)
            assert (await said_to(world, refused))["content"] == messages.NOT_REQUESTER, "the engine's own sentence"
            assert await world.repository().shared_ids([job_id]) == set()
            pressed = await fake.click(result["id"], f"mim:share:{job_id}", user=fd.ALICE)
            assert (await said_to(world, pressed))["content"] == messages.SHARED
            assert buttons(fake.messages[int(result["id"])])[-1]["custom_id"] == f"mim:shared:{job_id}"
            assert await world.repository().shared_ids([job_id]) == {job_id}

    run(tmp_path, pipeline, scenario, bot=False, gallery=PUBLIC)


def test_with_the_gallery_off_there_is_no_share_button(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(world: World) -> None:
        attachment = world.fake.add_attachment(png(), "cat.png", "image/png")
        result = await world.result(await world.fake.slash("animate", user=fd.ALICE, attachments=[attachment]))
        assert "share" not in {b["custom_id"].split(":")[1] for b in buttons(result)}  # world.result checks all four

    run(tmp_path, pipeline, scenario)
