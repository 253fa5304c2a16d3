"""Alembic environment: runs on the connection storage.database hands over, or on sqlalchemy.url."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from storage.models import Base


def run(connection: Connection) -> None:
    """Apply the migrations on an open connection."""
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    # The plain `alembic` command line (with a sync driver installed); the engine itself goes through
    # storage.database.upgrade, which hands its async connection over instead.
    with create_engine(context.config.get_main_option("sqlalchemy.url") or "").connect() as sync_connection:
        run(sync_connection)
