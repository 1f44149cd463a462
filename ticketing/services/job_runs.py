"""Once-per-period claims for background jobs run by several workers.

`claim_run` commits the period's `JobRun` row before the job body runs, so a body that
commits as it goes (in batches) cannot drop the claim: the first caller wins, every other (in
this or any other process) gets False. The winner then calls `finish_run` when the body
succeeded, or `release_run` when it failed (the next tick tries again). A worker killed in
between leaves an unfinished claim, which another worker takes over once it is older than
`stale_after`.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ticketing.models.operations import JobRun

PERIODS = ("hour", "day", "week")


def period_key(period: str, now: dt.datetime) -> str:
    """The key naming the period `now` falls in (UTC): `2026-11-23T16`, `2026-11-23`, `2026-W48`."""
    now = now.astimezone(dt.UTC)
    if period == "hour":
        return now.strftime("%Y-%m-%dT%H")
    if period == "day":
        return now.date().isoformat()
    if period == "week":
        year, week, _ = now.isocalendar()
        return f"{year}-W{week:02d}"
    raise ValueError(f"unknown period {period!r} (one of {', '.join(PERIODS)})")


def _this(job_id: str, period_key: str) -> sa.ColumnElement[bool]:
    return sa.and_(JobRun.job_id == job_id, JobRun.period_key == period_key)


def claim_run(
    session: Session,
    *,
    job_id: str,
    period_key: str,
    now: dt.datetime,
    owner: str = "",
    stale_after: dt.timedelta | None = None,
) -> bool:
    """Claim the run of `job_id` for `period_key`, committed; False if someone else has it.

    With `stale_after`, an unfinished claim older than that (its worker died) is taken over.
    """
    session.commit()  # the claim is a transaction of its own
    owner = owner[:200]
    if session.scalar(sa.select(JobRun.id).where(_this(job_id, period_key))) is None:
        try:
            session.add(
                JobRun(job_id=job_id, period_key=period_key, claimed_by=owner, claimed_at=now)
            )
            session.commit()
            return True
        except sa.exc.IntegrityError:  # another worker inserted it first
            session.rollback()
    if stale_after is None:
        session.rollback()
        return False
    taken = session.execute(
        sa.update(JobRun)
        .where(
            _this(job_id, period_key),
            JobRun.finished_at.is_(None),
            JobRun.claimed_at < now - stale_after,
        )
        .values(claimed_by=owner, claimed_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    return taken == 1


def finish_run(session: Session, *, job_id: str, period_key: str, now: dt.datetime) -> None:
    """Mark the claimed run done (flushes; the caller commits)."""
    session.execute(
        sa.update(JobRun)
        .where(_this(job_id, period_key))
        .values(finished_at=now)
        .execution_options(synchronize_session=False)
    )


def release_run(session: Session, *, job_id: str, period_key: str, owner: str = "") -> None:
    """Give an unfinished claim back so the next tick runs the job again (flushes)."""
    session.execute(
        sa.delete(JobRun)
        .where(
            _this(job_id, period_key),
            JobRun.finished_at.is_(None),
            JobRun.claimed_by == owner[:200],
        )
        .execution_options(synchronize_session=False)
    )
