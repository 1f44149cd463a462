"""Named counters, such as the next human ticket number.

A row per counter, incremented with `UPDATE ... RETURNING`: the row lock serialises concurrent
writers on PostgreSQL and SQLite's single writer does the same, so numbers never repeat.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from ticketing.db import Base


class Counter(Base):
    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(sa.String(50), primary_key=True)
    value: Mapped[int] = mapped_column(sa.BigInteger)


_COUNTERS = Counter.__table__
# Built once and run on the session's connection: this runs for every new ticket, and the
# ORM's UPDATE path costs more CPU than the database takes to answer.
_RESERVE = (
    sa.update(_COUNTERS)
    .where(_COUNTERS.c.name == sa.bindparam("counter"))
    .values(value=_COUNTERS.c.value + sa.bindparam("count"))
    .returning(_COUNTERS.c.value)
)


def next_value(session: Session, name: str, *, start: int = 1) -> int:
    """Reserve and return the next value of counter `name` (the first is `start`)."""
    return reserve(session, name, 1, start=start)


def reserve(session: Session, name: str, count: int, *, start: int = 1) -> int:
    """Reserve `count` consecutive values of counter `name`; returns the first of them."""
    if count < 1:
        raise ValueError("reserve at least one value")
    params = {"counter": name, "count": count}
    last = session.connection().execute(_RESERVE, params).scalar_one_or_none()
    if last is not None:
        return last - count + 1
    # First use: create the row in a savepoint so a concurrent creator makes us retry, not fail.
    try:
        with session.begin_nested():
            session.add(Counter(name=name, value=start + count - 1))
        return start
    except sa.exc.IntegrityError:
        return session.connection().execute(_RESERVE, params).scalar_one() - count + 1
