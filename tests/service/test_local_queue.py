"""LocalJobQueue on real SQLite: the JobQueue contract, plus what only a local worker thread promises."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.config import Settings
from engine.pipeline import Pipeline, PipelineResult, ProgressCallback
from engine.service.checkpoints import CheckpointRegistry
from engine.service.queue import local as local_queue_module
from engine.service.queue.local import LocalJobQueue
from engine.service.queue.protocol import JobQueue
from engine.service.queue.runner import OUT_OF_MEMORY
from engine.types import AnimationOptions
from storage.repository import Repository
from tests.service.queue_contract import WAIT_S, PausingPipeline, QueueContract, new_job, run, wait_for_status


def local_queue(repository: Repository, pipeline_factory: Callable[[], Any], settings: Settings) -> JobQueue:
    """The queue under test, wired as the service wires it."""
    registry = CheckpointRegistry(settings.checkpoints.dir)
    return LocalJobQueue(repository, pipeline_factory, settings, registry, stop_timeout=10.0)


class TestLocalJobQueue(QueueContract):
    """The contract, on SQLite in a temporary directory."""

    @pytest.fixture
    def database_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'jobs.db'}"

    @pytest.fixture
    def job_queue_factory(self) -> Callable[..., JobQueue]:
        return local_queue

    def test_the_pipeline_is_built_once_on_the_worker_thread(
        self, service: Any, pipeline: Pipeline, settings: Settings
    ) -> None:
        built: list[int] = []
        held = PausingPipeline(pipeline, pause_at="never")

        def factory() -> PausingPipeline:
            built.append(threading.get_ident())
            return held

        async def scenario() -> None:
            async with service(factory, settings) as (queue, _):
                assert built == []  # lazily: starting the queue loads no model
                ids = [(await queue.submit(new_job(f"u{i}"))).job.id for i in range(2)]
                for job_id in ids:
                    await wait_for_status(queue, job_id, "done")
                assert len(built) == 1 and held.threads == set(built) and threading.get_ident() not in built

        run(scenario())

    def test_out_of_memory_fails_the_job_and_the_worker_carries_on(
        self, service: Any, pipeline: Pipeline, settings: Settings
    ) -> None:
        runner = FailingFirstRuns(pipeline, [MemoryError(), OutOfMemoryError("CUDA out of memory.")])

        async def scenario() -> None:
            async with service(lambda: runner, settings) as (queue, _):
                ids = [(await queue.submit(new_job(f"u{i}"))).job.id for i in range(3)]
                jobs = [await wait_for_status(queue, job_id, "failed", "done") for job_id in ids]
                assert [(job.status, job.error_code) for job in jobs] == [
                    ("failed", "out_of_memory"), ("failed", "out_of_memory"), ("done", None),
                ]  # fmt: skip
                assert jobs[0].error == jobs[1].error == OUT_OF_MEMORY

        run(scenario())

    def test_an_internal_error_is_one_calm_sentence_with_the_job_id(
        self, service: Any, pipeline: Pipeline, settings: Settings, caplog: pytest.LogCaptureFixture
    ) -> None:
        runner = FailingFirstRuns(pipeline, [KeyError("scene")])

        async def scenario() -> None:
            async with service(lambda: runner, settings) as (queue, _):
                broken = (await queue.submit(new_job("u1"))).job.id
                fine = (await queue.submit(new_job("u2"))).job.id
                job = await wait_for_status(queue, broken, "failed", "done")
                assert job.status == "failed" and job.error_code == "internal_error"
                assert broken in (job.error or "") and "KeyError" not in (job.error or "")
                await wait_for_status(queue, fine, "done")

        run(scenario())
        assert any(r.exc_info and broken_in(r.getMessage()) for r in caplog.records)  # logged with the traceback

    def test_a_checkpoint_that_vanished_fails_the_job_by_name(
        self, service: Any, pipeline: Pipeline, settings: Settings
    ) -> None:
        async def scenario() -> None:
            async with service(lambda: pipeline, settings) as (queue, repository):
                await repository.set_active_checkpoint("deleted-lora")
                job_id = (await queue.submit(new_job("u1"))).job.id
                job = await wait_for_status(queue, job_id, "failed", "done")
                assert job.error_code == "unknown_checkpoint" and "deleted-lora" in (job.error or "")
                assert job.checkpoint == "deleted-lora"

        run(scenario())

    def test_watchers_are_woken_by_changes_not_by_polling(
        self, service: Any, pipeline: Pipeline, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(local_queue_module, "WATCH_FALLBACK_S", 600.0)  # the fallback can't be what wakes them
        held = PausingPipeline(pipeline, pause_at="ocr")

        async def scenario() -> None:
            async with service(lambda: held, settings) as (queue, _):
                running = (await queue.submit(new_job("u1"))).job.id
                await held.wait_until_paused()
                behind = (await queue.submit(new_job("u2"))).job.id
                last = (await queue.submit(new_job("u3"))).job.id
                watchers = [queue.watch(job_id) for job_id in (running, last)]
                for watcher in watchers:
                    await asyncio.wait_for(anext(watcher), WAIT_S)
                pending = [asyncio.ensure_future(anext(watcher)) for watcher in watchers]
                await asyncio.sleep(0.1)
                assert not any(task.done() for task in pending)  # nothing changed: nothing yielded
                await queue.cancel(behind)
                moved_up = await asyncio.wait_for(pending[1], WAIT_S)
                assert moved_up.record.status == "queued" and moved_up.position == 1
                held.release.set()
                assert (await asyncio.wait_for(pending[0], WAIT_S)).record.stage != "ocr"
                for watcher in watchers:
                    assert [u async for u in watcher][-1].record.status == "done"

        run(scenario())

    def test_a_burst_of_moves_up_the_queue_reaches_watchers_as_one_update(
        self, service: Any, pipeline: Pipeline, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(local_queue_module, "POSITION_INTERVAL_S", 2.0)  # the burst fits, even on a busy machine
        held = PausingPipeline(pipeline, pause_at="ocr")

        async def scenario() -> None:
            async with service(lambda: held, settings) as (queue, _):
                await queue.submit(new_job("u1"))
                await held.wait_until_paused()
                ahead = [(await queue.submit(new_job(f"a{n}"))).job.id for n in range(5)]
                last = (await queue.submit(new_job("u9"))).job.id
                watcher = queue.watch(last)
                assert (await asyncio.wait_for(anext(watcher), WAIT_S)).position == 6
                pending = asyncio.ensure_future(anext(watcher))  # waiting, as an SSE stream is
                for job_id in ahead:  # five moves within a few milliseconds
                    await queue.cancel(job_id)
                moved = await asyncio.wait_for(pending, WAIT_S)
                assert moved.position == 1, "one update, with the newest position, not one per move"
                held.release.set()
                assert [u async for u in watcher][-1].record.status == "done"

        run(scenario())


def broken_in(message: str) -> bool:
    return "failed with an internal error" in message


class OutOfMemoryError(RuntimeError):
    """Named like torch.cuda.OutOfMemoryError, which the queue recognises without importing torch."""


class FailingFirstRuns:
    """Test double: raises the given errors on its first runs, then is the real pipeline."""

    def __init__(self, pipeline: Pipeline, errors: list[BaseException]) -> None:
        self.pipeline = pipeline
        self.errors = list(errors)

    def run(self, data: bytes, options: AnimationOptions, progress: ProgressCallback | None = None) -> PipelineResult:
        """Raise the next error, or animate for real."""
        if self.errors:
            raise self.errors.pop(0)
        return self.pipeline.run(data, options, progress)
