"""The gallery: the results their requesters shared, and which of them an admin took down.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-12 10:00:00

A new table only: jobs is not touched. A row goes with its job (ON DELETE CASCADE); a take-down sets
removed_at rather than deleting the row, so the same result can't be shared again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# A frozen copy of the column type: a migration never imports the live models.
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "gallery",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("shared_at", TIMESTAMP, nullable=False),
        sa.Column("removed_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_gallery_job_id_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_gallery")),
    )
    op.create_index("ix_gallery_shared_at", "gallery", ["shared_at"])


def downgrade() -> None:
    """Undo this revision: every share, and every take-down, is forgotten."""
    op.drop_index("ix_gallery_shared_at", table_name="gallery")
    op.drop_table("gallery")
