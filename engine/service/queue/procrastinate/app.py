"""What the API replicas and the workers share about Procrastinate: the app, its names, its schema.

Jobs live in our `jobs` table (history, limits, results); Procrastinate only carries "run job X"
from an API replica to one `makeitmove worker`, with its queueing lock set to our job id so a
job is in the queue at most once, and its lock too, so two deliveries of a job never run at once.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import make_url

from engine.config import Settings
from engine.errors import ConfigError
from storage.database import MIGRATION_LOCK, create_engine, writer

if TYPE_CHECKING:
    import procrastinate

log = logging.getLogger(__name__)

GPU_QUEUE = "gpu"  # one job at a time per worker: each worker owns one GPU
TRAINING_LOCK = "makeitmove-training"  # every training job holds it while it runs
MAINTENANCE_QUEUE = "maintenance"  # stalled-job recovery, run by every worker beside its GPU job
ANIMATE = "makeitmove.animate"
RECOVER = "makeitmove.recover"
# The channel storage/migrations/versions/0002 NOTIFYs on after every change to a job.
JOBS_CHANNEL = "makeitmove_jobs"


def check_settings(settings: Settings) -> None:
    """Refuse a procrastinate backend the rest of the config can't carry, naming the keys."""
    if not make_url(settings.storage.url).get_backend_name() == "postgresql":
        raise ConfigError("[queue] backend = \"procrastinate\" needs a postgresql:// url in config key 'storage.url'")
    queue = settings.queue
    if queue.heartbeat_s >= queue.stalled_after_s:
        raise ConfigError(
            f"config key 'queue.stalled_after_s' ({queue.stalled_after_s:g}) must be longer than "
            f"'queue.heartbeat_s' ({queue.heartbeat_s:g}), or live workers would count as dead"
        )


def conninfo(url: str) -> str:
    """The storage URL as libpq takes it (psycopg, Procrastinate's driver): no '+driver'."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def recovery_cron(settings: Settings) -> str:
    """Every heartbeat_s seconds (whole, 1 to 59), as a cron line with Procrastinate's 6th (seconds) field."""
    every = min(59, max(1, math.ceil(settings.queue.heartbeat_s)))
    return f"* * * * * */{every}"


def create_procrastinate_app(settings: Settings) -> procrastinate.App:
    """A Procrastinate app on the storage database (not opened); workers register their tasks on it."""
    import procrastinate

    check_settings(settings)
    connector = procrastinate.PsycopgConnector(conninfo=conninfo(settings.storage.url), min_size=1, max_size=8)
    return procrastinate.App(connector=connector)


async def defer(app: procrastinate.App, job_id: str, *, training: bool = False) -> bool:
    """Queue job_id for a worker; False if it already waits in the queue (the queueing lock).

    Training and tuning jobs share one lock, so however many workers there are, one trains at a time
    (two deliveries of one job can't run at once either, as with the per-job lock of the others).
    """
    from procrastinate.exceptions import AlreadyEnqueued

    lock = TRAINING_LOCK if training else job_id
    try:
        await app.configure_task(ANIMATE, queue=GPU_QUEUE, lock=lock, queueing_lock=job_id).defer_async(job_id=job_id)
    except AlreadyEnqueued:
        return False
    return True


async def apply_schema(url: str) -> bool:
    """Create Procrastinate's tables and functions unless they exist; True if it did. Safe from many processes.

    Procrastinate ships one schema file per version rather than migrations we could run blindly,
    which is one reason it is pinned: a new version means applying its migration files by hand.
    """
    from procrastinate.schema import SchemaManager

    engine = create_engine(url)
    try:
        async with writer(engine).begin() as conn:
            # The migrations' lock: `db upgrade`, serve and worker may all start at once.
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            if await conn.scalar(text("SELECT to_regclass('procrastinate_jobs')")) is not None:
                return False
            raw = await conn.get_raw_connection()
            # asyncpg runs a parameterless script as one simple query, in the transaction begun above.
            await raw.driver_connection.execute(SchemaManager.get_schema())  # type: ignore[union-attr]
    finally:
        await engine.dispose()
    log.info("applied the Procrastinate %s schema", _version())
    return True


def _version() -> str:
    from importlib import metadata

    return metadata.version("procrastinate")
