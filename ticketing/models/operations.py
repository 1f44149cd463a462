"""Operations bookkeeping shared by every worker process: which periodic runs have happened.

A job that must run once per period across any number of workers (the daily notices scan)
first inserts its `JobRun(job_id, period_key)`; the unique key lets exactly one insert win,
on SQLite and PostgreSQL alike, whatever machine the workers run on. `finished_at` marks the
run done; a claim left unfinished by a worker that died can be taken over once it is stale.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ticketing.db import Base, utcnow


class JobRun(Base):
    """One claimed run of a once-per-period job (e.g. `notices-scan` for `2026-11-23`)."""

    __tablename__ = "job_runs"
    __table_args__ = (sa.UniqueConstraint("job_id", "period_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(sa.String(100))
    period_key: Mapped[str] = mapped_column(sa.String(40))
    claimed_by: Mapped[str] = mapped_column(sa.String(200), default="")
    claimed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]  # None: running, or its worker died (see claim_run)

    def __repr__(self) -> str:
        return f"<JobRun {self.job_id} {self.period_key}>"
