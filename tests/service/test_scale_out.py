"""Scale-out for real: `makeitmove serve` replicas and `makeitmove worker`s as processes on one Postgres database.

One cluster per module (two API replicas, two workers, heartbeat 1 s, dead after 3 s): starting
processes costs seconds, and every test leaves the cluster whole again.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import aiohttp
import pytest

from tests.service.test_restart import TOKEN
from tests.support.memes import meme
from tests.support.ports import free_port
from tests.support.postgres import POSTGRES, admin, postgres_template

__all__ = ["postgres_template"]  # a fixture, used by name

ADMIN = "scale-out-admin"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN}"}
START_S = 90.0
SETTLE_S = 60.0
USER_LIMIT = 5


class Cluster:
    """The processes, their config files and logs, and the database they share."""

    def __init__(self, tmp: Path, url: str) -> None:
        self.tmp = tmp
        self.url = url
        self.exe = shutil.which("makeitmove") or pytest.fail("the makeitmove console script is not installed")
        self.apis: dict[str, tuple[int, subprocess.Popen[bytes] | None]] = {}
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.started_at: dict[str, int] = {}  # where each process's own lines begin in its log

    def config(self, name: str, port: int) -> Path:
        path = self.tmp / f"{name}.toml"
        # The default 48 frames at 480 px take a few seconds: long enough to kill a worker mid-job.
        path.write_text(
            f"""
[engine]
port = {port}
[storage]
url = "{self.url}"
[queue]
backend = "procrastinate"
heartbeat_s = 1
stalled_after_s = 3
[limits]
queue_max = 1000
[limits.user]
jobs = {USER_LIMIT}
concurrent = {USER_LIMIT}
[limits.chat]
jobs = 1000
[checkpoints]
dir = "{self.tmp / "checkpoints"}"
"""
        )
        return path

    def _spawn(self, name: str, *command: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "ENGINE_TOKEN": TOKEN, "ENGINE_ADMIN_TOKEN": ADMIN}
        self.started_at[name] = len(self.log(name)) if (self.tmp / f"{name}.log").exists() else 0
        with (self.tmp / f"{name}.log").open("ab") as log:
            return subprocess.Popen([self.exe, *command], stdout=log, stderr=log, env=env)

    def start_api(self, name: str) -> None:
        port = self.apis[name][0] if name in self.apis else free_port()
        process = self._spawn(name, "serve", "--config", str(self.config(name, port)))
        self.apis[name] = (port, process)

    def start_worker(self, name: str) -> None:
        self.workers[name] = self._spawn(name, "worker", "--config", str(self.config(name, free_port())))

    def base(self, name: str) -> str:
        return f"http://127.0.0.1:{self.apis[name][0]}"

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    async def wait_ready(self) -> None:
        """Every API answers /v1/health and every worker has logged that it takes jobs."""
        deadline = time.monotonic() + START_S
        async with aiohttp.ClientSession() as session:
            for name, (_, process) in self.apis.items():
                while True:
                    assert process is not None and process.poll() is None, self.log(name)[-3000:]
                    assert time.monotonic() < deadline, f"{name} did not start: {self.log(name)[-3000:]}"
                    try:
                        async with session.get(f"{self.base(name)}/v1/health") as response:
                            if response.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)
        for name, process in self.workers.items():
            # only this process's lines: a restarted worker appends to the log of the one before it
            while "taking jobs from queue" not in self.log(name)[self.started_at.get(name, 0) :]:
                assert process.poll() is None, self.log(name)[-3000:]
                assert time.monotonic() < deadline, f"{name} did not start: {self.log(name)[-3000:]}"
                await asyncio.sleep(0.1)

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    def stop(self) -> None:
        processes = [p for _, p in self.apis.values() if p is not None] + list(self.workers.values())
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster(postgres_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    name = f"makeitmove_c_{uuid4().hex[:12]}"
    admin(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"')
    cluster = Cluster(tmp_path_factory.mktemp("cluster"), f"{POSTGRES}/{name}")
    try:
        for api in ("api-a", "api-b"):
            cluster.start_api(api)
        for worker in ("worker-1", "worker-2"):
            cluster.start_worker(worker)
        asyncio.run(cluster.wait_ready())
        yield cluster
    finally:
        cluster.stop()
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def submit(session: aiohttp.ClientSession, base: str, user: str, n: int) -> tuple[int, dict]:
    form = aiohttp.FormData()
    form.add_field("image", meme(seed=n), filename="meme.png", content_type="image/png")
    form.add_field("options", json.dumps({"seed": n}))
    for field, value in (("platform", "test"), ("user_id", user), ("chat_id", f"chat-{user}")):
        form.add_field(field, value)
    async with session.post(f"{base}/v1/jobs", data=form, headers=AUTH) as response:
        return response.status, await response.json()


async def job_row(url: str, job_id: str) -> dict:
    """The row as stored, with the claim the API does not show."""
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        row = await connection.fetchrow("SELECT status, attempts, worker FROM jobs WHERE id = $1", job_id)
        assert row is not None
        return dict(row)
    finally:
        await connection.close()


async def wait_row(url: str, job_id: str, *statuses: str, timeout: float = SETTLE_S) -> dict:
    deadline = time.monotonic() + timeout
    while (row := await job_row(url, job_id))["status"] not in statuses:
        assert time.monotonic() < deadline, f"job {job_id} is {row}, not {statuses}"
        await asyncio.sleep(0.05)
    return row


async def events(session: aiohttp.ClientSession, base: str, job_id: str) -> list[dict]:
    """Every event of the job's SSE stream, until the engine ends it."""
    seen = []
    async with session.get(f"{base}/v1/jobs/{job_id}/events", headers=AUTH) as response:
        assert response.status == 200
        async for line in response.content:
            if line.startswith(b"data: "):
                seen.append(json.loads(line[6:]))
    return seen


async def result(session: aiohttp.ClientSession, base: str, job_id: str) -> bytes:
    async with session.get(f"{base}/v1/jobs/{job_id}/result", headers=AUTH) as response:
        assert response.status == 200, await response.text()
        return await response.read()


def test_rate_limits_hold_across_two_api_replicas(cluster: Cluster) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            bases = [cluster.base("api-a"), cluster.base("api-b")]
            answers = await asyncio.gather(*(submit(session, bases[n % 2], "greedy", n) for n in range(100)))
            accepted = [body["id"] for status, body in answers if status == 202]
            refused = [body["code"] for status, body in answers if status != 202]
            assert len(accepted) == USER_LIMIT and refused == ["rate_limited"] * (100 - USER_LIMIT), refused[:3]
            async with session.get(f"{bases[1]}/v1/users/test/greedy/quota", headers=AUTH) as response:
                assert (await response.json())["jobs_left"] == 0
            for job_id in accepted:  # the workers have better things to do
                async with session.delete(f"{bases[0]}/v1/jobs/{job_id}", headers=ADMIN_AUTH) as response:
                    assert response.status == 200

    asyncio.run(scenario())


def test_a_worker_killed_mid_job_leaves_it_to_the_other(cluster: Cluster) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            base = cluster.base("api-a")
            status, body = await submit(session, base, "killed", 1)
            assert status == 202, body
            job_id = body["id"]
            watching = asyncio.create_task(events(session, cluster.base("api-b"), job_id))
            first = await wait_row(cluster.url, job_id, "running", "done")
            assert first["status"] == "running" and first["attempts"] == 1, first
            pids = {str(p.pid): name for name, p in cluster.workers.items()}
            victim = pids[first["worker"].rsplit(":", 1)[1]]
            cluster.kill(cluster.workers[victim])
            assert (await job_row(cluster.url, job_id))["status"] == "running", "the job ended before the kill"
            final = await wait_row(cluster.url, job_id, "done", "failed")
            # The survivor took it over as attempt 2 and made the one result.
            assert final["status"] == "done" and final["attempts"] == 2, final
            host = first["worker"].rsplit(":", 1)[0]
            survivor = next(p.pid for name, p in cluster.workers.items() if name != victim)
            assert final["worker"] == f"{host}:{survivor}", final
            assert (await result(session, base, job_id))[:6] == b"GIF89a"
            seen = await asyncio.wait_for(watching, SETTLE_S)
            assert [e["status"] for e in seen if e["status"] in ("done", "failed", "cancelled")] == ["done"]
            assert "requeued: its worker" in cluster.log("worker-1") + cluster.log("worker-2")
        cluster.start_worker(victim)
        await cluster.wait_ready()

    asyncio.run(scenario())


def test_an_api_restart_mid_job_loses_no_job(cluster: Cluster) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            base = cluster.base("api-a")
            ids = []
            for n in range(3):
                status, body = await submit(session, base, "restarted", 10 + n)
                assert status == 202, body
                ids.append(body["id"])
            await wait_row(cluster.url, ids[0], "running", "done")
            _, process = cluster.apis["api-a"]
            assert process is not None
            cluster.kill(process)
            cluster.start_api("api-a")
            await cluster.wait_ready()
            for job_id in ids:
                final = await wait_row(cluster.url, job_id, "done", "failed")
                assert final["status"] == "done" and final["attempts"] == 1, final
                for replica in ("api-a", "api-b"):
                    assert (await result(session, cluster.base(replica), job_id))[:6] == b"GIF89a"

    asyncio.run(scenario())
