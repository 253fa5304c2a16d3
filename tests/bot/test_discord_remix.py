"""Discord's /remix, the reply trigger's "remix" and /lora tune: the real discord.py against the fake Discord.

The engine runs the GPU backend on tiny random models (`make_tiny`) where a job must really run; the default
CPU engine, which has no GPU video backend, answers the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.core import messages
from bot.core.options import NO_REMIX_PROMPT, RemixRequest, TuneRequest
from engine.config import replace
from engine.pipeline import Pipeline
from engine.service.api.handlers.making import needs_gpu
from storage.admission import TRAINING_BUSY
from tests.bot.clips import gif_clip, make_tiny_dir, mp4_clip, tiny_settings
from tests.bot.discord_world import SMALL, WAIT_S, World, job_of, kind_of, no_pings, png, reply_saying, run, with_file
from tests.fakes import discord as fd


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DIR/tiny.toml: the t2v backend on tiny random models, with tiny training settings."""
    return make_tiny_dir(tmp_path_factory.mktemp("tiny"))


def tiny_pipeline(tiny: Path, tmp_path: Path) -> Pipeline:
    """A pipeline on the tiny models whose tuning cache is this test's own (models load on first use)."""
    return Pipeline(replace(tiny_settings(tiny), training={"work_dir": str(tmp_path / "training")}, **SMALL))


async def remixed(fake: fd.FakeDiscord, interaction: dict[str, Any]) -> dict[str, Any]:
    """The interaction's message once it carries the remix; a remix has 🔁 and 🗑 only."""
    message = await fake.wait_until(lambda: with_file(fake.original(interaction)), WAIT_S)
    ids = [c["custom_id"] for row in message["components"] for c in row["components"]]
    assert [i.split(":")[1] for i in ids] == ["again", "del"], ids
    assert kind_of(fake.attachment_bytes(message["attachments"][0])) in ("gif", "mp4")
    return message


async def private(fake: fd.FakeDiscord, interaction: dict[str, Any]) -> str:
    """The one private sentence an interaction got (its public "thinking…", if any, taken away)."""
    said = await fake.wait_until(lambda: [m for m in fake.made_by(interaction) if m.get("content")], WAIT_S)
    assert said[-1]["flags"] & fd.EPHEMERAL, said[-1]
    await fake.wait_until(lambda: all(m["flags"] & fd.EPHEMERAL for m in fake.made_by(interaction)), WAIT_S)
    return str(said[-1]["content"])


def test_remix_takes_the_newest_gif_here_or_the_attached_one_and_rolls_again(tmp_path: Path, tiny: Path) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake
        posted = await fake.post_message(
            fd.CHANNEL, fd.BOB, "look", attachments=[fake.add_attachment(gif_clip(), "slide.gif", "image/gif")]
        )
        await fake.post_message(fd.CHANNEL, fd.ALICE, "lol")  # newer, without a clip
        asked = await fake.slash("remix", user=fd.ALICE, options=[{"name": "prompt", "value": "a sloth @everyone"}])
        result = await remixed(fake, asked)
        assert result["content"] == messages.remix_caption("bob", "a sloth @\u200beveryone")
        kept = world.pending()[job_of(result)]
        assert kept.request == RemixRequest("a sloth @everyone") and kept.source == (fd.CHANNEL, int(posted["id"]))

        again = await fake.click(int(result["id"]), f"mim:again:{job_of(result)}", user=fd.BOB)
        rolled = await remixed(fake, again)
        assert job_of(rolled) != job_of(result) and world.pending()[job_of(rolled)].request == kept.request

        video = fake.add_attachment(mp4_clip(), "clip.mp4", "video/mp4")
        attached = await fake.slash("remix", user=fd.ALICE, options=[{"name": "prompt", "value": "a cat"}],
                                    attachments=[video])  # fmt: skip
        from_video = await remixed(fake, attached)
        assert from_video["content"] == messages.remix_caption("alice", "a cat")
        await world.settled()
        no_pings(fake)

    run(tmp_path, tiny_pipeline(tiny, tmp_path), scenario, config=tiny)


def test_lora_tune_makes_a_checkpoint_that_lora_lists_and_a_second_waits(tmp_path: Path, tiny: Path) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake
        clip = fake.add_attachment(gif_clip(), "slide.gif", "image/gif")
        name = {"name": "name", "value": "wobble"}
        asked = await fake.slash("lora", user=fd.ADMIN, subcommand="tune", options=[name], attachments=[clip])
        await fake.wait_until(lambda: (m := fake.original(asked)) and m.get("content", "").startswith("Queued"))
        second = await fake.slash("lora", user=fd.ADMIN, subcommand="tune", options=[{"name": "name", "value": "b"}],
                                  attachments=[clip])  # fmt: skip
        assert await private(fake, second) == TRAINING_BUSY

        ready = messages.tune_ready_text("wobble")
        await fake.wait_until(lambda: (m := fake.original(asked)) and m.get("content") == ready, WAIT_S)
        shown = [v.get("content") for v in fake.versions(fake.original(asked))]
        assert shown[-1] == ready and not fake.original(asked)["attachments"], shown
        await fake.wait_until(lambda: [k.delivered for k in world.pending().values()] == [True], WAIT_S)
        (kept,) = world.pending().values()
        assert kept.request == TuneRequest("wobble")
        listing = await fake.slash("lora", user=fd.ADMIN, subcommand="list")
        line = next(line for line in (await private(fake, listing)).splitlines() if "wobble" in line)
        assert "tuned on a GIF" in line and "rank 4" in line, line
        no_pings(fake)

    run(tmp_path, tiny_pipeline(tiny, tmp_path), scenario, config=tiny)


def test_remix_and_tune_say_what_is_wrong_and_a_cpu_engine_says_it_needs_a_gpu(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake
        prompt = [{"name": "prompt", "value": "a sloth is surfing"}]
        picture = fake.add_attachment(png(), "cat.png", "image/png")
        gif = fake.add_attachment(gif_clip(), "slide.gif", "image/gif")
        assert await private(fake, await fake.slash("remix", options=prompt, attachments=[picture])) == (
            messages.DISCORD_NOT_A_CLIP
        )
        assert await private(fake, await fake.slash("remix", options=prompt)) == messages.DISCORD_NO_CLIP_FOUND
        blank = [{"name": "prompt", "value": "   "}]
        assert await private(fake, await fake.slash("remix", options=blank, attachments=[gif])) == NO_REMIX_PROMPT
        needs = await private(fake, await fake.slash("remix", options=prompt, attachments=[gif]))
        assert needs == needs_gpu(world.settings, "Remixing")

        tune = {"subcommand": "tune", "attachments": [gif]}
        wobble = [{"name": "name", "value": "wobble"}]
        assert await private(fake, await fake.slash("lora", user=fd.ALICE, options=wobble, **tune)) == (
            messages.ONLY_ADMINS
        )
        evil = [{"name": "name", "value": "../evil"}]
        bad = await private(fake, await fake.slash("lora", user=fd.ADMIN, options=evil, **tune))
        assert bad.startswith("../evil can't be a checkpoint's name")
        tuning = await private(fake, await fake.slash("lora", user=fd.ADMIN, options=wobble, **tune))
        assert tuning == needs_gpu(world.settings, "Tuning")

        # the reply trigger: "@bot remix …" in a reply to a GIF
        posted = await fake.post_message(fd.CHANNEL, fd.BOB, "", attachments=[gif])
        words = await fake.post_message(fd.CHANNEL, fd.BOB, "just words")
        mention = f"<@{fd.BOT_ID}>"
        await fake.post_message(fd.CHANNEL, fd.ALICE, f"{mention} remix", reply_to=int(posted["id"]))
        await fake.wait_until(lambda: reply_saying(fake, NO_REMIX_PROMPT), WAIT_S)
        await fake.post_message(fd.CHANNEL, fd.ALICE, f"{mention} remix a cat", reply_to=int(words["id"]))
        await fake.wait_until(lambda: reply_saying(fake, messages.DISCORD_NEED_CLIP), WAIT_S)
        await fake.post_message(fd.CHANNEL, fd.ALICE, f"{mention} remix a cat", reply_to=int(posted["id"]))
        await fake.wait_until(lambda: reply_saying(fake, needs_gpu(world.settings, "Remixing")), WAIT_S)

        assert "/remix" in await private(fake, await fake.slash("help", user=fd.ALICE))
        assert "tune" in await private(fake, await fake.slash("help", user=fd.ADMIN))
        await world.settled()
        assert not world.pending(), "nothing was queued"
        no_pings(fake)

    run(tmp_path, pipeline, scenario, discord={"reply_trigger": True})
