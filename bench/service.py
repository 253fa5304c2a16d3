"""Benchmark: the engine service under 50 concurrent loopback clients, against the bare pipeline as a baseline.

Usage: python bench/service.py [--clients 50] [--jobs-per-client 4]
Starts `makeitmove serve` (2 frames, 64 px: the pipeline is cheap, so the service's own cost shows),
then prints submissions/s, p50/p99 submit latency, and per job the engine's overhead (queue + DB +
SSE) next to the pipeline's time. Prints figures only; nothing here fails on time.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import aiohttp
import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.config import load_settings, replace  # noqa: E402
from engine.pipeline import Pipeline  # noqa: E402
from engine.types import AnimationOptions  # noqa: E402

TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CONFIG = """
[engine]
port = {port}
[storage]
url = "sqlite:///{db}"
[generate]
frames = 2
[encode]
size = 64
[limits]
queue_max = 100000
[limits.user]
jobs = 100000
concurrent = 100000
[limits.chat]
jobs = 100000
[checkpoints]
dir = "{tmp}/ckpt"
"""


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def meme(seed: int) -> bytes:
    """A small PNG, different per seed."""
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (200, 150), tuple(int(v) for v in rng.integers(40, 200, 3)))
    ImageDraw.Draw(im).ellipse((60, 30, 140, 110), fill=tuple(int(v) for v in rng.integers(150, 255, 3)))
    out = io.BytesIO()
    im.save(out, "PNG")
    return out.getvalue()


def baseline(images: list[bytes]) -> float:
    """Median seconds of the bare pipeline on the same images and options, in this process."""
    pipeline = Pipeline(replace(load_settings(), generate={"frames": 2}, encode={"size": 64}))
    pipeline.run(images[0], AnimationOptions())  # warm-up: first-call costs are not per job
    times = []
    for data in images:
        t0 = time.perf_counter()
        pipeline.run(data, AnimationOptions())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def client(
    session: aiohttp.ClientSession, base: str, n: int, jobs: int, images: list[bytes]
) -> list[tuple[float, str]]:
    """One bot: submit `jobs` memes back to back; (latency, id) per submission."""
    out = []
    for k in range(jobs):
        form = aiohttp.FormData()
        form.add_field("image", images[(n + k) % len(images)], filename="m.png", content_type="image/png")
        form.add_field("options", json.dumps({"seed": n * 1000 + k}))
        for name, value in (("platform", "bench"), ("user_id", f"u{n}"), ("chat_id", f"c{n}")):
            form.add_field(name, value)
        t0 = time.perf_counter()
        async with session.post(f"{base}/v1/jobs", data=form, headers=AUTH) as response:
            body = await response.json()
        out.append((time.perf_counter() - t0, body["id"]))
        assert response.status == 202, body
    return out


async def follow(session: aiohttp.ClientSession, base: str, job_id: str) -> tuple[dict, float]:
    """The job's final event over SSE, and when (wall clock) it arrived."""
    final: dict = {}
    async with session.get(f"{base}/v1/jobs/{job_id}/events", headers=AUTH) as response:
        async for line in response.content:
            if line.startswith(b"data: "):
                final = json.loads(line[6:])
    return final, time.time()


async def drain(session: aiohttp.ClientSession, base: str) -> None:
    """Wait until nothing is queued or running, polling the cheap health endpoint."""
    while True:
        async with session.get(f"{base}/v1/health") as response:
            depth = (await response.json())["queue_depth"]
        async with session.get(f"{base}/v1/admin/stats") as response:
            running = (await response.json())["jobs_by_status"].get("running", 0) if response.status == 200 else 0
        if depth == 0 and running == 0:
            return
        await asyncio.sleep(0.2)


async def job(session: aiohttp.ClientSession, base: str, job_id: str) -> dict:
    async with session.get(f"{base}/v1/jobs/{job_id}", headers=AUTH) as response:
        return await response.json()


def cycle(jobs: list[dict]) -> float:
    """Seconds of worker time per job: first created to last finished, over the jobs done."""
    done = [j for j in jobs if j.get("status") == "done"]
    started = min(datetime.fromisoformat(j["created_at"]).timestamp() for j in done)
    finished = max(datetime.fromisoformat(j["finished_at"]).timestamp() for j in done)
    return (finished - started) / len(done)


async def measure(base: str, clients: int, jobs: int, images: list[bytes]) -> dict[str, float]:
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        # 1. a burst of submissions, nobody watching: throughput and latency of POST /v1/jobs
        t0 = time.perf_counter()
        per_client = await asyncio.gather(*(client(session, base, n, jobs, images) for n in range(clients)))
        submit_wall = time.perf_counter() - t0
        submitted = [s for results in per_client for s in results]
        await drain(session, base)
        burst = [await job(session, base, job_id) for _, job_id in submitted]
        while any(j["status"] in ("queued", "running") for j in burst):  # health and stats are two reads
            await asyncio.sleep(0.2)
            burst = [await job(session, base, job_id) for _, job_id in submitted]
        # 2. every client submits one more and follows it over SSE: the cost of watchers
        fresh = await asyncio.gather(*(client(session, base, clients + n, 1, images) for n in range(clients)))
        finals = await asyncio.gather(*(follow(session, base, job_id) for results in fresh for _, job_id in results))
    latencies = [latency for latency, _ in submitted]
    for j in burst:
        if j["status"] != "done":
            print(f"job {j['id']} {j['status']}: {j['error']}", file=sys.stderr)
    watched = [f for f, _ in finals]
    sse_delays = [arrived - datetime.fromisoformat(f["finished_at"]).timestamp() for f, arrived in finals]
    return {
        "jobs": len(submitted) + len(watched),
        "done": sum(j["status"] == "done" for j in burst + watched),
        "submissions/s": len(submitted) / submit_wall,
        "submit p50 ms": percentile(latencies, 50) * 1000,
        "submit p99 ms": percentile(latencies, 99) * 1000,
        "pipeline per job s (in service)": statistics.median(
            j["timings"]["total"] for j in burst if j["status"] == "done"
        ),
        "worker cycle per job s, 0 watchers": cycle(burst),
        f"worker cycle per job s, {clients} SSE": cycle(watched),
        "finished -> SSE client p50 ms": percentile(sse_delays, 50) * 1000,
        "finished -> SSE client p99 ms": percentile(sse_delays, 99) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--jobs-per-client", type=int, default=4)
    args = parser.parse_args()
    exe = shutil.which("makeitmove") or sys.exit("install the package first: pip install -e .")
    images = [meme(seed) for seed in range(8)]
    bare = baseline(images)
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        config = Path(tmp) / "bench.toml"
        config.write_text(CONFIG.format(port=port, db=Path(tmp) / "bench.db", tmp=tmp))
        env = {**os.environ, "ENGINE_TOKEN": TOKEN, "ENGINE_ADMIN_TOKEN": TOKEN}
        log = open(Path(tmp) / "serve.log", "wb")  # noqa: SIM115 - closed below, after the process
        server = subprocess.Popen([exe, "serve", "--config", str(config)], env=env, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 60
            while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
                if time.monotonic() > deadline or server.poll() is not None:
                    sys.exit("the engine did not start")
                time.sleep(0.1)
            figures = asyncio.run(measure(f"http://127.0.0.1:{port}", args.clients, args.jobs_per_client, images))
        finally:
            server.terminate()
            server.wait(timeout=60)
            log.close()
    quiet = figures["worker cycle per job s, 0 watchers"]
    watched = figures[f"worker cycle per job s, {args.clients} SSE"]
    print(f"{args.clients} clients x {args.jobs_per_client} jobs, 2 frames at 64 px, on {os.cpu_count()} cores")
    for name, value in figures.items():
        print(f"  {name:<38} {value:10.3f}")
    print(f"  {'bare pipeline per job s (baseline)':<38} {bare:10.3f}")
    for label, value in (("engine overhead per job s", quiet), (f"... with {args.clients} SSE watchers", watched)):
        print(f"  {label:<38} {value - bare:10.3f}  (worker cycle - bare pipeline: {(value - bare) / bare:+.0%})")


if __name__ == "__main__":
    main()
