"""`makeitmove worker`: one process per GPU, taking jobs from Procrastinate's `gpu` queue one at a time.

A job's life on a worker:
1. claim it in our `jobs` table (queued, or running after a worker died: attempts + 1, this worker's name);
2. run the pipeline on this process's pipeline thread; every stage boundary writes the row under the
   claim, which is how a cancel (the row is no longer running) or a takeover (no longer our attempt)
   reaches the worker: the write matches no row and the pipeline stops there;
3. finish or fail the row under the claim, so a worker presumed dead can't add a second result.

Beside it, a maintenance worker runs RECOVER every heartbeat_s on whichever process is free: jobs of
workers silent for stalled_after_s go back to the queue (Procrastinate's retry), and our queued or
running jobs with no Procrastinate job (an API replica died between storing and queueing one) are
queued again. Attempts are ours: a job claimed max_attempts times is failed instead of run again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from engine.config import Settings
from engine.pipeline import ProgressCallback
from engine.service.checkpoints import CheckpointRegistry
from engine.service.queue.procrastinate.app import (
    ANIMATE,
    GPU_QUEUE,
    MAINTENANCE_QUEUE,
    RECOVER,
    apply_schema,
    create_procrastinate_app,
    defer,
    recovery_cron,
)
from engine.service.queue.runner import (
    DB_TIMEOUT_S,
    PROGRESS_INTERVAL_S,
    Abandoned,
    Cancelled,
    Outcome,
    Runner,
    run_job,
)
from engine.service.repository import open_repository
from storage.records import JobRecord
from storage.repository import Repository
from storage.statements import utc

if TYPE_CHECKING:
    import procrastinate
    from procrastinate.job_context import JobContext

log = logging.getLogger(__name__)
T = TypeVar("T")
# Within a stage (a GPU backend's steps), the row is written at most every PROGRESS_INTERVAL_S; a new stage always is.


class JobWorker:
    """Claims, runs and ends jobs for one Procrastinate worker; the pipeline runs on one thread of its own."""

    def __init__(
        self,
        repository: Repository,
        pipeline_factory: Callable[[], Runner],
        settings: Settings,
        registry: CheckpointRegistry,
        *,
        name: str | None = None,
    ) -> None:
        self.repository = repository
        self.pipeline_factory = pipeline_factory
        self.settings = settings
        self.registry = registry
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        # One thread builds the pipeline and runs every job: model stacks like to stay on one thread.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="makeitmove-pipeline")
        self._runner: Runner | None = None
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._app: procrastinate.App | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped_workers = False

    # --- running -----------------------------------------------------------------------------
    async def run(self, app: procrastinate.App) -> None:
        """Build the pipeline, then work the gpu and maintenance queues until stop() (the app is open)."""
        self._loop = asyncio.get_running_loop()
        self._app = app
        started = time.perf_counter()
        self._runner = await self._loop.run_in_executor(self._thread, self.pipeline_factory)
        log.info("worker %s: pipeline loaded in %.2f s", self.name, time.perf_counter() - started)
        if self._stopping.is_set():  # stopped while the pipeline loaded
            return
        queue = self.settings.queue
        common: dict[str, Any] = dict(
            install_signal_handlers=False,
            update_heartbeat_interval=queue.heartbeat_s,
            stalled_worker_timeout=queue.stalled_after_s,
            # Procrastinate notifies new jobs, not retried ones: those are found by polling.
            fetch_job_polling_interval=queue.heartbeat_s,
            delete_jobs="successful",  # our jobs table is the history; failed ones stay to be looked at
            additional_context={"worker": self},
        )
        self._tasks = [
            asyncio.create_task(app.run_worker_async(queues=[GPU_QUEUE], concurrency=1, name=self.name, **common)),
            asyncio.create_task(
                app.run_worker_async(queues=[MAINTENANCE_QUEUE], concurrency=1, name=f"{self.name}/upkeep", **common)
            ),
        ]
        log.info("worker %s taking jobs from queue %r", self.name, GPU_QUEUE)
        try:
            # Each runs until cancelled by stop(), or fails: then the other stops too.
            done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await self._stop_workers()
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise RuntimeError(f"worker {self.name} stopped on an error") from task.exception()

    async def stop(self) -> None:
        """Stop taking jobs; a running job stops at its next stage boundary and goes back to the queue."""
        self._stopping.set()
        await self._stop_workers()
        self._thread.shutdown(wait=False)
        log.info("worker %s stopped", self.name)

    async def _stop_workers(self) -> None:
        # Cancelling a Procrastinate worker is its graceful stop: it waits for its running job. Only once:
        # a second cancel would end the wait and leave the job running on a closed app.
        if not self._stopped_workers:
            self._stopped_workers = True
            for task in self._tasks:
                task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)

    # --- one job -----------------------------------------------------------------------------
    async def animate(self, job_id: str) -> None:
        """Claim the job, run it, end it under the claim; raises Abandoned when stopping (Procrastinate retries)."""
        claimed = await self.repository.claim(job_id, worker=self.name, max_attempts=self.settings.queue.max_attempts)
        if claimed is None:
            log.info("job %s skipped: nothing to run (cancelled, final or failed after too many attempts)", job_id)
            return
        record, checkpoint, data = claimed
        started = time.perf_counter()
        log.info("job %s started on %s: attempt %d, checkpoint %s", job_id, self.name, record.attempts,
                 checkpoint or "none")  # fmt: skip
        loop = asyncio.get_running_loop()
        try:
            outcome = await loop.run_in_executor(self._thread, self._run, record, checkpoint, data)
        except Cancelled:
            now = await self.repository.get(job_id)
            how = f"now {now.status} on {now.worker}, attempt {now.attempts}" if now else "gone"
            log.info("job %s stopped after %.2f s: no longer ours (%s)", job_id, time.perf_counter() - started, how)
            return
        except Abandoned:
            log.info("job %s abandoned: the worker is stopping; it goes back to the queue", job_id)
            raise
        finished = outcome.finished
        if finished is None:
            await self._fail(record, outcome.code, outcome.message, started)
            return
        done = await self.repository.finish(
            job_id, data=finished.data, format=finished.format, script=finished.script,
            timings=dict(finished.timings), attempt=record.attempts,
        )  # fmt: skip
        how = "done" if done is not None else "done, but no longer ours (cancelled or taken over): result dropped"
        log.info("job %s %s: %s in %.2f s", job_id, how, finished.summary, time.perf_counter() - started)

    def _run(self, record: JobRecord, checkpoint: str | None, data: bytes | None) -> Outcome:
        """On the pipeline thread: the job's pipeline run."""
        if self._runner is None:
            self._runner = self.pipeline_factory()
        return run_job(record, checkpoint, data, self.registry, self._runner, self._progress_callback(record))

    def _progress_callback(self, record: JobRecord) -> ProgressCallback:
        """Write stage and fraction under the claim; stop the job when the write finds it no longer ours."""
        job_id, attempt = record.id, record.attempts
        last_stage, last_write = "", 0.0

        def progress(stage: str, fraction: float) -> None:
            nonlocal last_stage, last_write
            if self._stopping.is_set():
                raise Abandoned(job_id)
            now = time.monotonic()
            if stage == last_stage and now - last_write < PROGRESS_INTERVAL_S:
                return
            last_stage, last_write = stage, now
            if not self._call(self.repository.progress(job_id, stage, fraction, attempt=attempt)):
                raise Cancelled(job_id)  # cancelled, or another worker claimed it: either way not ours to finish

        return progress

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """From the pipeline thread: run a repository coroutine on the worker's loop and wait for it."""
        loop = self._loop
        if loop is None or loop.is_closed():
            coroutine.close()
            raise Abandoned("the worker's loop is gone")
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=DB_TIMEOUT_S)

    async def _fail(self, record: JobRecord, code: str, message: str, started: float) -> None:
        failed = await self.repository.fail(record.id, code=code, message=message, attempt=record.attempts)
        how = "failed" if failed is not None else "failed, but no longer ours: not recorded"
        log.info("job %s %s (%s) in %.2f s: %s", record.id, how, code, time.perf_counter() - started, message)

    # --- recovery ------------------------------------------------------------------------------
    async def recover(self) -> None:
        """Requeue the jobs of dead workers, and queue again our active jobs Procrastinate has no job for."""
        app = self._app
        if app is None:
            return
        manager = app.job_manager
        stalled = await manager.get_stalled_jobs(
            queue=GPU_QUEUE, seconds_since_heartbeat=self.settings.queue.stalled_after_s
        )
        for job in stalled:
            # Back to 'todo'; whoever fetches it claims our row as the next attempt (or fails it at max_attempts).
            await manager.retry_job(job)
            log.warning("job %s requeued: its worker (id %s) stopped sending heartbeats",
                        (job.task_kwargs or {}).get("job_id"), job.worker_id)  # fmt: skip
        # Rows younger than one heartbeat may be between being stored and being queued by their API replica.
        cutoff = utc(None) - timedelta(seconds=self.settings.queue.heartbeat_s)
        active = await self.repository.active_ids(created_before=cutoff)
        if not active:
            return
        queued = set()
        for status in ("todo", "doing"):
            queued |= {job.queueing_lock for job in await manager.list_jobs_async(queue=GPU_QUEUE, status=status)}
        for job_id in active:
            record = await self.repository.get(job_id) if job_id not in queued else None
            if record is not None and await defer(app, job_id, training=record.training):
                log.warning("job %s queued again: it was active with nothing in the queue to run it", job_id)


def register_tasks(app: procrastinate.App, settings: Settings) -> None:
    """The worker's two tasks: ANIMATE on the gpu queue, RECOVER on the maintenance queue every heartbeat."""
    from procrastinate import RetryStrategy

    # Only a stopping worker's job is retried by Procrastinate (at once, on another worker); every other
    # outcome is recorded in our row by JobWorker.animate.
    @app.task(name=ANIMATE, queue=GPU_QUEUE, pass_context=True, retry=RetryStrategy(retry_exceptions=[Abandoned]))
    async def animate(context: JobContext, job_id: str) -> None:
        await context.additional_context["worker"].animate(job_id)

    @app.periodic(cron=recovery_cron(settings), periodic_id="recover")
    @app.task(name=RECOVER, queue=MAINTENANCE_QUEUE, queueing_lock=RECOVER, pass_context=True)
    async def recover(context: JobContext, timestamp: int) -> None:
        await context.additional_context["worker"].recover()


def run_worker(settings: Settings, pipeline_factory: Callable[[Settings], Runner]) -> None:
    """`makeitmove worker`: until SIGINT or SIGTERM, then the running job goes back to the queue."""
    asyncio.run(_serve(settings, pipeline_factory))


async def _serve(settings: Settings, pipeline_factory: Callable[[Settings], Runner]) -> None:
    app = create_procrastinate_app(settings)
    register_tasks(app, settings)
    repository = await open_repository(settings)
    try:
        await apply_schema(settings.storage.url)
        worker = JobWorker(
            repository, lambda: pipeline_factory(settings), settings, CheckpointRegistry(settings.checkpoints.dir)
        )
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, lambda: asyncio.ensure_future(worker.stop()))
        async with app.open_async():
            await worker.run(app)
    finally:
        await repository.close()
