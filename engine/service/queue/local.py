"""LocalJobQueue: jobs kept in the database, run one at a time by one worker thread that owns the GPU."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

from engine.config import Settings
from engine.pipeline import ProgressCallback
from engine.service.checkpoints import CheckpointRegistry
from engine.service.queue.protocol import JobUpdate, WorkerInfo
from engine.service.queue.runner import (
    DB_TIMEOUT_S,
    PROGRESS_INTERVAL_S,
    Abandoned,
    Cancelled,
    Runner,
    run_job,
)
from engine.service.queue.watchers import Notifier, QueueOrder
from storage.records import JobRecord, NewJob, Submitted
from storage.repository import Repository

log = logging.getLogger(__name__)

T = TypeVar("T")
# A running job's stage and fraction reach watchers and get() at once, from memory; the row is only
# written every PROGRESS_INTERVAL_S, for readers outside this process.
# Watchers re-read the job this often even without a notification, in case one was missed; every
# change in this process notifies, so this is a backstop, and with many watchers each re-read costs.
WATCH_FALLBACK_S = 5.0
# A queued job's watchers hear of a move up the queue at most this often (see watchers.py).
POSITION_INTERVAL_S = 0.1


class LocalJobQueue:
    """The default JobQueue: the database holds every job, an in-process FIFO feeds one worker thread."""

    def __init__(
        self,
        repository: Repository,
        pipeline_factory: Callable[[], Runner],
        settings: Settings,
        registry: CheckpointRegistry,
        *,
        stop_timeout: float = 30.0,
    ) -> None:
        self.repository = repository
        self.pipeline_factory = pipeline_factory
        self.settings = settings
        self.registry = registry
        self.stop_timeout = stop_timeout
        self._ids: queue.Queue[str | None] = queue.Queue()
        self._cancelled: set[str] = set()  # ids cancelled while queued or running, until the worker sees them
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Both touched on the loop's thread only. The order mirrors the worker's FIFO, so a position
        # is a dict lookup instead of a count query per watcher per change.
        self._order = QueueOrder()
        self._notifier = Notifier()
        self._running: str | None = None  # the job the worker thread is on (written by it, read by the dashboard)

    # --- JobQueue -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Recover interrupted jobs, queue every queued job oldest first, start the worker thread."""
        if self._thread is not None:
            raise RuntimeError("this queue was already started")
        self._loop = asyncio.get_running_loop()
        requeued, failed = await self.repository.recover(max_attempts=self.settings.queue.max_attempts)
        queued = await self.repository.queued_ids()
        self._order.reset(queued)
        for job_id in queued:
            self._ids.put(job_id)
        log.info("queue started: %d jobs resumed, %d failed after too many attempts", len(requeued), len(failed))
        self._thread = threading.Thread(target=self._work, name="makeitmove-worker", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Stop the worker; a running job is abandoned at its next stage boundary and resumed on the next start."""
        self._stopping.set()
        self._ids.put(None)
        thread = self._thread
        if thread is not None:
            await asyncio.to_thread(thread.join, self.stop_timeout)
            if thread.is_alive():
                log.warning("the worker did not stop within %.0f s; its job will be resumed", self.stop_timeout)
        self._notifier.wake_all()
        log.info("queue stopped")

    async def submit(self, new: NewJob) -> Submitted:
        """Store the job (limits checked atomically by the repository) and queue it; raises Rejected."""
        submitted = await self.repository.submit(new)
        if submitted.created:
            # Same step as the put, so the order and the worker's FIFO never disagree.
            self._order.append(submitted.job.id)
            self._ids.put(submitted.job.id)
            self._notifier.touched()
            log.info("job %s queued", submitted.job.id)
        return submitted

    async def get(self, job_id: str) -> JobRecord | None:
        """The job as it is now (a running job's stage and fraction from memory: the row lags)."""
        record = await self.repository.get(job_id)
        return self._live(record) if record is not None else None

    async def position(self, job_id: str) -> int | None:
        """1-based queue position of a queued job."""
        return self._order.position(job_id)

    async def cancel(self, job_id: str) -> JobRecord | None:
        """Cancel: a queued job is skipped; a running one stops at its next stage boundary."""
        record = await self.repository.cancel(job_id)
        if record is not None and record.status == "cancelled":
            with self._lock:
                self._cancelled.add(job_id)
            self._order.remove(job_id)
            self._notifier.stored(job_id)
        return record

    async def watch(self, job_id: str) -> AsyncIterator[JobUpdate]:
        """Yield the job now and after every change to it or to its place in the queue; end once it is final."""
        watched = self._notifier.enter(job_id)
        try:
            last: JobUpdate | None = None
            yielded_at = -POSITION_INTERVAL_S
            stored: JobRecord | None = None
            seen = -1  # the stored-change count `stored` was read at
            while True:
                # Both taken before reading, so a change made while reading is not missed.
                changed, order_changed, count = watched.changed, self._order.changed, watched.stored
                if stored is None or count != seen:
                    stored, seen = await self.repository.get(job_id), count
                    if stored is None:
                        return
                record = self._live(stored)
                update = JobUpdate(record, self._order.position(job_id) if record.status == "queued" else None)
                if update != last:
                    last = update
                    yield update
                    yielded_at = asyncio.get_running_loop().time()
                if record.final:
                    return
                # Only a queued job's watchers care that the queue moved.
                waits = [changed.wait(), order_changed.wait()] if record.status == "queued" else [changed.wait()]
                tasks = [asyncio.ensure_future(w) for w in waits]
                try:
                    await asyncio.wait(tasks, timeout=WATCH_FALLBACK_S, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in tasks:
                        task.cancel()
                if not changed.is_set() and not order_changed.is_set():
                    seen = -1  # the fallback: re-read anyway
                elif not changed.is_set():
                    await _coalesce_moves(changed, yielded_at)
        finally:
            self._notifier.leave(job_id)

    def changed(self) -> asyncio.Event:
        """An event set at the next change to any job; take it before reading."""
        return self._notifier.anything

    async def workers(self) -> list[WorkerInfo]:
        """The one worker thread of this process, and the job it runs."""
        thread = self._thread
        running = self._running
        alive = thread is not None and thread.is_alive()
        return [WorkerInfo(name="this engine's worker thread", alive=alive, job_id=running, last_heartbeat=None)]

    def _live(self, record: JobRecord) -> JobRecord:
        """The record with its live stage and fraction while running."""
        live = self._notifier.live.get(record.id) if record.status == "running" else None
        if live is None:
            return record
        return dataclasses.replace(record, stage=live[0], fraction=live[1])

    async def _taken(self, job_id: str) -> tuple[JobRecord, str | None, bytes | None] | None:
        """queued -> running with the active checkpoint, and its image; out of the queue order either way."""
        try:
            return await self.repository.take(job_id)
        finally:
            self._order.remove(job_id)

    # --- the worker thread --------------------------------------------------------------------
    def _call(self, make: Callable[[], Coroutine[Any, Any, T]], changes: str | None = None) -> T:
        """Run a repository coroutine on the service loop from the worker thread, and wait for it.

        `changes` names the job whose row the coroutine changes, so that job's watchers are woken.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            raise Abandoned("the service loop is gone")
        future = asyncio.run_coroutine_threadsafe(self._notifying(make(), changes), loop)
        return future.result(timeout=DB_TIMEOUT_S)

    async def _notifying(self, coroutine: Coroutine[Any, Any, T], job_id: str | None) -> T:
        try:
            return await coroutine
        finally:
            if job_id is not None:
                self._notifier.stored(job_id)

    def _soon(self, callback: Callable[..., object], *args: Any) -> None:
        """Run a callback on the loop's thread without waiting for it (FIFO with _call's coroutines)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(callback, *args)

    def _work(self) -> None:
        """The worker loop: one job at a time until stopped; no exception ends it."""
        runner: Runner | None = None
        while not self._stopping.is_set():
            job_id = self._ids.get()
            if job_id is None or self._stopping.is_set():
                break
            try:
                self._running = job_id
                runner = self._run_one(job_id, runner)
            except Abandoned:
                log.info("job %s abandoned: the queue is stopping; it resumes on the next start", job_id)
                break
            except Exception:
                log.exception("job %s: the worker hit an error outside the pipeline", job_id)
            finally:
                self._running = None
                with self._lock:
                    self._cancelled.discard(job_id)
                self._soon(self._notifier.ended, job_id)

    def _run_one(self, job_id: str, runner: Runner | None) -> Runner | None:
        """Start, run and finish one job; returns the (lazily built) pipeline for the next one."""
        with self._lock:
            if job_id in self._cancelled:
                log.info("job %s skipped: cancelled while queued", job_id)
                return runner
        # The checkpoint is read at job start, so a switch applies between jobs and each job records
        # what it ran with; one transaction also starts the job and hands over its image.
        taken = self._call(lambda: self._taken(job_id), changes=job_id)
        if taken is None:
            return runner  # cancelled, finished or queued twice: nothing to do
        record, checkpoint, data = taken
        started = time.perf_counter()
        waited = (record.started_at - record.created_at).total_seconds() if record.started_at else 0.0
        log.info(
            "job %s started: attempt %d, checkpoint %s, %.2f s after it was queued",
            job_id, record.attempts, checkpoint or "none", waited,
        )  # fmt: skip
        if runner is None:
            runner = self.pipeline_factory()
        try:
            outcome = run_job(record, checkpoint, data, self.registry, runner, self._progress_callback(job_id))
        except (Cancelled, Abandoned) as exc:
            self._log_end(job_id, "cancelled" if isinstance(exc, Cancelled) else "abandoned", started)
            if isinstance(exc, Abandoned):
                raise
            return runner
        finished = outcome.finished
        if finished is None:
            self._fail(job_id, outcome.code, outcome.message, started)
            return runner
        if self._stopping.is_set():
            raise Abandoned("the queue stopped as the job ended")
        done = self._call(
            lambda: self.repository.finish(
                job_id, data=finished.data, format=finished.format, script=finished.script,
                timings=dict(finished.timings),
            ),
            changes=job_id,
        )  # fmt: skip
        how = "done" if done is not None else "done but no longer running (cancelled)"
        log.info("job %s %s: %s in %.2f s", job_id, how, finished.summary, time.perf_counter() - started)
        return runner

    def _progress_callback(self, job_id: str) -> ProgressCallback:
        """Show stage and fraction (stored throttled), and stop the job at a boundary when cancelled or stopping."""
        last_write = time.monotonic()

        def progress(stage: str, fraction: float) -> None:
            nonlocal last_write
            with self._lock:
                cancelled = job_id in self._cancelled
            if cancelled:
                raise Cancelled(job_id)
            if self._stopping.is_set():
                raise Abandoned(job_id)
            log.debug("job %s: %s (%.0f%%)", job_id, stage, fraction * 100)
            self._soon(self._notifier.progressed, job_id, stage, fraction)
            now = time.monotonic()
            if now - last_write >= PROGRESS_INTERVAL_S:
                self._call(lambda: self.repository.progress(job_id, stage, fraction))
                last_write = now

        return progress

    def _fail(self, job_id: str, code: str, message: str, started: float) -> None:
        if self._stopping.is_set():
            raise Abandoned("the queue stopped as the job failed")
        self._call(lambda: self.repository.fail(job_id, code=code, message=message), changes=job_id)
        log.info("job %s failed (%s) in %.2f s: %s", job_id, code, time.perf_counter() - started, message)

    def _log_end(self, job_id: str, how: str, started: float) -> None:
        log.info("job %s %s after %.2f s", job_id, how, time.perf_counter() - started)


async def _coalesce_moves(changed: asyncio.Event, yielded_at: float) -> None:
    """Only the queue moved: wait out the rest of POSITION_INTERVAL_S since the last update, unless the job changes."""
    left = yielded_at + POSITION_INTERVAL_S - asyncio.get_running_loop().time()
    if left > 0:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(changed.wait(), left)
