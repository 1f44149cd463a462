"""Declarative base shared by every model, with a naming convention and UTC datetimes.

Flask-SQLAlchemy is handed this base (`SQLAlchemy(model_class=Base)`) by the web layer, so the
models live here without importing Flask and Alembic still sees every table.
"""

from __future__ import annotations

import datetime as dt
import enum
import os
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Session, registry

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def make_durable(session: Session) -> None:
    """Make everything this session committed survive a power loss before acting on it outside
    the database (moving processed mail out of the inbox, say).

    PostgreSQL's commit already waits for its WAL flush (`synchronous_commit=on`). SQLite runs
    in WAL mode with `synchronous=NORMAL`, whose commits reach the disk only at the next
    checkpoint: a power loss may roll the last ones back. Here the WAL file is fsynced, which
    makes every commit so far durable, for the cost of one fsync instead of one per commit.
    """
    bind = session.get_bind()
    if bind.dialect.name != "sqlite" or not bind.url.database or bind.url.database == ":memory:":
        return
    wal = f"{bind.url.database}-wal"
    try:
        fd = os.open(wal, os.O_RDONLY)
    except FileNotFoundError:
        return  # no WAL: the commits went to the database file, already synced by SQLite
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def insert_or_skip(dialect: str, table: Any, *, key: list[Any] | None = None) -> Any:
    """`INSERT … ON CONFLICT (key) DO NOTHING` for `table` (a Table or a mapped class) on this
    dialect (SQLite or PostgreSQL): a row whose unique key already exists is skipped instead
    of raising, without a savepoint. `key`: the unique columns (None: any conflict)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table).on_conflict_do_nothing(index_elements=key)


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC; services take `now` as a parameter instead."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(sa.TypeDecorator[dt.datetime]):
    """A datetime that is always timezone-aware UTC in Python.

    SQLite stores no offset, PostgreSQL's `timestamptz` does; either way what comes back is aware
    UTC, and a naive datetime going in is a programming error, not something to guess about.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def str_enum(enum_cls: type[enum.StrEnum], length: int = 20) -> sa.Enum:
    """A portable enum column: VARCHAR holding the member's value (no native PostgreSQL type)."""
    return sa.Enum(
        enum_cls,
        native_enum=False,
        length=length,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    """Base class of every Handoff model."""

    registry = registry(
        metadata=sa.MetaData(naming_convention=NAMING_CONVENTION),
        type_annotation_map={dt.datetime: UTCDateTime()},
    )
