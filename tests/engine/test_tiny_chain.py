"""The whole model chain on the tiny models: the real CLI, and the engine's queue switching LoRA checkpoints."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

from engine.config import load_settings, replace
from engine.pipeline import Pipeline
from engine.service.checkpoints import CheckpointRegistry
from engine.service.queue.local import LocalJobQueue
from engine.service.repository import default_limits
from storage.repository import Repository
from tests.service.queue_contract import new_job, run, wait_for_status
from tests.support.memes import meme

REPO = Path(__file__).resolve().parents[2]


def test_makeitmove_animate_runs_the_tiny_chain_to_a_gif(tiny_dir: Path, tmp_path: Path) -> None:
    image = tmp_path / "meme.png"
    image.write_bytes(meme(128, 128, caption="TINY MODELS"))
    output = tmp_path / "meme.gif"
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "animate", str(image), "-o", str(output), "--frames", "4", "--json",
         "--config", str(tiny_dir / "tiny.toml")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["backends"]["caption"] == "blip2" and report["backends"]["generate"] == "t2v"
    data = output.read_bytes()
    assert data[:6] == b"GIF89a" and report["frames"] == 4 and report["bytes"] == len(data)
    with Image.open(io.BytesIO(data)) as gif:
        assert gif.n_frames == 4 and gif.size == (report["width"], report["height"])
        assert abs(gif.size[0] / gif.size[1] - 1.0) < 0.05  # the square meme stays square


def test_the_engine_switches_checkpoints_between_jobs_on_one_loaded_model(tiny_dir: Path, tmp_path: Path) -> None:
    settings = replace(load_settings(tiny_dir / "tiny.toml"), caption={"backend": "none"})
    built: list[Pipeline] = []

    def factory() -> Pipeline:
        built.append(Pipeline(settings))
        return built[-1]

    async def scenario() -> None:
        repository = await Repository.open(f"sqlite:///{tmp_path / 'jobs.db'}", default_limits=default_limits(settings))
        queue = LocalJobQueue(
            repository, factory, settings, CheckpointRegistry(settings.checkpoints.dir), stop_timeout=10.0
        )
        await queue.start()
        try:
            results = {}
            for checkpoint in ("wiggle", "bounce"):
                await repository.set_active_checkpoint(checkpoint)
                job_id = (await queue.submit(new_job(f"user-{checkpoint}"))).job.id
                job = await wait_for_status(queue, job_id, "done", "failed", timeout=60)
                assert job.status == "done", job.error
                assert job.checkpoint == checkpoint
                results[checkpoint] = (await repository.result(job_id))[0]
            assert results["wiggle"] != results["bounce"]  # same picture, options and seed: only the LoRA differs
        finally:
            await queue.stop()
            await repository.close()

    run(scenario())
    resident = built[0].generate.backend.resident  # type: ignore[attr-defined]
    assert len(built) == 1 and resident.loads == 1  # one pipeline, one base model load, two LoRAs
