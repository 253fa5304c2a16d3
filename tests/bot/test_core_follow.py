"""Following a job: progress then one finish, and a job the engine no longer knows ends through `lost`."""

from __future__ import annotations

from pathlib import Path

from bot.core.engine_client import EngineClient
from bot.core.errors import EngineError
from bot.core.follow import follow
from bot.core.models import Job
from engine.pipeline import Pipeline
from tests.bot.test_core_engine_client import run, submit


def test_progress_then_one_finish(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(client: EngineClient) -> None:
        job = await submit(client)
        seen: list[str] = []

        async def progress(update: Job) -> None:
            seen.append(update.status)

        async def finish(update: Job) -> None:
            seen.append(f"final {update.status}")

        async def lost(exc: EngineError) -> None:
            raise AssertionError(f"not lost: {exc}")

        await follow(client, job.id, progress=progress, finish=finish, lost=lost)
        assert seen[-1] == "final done" and seen.count("final done") == 1 and "running" in seen

    run(tmp_path, pipeline, scenario)


def test_a_job_the_engine_does_not_know_ends_through_lost(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(client: EngineClient) -> None:
        ended: list[EngineError] = []

        async def never(update: Job) -> None:
            raise AssertionError("no job to report")

        async def lost(exc: EngineError) -> None:
            ended.append(exc)

        await follow(client, "0" * 32, progress=never, finish=never, lost=lost)
        assert [exc.status for exc in ended] == [404]

    run(tmp_path, pipeline, scenario)
