"""What LocalJobQueue's watchers wait on: the queued ids in order, per-job wake-ups and live progress.

Watchers get the same JSON on every change (queue position, stage, fraction), with one exception:
a queued job's position alone is sent at most once per POSITION_INTERVAL_S (100 ms, in
local_queue.py). When jobs start every few milliseconds, each start used to wake and write to every
queued watcher; a burst of moves within 100 ms now reaches them as one update with the newest
position. A change to the job itself (status, stage, fraction) is always sent at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class QueueOrder:
    """The queued job ids in the order the worker will take them; positions are served from here."""

    def __init__(self) -> None:
        self._ids: dict[str, None] = {}  # insertion-ordered; O(1) removal from anywhere
        self._places: dict[str, int] | None = None  # 1-based, rebuilt lazily after a change
        self.changed = asyncio.Event()  # set, then replaced, when the order changes

    def reset(self, ids: Iterable[str]) -> None:
        """Replace the whole order (at start, from the database)."""
        self._ids = dict.fromkeys(ids)
        self._bump()

    def append(self, job_id: str) -> None:
        """A job joined the end of the queue."""
        self._ids[job_id] = None
        self._bump()

    def remove(self, job_id: str) -> None:
        """A job left the queue (started, cancelled); jobs behind it move up."""
        if self._ids.pop(job_id, 0) is None:
            self._bump()

    def position(self, job_id: str) -> int | None:
        """1-based place of a queued job, None when it is not queued."""
        if self._ids and next(reversed(self._ids)) == job_id:
            return len(self._ids)  # the one just submitted: no need to number the whole queue
        if self._places is None:
            self._places = {job_id: n for n, job_id in enumerate(self._ids, start=1)}
        return self._places.get(job_id)

    def __len__(self) -> int:
        return len(self._ids)

    def _bump(self) -> None:
        self._places = None
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()


class Watched:
    """One watched job: an event set on any change, and a count of its stored (database) changes."""

    def __init__(self) -> None:
        self.changed = asyncio.Event()
        self.stored = 0  # bumped when the row changed; live progress alone does not need a re-read
        self.watchers = 0


class Notifier:
    """Wakes only the watchers of the job that changed; call every method on the loop's thread."""

    def __init__(self) -> None:
        self._watched: dict[str, Watched] = {}
        self.live: dict[str, tuple[str, float]] = {}  # running job id -> (stage, fraction) not yet stored
        self.anything = asyncio.Event()  # set, then replaced, at any change to any job (the dashboard's queue)

    def enter(self, job_id: str) -> Watched:
        """Register a watcher of job_id; pair with leave()."""
        watched = self._watched.setdefault(job_id, Watched())
        watched.watchers += 1
        return watched

    def leave(self, job_id: str) -> None:
        """A watcher of job_id is gone."""
        watched = self._watched.get(job_id)
        if watched is not None:
            watched.watchers -= 1
            if watched.watchers <= 0:
                del self._watched[job_id]

    def stored(self, job_id: str) -> None:
        """The job's row changed: its watchers re-read it."""
        self.touched()
        watched = self._watched.get(job_id)
        if watched is not None:
            watched.stored += 1
            self._wake(watched)

    def progressed(self, job_id: str, stage: str, fraction: float) -> None:
        """The running job reached a stage: kept in memory (the row is written throttled) and shown to watchers."""
        self.live[job_id] = (stage, fraction)
        self.touched()
        watched = self._watched.get(job_id)
        if watched is not None:
            self._wake(watched)

    def ended(self, job_id: str) -> None:
        """The job's run is over: its live progress is no longer news."""
        self.live.pop(job_id, None)
        self.touched()

    def wake_all(self) -> None:
        """Wake every watcher, to re-read (on stop)."""
        self.touched()
        for watched in self._watched.values():
            watched.stored += 1
            self._wake(watched)

    def touched(self) -> None:
        """Something changed in the queue (a job joined, started, moved on or ended): wake whoever watches it all."""
        anything, self.anything = self.anything, asyncio.Event()
        anything.set()

    @staticmethod
    def _wake(watched: Watched) -> None:
        changed, watched.changed = watched.changed, asyncio.Event()
        changed.set()
