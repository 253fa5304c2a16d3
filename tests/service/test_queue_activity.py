"""The dashboard's live queue: changed() wakes whoever watches the whole queue, workers() says who runs what.

LocalJobQueue on SQLite in tmp_path; ProcrastinateJobQueue on a fresh PostgreSQL database with a worker
in this process (skipped when Postgres is unreachable). Every job runs the real pipeline; a
PausingPipeline holds it wherever a test needs the queue to stand still.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from engine.config import Settings, load_settings, replace
from engine.pipeline import Pipeline
from engine.service.checkpoints import CheckpointRegistry
from engine.service.queue.local import LocalJobQueue
from engine.service.queue.procrastinate.queue import ProcrastinateJobQueue
from engine.service.queue.protocol import JobQueue, WorkerInfo
from engine.service.repository import default_limits
from storage.records import JobRecord
from storage.repository import Repository
from tests.service.queue_contract import WAIT_S, PausingPipeline, new_job, run, shared_pipeline, wait_for_status
from tests.support.postgres import fresh_postgres, postgres_template, scale_out

__all__ = ["fresh_postgres", "postgres_template"]  # fixtures, used by name

# A negative wait: long enough for a stray wake-up (a late notification) to show, short enough to stay cheap.
QUIET_S = 0.2
# Shorter than a PausingPipeline's hold (WAIT_S): a missing wake-up fails as such, before the held job
# times out, fails, and sets the event itself.
CHANGE_S = WAIT_S / 2


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return shared_pipeline()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return replace(load_settings(), checkpoints={"dir": str(tmp_path / "checkpoints")})


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


def local_queue(repository: Repository, runner: Any, settings: Settings) -> LocalJobQueue:
    """The local queue, wired as the service wires it, not yet started."""
    registry = CheckpointRegistry(settings.checkpoints.dir)
    return LocalJobQueue(repository, lambda: runner, settings, registry, stop_timeout=10.0)


def procrastinate_queue(repository: Repository, runner: Any, settings: Settings) -> ProcrastinateJobQueue:
    """The Procrastinate queue with one worker in this process, not yet started."""
    registry = CheckpointRegistry(settings.checkpoints.dir)
    return ProcrastinateJobQueue(repository, lambda: runner, settings, registry, workers=1)


def two_stops(pipeline: Pipeline) -> tuple[PausingPipeline, PausingPipeline]:
    """Two holds on one run: `first` at the start of ocr, then `second` (the runner) at done, every stage reported."""
    first = PausingPipeline(pipeline, pause_at="ocr")
    # The outer one hears every stage first (and passes it to the queue), then the inner one may hold it.
    second = PausingPipeline(first, pause_at="done")  # type: ignore[arg-type]  # same run() as a Pipeline
    return first, second


@asynccontextmanager
async def repository_on(url: str, settings: Settings) -> AsyncIterator[Repository]:
    repository = await Repository.open(url, default_limits=default_limits(settings))
    try:
        yield repository
    finally:
        await repository.close()


@asynccontextmanager
async def started(queue: JobQueue, *held: PausingPipeline) -> AsyncIterator[JobQueue]:
    """A started queue, stopped after; held runs are let go first, so a failing test never waits out a pause."""
    await queue.start()
    try:
        yield queue
    finally:
        for pausing in held:
            pausing.release.set()
        await queue.stop()


async def set_by(event: asyncio.Event, what: str) -> None:
    """Wait (bounded) for an event taken earlier to be set."""
    try:
        await asyncio.wait_for(event.wait(), CHANGE_S)
    except asyncio.TimeoutError:
        pytest.fail(f"the changed() event taken before {what} was not set within {CHANGE_S:.0f} s")


async def quiet_event(queue: JobQueue) -> asyncio.Event:
    """changed() of a queue at rest: taken, and seen to stay unset for QUIET_S (late notifications drained first)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        taken = queue.changed()
        try:
            await asyncio.wait_for(taken.wait(), QUIET_S)
        except asyncio.TimeoutError:
            return taken
    pytest.fail(f"changed() kept being set for {WAIT_S:.0f} s while nothing was meant to change")


async def record_of(queue: JobQueue, job_id: str) -> JobRecord:
    """The job as the queue shows it now; it must exist."""
    record = await queue.get(job_id)
    assert record is not None, f"job {job_id} vanished"
    return record


async def workers_until(queue: JobQueue, condition: Callable[[list[WorkerInfo]], bool], what: str) -> list[WorkerInfo]:
    """Poll workers() (bounded) until `condition` holds."""
    deadline = time.monotonic() + WAIT_S
    while True:
        found = await queue.workers()
        if condition(found):
            return found
        assert time.monotonic() < deadline, f"workers() never showed {what}: {found}"
        await asyncio.sleep(0.02)


# --- LocalJobQueue ----------------------------------------------------------------------------------


def test_local_an_event_with_no_change_after_it_stays_unset_and_a_submit_sets_it(
    pipeline: Pipeline, settings: Settings, sqlite_url: str
) -> None:
    held = PausingPipeline(pipeline, pause_at="ocr")

    async def scenario() -> None:
        async with repository_on(sqlite_url, settings) as repository:
            async with started(local_queue(repository, held, settings), held) as queue:
                running = (await queue.submit(new_job("u1"))).job.id
                await held.wait_until_paused()
                taken = queue.changed()
                with pytest.raises(asyncio.TimeoutError):  # the only job is held: nothing changes
                    await asyncio.wait_for(taken.wait(), QUIET_S)
                queued = (await queue.submit(new_job("u2"))).job.id
                await set_by(taken, "a submit")
                # The worker is still held, so the submit was the only change.
                assert await queue.position(queued) == 1 and (await record_of(queue, running)).stage == "ocr"
                fresh = queue.changed()
                assert fresh is not taken and not fresh.is_set()  # the next watcher waits for the next change

    run(scenario())


def test_local_progress_sets_the_event_taken_while_the_job_runs(
    pipeline: Pipeline, settings: Settings, sqlite_url: str
) -> None:
    first, second = two_stops(pipeline)

    async def scenario() -> None:
        async with repository_on(sqlite_url, settings) as repository:
            async with started(local_queue(repository, second, settings), first, second) as queue:
                job_id = (await queue.submit(new_job("u1"))).job.id
                await first.wait_until_paused()
                taken = queue.changed()
                first.release.set()
                await second.wait_until_paused()  # every stage reported; the job has not ended
                await set_by(taken, "the running job's progress")
                record = await record_of(queue, job_id)
                assert record.status == "running" and record.stage == "done", record

    run(scenario())


def test_local_a_cancel_sets_the_event_taken_before_it(pipeline: Pipeline, settings: Settings, sqlite_url: str) -> None:
    held = PausingPipeline(pipeline, pause_at="ocr")

    async def scenario() -> None:
        async with repository_on(sqlite_url, settings) as repository:
            async with started(local_queue(repository, held, settings), held) as queue:
                running = (await queue.submit(new_job("u1"))).job.id
                await held.wait_until_paused()
                queued = (await queue.submit(new_job("u2"))).job.id
                taken = queue.changed()
                cancelled = await queue.cancel(queued)
                assert cancelled is not None and cancelled.status == "cancelled", cancelled
                await set_by(taken, "cancelling a queued job")
                taken = queue.changed()
                cancelled = await queue.cancel(running)
                assert cancelled is not None and cancelled.status == "cancelled", cancelled
                await set_by(taken, "cancelling the running job")
                held.release.set()
                assert (await wait_for_status(queue, running, "cancelled", "done")).status == "cancelled"

    run(scenario())


def test_local_the_end_of_a_job_sets_the_event_taken_before_it(
    pipeline: Pipeline, settings: Settings, sqlite_url: str
) -> None:
    held = PausingPipeline(pipeline, pause_at="done")

    async def scenario() -> None:
        async with repository_on(sqlite_url, settings) as repository:
            async with started(local_queue(repository, held, settings), held) as queue:
                job_id = (await queue.submit(new_job("u1"))).job.id
                await held.wait_until_paused()
                # Its last progress is already shown: what remains is the end alone.
                assert (await record_of(queue, job_id)).stage == "done"
                taken = queue.changed()
                held.release.set()
                await set_by(taken, "the job's end")
                await wait_for_status(queue, job_id, "done")

    run(scenario())


def test_local_workers_report_the_thread_and_the_job_it_runs(
    pipeline: Pipeline, settings: Settings, sqlite_url: str
) -> None:
    held = PausingPipeline(pipeline, pause_at="ocr")

    async def scenario() -> None:
        async with repository_on(sqlite_url, settings) as repository:
            queue = local_queue(repository, held, settings)
            [before] = await queue.workers()
            assert not before.alive and before.job_id is None and before.last_heartbeat is None
            async with started(queue, held):
                [idle] = await queue.workers()
                assert idle.alive and idle.job_id is None and idle.last_heartbeat is None and idle.name
                job_id = (await queue.submit(new_job("u1"))).job.id
                await held.wait_until_paused()
                assert await queue.workers() == [WorkerInfo(idle.name, alive=True, job_id=job_id, last_heartbeat=None)]
                held.release.set()
                await wait_for_status(queue, job_id, "done")
                [free] = await workers_until(queue, lambda found: found[0].job_id is None, "the worker free again")
                assert free.alive
            [after] = await queue.workers()
            assert not after.alive and after.job_id is None

    run(scenario())


# --- ProcrastinateJobQueue --------------------------------------------------------------------------


@pytest.fixture
def pg_settings(settings: Settings, fresh_postgres: str) -> Settings:
    """`[queue] backend = "procrastinate"` on a fresh database, heartbeat 1 s, stalled after 3 s."""
    return scale_out(settings, fresh_postgres)


def test_procrastinate_changed_is_set_by_a_submit_by_the_workers_progress_and_by_the_end(
    pipeline: Pipeline, pg_settings: Settings
) -> None:
    first, second = two_stops(pipeline)

    async def scenario() -> None:
        async with repository_on(pg_settings.storage.url, pg_settings) as repository:
            async with started(procrastinate_queue(repository, second, pg_settings), first, second) as queue:
                # Each event is taken at rest (heartbeats and upkeep write no job row), so only the
                # step that follows can set it; everything reaches this queue through LISTEN.
                taken = await quiet_event(queue)
                job_id = (await queue.submit(new_job("u1"))).job.id
                await set_by(taken, "a submit")
                await first.wait_until_paused()
                taken = await quiet_event(queue)
                first.release.set()
                await second.wait_until_paused()  # every stage written to the row; the job has not ended
                await set_by(taken, "the worker's progress")
                record = await record_of(queue, job_id)
                assert record.status == "running" and record.stage == "done", record
                taken = await quiet_event(queue)
                second.release.set()
                await set_by(taken, "the job's end")
                await wait_for_status(queue, job_id, "done")

    run(scenario())


def test_procrastinate_workers_are_alive_and_say_which_job_each_runs(pipeline: Pipeline, pg_settings: Settings) -> None:
    import asyncpg

    held = PausingPipeline(pipeline, pause_at="ocr")
    stalled_after = timedelta(seconds=pg_settings.queue.stalled_after_s)

    async def scenario() -> None:
        before = datetime.now(timezone.utc)
        async with repository_on(pg_settings.storage.url, pg_settings) as repository:
            async with started(procrastinate_queue(repository, held, pg_settings), held) as queue:
                idle = await workers_until(queue, lambda found: any(w.alive for w in found), "an alive worker")
                assert all(w.job_id is None for w in idle), idle
                job_id = (await queue.submit(new_job("u1"))).job.id
                await held.wait_until_paused()
                found = await queue.workers()
                [busy] = [w for w in found if w.job_id is not None]
                assert busy.job_id == job_id and busy.alive, found
                beat = busy.last_heartbeat
                assert beat is not None and beat.utcoffset() is not None, beat  # timezone-aware
                now = datetime.now(timezone.utc)
                assert before - timedelta(seconds=1) <= beat <= now + timedelta(seconds=1), (before, beat, now)
                assert now - beat < stalled_after, (beat, now)
                worker = (await record_of(queue, job_id)).worker  # the jobs row's claim: this process's JobWorker
                assert worker and worker in busy.name, (worker, busy)

                # What a worker process killed without a goodbye leaves in Procrastinate's registry.
                connection = await asyncpg.connect(pg_settings.storage.url)
                try:
                    dead_id = await connection.fetchval(
                        "INSERT INTO procrastinate_workers (last_heartbeat)"
                        " VALUES (now() - interval '1 hour') RETURNING id"
                    )
                finally:
                    await connection.close()
                [dead] = [w for w in await queue.workers() if w.name == f"worker {dead_id}"]
                assert not dead.alive and dead.job_id is None, dead
                assert dead.last_heartbeat is not None and now - dead.last_heartbeat > stalled_after, dead

                held.release.set()
                await wait_for_status(queue, job_id, "done")
                free = await workers_until(
                    queue, lambda found: all(w.job_id is None for w in found), "no worker on the finished job"
                )
                assert any(w.alive for w in free), free

    run(scenario())
