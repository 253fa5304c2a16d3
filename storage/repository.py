"""The repository: verb methods over the database that return plain dataclasses, one short transaction each.

The verbs are split by concern (admission.py, jobs.py, bans.py, admin.py, gallery.py) over one base of
connections and transactions (session.py); Repository is all of them together, the one object callers hold.
"""

from __future__ import annotations

from storage.admin import Admin
from storage.admission import Admission
from storage.bans import Bans
from storage.dashboard import Dashboard
from storage.database import create_engine, migrate
from storage.gallery import Gallery
from storage.jobs import Jobs
from storage.records import Limits
from storage.statements import INTERRUPTED

__all__ = ["INTERRUPTED", "Repository"]


class Repository(Admission, Jobs, Bans, Admin, Dashboard, Gallery):
    """Verb methods over the database; every method is one short transaction."""

    @classmethod
    async def open(cls, url: str, *, default_limits: Limits) -> Repository:
        """Connect (sync SQLAlchemy URL in, async driver chosen here), apply migrations, return a repository."""
        engine = create_engine(url)
        try:
            await migrate(engine)
            return cls(engine, default_limits)
        except BaseException:
            await engine.dispose()
            raise
