"""ProcrastinateJobQueue: an API replica's side of the scale-out queue (`[queue] backend = "procrastinate"`).

Submissions are stored (limits checked atomically in Postgres) and handed to Procrastinate; workers
on other hosts run them (engine/service/worker.py). Everything a watcher sees comes from the `jobs`
rows the workers write; this replica LISTENs on JOBS_CHANNEL, where a trigger announces every change,
and wakes only the watchers of that job, or, when a job joined or left the queue, those of queued jobs
(their positions, counted in the database, moved). A lost notification costs a re-read after
WATCH_FALLBACK_S, never a wrong answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from engine.config import Settings
from engine.service.checkpoints import CheckpointRegistry
from engine.service.queue.procrastinate.app import (
    GPU_QUEUE,
    JOBS_CHANNEL,
    apply_schema,
    check_settings,
    conninfo,
    create_procrastinate_app,
    defer,
)
from engine.service.queue.procrastinate.worker import JobWorker, register_tasks
from engine.service.queue.protocol import JobUpdate, WorkerInfo
from engine.service.queue.runner import Runner
from engine.service.queue.watchers import Notifier
from storage.records import JobRecord, NewJob, Submitted
from storage.repository import Repository

if TYPE_CHECKING:
    import procrastinate

log = logging.getLogger(__name__)

WATCH_FALLBACK_S = 5.0  # re-read a watched job this often even without a notification
POSITION_INTERVAL_S = 0.1  # a queued job's watchers recount their position at most this often
LISTEN_CHECK_S = 30.0  # an idle LISTEN connection is checked (and reopened if dead) this often
LISTEN_RETRY_S = 2.0
# Procrastinate's own registry of workers and what each is doing; a worker process runs two of them,
# one on the gpu queue (our jobs) and one on the maintenance queue (recovery).
WORKERS_SQL = """
SELECT w.id, w.last_heartbeat, j.queue_name, j.args->>'job_id' AS job_id
FROM procrastinate_workers w
LEFT JOIN procrastinate_jobs j ON j.worker_id = w.id AND j.status = 'doing'
ORDER BY w.id
"""


class ProcrastinateJobQueue:
    """The JobQueue for many API replicas and `makeitmove worker`s on one Postgres database.

    `workers=1` also runs a worker in this process (tests, or one machine trying the setup); by
    default this process only submits and watches.
    """

    def __init__(
        self,
        repository: Repository,
        pipeline_factory: Callable[[], Runner],
        settings: Settings,
        registry: CheckpointRegistry,
        *,
        workers: int = 0,
    ) -> None:
        check_settings(settings)
        if workers not in (0, 1):
            raise ValueError(f"workers must be 0 or 1 (one GPU per process), not {workers}")
        self.repository = repository
        self.settings = settings
        self._app: procrastinate.App = create_procrastinate_app(settings)
        self._worker = JobWorker(repository, pipeline_factory, settings, registry) if workers else None
        self._worker_task: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._notifier = Notifier()
        self._moved = asyncio.Event()  # set, then replaced, when a job joins or leaves the queue

    # --- JobQueue -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Make sure Procrastinate's schema exists, open it, LISTEN for job changes (and start the worker)."""
        await apply_schema(self.settings.storage.url)
        await self._app.open_async()
        listening = asyncio.Event()
        self._listener = asyncio.create_task(self._listen(listening), name="job-notifications")
        await asyncio.wait([asyncio.ensure_future(listening.wait()), self._listener], timeout=LISTEN_RETRY_S * 5,
                           return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        if self._worker is not None:
            register_tasks(self._app, self.settings)
            self._worker_task = asyncio.create_task(self._worker.run(self._app), name="job-worker")
        log.info("queue started: jobs go to Procrastinate workers%s", " (one in this process)" if self._worker else "")

    async def stop(self) -> None:
        """Stop listening (and the worker: its running job goes back to the queue); jobs stay where they are."""
        if self._worker is not None:
            await self._worker.stop()
            if self._worker_task is not None:
                await self._worker_task
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self._app.close_async()
        self._notifier.wake_all()
        log.info("queue stopped")

    async def submit(self, new: NewJob) -> Submitted:
        """Store the job (limits checked atomically), then queue it for a worker; raises Rejected."""
        submitted = await self.repository.submit(new)
        if submitted.created:
            job_id = submitted.job.id
            try:
                await defer(self._app, job_id, training=submitted.job.training)
            except Exception:
                # Stored but not queued: a worker's recovery queues it within a heartbeat or two.
                log.exception("job %s stored but not handed to the workers yet; recovery will", job_id)
            else:
                log.info("job %s queued", job_id)
        return submitted

    async def get(self, job_id: str) -> JobRecord | None:
        """The job as its row says (workers write every stage)."""
        return await self.repository.get(job_id)

    async def position(self, job_id: str) -> int | None:
        """1-based place among queued jobs, counted in the database (every replica agrees)."""
        return await self.repository.position(job_id)

    async def cancel(self, job_id: str) -> JobRecord | None:
        """Cancel in the row: a queued job is never claimed, a running one stops at its next stage boundary."""
        record = await self.repository.cancel(job_id)
        if record is not None and record.status == "cancelled":
            self._heard_change(job_id, moved=True)  # at once here; other replicas hear the trigger
        return record

    async def watch(self, job_id: str) -> AsyncIterator[JobUpdate]:
        """Yield the job now and after every change to it or to its place in the queue; end once it is final."""
        watched = self._notifier.enter(job_id)
        try:
            last: JobUpdate | None = None
            record: JobRecord | None = None
            seen = -1  # the change count `record` was read at
            while True:
                # Taken before reading, so a change made while reading is not missed.
                changed, moved, count = watched.changed, self._moved, watched.stored
                if record is None or count != seen:
                    record, seen = await self.repository.get(job_id), count
                    if record is None:
                        return
                queued = record.status == "queued"
                update = JobUpdate(record, await self.repository.position(job_id) if queued else None)
                if update != last:
                    last = update
                    yield update
                if record.final:
                    return
                waits = [changed.wait(), moved.wait()] if queued else [changed.wait()]
                tasks = [asyncio.ensure_future(w) for w in waits]
                try:
                    await asyncio.wait(tasks, timeout=WATCH_FALLBACK_S, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in tasks:
                        task.cancel()
                if not changed.is_set() and not moved.is_set():
                    seen = -1  # the fallback: re-read anyway
                elif not changed.is_set():
                    # Only the queue moved: a burst of starts reaches this watcher as one recount.
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(changed.wait(), POSITION_INTERVAL_S)
        finally:
            self._notifier.leave(job_id)

    def changed(self) -> asyncio.Event:
        """An event set at the next change to any job (every replica hears the workers' writes); take it, then read."""
        return self._notifier.anything

    async def workers(self) -> list[WorkerInfo]:
        """Every Procrastinate worker: alive while its heartbeat is younger than stalled_after_s, and its job."""
        rows = await self._app.connector.execute_query_all_async(WORKERS_SQL)
        now = datetime.now(timezone.utc)
        found = []
        for row in rows:
            beat: datetime = row["last_heartbeat"]
            job_id = row["job_id"] if row["queue_name"] == GPU_QUEUE else None
            record = await self.repository.get(job_id) if job_id else None
            role = "upkeep" if row["queue_name"] not in (None, GPU_QUEUE) else "jobs"
            name = (
                f"worker {row['id']} ({record.worker})"
                if record is not None and record.worker
                else f"worker {row['id']}"
            )
            alive = (now - beat).total_seconds() < self.settings.queue.stalled_after_s
            found.append(WorkerInfo(name=f"{name} · {role}" if role == "upkeep" else name, alive=alive,
                                    job_id=job_id, last_heartbeat=beat))  # fmt: skip
        return found

    # --- notifications --------------------------------------------------------------------------
    def _heard_change(self, job_id: str, *, moved: bool) -> None:
        self._notifier.stored(job_id)
        if moved:
            moved_event, self._moved = self._moved, asyncio.Event()
            moved_event.set()

    async def _listen(self, listening: asyncio.Event) -> None:
        """LISTEN on JOBS_CHANNEL for good: reconnect after a lost connection or refused LISTEN, then re-read."""
        import psycopg

        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    conninfo(self.settings.storage.url), autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {JOBS_CHANNEL}")
                    listening.set()
                    self._notifier.wake_all()  # whatever changed while not listening
                    self._heard_change("", moved=True)
                    while True:
                        async for notification in conn.notifies(timeout=LISTEN_CHECK_S):
                            self._heard(notification.payload)
                        await conn.execute("SELECT 1")  # idle: is the connection still alive?
            # Any psycopg error, not only a lost connection: LISTEN refused (a hot standby during a failover
            # answers ReadOnlySqlTransaction) must not end notifications for this replica's life.
            except (psycopg.Error, OSError) as exc:
                log.warning("job notifications lost (%s); listening again in %.0f s", exc, LISTEN_RETRY_S)
                await asyncio.sleep(LISTEN_RETRY_S)

    def _heard(self, payload: str) -> None:
        try:
            change = json.loads(payload)
            self._heard_change(str(change["id"]), moved=bool(change["moved"]))
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed job notification: %.200r", payload)
