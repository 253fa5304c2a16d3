"""Training jobs stopped halfway: cancelled through the API, killed with -9 and recovered, or interrupted too often."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import tomllib
from aiohttp.test_utils import TestClient

from engine.config import replace
from tests.service.api_world import ADMIN_AUTH, AUTH, get_json, submit
from tests.service.test_restart import ADMIN, TOKEN, Engine
from tests.service.test_training_jobs import finished, moving_gif, post_clip, serve, tiny, tiny_settings

__all__ = ["tiny"]  # a fixture, used by name

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

FINAL = {"done", "failed", "cancelled"}
WAIT_S = 60.0  # any one wait of these tests; the tiny models train a step in about 0.05 s


def tiny_config(tiny: Path, **sections: dict[str, Any]) -> str:
    """DIR/tiny.toml with `sections` laid over it, as TOML text a `makeitmove serve` or `worker` can read."""
    tables = tomllib.loads((tiny / "tiny.toml").read_text("utf-8"))
    for name, values in sections.items():
        tables[name] = {**tables.get(name, {}), **values}
    lines: list[str] = []

    def table(name: str, values: dict[str, Any]) -> None:
        lines.append(f"[{name}]")
        # JSON's strings, numbers and booleans are TOML's too
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in values.items() if not isinstance(v, dict))
        for key, value in values.items():
            if isinstance(value, dict):
                table(f"{name}.{key}", value)

    for name, values in tables.items():
        table(name, values)
    return "\n".join(lines) + "\n"


def test_a_tune_cancelled_mid_training_leaves_nothing_in_the_registry_and_the_worker_goes_on(
    tiny: Path, tmp_path: Path
) -> None:
    from engine.training.jobs import PREPARE_SHARE

    settings = tiny_settings(tiny, tmp_path)
    registry = tmp_path / "ckpt"

    async def scenario(client: TestClient) -> None:
        options = {"name": "slow", "prompt": "a square slides right", "steps": 400}
        status, body = await post_clip(client, "/v1/admin/tunes", moving_gif(1), options, headers=ADMIN_AUTH)
        assert status == 202, body
        job_id = body["id"]
        seen: list[dict[str, Any]] = []
        cancelled_at: dict[str, Any] | None = None
        async with client.get(f"/v1/jobs/{job_id}/events", headers=AUTH) as stream:
            assert stream.status == 200
            async for line in stream.content:
                if not line.startswith(b"data: "):
                    continue
                seen.append(json.loads(line[6:]))
                progress = seen[-1]["progress"]
                if cancelled_at is None and progress["stage"] == "training" and progress["fraction"] > PREPARE_SHARE:
                    # steps are being taken: the trainer is in its loop, past preparing and loading
                    async with client.delete(f"/v1/jobs/{job_id}", headers=ADMIN_AUTH) as response:
                        cancelled_at = await response.json()
                        assert response.status == 200, cancelled_at
        assert cancelled_at is not None, f"the tune never reported a training step: {seen[-3:]}"
        assert cancelled_at["status"] == "cancelled", cancelled_at
        assert seen[-1]["status"] == "cancelled", seen[-1]
        assert seen[-1]["progress"]["fraction"] < 1.0

        # the worker thread survived: the next tune runs, then an animation on the video model training freed;
        # the worker takes one job at a time, so the cancelled tune has stopped by then
        options = {"name": "next", "prompt": "a square slides left", "steps": 2}
        status, body = await post_clip(client, "/v1/admin/tunes", moving_gif(2), options, headers=ADMIN_AUTH)
        assert status == 202, body
        job = await finished(client, body["id"])
        assert (job["status"], job["made"]) == ("done", "next"), job
        status, body, _ = await submit(client, options={"frames": 4, "format": "gif", "seed": 1})
        assert status == 202, body
        job = await finished(client, body["id"])
        assert (job["status"], job["kind"]) == ("done", "animate"), job

        status, again = await get_json(client, f"/v1/jobs/{job_id}")
        assert status == 200 and again["status"] == "cancelled" and again["made"] is None, again
        # no cancelled checkpoint, and no partial file of one (.slow.safetensors.partial-...) left behind
        assert sorted(p.name for p in registry.iterdir()) == ["next.safetensors"]
        status, listing = await get_json(client, "/v1/admin/checkpoints", headers=ADMIN_AUTH)
        assert "slow" not in {c["name"] for c in listing["checkpoints"]}

    serve(settings, scenario)


def test_a_tune_interrupted_more_often_than_allowed_fails_with_a_sentence_about_its_checkpoint(
    tiny: Path, tmp_path: Path
) -> None:
    from engine.service.repository import open_repository
    from storage.records import NewJob

    settings = replace(tiny_settings(tiny, tmp_path), queue={"max_attempts": 1})

    async def killed_while_running() -> str:
        """The row a kill -9 leaves: running, its one attempt used."""
        repository = await open_repository(settings)
        try:
            new = NewJob(
                platform="test", user_id="a1", chat_id="c1", is_admin=True, options={"name": "lost", "steps": 2},
                seed=0, image=moving_gif(5), kind="tune",
            )  # fmt: skip
            submitted = await repository.submit(new)
            taken = await repository.take(submitted.job.id)
            assert taken is not None and taken[0].attempts == 1
            return submitted.job.id
        finally:
            await repository.close()

    job_id = asyncio.run(killed_while_running())

    async def scenario(client: TestClient) -> None:
        job = await finished(client, job_id)
        assert (job["status"], job["kind"], job["error"]["code"]) == ("failed", "tune", "interrupted"), job
        message = job["error"]["message"]
        assert message.endswith(".") and "Traceback" not in message
        # the admin asked for a checkpoint: a sentence about an animation would tell them something untrue
        assert "animation" not in message, message

    serve(settings, scenario)


class TinyEngine(Engine):
    """`makeitmove serve` on the tiny models, with this test's own database, registry and training folders."""

    def __init__(self, tmp: Path, tiny: Path, **training: Any) -> None:
        super().__init__(tmp)
        self.config.write_text(
            tiny_config(
                tiny,
                engine={"port": self.port},
                storage={"url": f"sqlite:///{tmp / 'engine.db'}"},
                checkpoints={"dir": str(tmp / "ckpt")},
                training={"work_dir": str(tmp / "work"), "datasets_dir": str(tmp / "datasets"), **training},
                limits={"user": {"jobs": 100, "concurrent": 10}},
            ),
            "utf-8",
        )


async def job_now(session: aiohttp.ClientSession, base: str, job_id: str) -> dict[str, Any]:
    async with session.get(f"{base}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {TOKEN}"}) as response:
        assert response.status == 200
        return dict(await response.json())


def test_a_training_killed_with_9_resumes_from_its_last_state_and_ends_done(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.training.dataset import build_dataset
    from engine.training.trainer import STATE

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the engine's torch: one thread, like this process's
    steps, every, name = 150, 5, "memes-v1"
    source = tmp_path / "memes"
    source.mkdir()
    for n in range(2):
        (source / f"clip{n}.gif").write_bytes(moving_gif(10 + n))
    build_dataset(source, tmp_path / "datasets" / "memes", tiny_settings(tiny, tmp_path), family="t2v")
    state = tmp_path / "work" / "runs" / name / STATE
    engine = TinyEngine(tmp_path, tiny, checkpoint_every=every)
    base = f"http://127.0.0.1:{engine.port}"
    admin = {"Authorization": f"Bearer {ADMIN}"}
    request = {"dataset": "memes", "name": name, "platform": "test", "user_id": "a1", "steps": steps}

    async def start_and_wait_for_a_state() -> str:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{base}/v1/admin/trainings", json=request, headers=admin) as response:
                body = await response.json()
                assert response.status == 202, body
            deadline = time.monotonic() + WAIT_S
            while True:
                job = await job_now(session, base, body["id"])
                assert job["status"] not in FINAL, f"the training ended before it could be killed: {job}"
                # past its first saved state, and still training
                if state.is_file() and job["progress"]["fraction"] > every / steps:
                    return str(body["id"])
                assert time.monotonic() < deadline, f"no training state within {WAIT_S:.0f} s: {job}"
                await asyncio.sleep(0.05)

    async def wait_until_final(job_id: str) -> dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + WAIT_S
            while (job := await job_now(session, base, job_id))["status"] not in FINAL:
                assert time.monotonic() < deadline, f"the recovered training is still {job['status']}: {job}"
                await asyncio.sleep(0.1)
            async with session.get(f"{base}/v1/admin/checkpoints", headers=admin) as response:
                listing = await response.json()
            return {**job, "listing": listing}

    try:
        engine.start()
        job_id = asyncio.run(start_and_wait_for_a_state())
        engine.kill()
        saved = torch.load(state, weights_only=True)  # the last state written before the kill: whole, by rename
        assert 0 < saved["step"] < steps and saved["step"] % every == 0, saved["step"]
        engine.start()
        job = asyncio.run(wait_until_final(job_id))
    finally:
        engine.stop()

    log = engine.log.read_text(errors="replace")
    assert (job["status"], job["kind"], job["made"]) == ("done", "train", name), (job, log[-3000:])
    with sqlite3.connect(tmp_path / "engine.db") as db:
        (attempts,) = db.execute("SELECT attempts FROM jobs WHERE id = ?", (job_id,)).fetchone()
    assert attempts == 2, "the killed job was recovered and run once more"
    # it went on from the saved step rather than starting over
    assert f"resuming {name} at step {saved['step']}" in log, log[-3000:]
    script = job["script"]
    assert script["steps"] == steps and script["loss_every"] == 1 and len(script["losses"]) == steps
    assert script["losses"][: saved["step"]] == [round(v, 6) for v in saved["losses"]]
    # the checkpoint is in the registry, whole; the run's state is gone
    assert (tmp_path / "ckpt" / f"{name}.safetensors").is_file() and not state.exists()
    (entry,) = [c for c in job["listing"]["checkpoints"] if c["name"] == name]
    assert entry["valid"] and entry["training"]["kind"] == "train" and entry["training"]["steps"] == steps
