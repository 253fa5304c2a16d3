"""Benchmark: jobs per minute through 1, 2 and 4 `makeitmove worker` processes on Procrastinate + Postgres.

Usage: python bench/scale.py [--seconds 0.2] [--jobs-per-worker 40] [--workers 1,2,4]
Each worker runs the sleep generator of bench/service.py (SleepPipeline: every stage reported, then a
sleep, then a result made at start), so a job costs the worker no CPU and the figures measure the
queue: fetching, claiming, the row writes of nine stages, the result, Procrastinate's bookkeeping.
A backlog of jobs is queued first, then the workers drain it; jobs per minute is the backlog over
first start to last finish. The scaling ratio is against the one-worker run of the same invocation.
Queue overhead per job (worker cycle minus the sleep) is shown next to LocalJobQueue on SQLite, the
default single-machine queue, running the same generator in this process. Prints figures only;
nothing here fails on time. Needs PostgreSQL at 127.0.0.1:5432 (MAKEITMOVE_TEST_POSTGRES).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from uuid import uuid4

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from service import TRIVIAL, SleepPipeline, meme  # noqa: E402

from engine.config import Settings, load_settings, replace  # noqa: E402
from engine.service.checkpoints import CheckpointRegistry  # noqa: E402
from engine.service.queue.local import LocalJobQueue  # noqa: E402
from engine.service.queue.procrastinate.app import apply_schema  # noqa: E402
from engine.service.queue.procrastinate.queue import ProcrastinateJobQueue  # noqa: E402
from engine.service.queue.protocol import JobQueue  # noqa: E402
from engine.service.repository import default_limits  # noqa: E402
from storage.database import upgrade  # noqa: E402
from storage.records import NewJob  # noqa: E402
from storage.repository import Repository  # noqa: E402

POSTGRES = os.environ.get("MAKEITMOVE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
ROOMY = {"queue_max": 100_000, "user": {"jobs": 100_000, "concurrent": 100_000}, "chat": {"jobs": 100_000}}


def settings_for(url: str, tmp: str) -> Settings:
    """Bench settings: roomy limits, the tiny pipeline the sleep generator makes its one result with."""
    queue = {"backend": "procrastinate", "heartbeat_s": 1, "stalled_after_s": 10}
    queue = queue if url.startswith("postgresql") else {"backend": "local"}
    return replace(
        load_settings(), storage={"url": url}, queue=queue, limits=ROOMY, checkpoints={"dir": f"{tmp}/ckpt"}, **TRIVIAL
    )


def write_config(path: Path, settings: Settings) -> None:
    """The settings a worker process needs, as a config file."""
    path.write_text(
        f'[storage]\nurl = "{settings.storage.url}"\n'
        f'[queue]\nbackend = "procrastinate"\nheartbeat_s = {settings.queue.heartbeat_s}\n'
        f"stalled_after_s = {settings.queue.stalled_after_s}\n"
        f'[ocr]\nbackend = "none"\n[generate]\nframes = 2\n[encode]\nsize = 64\n'
        f'[checkpoints]\ndir = "{settings.checkpoints.dir}"\n'
    )


def worker_process(config: Path, seconds: float) -> None:
    """`makeitmove worker` with the sleep generator (run as a subprocess of this script)."""
    import logging

    from engine.service.queue.procrastinate.worker import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    SleepPipeline.SECONDS = seconds
    run_worker(load_settings(config), SleepPipeline)


async def admin(sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(f"{POSTGRES}/postgres", timeout=3)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def new_job(n: int, image: bytes) -> NewJob:
    return NewJob(platform="bench", user_id=f"u{n}", chat_id=f"c{n}", is_admin=False, options={}, seed=n, image=image)


async def drain(queue: JobQueue, repository: Repository, count: int, image: bytes) -> tuple[float, float]:
    """Queue `count` jobs at once, wait for all; (seconds from first start to last finish, per job cycle)."""
    ids = [(await queue.submit(new_job(n, image))).job.id for n in range(count)]
    deadline = time.monotonic() + 600  # a crashed worker must end the run, not hang it
    while True:
        jobs = [await repository.get(job_id) for job_id in ids]
        if all(job is not None and job.final for job in jobs):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"{sum(1 for j in jobs if j is None or not j.final)} jobs still unfinished after 600 s")
        await asyncio.sleep(0.1)
    bad = [job for job in jobs if job is None or job.status != "done"]
    assert not bad, f"{len(bad)} jobs did not finish: {bad[0]}"
    first = min(job.started_at for job in jobs if job and job.started_at)
    last = max(job.finished_at for job in jobs if job and job.finished_at)
    span = (last - first).total_seconds()
    return span, span / count


async def through_workers(url: str, tmp: str, workers: int, jobs: int, seconds: float) -> float:
    """Seconds from first start to last finish of `jobs` jobs drained by `workers` worker processes."""
    settings = settings_for(url, tmp)
    config = Path(tmp) / "worker.toml"
    write_config(config, settings)
    logs = [Path(tmp) / f"worker-{workers}-{n}.log" for n in range(workers)]
    processes = []
    for log in logs:
        with log.open("wb") as out:
            command = [sys.executable, __file__, "--worker", str(config), str(seconds)]
            processes.append(subprocess.Popen(command, stdout=out, stderr=out))
    repository = await Repository.open(url, default_limits=default_limits(settings))
    queue = ProcrastinateJobQueue(repository, lambda: None, settings, CheckpointRegistry(settings.checkpoints.dir))
    await queue.start()
    try:
        deadline = time.monotonic() + 120
        while not all("taking jobs from queue" in log.read_text(errors="replace") for log in logs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                sys.exit("a worker did not start:\n" + "\n".join(log.read_text()[-2000:] for log in logs))
            await asyncio.sleep(0.1)
        span, _ = await drain(queue, repository, jobs, meme(1))
        return span
    finally:
        await queue.stop()
        await repository.close()
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)


async def local_cycle(tmp: str, jobs: int, seconds: float) -> float:
    """Per-job worker cycle of LocalJobQueue on SQLite with the same generator, in this process."""
    settings = settings_for(f"sqlite:///{tmp}/local.db", tmp)
    SleepPipeline.SECONDS = seconds
    pipeline = SleepPipeline(settings)
    repository = await Repository.open(settings.storage.url, default_limits=default_limits(settings))
    queue = LocalJobQueue(repository, lambda: pipeline, settings, CheckpointRegistry(settings.checkpoints.dir))
    await queue.start()
    try:
        _, cycle = await drain(queue, repository, jobs, meme(1))
        return cycle
    finally:
        await queue.stop()
        await repository.close()


async def measure(seconds: float, per_worker: int, counts: list[int]) -> None:
    name = f"makeitmove_bench_{uuid4().hex[:8]}"
    await admin(f'CREATE DATABASE "{name}"')
    url = f"{POSTGRES}/{name}"
    try:
        await upgrade(url)
        await apply_schema(url)
        with tempfile.TemporaryDirectory() as tmp:
            spans = {n: await through_workers(url, tmp, n, per_worker * n, seconds) for n in counts}
            local = await local_cycle(tmp, per_worker, seconds)
    finally:
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"sleep generator: {seconds * 1000:.0f} ms a job, {per_worker} jobs per worker, on {os.cpu_count()} cores")
    base = per_worker * counts[0] / spans[counts[0]] * 60
    for n in counts:
        rate = per_worker * n / spans[n] * 60
        print(f"  {n} worker{'s' if n > 1 else ' '}  {rate:8.1f} jobs/min   x{rate / base:.2f} vs {counts[0]}")
    pg_cycle = spans[counts[0]] / (per_worker * counts[0])
    print(f"  queue overhead per job, Procrastinate + Postgres (worker process): {(pg_cycle - seconds) * 1000:6.1f} ms")
    print(f"  queue overhead per job, LocalJobQueue + SQLite (in process):       {(local - seconds) * 1000:6.1f} ms")
    print("  target: >= 1.8x from 1 to 2 workers")


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        worker_process(Path(sys.argv[2]), float(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.2, help="the sleep generator's time per job")
    parser.add_argument("--jobs-per-worker", type=int, default=40)
    parser.add_argument("--workers", default="1,2,4", help="worker counts to measure, comma-separated")
    args = parser.parse_args()
    asyncio.run(measure(args.seconds, args.jobs_per_worker, [int(n) for n in args.workers.split(",")]))


if __name__ == "__main__":
    main()
