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


def next_value(session: Session, name: str, *, start: int = 1) -> int:
    """Reserve and return the next value of counter `name` (the first is `start`)."""
    stmt = (
        sa.update(Counter)
        .where(Counter.name == name)
        .values(value=Counter.value + 1)
        .returning(Counter.value)
    )
    value = session.execute(stmt).scalar_one_or_none()
    if value is not None:
        return value
    # First use: create the row in a savepoint so a concurrent creator makes us retry, not fail.
    try:
        with session.begin_nested():
            session.add(Counter(name=name, value=start))
        return start
    except sa.exc.IntegrityError:
        return session.execute(stmt).scalar_one()
