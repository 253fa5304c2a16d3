"""Tuning on Procrastinate for real: `makeitmove serve` and two `makeitmove worker`s on the tiny models and Postgres.

A tune goes from the API to whichever worker is free, into the registry folder they share; trainings
hold one Procrastinate lock, so however many workers there are, the fleet trains one at a time.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import aiohttp
import pytest

from tests.service.test_scale_out import ADMIN_AUTH, AUTH, Cluster, events
from tests.service.test_training_jobs import moving_gif, post_clip, tiny
from tests.service.test_training_restart import tiny_config
from tests.support.postgres import FAST_QUEUE, POSTGRES, admin, postgres_template

__all__ = ["postgres_template", "tiny"]  # fixtures, used by name

pytest.importorskip("torch")
pytest.importorskip("diffusers")

SETTLE_S = 60.0


class TinyCluster(Cluster):
    """The API and the workers on DIR/tiny.toml, sharing the database, the registry and the training folders."""

    def __init__(self, tmp: Path, url: str, tiny: Path) -> None:
        super().__init__(tmp, url)
        self.tiny = tiny

    def config(self, name: str, port: int) -> Path:
        path = self.tmp / f"{name}.toml"
        path.write_text(
            tiny_config(
                self.tiny,
                engine={"port": port},
                storage={"url": self.url},
                queue=FAST_QUEUE,
                checkpoints={"dir": str(self.tmp / "checkpoints")},
                training={"work_dir": str(self.tmp / "work"), "datasets_dir": str(self.tmp / "datasets")},
                limits={"user": {"jobs": 100, "concurrent": 10}},
            ),
            "utf-8",
        )
        return path


@pytest.fixture(scope="module")
def cluster(postgres_template: str, tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinyCluster]:
    name = f"makeitmove_c_{uuid4().hex[:12]}"
    admin(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"')
    cluster = TinyCluster(tmp_path_factory.mktemp("cluster"), f"{POSTGRES}/{name}", tiny)
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("OMP_NUM_THREADS", "1")  # three processes' torch on two busy cores
            cluster.start_api("api")
            for worker in ("worker-1", "worker-2"):
                cluster.start_worker(worker)
        asyncio.run(cluster.wait_ready())
        yield cluster
    finally:
        cluster.stop()
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def rows(url: str, *job_ids: str) -> list[dict[str, Any]]:
    """The rows as stored, with what the API does not show: the claim and when the job started."""
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        found = await connection.fetch(
            "SELECT id, status, attempts, worker, started_at, finished_at FROM jobs WHERE id = ANY($1::text[])",
            list(job_ids),
        )
        return [dict(row) for row in found]
    finally:
        await connection.close()


async def submit_tune(session: aiohttp.ClientSession, admin_id: str, name: str, seed: int, steps: int) -> str:
    """Ask for a tune as one admin; its job id."""
    options = {"name": name, "prompt": "a square slides right", "steps": steps}
    clip = moving_gif(seed)
    status, body = await post_clip(session, "/v1/admin/tunes", clip, options, headers=ADMIN_AUTH, user=admin_id)  # type: ignore[arg-type]
    assert status == 202, body
    return str(body["id"])


async def last_event(session: aiohttp.ClientSession, job_id: str) -> dict[str, Any]:
    """Follow the job's events to their end; the last one."""
    seen = await asyncio.wait_for(events(session, "", job_id), SETTLE_S)
    assert seen, "the stream said nothing"
    return seen[-1]


async def tune(session: aiohttp.ClientSession, admin_id: str, name: str, seed: int, steps: int) -> dict[str, Any]:
    """Ask for a tune and follow it to its end; its last event."""
    return await last_event(session, await submit_tune(session, admin_id, name, seed, steps))


def test_a_tune_sent_to_the_api_is_made_by_a_worker_into_the_shared_registry(cluster: TinyCluster) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession(base_url=cluster.base("api")) as session:
            job = await tune(session, "a1", "slide", 1, steps=4)
            assert (job["status"], job["kind"], job["made"]) == ("done", "tune", "slide"), job
            (row,) = await rows(cluster.url, job["id"])
            pids = {f":{process.pid}" for process in cluster.workers.values()}
            assert row["attempts"] == 1 and row["worker"].endswith(tuple(pids)), row
            assert (cluster.tmp / "checkpoints" / "slide.safetensors").is_file()
            async with session.get("/v1/admin/checkpoints", headers=ADMIN_AUTH) as response:
                listing = await response.json()
            (entry,) = [c for c in listing["checkpoints"] if c["name"] == "slide"]
            assert entry["valid"] and entry["training"]["kind"] == "tune", entry

    asyncio.run(scenario())


def test_two_admins_tunes_at_once_both_end_done_one_after_the_other(cluster: TinyCluster) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession(base_url=cluster.base("api")) as session:
            # two idle workers: without the shared lock, each would take one at once
            started = time.monotonic()
            jobs = await asyncio.gather(tune(session, "a2", "first", 2, 30), tune(session, "a3", "second", 3, 30))
            assert [(j["status"], j["made"]) for j in jobs] == [("done", "first"), ("done", "second")], jobs
            assert time.monotonic() - started < SETTLE_S
            one, other = sorted(await rows(cluster.url, *(j["id"] for j in jobs)), key=lambda r: r["started_at"])
            assert other["started_at"] >= one["finished_at"], (one, other)
            assert {p.name for p in (cluster.tmp / "checkpoints").iterdir()} >= {
                "first.safetensors",
                "second.safetensors",
            }

    asyncio.run(scenario())


def test_a_tune_cancelled_on_a_worker_stops_there_and_the_next_training_runs(cluster: TinyCluster) -> None:
    from engine.training.jobs import PREPARE_SHARE

    async def scenario() -> None:
        async with aiohttp.ClientSession(base_url=cluster.base("api")) as session:
            job_id = await submit_tune(session, "a5", "dropped", 5, 400)
            seen: list[dict[str, Any]] = []
            cancelled = False
            async with session.get(f"/v1/jobs/{job_id}/events", headers=AUTH) as stream:
                async for line in stream.content:
                    if not line.startswith(b"data: "):
                        continue
                    seen.append(json.loads(line[6:]))
                    progress = seen[-1]["progress"]
                    if not cancelled and progress["stage"] == "training" and progress["fraction"] > PREPARE_SHARE:
                        async with session.delete(f"/v1/jobs/{job_id}", headers=ADMIN_AUTH) as response:
                            assert response.status == 200, await response.text()
                        cancelled = True
            assert cancelled, f"the tune never reported a training step: {seen[-3:]}"
            assert seen[-1]["status"] == "cancelled", seen[-3:]
            # the worker stops at its next progress write; the shared training lock is free for the next one
            job = await tune(session, "a5", "kept", 6, 2)
            assert (job["status"], job["made"]) == ("done", "kept"), job
            names = {p.name for p in (cluster.tmp / "checkpoints").iterdir()}
            assert "kept.safetensors" in names and not any("dropped" in name for name in names), names
            logs = "".join(cluster.log(worker) for worker in cluster.workers)
            assert f"job {job_id} stopped after" in logs and "no longer ours (now cancelled" in logs

    asyncio.run(scenario())


def test_a_worker_killed_mid_tune_leaves_it_to_the_other_which_resumes_it(cluster: TinyCluster) -> None:
    import torch

    from engine.training.trainer import STATE

    steps, name = 100, "taken-over"
    state = cluster.tmp / "work" / "runs" / name / STATE

    async def scenario() -> None:
        async with aiohttp.ClientSession(base_url=cluster.base("api")) as session:
            job_id = await submit_tune(session, "a4", name, 4, steps)
            following = asyncio.create_task(last_event(session, job_id))
            deadline = time.monotonic() + SETTLE_S
            while True:  # until the trainer has saved a state and is still training
                (first,) = await rows(cluster.url, job_id)
                if first["status"] == "running" and state.is_file():
                    break
                assert first["status"] in ("queued", "running"), first
                assert time.monotonic() < deadline, f"no training state within {SETTLE_S:.0f} s: {first}"
                await asyncio.sleep(0.05)
            pids = {str(p.pid): worker for worker, p in cluster.workers.items()}
            victim = pids[first["worker"].rsplit(":", 1)[1]]
            cluster.kill(cluster.workers[victim])
            assert (await rows(cluster.url, job_id))[0]["status"] == "running", "the tune ended before the kill"
            saved = torch.load(state, weights_only=True)
            job = await following
            assert (job["status"], job["made"]) == ("done", name), job
            (final,) = await rows(cluster.url, job_id)
            survivor = next(worker for worker in cluster.workers if worker != victim)
            assert final["attempts"] == 2 and final["worker"].endswith(f":{cluster.workers[survivor].pid}"), final
            # the survivor went on from the state the killed worker saved in the shared work folder
            assert f"resuming {name} at step {saved['step']}" in cluster.log(survivor), cluster.log(survivor)[-3000:]
            assert job["script"]["losses"][: saved["step"]] == [round(v, 6) for v in saved["losses"]]
            assert (cluster.tmp / "checkpoints" / f"{name}.safetensors").is_file() and not state.exists()
        with pytest.MonkeyPatch.context() as env:
            env.setenv("OMP_NUM_THREADS", "1")
            cluster.start_worker(victim)
        await cluster.wait_ready()

    asyncio.run(scenario())
