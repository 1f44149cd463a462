"""Copying a whole Handoff database into another: the move from SQLite to PostgreSQL.

Both databases carry the same schema (the same Alembic migrations, run on each), so the copy
is table by table in dependency order, row for row through the models' column types (which
turn SQLite's naive datetimes and strings into aware datetimes and enums, and back out for
PostgreSQL). Foreign keys that point back into the same table (a ticket merged into a later
one) are filled in by a second pass. PostgreSQL's id sequences are then moved past the copied
ids, and its search index is built by the same triggers that keep it current on every write.

The target must be migrated and empty; everything goes in one transaction, so a failed copy
leaves it empty. Blobs (raw emails, attachments) live in the data dir, not in the database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from ticketing.db import Base
from ticketing.errors import Invalid

Progress = Callable[[str, int], None]


def _revision(conn: sa.Connection) -> str | None:
    try:
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    except sa.exc.DBAPIError:
        return None


def _self_references(table: sa.Table) -> list[sa.Column[Any]]:
    """Nullable foreign-key columns that point into the same table (filled in afterwards)."""
    return [
        fk.parent for fk in table.foreign_keys if fk.column.table is table and fk.parent.nullable
    ]


def copy_database(
    source: sa.Engine,
    target: sa.Engine,
    *,
    batch_size: int = 1000,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Copy every table's rows from `source` into the empty, migrated `target`.

    Returns the number of rows copied per table. Raises Invalid when the two databases are
    not at the same migration, or the target already holds data.
    """
    tables = Base.metadata.sorted_tables
    counts: dict[str, int] = {}
    with source.connect() as src, target.begin() as dst:
        have, want = _revision(src), _revision(dst)
        if have is None or have != want:
            raise Invalid(
                f"The databases are at different migrations (source {have}, target {want}): "
                "run `flask db upgrade` on both first."
            )
        for table in tables:
            if dst.execute(sa.select(sa.func.count()).select_from(table)).scalar():
                raise Invalid(f"The target database is not empty (table {table.name}).")
        for table in tables:
            counts[table.name] = _copy_table(src, dst, table, batch_size, progress)
        if dst.dialect.name == "postgresql":
            _advance_sequences(dst, tables)
    return counts


def _copy_table(
    src: sa.Connection,
    dst: sa.Connection,
    table: sa.Table,
    batch_size: int,
    progress: Progress | None,
) -> int:
    later = _self_references(table)
    pk = list(table.primary_key.columns)
    fixups: list[dict[str, Any]] = []
    copied = 0
    result = src.execution_options(yield_per=batch_size).execute(sa.select(table).order_by(*pk))
    for rows in result.partitions():
        batch = []
        for row in rows:
            values = dict(row._mapping)
            if later and any(values[c.name] is not None for c in later):
                fixups.append(
                    {f"pk_{c.name}": values[c.name] for c in pk}
                    | {f"v_{c.name}": values[c.name] for c in later}
                )
                values.update({c.name: None for c in later})
            batch.append(values)
        dst.execute(table.insert(), batch)
        copied += len(batch)
        if progress:
            progress(table.name, copied)
    if fixups:
        stmt = (
            table.update()
            .where(*(c == sa.bindparam(f"pk_{c.name}") for c in pk))
            .values({c.name: sa.bindparam(f"v_{c.name}") for c in later})
        )
        dst.execute(stmt, fixups)
    return copied


def _advance_sequences(dst: sa.Connection, tables: list[sa.Table]) -> None:
    """Make the next generated id follow the highest copied one (serial/identity columns)."""
    for table in tables:
        pk = list(table.primary_key.columns)
        if len(pk) != 1 or not isinstance(pk[0].type, sa.Integer) or pk[0].foreign_keys:
            continue
        sequence = dst.execute(
            sa.select(sa.func.pg_get_serial_sequence(table.name, pk[0].name))
        ).scalar()
        if sequence:
            dst.execute(
                sa.select(
                    sa.func.setval(
                        sequence,
                        sa.select(sa.func.coalesce(sa.func.max(pk[0]), 0) + 1).scalar_subquery(),
                        False,
                    )
                )
            )
