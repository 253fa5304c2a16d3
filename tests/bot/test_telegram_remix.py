"""Telegram's /remix and /lora tune: the real python-telegram-bot against the fake Bot API and the real engine.

The engine runs the GPU backend on tiny random models (`make_tiny`) where a job must really run; the default
CPU engine, which has no GPU video backend, answers the rest.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.core import messages
from bot.core.options import NO_REMIX_PROMPT, RemixRequest, TuneRequest
from engine.config import load_settings, replace
from engine.pipeline import Pipeline
from engine.service.api.handlers.making import needs_gpu
from storage.admission import TRAINING_BUSY
from tests.bot.clips import gif_clip, make_tiny_dir, mp4_clip, tiny_settings
from tests.bot.telegram_world import ADMIN, ALICE, BOB, GROUP, SMALL, World, replying_to, run
from tests.fakes.telegram import Call
from tests.support.memes import meme

# what a remix's or a tune's status line may say before it ends
PROGRESS = ("Queued", "Starting…", "Reading the clip…", "Learning the GIF's motion", "Remixing", "Encoding…",
            "Training", "Saving the checkpoint…")  # fmt: skip


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    """The real CPU pipeline at small options: an engine without a GPU video backend."""
    return Pipeline(replace(load_settings(), **SMALL))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DIR/tiny.toml: the t2v backend on tiny random models, with tiny training settings."""
    return make_tiny_dir(tmp_path_factory.mktemp("tiny"))


def tiny_pipeline(tiny: Path, tmp_path: Path) -> Pipeline:
    """A pipeline on the tiny models whose tuning cache is this test's own (models load on first use)."""
    return Pipeline(replace(tiny_settings(tiny), training={"work_dir": str(tmp_path / "training")}, **SMALL))


async def answer(world: World, user: int, text: str, chat: int | None = None, **kwargs: object) -> str:
    """Send a message and return the bot's next sentence (refusals of a file reply to the file, not the command)."""
    before = len(world.fake.of("sendMessage"))
    world.users.message(user, chat, text=text, **kwargs)  # type: ignore[arg-type]
    return (await world.fake.wait_for("sendMessage", count=before + 1))[before].text


def status_lines(world: World, queued: Call) -> list[str]:
    """What a job's status message said: its first text, then every edit of it."""
    edits = world.fake.of("editMessageText")
    return [queued.text] + [c.text for c in edits if int(c.params["message_id"]) == queued.result["message_id"]]


def test_remix_in_reply_to_a_gif_answers_with_an_mp4_and_rolls_again(tmp_path: Path, tiny: Path) -> None:
    async def scenario(world: World) -> None:
        fake, users = world.fake, world.users
        clip = users.message(BOB, GROUP, **users.animation(mp4_clip()))
        users.message(ALICE, GROUP, text="/remix a sloth is surfing @everyone", reply_to=clip)
        queued = (await fake.wait_for("sendMessage", replying_to(clip)))[0]
        assert queued.text.startswith("Queued")
        result = (await fake.wait_for("sendAnimation", replying_to(clip)))[0]
        assert result.uploads["animation"][4:8] == b"ftyp", "an MP4"
        assert result.text == messages.remix_caption("user3", "a sloth is surfing @everyone")
        assert "parse_mode" not in result.params
        assert [b["callback_data"].split(":")[1] for b in result.buttons] == ["again", "del"]
        lines = status_lines(world, queued)
        assert all(line.startswith(PROGRESS) for line in lines), lines
        job_id = result.buttons[0]["callback_data"].split(":")[2]
        kept = await world.delivered_job(job_id)
        assert kept.request == RemixRequest("a sloth is surfing @everyone")

        users.tap(ALICE, result.result, f"mim:again:{job_id}")  # the same remix with a new seed
        again = (await fake.wait_for("sendAnimation", replying_to(clip), count=2))[1]
        again_id = again.buttons[0]["callback_data"].split(":")[2]
        assert again_id != job_id and world.pending()[again_id].request == kept.request

        # a file named like a GIF that isn't one: the engine's sentence
        broken = users.message(ALICE, **users.document(b"not a clip at all", "broken.gif", "image/gif"))
        refused = await answer(world, ALICE, "/remix a cat", reply_to=broken)
        assert "isn't a GIF or a video" in refused and "Traceback" not in refused

        # a GIF sent as a file, with /remix as its caption
        document = users.message(ALICE, text="/remix a cat", **users.document(gif_clip(), "clip.gif", "image/gif"))
        from_file = (await fake.wait_for("sendAnimation", replying_to(document)))[0]
        assert from_file.uploads["animation"][4:8] == b"ftyp" and from_file.text == messages.remix_caption(
            "user2", "a cat"
        )

    run(tmp_path, tiny_pipeline(tiny, tmp_path), scenario, config=tiny)


def test_lora_tune_makes_a_checkpoint_that_lora_lists_and_a_second_waits(tmp_path: Path, tiny: Path) -> None:
    async def scenario(world: World) -> None:
        fake, users = world.fake, world.users
        clip = users.message(ADMIN, **users.video(mp4_clip()))
        users.message(ADMIN, text="/lora tune wobble a square slides right", reply_to=clip)
        queued = (await fake.wait_for("sendMessage", replying_to(clip)))[0]
        assert queued.text.startswith("Queued")
        # one training job per admin: a second tune while the first is queued or running is refused
        assert await answer(world, ADMIN, "/lora tune other", reply_to=clip) == TRAINING_BUSY

        ready = messages.tune_ready_text("wobble")
        await fake.wait_for("editMessageText", lambda c: c.text == ready)
        assert all(line.startswith(PROGRESS) for line in status_lines(world, queued)[:-1])
        assert len(world.pending()) == 1
        kept = await world.delivered_job()
        assert kept.request == TuneRequest("wobble", "a square slides right")
        listing = await answer(world, ADMIN, "/lora")
        line = next(line for line in listing.splitlines() if "wobble" in line)
        assert "tuned on a GIF" in line and "t2v" in line and "rank 4" in line, listing
        assert await answer(world, ADMIN, "/lora use wobble") == messages.checkpoint_activated_text("wobble")
        await world.settled()
        assert not fake.of("sendAnimation"), "a tune sends no file"

    run(tmp_path, tiny_pipeline(tiny, tmp_path), scenario, config=tiny)


def test_remix_and_tune_say_what_is_wrong_and_a_cpu_engine_says_it_needs_a_gpu(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    async def scenario(world: World) -> None:
        users = world.users
        photo = users.message(BOB, GROUP, **users.photo(meme()))
        clip = users.message(BOB, GROUP, **users.animation(mp4_clip()))
        assert await answer(world, ALICE, "/remix a sloth is surfing", GROUP) == messages.NEED_CLIP
        assert await answer(world, ALICE, "/remix a sloth is surfing", GROUP, reply_to=photo) == messages.NEED_CLIP
        assert await answer(world, ALICE, "/remix", GROUP, reply_to=clip) == NO_REMIX_PROMPT
        too_long = await answer(world, ALICE, "/remix " + "a" * 501, GROUP, reply_to=clip)
        assert too_long.startswith("The prompt is too long")
        needs = await answer(world, ALICE, "/remix a sloth", GROUP, reply_to=clip)
        assert needs == needs_gpu(world.settings, "Remixing") and "GPU" in needs

        assert await answer(world, BOB, "/lora tune wobble", GROUP, reply_to=clip) == messages.ONLY_ADMINS
        assert await answer(world, ADMIN, "/lora tune wobble", GROUP) == messages.TUNE_NEED_CLIP
        assert (await answer(world, ADMIN, "/lora tune", GROUP, reply_to=clip)).startswith("Give the checkpoint a name")
        bad_name = await answer(world, ADMIN, "/lora tune ../evil", GROUP, reply_to=clip)
        assert bad_name.startswith("../evil can't be a checkpoint's name")
        tuning = await answer(world, ADMIN, "/lora tune wobble", GROUP, reply_to=clip)
        assert tuning == needs_gpu(world.settings, "Tuning")

        assert "/remix" in await answer(world, ALICE, "/help")
        assert "/lora tune" not in await answer(world, ALICE, "/help")
        assert "/lora tune" in await answer(world, ADMIN, "/help")
        await world.settled()
        assert not world.pending(), "nothing was queued"

    run(tmp_path, pipeline, scenario)
