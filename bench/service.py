"""Benchmark: the engine service under 50 concurrent loopback clients, against the bare pipeline as a baseline.

Usage: python bench/service.py [--clients 50] [--jobs-per-client 4] [--rate 300] [--backlog 100]
       python bench/service.py --mixed [--rate 100] [--seconds 20] [--attackers 2]  (see bench/hostile.py)
Starts `makeitmove serve` with a trivial generator (bench-only settings: OCR off, 2 frames at 64 px,
about 10 ms a job, so the service's own cost shows), then prints submissions/s, p50/p99 submit
latency, and per job the engine's overhead (queue + DB + SSE) next to the pipeline's time: with
nobody watching, and with 50 SSE watchers queued behind a backlog (every job start moves all of
them up one place, the costliest case). The bare pipeline, timed in this process, is the baseline.
Submit latency is measured twice: back to back (closed loop: by Little's law 50 clients at 300/s
wait 167 ms on average, so p99 <= 50 ms needs the engine to answer 1000/s there) and with the
same clients offering the target rate (open loop), which is the latency a bot sees at that load.
Prints figures only; nothing here fails on time.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.figures import percentile  # noqa: E402
from engine.config import (  # noqa: E402
    Settings,  # noqa: E402
    load_settings,
    replace,
)
from engine.pipeline import STAGES, Pipeline, PipelineResult, ProgressCallback  # noqa: E402
from engine.types import AnimationOptions  # noqa: E402

TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# The trivial generator: the real pipeline with its costly stages off (OCR; the face models of the default
# acting backend, so the procedural one) and tiny output. CONFIG is the same, for `makeitmove serve`.
TRIVIAL = {"ocr": {"backend": "none"}, "generate": {"backend": "procedural", "frames": 2}, "encode": {"size": 64}}
CONFIG = """
[engine]
port = {port}
[storage]
url = "sqlite:///{db}"
[ocr]
backend = "none"
[generate]
backend = "procedural"
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
    pipeline = Pipeline(replace(load_settings(), **TRIVIAL))
    pipeline.run(images[0], AnimationOptions())  # warm-up: first-call costs are not per job
    times = []
    for data in images:
        t0 = time.perf_counter()
        pipeline.run(data, AnimationOptions())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def submit(session: aiohttp.ClientSession, base: str, n: int, k: int, images: list[bytes]) -> tuple[float, str]:
    """POST one meme as bot user n; (latency, job id)."""
    form = aiohttp.FormData()
    form.add_field("image", images[(n + k) % len(images)], filename="m.png", content_type="image/png")
    form.add_field("options", json.dumps({"seed": n * 1000 + k}))
    for name, value in (("platform", "bench"), ("user_id", f"u{n}"), ("chat_id", f"c{n}")):
        form.add_field(name, value)
    t0 = time.perf_counter()
    async with session.post(f"{base}/v1/jobs", data=form, headers=AUTH) as response:
        body = await response.json()
    assert response.status == 202, body
    return time.perf_counter() - t0, body["id"]


async def client(
    session: aiohttp.ClientSession, base: str, n: int, jobs: int, images: list[bytes]
) -> list[tuple[float, str]]:
    """One bot: submit `jobs` memes back to back (closed loop); (latency, id) per submission."""
    return [await submit(session, base, n, k, images) for k in range(jobs)]


async def paced(
    session: aiohttp.ClientSession, base: str, n: int, clients: int, rate: float, seconds: float, images: list[bytes]
) -> list[tuple[float, str]]:
    """One of `clients` bots offering `rate` submissions/s between them (open loop, staggered); late ones go at once."""
    interval = clients / rate
    start = time.perf_counter() + n / rate
    out = []
    for k in range(int(seconds * rate / clients)):
        await asyncio.sleep(max(0.0, start + k * interval - time.perf_counter()))
        out.append(await submit(session, base, 30_000 + n, k, images))
    return out


async def follow(session: aiohttp.ClientSession, base: str, job_id: str) -> tuple[dict, float, float]:
    """The job's final event over SSE, when (wall clock) the first and the final events arrived."""
    final: dict = {}
    first = 0.0
    async with session.get(f"{base}/v1/jobs/{job_id}/events", headers=AUTH) as response:
        async for line in response.content:
            if line.startswith(b"data: "):
                first = first or time.time()
                final = json.loads(line[6:])
    return final, first, time.time()


async def drain(session: aiohttp.ClientSession, base: str) -> None:
    """Wait until nothing is queued or running."""
    while True:
        async with session.get(f"{base}/v1/admin/stats", headers=AUTH) as response:
            by_status = (await response.json())["jobs_by_status"]
        if by_status.get("queued", 0) == 0 and by_status.get("running", 0) == 0:
            return
        await asyncio.sleep(0.1)


async def job(session: aiohttp.ClientSession, base: str, job_id: str) -> dict:
    """GET /v1/jobs/{id}."""
    async with session.get(f"{base}/v1/jobs/{job_id}", headers=AUTH) as response:
        return await response.json()


def worker_cycle(db: Path, ids: list[str], after: float) -> tuple[float, int]:
    """Worker seconds per job, and how many jobs, over the given jobs that started after `after` (wall clock)."""
    # A backlog waited all along, so the worker was never idle: first start to last finish over the
    # count is the pipeline plus everything the engine does around it, gaps between jobs included.
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            f"SELECT started_at, finished_at FROM jobs WHERE status = 'done' AND id IN ({','.join('?' * len(ids))})",
            ids,
        ).fetchall()
    spans = [(_ts(a), _ts(b)) for a, b in rows if _ts(a) >= after]
    return (max(b for _, b in spans) - min(a for a, _ in spans)) / len(spans), len(spans)


def _ts(stored: str) -> float:
    """A naive UTC timestamp as SQLite stores it, as seconds since the epoch."""
    return datetime.fromisoformat(stored).replace(tzinfo=timezone.utc).timestamp()


async def measure(
    base: str, db: Path, clients: int, jobs: int, backlog: int, rate: float, images: list[bytes]
) -> dict[str, float]:
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        # 1. a burst of submissions, nobody watching: throughput and latency of POST /v1/jobs
        t0 = time.perf_counter()
        per_client = await asyncio.gather(*(client(session, base, n, jobs, images) for n in range(clients)))
        submit_wall = time.perf_counter() - t0
        burst_end = time.time()
        submitted = [s for results in per_client for s in results]
        await drain(session, base)
        burst = [await job(session, base, job_id) for _, job_id in submitted]
        # 2. the target rate offered by the same clients (open loop): the latency a bot sees at that load
        t0 = time.perf_counter()
        offered = await asyncio.gather(*(paced(session, base, n, clients, rate, 2.0, images) for n in range(clients)))
        paced_wall = time.perf_counter() - t0
        at_rate = [latency for results in offered for latency, _ in results]
        await drain(session, base)
        # 3. a backlog, then every client submits one more and follows it over SSE while the backlog runs
        queued = await asyncio.gather(*(client(session, base, 10_000 + n, 1, images) for n in range(backlog)))
        fresh = await asyncio.gather(*(client(session, base, 20_000 + n, 1, images) for n in range(clients)))
        finals = await asyncio.gather(*(follow(session, base, job_id) for results in fresh for _, job_id in results))
    latencies = [latency for latency, _ in submitted]
    for j in burst:
        if j["status"] != "done":
            print(f"job {j['id']} {j['status']}: {j['error']}", file=sys.stderr)
    watched = [f for f, _, _ in finals]
    watching = max(first for _, first, _ in finals)  # from here on every watcher is attached
    sse_delays = [arrived - datetime.fromisoformat(f["finished_at"]).timestamp() for f, _, arrived in finals]
    quiet, quiet_n = worker_cycle(db, [i for _, i in submitted], burst_end)
    phase2 = [i for results in queued + fresh for _, i in results]
    watched_cycle, watched_n = worker_cycle(db, phase2, watching)
    return {
        "jobs": len(submitted) + len(at_rate) + backlog + len(watched),
        "done (burst + watched)": sum(j["status"] == "done" for j in burst + watched),
        "submissions/s": len(submitted) / submit_wall,
        "submit p50 ms": percentile(latencies, 50) * 1000,
        "submit p99 ms": percentile(latencies, 99) * 1000,
        f"offered {rate:.0f}/s for 2 s: accepted/s": len(at_rate) / paced_wall,
        f"offered {rate:.0f}/s: submit p50 ms": percentile(at_rate, 50) * 1000,
        f"offered {rate:.0f}/s: submit p99 ms": percentile(at_rate, 99) * 1000,
        "pipeline per job ms (in service)": statistics.median(
            j["timings"]["total"] for j in burst if j["status"] == "done"
        )
        * 1000,
        "worker cycle per job ms, 0 watchers": quiet * 1000,
        f"worker cycle per job ms, {clients} SSE": watched_cycle * 1000,
        "  (jobs measured: 0 watchers / SSE)": float(quiet_n * 1000 + watched_n) / 1000,
        "finished -> SSE client p50 ms": percentile(sse_delays, 50) * 1000,
        "finished -> SSE client p99 ms": percentile(sse_delays, 99) * 1000,
    }


class SleepPipeline(Pipeline):
    """Bench-only generator that costs no CPU: a real result made once, then handed out after a short sleep.

    With the tiny real pipeline the worker burns a core at high submission rates, so on 2 cores the
    submit path competes with it; this isolates what the engine itself costs.
    """

    SECONDS = 0.005

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._made = super().run(meme(0), AnimationOptions())

    def run(self, data: bytes, options: AnimationOptions, progress: ProgressCallback | None = None) -> PipelineResult:
        """Report every stage, sleep, and return the result made at start."""
        for stage in STAGES:
            if progress is not None:
                progress(stage, STAGES.index(stage) / len(STAGES))
        time.sleep(self.SECONDS)
        return self._made


def serve_sleeping(config: Path) -> None:
    """The engine service with SleepPipeline, as a separate process like `makeitmove serve`."""
    from aiohttp import web

    from engine.service.app import create_app
    from engine.service.keys import Tokens

    settings = load_settings(config)
    app = create_app(settings, tokens=Tokens.from_env(), pipeline_factory=SleepPipeline)
    web.run_app(app, host="127.0.0.1", port=settings.engine.port, print=None, access_log=None)


def main() -> None:
    if sys.argv[1:2] == ["--serve-sleeping"]:
        serve_sleeping(Path(sys.argv[2]))
        return
    if sys.argv[1:2] == ["--mixed"]:  # normal load beside the hostile corpus: bench/hostile.py
        from bench import hostile

        hostile.main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--jobs-per-client", type=int, default=4)
    parser.add_argument("--rate", type=float, default=300.0, help="submissions/s offered in the open-loop phase")
    parser.add_argument("--backlog", type=int, default=100, help="unwatched jobs queued ahead of the watched ones")
    parser.add_argument(
        "--generator", choices=("tiny", "sleep"), default="tiny",
        help="tiny: the real pipeline, OCR off, 2 frames at 64 px; sleep: no CPU (SleepPipeline)",
    )  # fmt: skip
    args = parser.parse_args()
    exe = shutil.which("makeitmove") or sys.exit("install the package first: pip install -e .")
    images = [meme(seed) for seed in range(8)]
    # The baseline: the generator alone, timed here (the sleep generator's is its sleep: it uses no CPU)
    bare = SleepPipeline.SECONDS if args.generator == "sleep" else baseline(images)
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        config = Path(tmp) / "bench.toml"
        db = Path(tmp) / "bench.db"
        config.write_text(CONFIG.format(port=port, db=db, tmp=tmp))
        env = {**os.environ, "ENGINE_TOKEN": TOKEN, "ENGINE_ADMIN_TOKEN": TOKEN}
        log = open(Path(tmp) / "serve.log", "wb")  # noqa: SIM115 - closed below, after the process
        command = [exe, "serve", "--config", str(config)]
        if args.generator == "sleep":
            command = [sys.executable, __file__, "--serve-sleeping", str(config)]
        server = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 60
            while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
                if time.monotonic() > deadline or server.poll() is not None:
                    sys.exit("the engine did not start")
                time.sleep(0.1)
            base = f"http://127.0.0.1:{port}"
            figures = asyncio.run(
                measure(base, db, args.clients, args.jobs_per_client, args.backlog, args.rate, images)
            )
        finally:
            server.terminate()
            server.wait(timeout=60)
            log.close()
    quiet = figures["worker cycle per job ms, 0 watchers"]
    watched = figures[f"worker cycle per job ms, {args.clients} SSE"]
    bare_ms = bare * 1000
    print(
        f"{args.clients} clients x {args.jobs_per_client} jobs, {args.generator} generator, on {os.cpu_count()} cores"
    )
    for name, value in figures.items():
        print(f"  {name:<38} {value:10.3f}")
    print(f"  {'bare pipeline per job ms (baseline)':<38} {bare_ms:10.3f}")
    for label, value in (("engine overhead per job ms", quiet), (f"... with {args.clients} SSE watchers", watched)):
        print(f"  {label:<38} {value - bare_ms:10.3f}  (worker cycle / bare pipeline: {value / bare_ms:.2f}x)")
    print(f"  {'targets':<38} >= 300 submissions/s, p99 <= 50 ms, overhead <= 10 ms per job")


if __name__ == "__main__":
    main()
