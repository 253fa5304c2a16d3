"""The database schema as SQLAlchemy 2 ORM models; migrations in storage/migrations mirror it."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from storage.records import Ban, JobRecord

RECORD_FIELDS = tuple(field.name for field in dataclasses.fields(JobRecord))


def job_record(source: Any) -> JobRecord:
    """A JobRecord from anything with the job's columns as attributes: an ORM Job or a Core row."""
    values = {name: getattr(source, name) for name in RECORD_FIELDS}
    values["fraction"] = float(values["fraction"])  # SQLite's RETURNING can hand back 0.0 as the integer 0
    values["options"] = dict(values["options"])
    for name in ("script", "timings"):  # copies, so a caller can't change what another one holds
        values[name] = dict(values[name]) if values[name] is not None else None
    return JobRecord(**values)


# Named constraints so Alembic can alter them later on every backend (SQLite batch mode needs names).
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes in and out; SQLite stores them naive, so tzinfo is restored on read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive datetimes: a naive value would be read back as UTC whatever it meant."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Always hand back an aware UTC datetime."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    """Every table of the engine."""

    metadata = MetaData(naming_convention=NAMING)


# SQLite only makes INTEGER PRIMARY KEY an alias of the auto-incrementing rowid, not BIGINT.
SEQUENCE = BigInteger().with_variant(Integer, "sqlite")


class Job(Base):
    """One job's row: everything a listing shows, never the image or result bytes."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_user_created", "platform", "user_id", "created_at"),
        Index("ix_jobs_chat_created", "platform", "chat_id", "created_at"),
        Index("ix_jobs_status_created", "status", "created_at"),
    )

    # Insertion order, to break ties between jobs created in the same microsecond.
    seq: Mapped[int] = mapped_column(SEQUENCE, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    platform: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(64))
    chat_id: Mapped[str] = mapped_column(String(64))
    is_admin: Mapped[bool] = mapped_column(Boolean)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(BigInteger)
    # The scope digest of the client's key (statements.idempotency_scope), not the key itself: one
    # unique column for per-user keys, so migration 0003 never had to rebuild this table on SQLite.
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    stage: Mapped[str | None] = mapped_column(String(32))
    fraction: Mapped[float] = mapped_column(Float, default=0.0)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    script: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    timings: Mapped[dict[str, float] | None] = mapped_column(JSON)
    checkpoint: Mapped[str | None] = mapped_column(String(200))
    result_format: Mapped[str | None] = mapped_column(String(8))
    result_bytes: Mapped[int | None] = mapped_column(BigInteger)
    result_expired: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Who holds the running job's claim (a `makeitmove worker`); the claim is this worker at `attempts`.
    worker: Mapped[str | None] = mapped_column(String(128))
    # What the key was first used for; a repeat asking for something else is refused (NULL: unchecked).
    request_digest: Mapped[str | None] = mapped_column(String(64))
    # What the job makes (records.JOB_KINDS): jobs made before 0004 are animations.
    kind: Mapped[str] = mapped_column(String(16), default="animate", server_default="animate")

    def record(self) -> JobRecord:
        """The row as the frozen dataclass the repository hands out."""
        return job_record(self)


class JobPayload(Base):
    """A job's blobs, in their own table so listing jobs never loads them.

    Results live in the database rather than on a local disk so that every API replica can serve
    them, whichever worker made them; the retention sweep deletes the whole row.
    """

    __tablename__ = "job_payloads"

    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    image: Mapped[bytes | None] = mapped_column(LargeBinary)
    result: Mapped[bytes | None] = mapped_column(LargeBinary)


class BanRow(Base):
    """A banned user."""

    __tablename__ = "bans"

    platform: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)

    def record(self) -> Ban:
        """The row as the frozen dataclass the repository hands out."""
        return Ban(platform=self.platform, user_id=self.user_id, reason=self.reason, created_at=self.created_at)


class GalleryRow(Base):
    """A result its requester shared to the gallery; an admin's take-down keeps the row, so it can't come back."""

    __tablename__ = "gallery"
    __table_args__ = (Index("ix_gallery_shared_at", "shared_at"),)

    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    shared_at: Mapped[datetime] = mapped_column(UtcDateTime)
    removed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Setting(Base):
    """A small key/value store for what admins change at run time (limits, the active checkpoint)."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)


class WebSession(Base):
    """A signed-in admin's dashboard session: the digest of its cookie, never the cookie itself."""

    __tablename__ = "web_sessions"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the cookie's value
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
