"""Benchmark: 200 simulated Telegram users posting memes through the loopback fake Bot API to the real engine.

Usage: python bench/telegram.py [--users 200] [--rate 100] [--duplicates 20]
Runs the engine in-process (OCR off, 2 frames, 64 px: the pipeline is cheap, so the bot's own cost
shows) and the real python-telegram-bot Application against tests/fakes/telegram.py. Prints p50/p99
from an update being offered to getUpdates until the "Queued" reply reaches the fake, next to a baseline
measured in the same run (a bare engine submit), and checks that every update was answered exactly once,
re-fetched duplicates included. Prints figures only; nothing here fails on time.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
# run as a script, bench/ comes first on sys.path and this file's name would shadow the `telegram` package
sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]

from bench.figures import percentile  # noqa: E402
from bot.core.engine_client import EngineClient  # noqa: E402
from bot.telegram.app import build_application, polling  # noqa: E402
from engine.pipeline import Pipeline  # noqa: E402
from engine.service.app import create_app  # noqa: E402
from engine.service.keys import Tokens  # noqa: E402
from tests.fakes.telegram import FakeTelegram, Users  # noqa: E402
from tests.support.memes import meme  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.settings import both  # noqa: E402

TG_TOKEN, ENGINE_TOKEN = "4242:bench-telegram-token", "bench-engine-token"


async def bench(users: int, rate: float, duplicates: int, folder: Path) -> None:
    """Start everything, post the memes, wait for every result, print the figures."""
    fake = FakeTelegram(TG_TOKEN)
    await fake.start()
    port = free_port()
    settings, bot_settings = both(dict(
        ocr={"backend": "none"}, generate={"frames": 2}, encode={"size": 64},
        storage={"url": f"sqlite:///{folder / 'engine.db'}"}, engine={"url": f"http://127.0.0.1:{port}", "port": port},
        limits={"queue_max": 100_000, "user": {"jobs": 100, "concurrent": 10}, "chat": {"jobs": 100}},
        telegram={"api_base_url": fake.api_base_url, "file_base_url": fake.file_base_url,
                  "state_file": str(folder / "pending.json"), "edits_per_minute": 15},
    ))  # fmt: skip
    pipeline = Pipeline(settings)
    runner = web.AppRunner(create_app(settings, tokens=Tokens(ENGINE_TOKEN), pipeline_factory=lambda _: pipeline))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    images = [meme(seed=i) for i in range(8)]

    # baseline: the bare engine submit a "Queued" reply waits for
    baseline = []
    async with EngineClient(settings.engine.url, ENGINE_TOKEN) as engine:
        for i in range(20):
            started = time.monotonic()
            await engine.submit(images[i % 8], filename="m.png", options={"format": "mp4"}, platform="bench",
                                user_id=f"b{i}", chat_id="b", idempotency_key=f"base-{i}")  # fmt: skip
            baseline.append(time.monotonic() - started)
        while (await engine.get((await engine.history("bench", "b19", 1))[0].id)).status != "done":
            await asyncio.sleep(0.1)

    people = Users(fake)
    posted: dict[tuple[int, int], float] = {}
    update_ids: list[int] = []
    async with polling(build_application(bot_settings, {"TELEGRAM_TOKEN": TG_TOKEN, "ENGINE_TOKEN": ENGINE_TOKEN})):
        started = time.monotonic()
        for n in range(users):
            user = 10_000 + n
            message = people.message(user, text="/animate", **people.photo(images[n % 8]))
            posted[(user, message["message_id"])] = time.monotonic()
            update_ids.append(fake._updates[-1]["update_id"])
            await asyncio.sleep(1 / rate)
        for update_id in random.Random(0).sample(update_ids, min(duplicates, users)):
            fake.repush(update_id)  # as Telegram re-delivers when an offset was never confirmed
        deadline = time.monotonic() + 300
        while len(fake.of("sendAnimation")) < users and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        all_done = time.monotonic() - started
        await asyncio.sleep(1.0)  # late duplicates would show up here
    await runner.cleanup()
    await fake.stop()

    queued: dict[tuple[int, int], list[float]] = {key: [] for key in posted}
    results: dict[tuple[int, int], int] = {key: 0 for key in posted}
    for call in fake.calls:
        reply = (call.params.get("reply_parameters") or {}).get("message_id")
        key = (call.chat_id or 0, int(reply or 0))
        if call.method == "sendMessage" and key in queued and call.text.startswith("Queued"):
            queued[key].append(call.at - posted[key])
        elif call.method == "sendAnimation" and key in results and call.result != "429":
            results[key] += 1
    latencies = [times[0] for times in queued.values() if times]
    print(f"users: {users} at {rate:g}/s, {duplicates} updates re-delivered; all results in {all_done:.1f} s")
    print(f"baseline, bare engine submit:  p50 {statistics.median(baseline) * 1000:6.1f} ms")
    if latencies:
        p50, p99 = statistics.median(latencies), percentile(latencies, 99)
        print(f"update -> 'Queued' reply:      p50 {p50 * 1000:6.1f} ms   p99 {p99 * 1000:6.1f} ms")
        print(f"  ratio to the bare submit:    p50 {p50 / statistics.median(baseline):.1f}x")
    lost = sum(1 for times in queued.values() if not times)
    twice = sum(1 for times in queued.values() if len(times) > 1)
    missing = sum(1 for count in results.values() if count == 0)
    doubled = sum(1 for count in results.values() if count > 1)
    print(f"'Queued' replies: {users - lost} of {users}; lost {lost}, answered twice {twice}")
    print(f"results: {users - missing} of {users}; missing {missing}, delivered twice {doubled}")
    edits = len(fake.of("editMessageText"))
    print(f"Bot API calls: {len(fake.calls)} ({edits} status edits, {len(fake.of('getFile'))} getFile)")


def main() -> None:
    """Parse the arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--rate", type=float, default=100.0, help="updates per second")
    parser.add_argument("--duplicates", type=int, default=20, help="updates delivered a second time")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(bench(args.users, args.rate, args.duplicates, Path(folder)))


if __name__ == "__main__":
    main()
