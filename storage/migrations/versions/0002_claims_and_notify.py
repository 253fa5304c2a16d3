"""Scale-out: the worker that holds a running job's claim, and a NOTIFY on every job change (Postgres).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 09:10:00

`worker` names whoever claimed the job last (`makeitmove worker` processes; NULL for the local queue).
A worker's progress, finish and failure only count while the row still carries its attempt, so a
worker presumed dead that wakes up again can never overwrite the result of the one that took over.

On Postgres, a trigger sends `NOTIFY makeitmove_jobs` with {"id", "moved"} after a job's status,
stage, fraction or attempts change, in the writing transaction: every API replica LISTENs and wakes
the watchers of that job; "moved" (a job joined or left the queued jobs) wakes the watchers of queued
jobs, whose positions changed. The sweep only sets result_expired, so it notifies nobody.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

CHANNEL = "makeitmove_jobs"
NOTIFY_FUNCTION = f"""
CREATE OR REPLACE FUNCTION makeitmove_notify_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', json_build_object(
        'id', NEW.id,
        'moved', OLD.status IS DISTINCT FROM NEW.status AND 'queued' IN (OLD.status, NEW.status)
    )::text);
    RETURN NULL;
END;
$$
"""
NOTIFY_TRIGGER = """
CREATE TRIGGER makeitmove_jobs_notify
    AFTER UPDATE OF status, stage, fraction, attempts ON jobs
    FOR EACH ROW EXECUTE FUNCTION makeitmove_notify_job()
"""


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("worker", sa.String(length=128), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(NOTIFY_FUNCTION)
        op.execute(NOTIFY_TRIGGER)


def downgrade() -> None:
    """Undo this revision."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS makeitmove_jobs_notify ON jobs")
        op.execute("DROP FUNCTION IF EXISTS makeitmove_notify_job()")
    # Never recreate the table: on SQLite (foreign keys on) dropping the old `jobs` would cascade to
    # job_payloads and delete every image and result. SQLite 3.35+ drops the column in place.
    with op.batch_alter_table("jobs", recreate="never") as batch:
        batch.drop_column("worker")
