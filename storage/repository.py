"""INTERFACE SKELETON — the storage engineer replaces every body; signatures are the contract."""

from __future__ import annotations

from datetime import datetime

from storage.records import Ban, JobRecord, Limits, NewJob, Quota, Stats, Submitted


class Repository:
    """Verb methods over the database; every method is one short transaction."""

    @classmethod
    async def open(cls, url: str, *, default_limits: Limits) -> Repository:
        """Connect (sync SQLAlchemy URL in, async driver chosen here), apply migrations, return a repository."""
        raise NotImplementedError

    async def close(self) -> None:
        """Dispose of the connection pool."""
        raise NotImplementedError

    # --- jobs -------------------------------------------------------------------------------
    async def submit(self, new: NewJob, *, now: datetime | None = None) -> Submitted:
        """Atomically: idempotency check, ban check, limits (admins exempt), insert. Raises Rejected."""
        raise NotImplementedError

    async def get(self, job_id: str) -> JobRecord | None:
        """One job, or None."""
        raise NotImplementedError

    async def position(self, job_id: str) -> int | None:
        """1-based place among queued jobs (oldest first), or None when not queued."""
        raise NotImplementedError

    async def queued_ids(self) -> list[str]:
        """Every queued job id, oldest first."""
        raise NotImplementedError

    async def image(self, job_id: str) -> bytes | None:
        """The submitted image bytes, or None once swept."""
        raise NotImplementedError

    async def start(self, job_id: str, *, checkpoint: str | None) -> JobRecord | None:
        """queued -> running (attempts + 1, started_at, checkpoint recorded); None if it was not queued."""
        raise NotImplementedError

    async def progress(self, job_id: str, stage: str, fraction: float) -> None:
        """Record the running job's stage and fraction."""
        raise NotImplementedError

    async def finish(
        self, job_id: str, *, data: bytes, format: str, script: dict, timings: dict[str, float]
    ) -> JobRecord | None:
        """running -> done with its result bytes; None if it was no longer running (e.g. cancelled)."""
        raise NotImplementedError

    async def fail(self, job_id: str, *, code: str, message: str) -> JobRecord | None:
        """queued/running -> failed with a message a chat user can read; None if already final."""
        raise NotImplementedError

    async def cancel(self, job_id: str) -> JobRecord | None:
        """queued/running -> cancelled; returns the job as it is now (unchanged if already final), None if unknown."""
        raise NotImplementedError

    async def result(self, job_id: str) -> tuple[bytes, str] | None:
        """(bytes, format) of a done job whose result is still kept, else None."""
        raise NotImplementedError

    async def recover(self, *, max_attempts: int) -> tuple[list[str], list[str]]:
        """After a restart: running jobs go back to queued, or fail once they used max_attempts; (requeued, failed)."""
        raise NotImplementedError

    async def sweep(self, *, retention_days: float, now: datetime | None = None) -> int:
        """Delete results and images of jobs that ended more than retention_days ago; the rows stay."""
        raise NotImplementedError

    async def history(self, platform: str, user_id: str, *, limit: int = 10) -> list[JobRecord]:
        """A user's newest jobs first."""
        raise NotImplementedError

    async def quota(self, platform: str, user_id: str, *, now: datetime | None = None) -> Quota:
        """What the user has left under the limits in force."""
        raise NotImplementedError

    # --- admin ------------------------------------------------------------------------------
    async def limits(self) -> Limits:
        """The limits in force."""
        raise NotImplementedError

    async def set_limits(self, limits: Limits) -> Limits:
        """Replace the limits in force (persisted; survives restarts)."""
        raise NotImplementedError

    async def ban(self, platform: str, user_id: str, *, reason: str = "") -> Ban:
        """Ban a user (idempotent)."""
        raise NotImplementedError

    async def unban(self, platform: str, user_id: str) -> bool:
        """Lift a ban; False if there was none."""
        raise NotImplementedError

    async def bans(self) -> list[Ban]:
        """Every ban, newest first."""
        raise NotImplementedError

    async def active_checkpoint(self) -> str | None:
        """The checkpoint name jobs start with, or None."""
        raise NotImplementedError

    async def set_active_checkpoint(self, name: str | None) -> None:
        """Choose the checkpoint for jobs that start from now on."""
        raise NotImplementedError

    async def stats(self) -> Stats:
        """Counts for admins and /metrics."""
        raise NotImplementedError
