"""The Discord bot's commands and refusals: admins, bad files, the engine away, /cancel and the CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

from bot.core import messages
from engine.pipeline import Pipeline
from tests.bot.discord_world import (
    DC_TOKEN,
    ENV,
    HANG_S,
    WAIT_S,
    World,
    no_pings,
    png,
    run,
)
from tests.fakes import discord as fd

T = TypeVar("T")


def test_admin_commands_for_admins_only(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake

        async def answer(name: str, user: int, **kwargs: Any) -> str:
            asked = await fake.slash(name, user=user, **kwargs)
            said = await fake.wait_until(lambda: [m for m in fake.made_by(asked) if m.get("content")], WAIT_S)
            assert said[-1]["flags"] & fd.EPHEMERAL, f"/{name} answers privately"
            return str(said[-1]["content"])

        assert await answer("stats", fd.ALICE) == messages.ONLY_ADMINS
        assert await answer("lora", fd.BOB, subcommand="list") == messages.ONLY_ADMINS
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
        assert refusal[-1]["content"] == messages.BANNED and refusal[-1]["flags"] & fd.EPHEMERAL
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


def test_bad_files_and_options_get_one_private_sentence(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake

        async def refusal(asked: dict[str, Any]) -> str:
            said = await fake.wait_until(lambda: [m for m in fake.made_by(asked) if m.get("content")], WAIT_S)
            assert said[-1]["flags"] & fd.EPHEMERAL
            await fake.wait_until(lambda: all(m["flags"] & fd.EPHEMERAL for m in fake.made_by(asked)), WAIT_S)
            return str(said[-1]["content"])

        text_file = fake.add_attachment(b"not a meme", "notes.txt", "text/plain")
        assert (
            await refusal(await fake.slash("animate", attachments=[text_file])) == messages.DISCORD_NO_IMAGE_IN_MESSAGE
        )
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
        assert said[-1]["content"] == messages.ENGINE_OFFLINE and said[-1]["flags"] & fd.EPHEMERAL
        quota = await fake.slash("quota", user=fd.ALICE)
        said = await fake.wait_until(lambda: [m for m in fake.made_by(quota) if m.get("content")], WAIT_S)
        assert said[-1]["content"] == messages.ENGINE_OFFLINE
        await world.start_engine()
        again = await fake.slash("animate", user=fd.ALICE, attachments=[attachment])
        await world.result(again)

    run(tmp_path, pipeline, scenario)


def test_cancel_shows_cancelled_in_place(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(world: World) -> None:
        fake = world.fake
        nothing = await fake.slash("cancel", user=fd.ALICE)
        said = await fake.wait_until(lambda: [m for m in fake.made_by(nothing) if m.get("content")], WAIT_S)
        assert said[-1]["content"] == messages.NOTHING_TO_CANCEL
        world.gate.close()
        attachment = fake.add_attachment(png(), "cat.png", "image/png")
        first = await fake.slash("animate", user=fd.BOB, attachments=[attachment])  # runs, held by the gate
        asked = await fake.slash("animate", user=fd.ALICE, attachments=[attachment])  # waits behind it
        await fake.wait_until(lambda: (m := fake.original(asked)) and m.get("content") == "Queued — #1", WAIT_S)
        cancel = await fake.slash("cancel", user=fd.ALICE)
        said = await fake.wait_until(lambda: [m for m in fake.made_by(cancel) if m.get("content")], WAIT_S)
        assert said[-1]["content"] == messages.CANCELLED and said[-1]["flags"] & fd.EPHEMERAL
        assert fake.original(asked)["content"] == messages.CANCELLED
        world.gate.open()
        await world.result(first)
        await world.settled()
        assert fake.original(asked)["content"] == messages.CANCELLED and not fake.original(asked).get("attachments")

    run(tmp_path, pipeline, scenario)


async def unless_it_exits(process: asyncio.subprocess.Process, log: asyncio.Task[bytes], waiting: Awaitable[T]) -> T:
    """What `waiting` gives; if the process ends first, fail at once with its stderr: a crash is no slow start."""
    wanted, ended = asyncio.ensure_future(waiting), asyncio.ensure_future(process.wait())
    try:
        await asyncio.wait({wanted, ended}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ended.cancel()
    if wanted.done():
        return wanted.result()
    wanted.cancel()
    raise AssertionError(f"the bot exited with {process.returncode}:\n{(await log).decode()}")


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
        assert process.stderr is not None
        log = asyncio.create_task(process.stderr.read())  # read all along: a full pipe would stall the bot
        try:
            await unless_it_exits(process, log, fake.wait_ready(WAIT_S))
            await unless_it_exits(process, log, fake.wait_until(lambda: fake.commands(guild=fd.GUILD), WAIT_S))
            asked = await fake.slash("help", user=fd.ALICE)
            said = await unless_it_exits(
                process, log, fake.wait_until(lambda: [m for m in fake.made_by(asked) if m.get("content")], WAIT_S)
            )
            assert "Apps → Animate meme" in said[-1]["content"] and "/lora" not in said[-1]["content"]
            assert "mention me" not in said[-1]["content"], "the reply trigger is off by default"
            process.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(process.wait(), WAIT_S) == 0
            stderr = (await asyncio.wait_for(log, WAIT_S)).decode()
            assert DC_TOKEN not in stderr and "Traceback" not in stderr
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            log.cancel()
            await fake.stop()

    asyncio.run(asyncio.wait_for(main(), timeout=HANG_S))


def test_the_cli_without_a_token_says_where_to_get_one() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DISCORD_TOKEN"}
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "bot", "discord"], capture_output=True, text=True, env=env, timeout=WAIT_S
    )
    assert done.returncode != 0 and "DISCORD_TOKEN" in done.stderr and "Traceback" not in done.stderr
