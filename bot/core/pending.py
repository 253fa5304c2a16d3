"""Jobs in flight, kept in a small JSON file so a restarted bot resumes watching them and still delivers."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

VERSION = 1


class PendingJobs:
    """job id → what the adapter needs to deliver it (chat, messages, requester, request options …)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._jobs: dict[str, dict[str, Any]] = self._load()

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(raw)
            jobs = data["jobs"]
            if not isinstance(jobs, dict) or not all(isinstance(v, dict) for v in jobs.values()):
                raise ValueError("jobs is not an object of objects")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("pending-jobs file %s is unreadable (%s); starting with no jobs in flight", self.path, exc)
            return {}
        return {str(job_id): info for job_id, info in jobs.items()}

    def add(self, job_id: str, info: dict[str, Any]) -> None:
        """Remember a job (replacing what was kept for it) and write the file; TypeError if info isn't JSON."""
        json.dumps(info)  # refuse before anything changes
        self._jobs[job_id] = dict(info)
        self._save()

    def update(self, job_id: str, **changes: Any) -> None:
        """Change some fields of a job kept here (e.g. a new status message id); KeyError if it isn't kept."""
        self.add(job_id, {**self._jobs[job_id], **changes})

    def get(self, job_id: str) -> dict[str, Any] | None:
        """What is kept for a job, or None."""
        info = self._jobs.get(job_id)
        return dict(info) if info is not None else None

    def remove(self, job_id: str) -> None:
        """Forget a delivered (or abandoned) job; no error if it wasn't kept."""
        if self._jobs.pop(job_id, None) is not None:
            self._save()

    def all(self) -> dict[str, dict[str, Any]]:
        """Every job kept, by id (copies)."""
        return {job_id: dict(info) for job_id, info in self._jobs.items()}

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    def _save(self) -> None:
        """Write a temporary file beside the real one and rename it over: a crash leaves the old or the new file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # compact: with an indent the json module falls back to its pure-Python encoder, far slower on a big file
        body = json.dumps({"version": VERSION, "jobs": self._jobs}, ensure_ascii=False, separators=(",", ":"))
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
