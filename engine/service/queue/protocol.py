"""The one seam between the HTTP API and the workers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Protocol

from storage.records import JobRecord, NewJob, Submitted


class JobUpdate(NamedTuple):
    """What a watcher is told: the job, and its 1-based queue position while queued."""

    record: JobRecord
    position: int | None


@dataclass(frozen=True)
class WorkerInfo:
    """One process that runs jobs, as the dashboard shows it."""

    name: str
    alive: bool
    job_id: str | None  # the job it runs now
    last_heartbeat: datetime | None  # None: it runs inside this process, so it is alive while the engine is


class JobQueue(Protocol):
    """Submit, get, cancel, watch: everything the API asks of whoever runs the jobs."""

    async def start(self) -> None:
        """Recover interrupted jobs and start taking work."""

    async def stop(self) -> None:
        """Stop taking work; a running job is left to be resumed on the next start."""

    async def submit(self, new: NewJob) -> Submitted:
        """Accept a job (or return the existing one for a repeated idempotency key); raises Rejected."""

    async def get(self, job_id: str) -> JobRecord | None:
        """The job as it is now."""

    async def position(self, job_id: str) -> int | None:
        """1-based queue position of a queued job."""

    async def cancel(self, job_id: str) -> JobRecord | None:
        """Cancel: a queued job never runs; a running one stops at the next stage or step boundary."""

    def watch(self, job_id: str) -> AsyncIterator[JobUpdate]:
        """Yield the job and its position now and after every change to either; end when it is final."""

    def changed(self) -> asyncio.Event:
        """An event set at the next change to any job (submitted, started, progressed, ended); take it, then read."""

    async def workers(self) -> list[WorkerInfo]:
        """The processes that run jobs: alive or not, what each runs, when each last said so."""
