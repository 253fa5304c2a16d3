"""Idempotency keys per user: jobs.idempotency_key holds a digest of (platform, user, key); request_digest added.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 10:00:00

Keys used to be global: the same key from another user found that user's job. The unique
`idempotency_key` column now holds sha256 hex of [platform, user_id, key] as a JSON array, so each
user's keys are their own; `request_digest` (NULL for older jobs: they match any request) lets a
repeated key asking for something else be refused.

Neither step rebuilds `jobs`. On SQLite a rebuild drops the old table, and with foreign keys on that
cascades to job_payloads: it once deleted every stored image and result. So the unique constraint
stays where it is (only its values change, row by row), and the new column is a plain ADD COLUMN.
"""

from __future__ import annotations

import hashlib
import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BATCH = 500  # rows read and rewritten per round trip, so a large table never sits in memory at once
# Only the columns this revision reads or writes (a migration never imports the live models).
JOBS = sa.table(
    "jobs",
    sa.column("seq", sa.BigInteger()),
    sa.column("platform", sa.String()),
    sa.column("user_id", sa.String()),
    sa.column("idempotency_key", sa.String()),
)


def scope(platform: str, user_id: str, key: str) -> str:
    """A frozen copy of storage.statements.idempotency_scope: what a key is stored as from this revision on."""
    parts = json.dumps([platform, user_id, key], separators=(",", ":"))
    return hashlib.sha256(parts.encode("ascii")).hexdigest()


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("jobs", recreate="never") as batch:
        batch.add_column(sa.Column("request_digest", sa.String(length=64), nullable=True))
    conn = op.get_bind()
    rewrite = (
        sa.update(JOBS).where(JOBS.c.seq == sa.bindparam("row_seq")).values(idempotency_key=sa.bindparam("scoped"))
    )
    after: int | None = None
    while True:
        # Keyset pages in seq order: every row is read once, whatever this loop has already rewritten.
        page = sa.select(JOBS.c.seq, JOBS.c.platform, JOBS.c.user_id, JOBS.c.idempotency_key)
        page = page.where(JOBS.c.idempotency_key.is_not(None)).order_by(JOBS.c.seq).limit(BATCH)
        rows = conn.execute(page if after is None else page.where(JOBS.c.seq > after)).all()
        if not rows:
            break
        # The old keys were unique across all users, so their digests are unique too; and no digest
        # can equal a key not yet rewritten short of a sha256 preimage.
        conn.execute(rewrite, [{"row_seq": seq, "scoped": scope(p, u, key)} for seq, p, u, key in rows])
        after = rows[-1].seq


def downgrade() -> None:
    """Undo this revision."""
    # A digest cannot be turned back into the client's key, and the old code looks keys up as sent:
    # the jobs forget their keys (a retry arriving after the downgrade makes a new job).
    op.execute(sa.update(JOBS).where(JOBS.c.idempotency_key.is_not(None)).values(idempotency_key=None))
    # Never recreate the table (see above); SQLite 3.35+ drops the column in place.
    with op.batch_alter_table("jobs", recreate="never") as batch:
        batch.drop_column("request_digest")
