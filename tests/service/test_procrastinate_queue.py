"""ProcrastinateJobQueue on real PostgreSQL: the JobQueue contract, plus what only a distributed queue promises."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from engine.config import Settings
from engine.pipeline import Pipeline
from engine.service.checkpoints import CheckpointRegistry
from engine.service.queue.procrastinate import queue as queue_module
from engine.service.queue.procrastinate.app import JOBS_CHANNEL
from engine.service.queue.procrastinate.queue import ProcrastinateJobQueue
from engine.service.queue.protocol import JobQueue
from engine.service.repository import default_limits
from storage.repository import Repository
from tests.service.queue_contract import (
    WAIT_S,
    PausingPipeline,
    QueueContract,
    new_job,
    run,
    wait_for_status,
)
from tests.support.postgres import fresh_postgres, postgres_template, scale_out

__all__ = ["fresh_postgres", "postgres_template"]  # fixtures, used by name


def procrastinate_queue(url: str, *, workers: int = 1) -> Callable[..., JobQueue]:
    """The queue under test on `url`, with a worker in this process as the contract needs jobs to run."""

    def factory(repository: Repository, pipeline_factory: Callable[[], Any], settings: Settings) -> JobQueue:
        settings = scale_out(settings, url)
        registry = CheckpointRegistry(settings.checkpoints.dir)
        return ProcrastinateJobQueue(repository, pipeline_factory, settings, registry, workers=workers)

    return factory


class TestProcrastinateJobQueue(QueueContract):
    """The contract, on a fresh Postgres database per test."""

    @pytest.fixture
    def database_url(self, fresh_postgres: str) -> str:
        return fresh_postgres

    @pytest.fixture
    def job_queue_factory(self, database_url: str) -> Callable[..., JobQueue]:
        return procrastinate_queue(database_url)

    def test_another_replica_sees_every_stage_through_notifications(
        self, service: Any, pipeline: Pipeline, settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(queue_module, "WATCH_FALLBACK_S", 600.0)  # only a notification can wake the watcher
        held = PausingPipeline(pipeline, pause_at="ocr")

        async def scenario() -> None:
            async with service(lambda: held, settings) as (worker_side, _):
                api = procrastinate_queue(database_url, workers=0)
                replica = await Repository.open(database_url, default_limits=default_limits(settings))
                other = api(replica, lambda: None, settings)
                await other.start()
                try:
                    running = (await other.submit(new_job("u1"))).job.id
                    await held.wait_until_paused()
                    behind = (await other.submit(new_job("u2"))).job.id
                    last = (await other.submit(new_job("u3"))).job.id
                    follow, queued = other.watch(running), other.watch(last)
                    assert (await asyncio.wait_for(anext(follow), WAIT_S)).record.stage == "ocr"
                    assert (await asyncio.wait_for(anext(queued), WAIT_S)).position == 2
                    await worker_side.cancel(behind)  # on the worker's replica: this one hears it
                    assert (await asyncio.wait_for(anext(queued), WAIT_S)).position == 1
                    held.release.set()
                    stages = [u.record.stage async for u in follow]
                    assert stages[-1] == "done" and "encode" in stages, stages
                    assert [u async for u in queued][-1].record.status == "done"
                finally:
                    await other.stop()
                    await replica.close()

        run(scenario())

    def test_a_job_stored_but_never_queued_is_queued_by_recovery(
        self, service: Any, pipeline: Pipeline, settings: Settings
    ) -> None:
        async def scenario() -> None:
            async with service(lambda: pipeline, settings) as (queue, repository):
                # What an API replica killed between storing a job and queueing it leaves behind.
                orphan = (await repository.submit(new_job("u1"))).job.id
                job = await wait_for_status(queue, orphan, "done", "failed")
                assert job.status == "done" and job.attempts == 1

        run(scenario())

    def test_notifications_resume_after_a_refused_listen(
        self, pipeline: Pipeline, settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(queue_module, "WATCH_FALLBACK_S", 600.0)  # only a notification can wake the watcher
        monkeypatch.setattr(queue_module, "LISTEN_RETRY_S", 0.05)
        # Not a lost connection: the server refuses the LISTEN (a syntax error here, a standby's
        # ReadOnlySqlTransaction in a failover); the listener must try again, not end.
        monkeypatch.setattr(queue_module, "JOBS_CHANNEL", "no such channel")

        async def scenario() -> None:
            repository = await Repository.open(database_url, default_limits=default_limits(settings))
            api = procrastinate_queue(database_url, workers=0)(repository, lambda: None, settings)
            asyncio.get_running_loop().call_later(0.5, monkeypatch.setattr, queue_module, "JOBS_CHANNEL", JOBS_CHANNEL)
            await api.start()
            try:
                job_id = (await api.submit(new_job("u1"))).job.id
                follow = api.watch(job_id)
                assert (await asyncio.wait_for(anext(follow), WAIT_S)).record.status == "queued"
                await repository.cancel(job_id)  # in the row only: the trigger's NOTIFY is all the watcher hears
                assert (await asyncio.wait_for(anext(follow), WAIT_S)).record.status == "cancelled"
            finally:
                await api.stop()
                await repository.close()

        run(scenario())
