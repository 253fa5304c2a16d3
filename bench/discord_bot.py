"""Benchmark: 100 concurrent /animate interactions through the loopback fake Discord to the real engine.

Usage: python bench/discord_bot.py [--interactions 100]
Runs `makeitmove serve` in its own process, as in production (OCR off, 2 frames, 64 px: the pipeline is cheap,
so the bot's own cost shows), and the real discord.py client (bot/discord) against tests/fakes/discord/.
All interactions are dispatched at once over the gateway. Prints p50/p99 from dispatch to the defer (Discord's
limit is 3 s; the target is 300 ms) and to the "Queued" edit, next to a baseline measured in the same run (a bare
engine submit, as many at once), and checks that every interaction was answered and every result delivered
exactly once. Prints figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]

from bench.figures import percentile  # noqa: E402
from bot.core.engine_client import EngineClient  # noqa: E402
from bot.discord.app import running  # noqa: E402
from tests.fakes import discord as fd  # noqa: E402
from tests.support.memes import meme  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.settings import both  # noqa: E402

DC_TOKEN, ENGINE_TOKEN = "bench-discord-token", "bench-engine-token"


async def start_engine(folder: Path, port: int) -> asyncio.subprocess.Process:
    """`makeitmove serve` on `port` with the cheap pipeline, once it answers /v1/health."""
    config = folder / "engine.toml"
    config.write_text(
        f'[engine]\nport = {port}\n[storage]\nurl = "sqlite:///{folder / "engine.db"}"\n[ocr]\nbackend = "none"\n'
        "[generate]\nframes = 2\n[encode]\nsize = 64\n[limits]\nqueue_max = 100000\n"
        "[limits.user]\njobs = 100\nconcurrent = 10\n[limits.chat]\njobs = 100000\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine.cli", "serve", "--config", str(config),
        env={**os.environ, "ENGINE_TOKEN": ENGINE_TOKEN}, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{port}/v1/health") as response:
                    if response.status == 200:
                        return process
            await asyncio.sleep(0.1)
    process.kill()
    raise SystemExit("the engine did not start within 60 s")


def ms(seconds: list[float], q: float) -> str:
    return f"{percentile(seconds, q) * 1000:7.1f} ms"


async def bench(count: int, folder: Path) -> None:
    """Start everything, dispatch the interactions, wait for every result, print the figures."""
    fake = fd.FakeDiscord(DC_TOKEN)
    await fake.start()
    fake.setup_default()
    users = [10_000 + n for n in range(count)]
    for user in users:
        fake.add_member(fd.GUILD, user, f"user{user}")
    port = free_port()
    settings, bot_settings = both(dict(
        ocr={"backend": "none"}, generate={"frames": 2}, encode={"size": 64},
        storage={"url": f"sqlite:///{folder / 'engine.db'}"}, engine={"url": f"http://127.0.0.1:{port}", "port": port},
        limits={"queue_max": 100_000, "user": {"jobs": 100, "concurrent": 10}, "chat": {"jobs": 100_000}},
        discord={"api_base_url": fake.api_base_url, "gateway_url": fake.gateway_url, "dev_guild": fd.GUILD,
                 "state_file": str(folder / "pending.json")},
    ))  # fmt: skip
    engine_process = await start_engine(folder, port)
    images = [meme(seed=i) for i in range(8)]
    attachments = [fake.add_attachment(image, f"meme{i}.png", "image/png") for i, image in enumerate(images)]

    # baseline: the bare engine submit the "Queued" edit waits for, as many at once
    async with EngineClient(settings.engine.url, ENGINE_TOKEN) as engine:

        async def submit(i: int) -> float:
            started = time.monotonic()
            await engine.submit(images[i % 8], filename="m.png", options={"format": "gif"}, platform="bench",
                                user_id=f"b{i}", chat_id="b", idempotency_key=f"base-{i}")  # fmt: skip
            return time.monotonic() - started

        baseline = list(await asyncio.gather(*(submit(i) for i in range(count))))
        deadline = time.monotonic() + 300  # let the baseline's jobs drain before the bot's arrive
        while time.monotonic() < deadline:
            jobs = await engine.history("bench", f"b{count - 1}", 1)
            if jobs and jobs[0].final:
                break
            await asyncio.sleep(0.1)

    env = {"DISCORD_TOKEN": DC_TOKEN, "ENGINE_TOKEN": ENGINE_TOKEN}
    async with running(bot_settings, env, guild_ready_timeout=0.05):
        await fake.wait_until(lambda: fake.commands(guild=fd.GUILD), 30)
        sent: dict[str, float] = {}

        async def interact(n: int) -> None:
            started = time.monotonic()
            payload = await fake.slash("animate", user=users[n], attachments=[attachments[n % 8]])
            sent[payload["token"]] = started

        started = time.monotonic()
        await asyncio.gather(*(interact(n) for n in range(count)))
        deadline = time.monotonic() + 300
        while sum(1 for c in fake.calls if c.files) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        all_done = time.monotonic() - started
        await asyncio.sleep(1.0)  # late duplicates would show up here
    engine_process.terminate()
    await engine_process.wait()
    await fake.stop()

    deferred: dict[str, list[float]] = {token: [] for token in sent}
    queued: dict[str, list[float]] = {token: [] for token in sent}
    results: dict[str, int] = dict.fromkeys(sent, 0)
    for call in fake.calls:
        parts = call.path.split("/")
        if call.path.startswith("/interactions/") and parts[3] in sent:
            deferred[parts[3]].append(call.at - sent[parts[3]])
        elif call.path.startswith("/webhooks/") and len(parts) > 3 and parts[3] in sent:
            token = parts[3]
            if call.method == "PATCH" and str((call.json or {}).get("content", "")).startswith("Queued"):
                queued[token].append(call.at - sent[token])
            if call.files and call.status < 300:
                results[token] += 1
    defers = [times[0] for times in deferred.values() if times]
    queues = [times[0] for times in queued.values() if times]
    print(f"interactions: {count} dispatched at once; all results in {all_done:.1f} s")
    print(f"baseline, bare engine submit ({count} at once): p50 {ms(baseline, 50)}   p99 {ms(baseline, 99)}")
    if defers:
        print(f"dispatch -> defer (limit 3 s, target 300 ms): p50 {ms(defers, 50)}   p99 {ms(defers, 99)}")
    if queues:
        print(f"dispatch -> 'Queued' edit:                    p50 {ms(queues, 50)}   p99 {ms(queues, 99)}")
        print(f"  'Queued' p99 over the bare submit p99: {percentile(queues, 99) / percentile(baseline, 99):.1f}x")
    unanswered = sum(1 for times in deferred.values() if not times)
    twice = sum(1 for times in deferred.values() if len(times) > 1)
    missing = sum(1 for n in results.values() if n == 0)
    doubled = sum(1 for n in results.values() if n > 1)
    print(f"answered: {count - unanswered} of {count}; unanswered {unanswered}, answered twice {twice}")
    print(f"results: {count - missing} of {count}; missing {missing}, delivered twice {doubled}")
    print(f"Discord API calls: {len(fake.calls)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interactions", type=int, default=100, help="how many, all at once (default 100)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(bench(args.interactions, Path(folder)))


if __name__ == "__main__":
    main()
