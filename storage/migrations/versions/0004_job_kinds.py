"""Job kinds: jobs.kind says what a job makes (an animation, a remix, a tuned or trained checkpoint).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 15:00:00

A plain ADD COLUMN with a server default: every earlier job was an animation, and the table is never
rebuilt (on SQLite a rebuild cascades to job_payloads; see 0003).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("jobs", recreate="never") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=16), nullable=False, server_default="animate"))


def downgrade() -> None:
    """Undo this revision: jobs that made checkpoints become plain history rows of unknown kind."""
    with op.batch_alter_table("jobs", recreate="never") as batch:
        batch.drop_column("kind")
