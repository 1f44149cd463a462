"""Background jobs: one declarative list, run by APScheduler inside an app context.

Each job has a stable id, `max_instances=1` and `coalesce=True`; correctness under several
schedulers comes from the database (unique keys, row claims), never from there being one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask

from web.extensions import db

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobDefinition:
    id: str
    func: Callable[[Flask], object]
    seconds_setting: str  # config key holding the interval in seconds
    # "hour", "day" or "week": the body runs at most once per such UTC period across every
    # worker (claimed in `job_runs`); the interval is then only how often to check.
    once_per: str | None = None


def _expire_lockouts(app: Flask) -> None:
    """Housekeeping: clear agent lockouts whose time has passed (keeps the admin view honest)."""
    import sqlalchemy as sa

    from ticketing.db import utcnow
    from ticketing.models import Agent

    db.session.execute(
        sa.update(Agent).where(Agent.locked_until < utcnow()).values(locked_until=None)
    )


def _poll_mail(app: Flask) -> None:
    """Poll every active mailbox that is due (failing ones back off exponentially)."""
    from web.mail_runtime import poll_mailboxes

    poll_mailboxes(app)


def _send_outbox(app: Flask) -> None:
    """Deliver due outbox rows, when outgoing mail is configured."""
    from web.mail_runtime import has_smtp, send_outbox

    if has_smtp(app):
        send_outbox(app)


def _purge_journeys(app: Flask) -> None:
    """Housekeeping: delete self-service journeys older than HANDOFF_JOURNEY_RETENTION_DAYS,
    and expired "this solved it" links."""
    import datetime as dt

    from ticketing.db import utcnow
    from ticketing.services import deflection, journeys

    days = int(app.config["HANDOFF_JOURNEY_RETENTION_DAYS"])
    journeys.purge(db.session, now=utcnow(), retention=dt.timedelta(days=days))
    deflection.purge_expired_links(db.session, now=utcnow())


def _purge_magic_links(app: Flask) -> None:
    """Housekeeping: delete customer portal links a day after they expired."""
    import datetime as dt

    from ticketing.db import utcnow
    from ticketing.services import portal

    portal.purge_links(db.session, now=utcnow(), keep=dt.timedelta(days=1))


def _scan_notices(app: Flask) -> None:
    """Send the proactive notices that are due (expiring cards, failed payments)."""
    from web.notices_runtime import run_scan

    run_scan(app)


JOBS: list[JobDefinition] = [
    JobDefinition("mail-poll", _poll_mail, "HANDOFF_POLL_INTERVAL"),
    JobDefinition("outbox-send", _send_outbox, "HANDOFF_OUTBOX_INTERVAL"),
    JobDefinition("housekeeping", _expire_lockouts, "HANDOFF_HOUSEKEEPING_INTERVAL"),
    JobDefinition("journey-purge", _purge_journeys, "HANDOFF_HOUSEKEEPING_INTERVAL"),
    JobDefinition("magic-link-purge", _purge_magic_links, "HANDOFF_HOUSEKEEPING_INTERVAL"),
    JobDefinition("notice-scan", _scan_notices, "HANDOFF_NOTICE_SCAN_INTERVAL", once_per="day"),
]


def run_job(app: Flask, job: JobDefinition) -> None:
    """Run one job body in an app context and a transaction; log and go on if it fails."""
    with app.app_context():
        if job.once_per:
            _run_once_per_period(app, job)
            return
        try:
            job.func(app)
            db.session.commit()
        except Exception:
            db.session.rollback()
            log.exception("job %s failed", job.id)
        finally:
            db.session.remove()


# An unfinished once-per-period claim older than this is taken to be a dead worker's.
STALE_CLAIM_SECONDS = 3600


def _run_once_per_period(app: Flask, job: JobDefinition) -> None:
    """Claim this period (committed first, so a body that commits in batches cannot lose
    it), run the body, then mark the period done — or give the claim back if it failed."""
    import datetime as dt

    from mail.poller import default_owner
    from ticketing.db import utcnow
    from ticketing.services import job_runs

    owner, now = default_owner(), utcnow()
    key = job_runs.period_key(job.once_per or "day", now)
    run = {"job_id": job.id, "period_key": key}
    try:
        stale = dt.timedelta(seconds=STALE_CLAIM_SECONDS)
        if not job_runs.claim_run(db.session, **run, now=now, owner=owner, stale_after=stale):
            return
        log.info("job %s: running for %s", job.id, key)
        job.func(app)
        job_runs.finish_run(db.session, **run, now=utcnow())
        db.session.commit()
    except Exception:
        db.session.rollback()
        log.exception("job %s failed", job.id)
        try:
            job_runs.release_run(db.session, **run, owner=owner)
            db.session.commit()
        except Exception:  # the database is gone: the claim goes stale and is taken over
            db.session.rollback()
            log.exception("job %s: could not release its claim on %s", job.id, key)
    finally:
        db.session.remove()


def start_scheduler(app: Flask, *, start_now: bool = False) -> BackgroundScheduler:
    """Start every job on its interval in a background thread; returns the scheduler.

    `start_now` (the worker) runs every job at once rather than after its first interval.
    """
    import datetime as dt

    scheduler = BackgroundScheduler(timezone="UTC")
    first = {"next_run_time": dt.datetime.now(dt.UTC)} if start_now else {}
    for job in JOBS:
        scheduler.add_job(
            run_job,
            "interval",
            seconds=int(app.config.get(job.seconds_setting, 3600)),
            **first,
            args=(app, job),
            id=job.id,
            name=job.id,
            max_instances=1,
            coalesce=True,
            replace_existing=True,
        )
    scheduler.start()
    log.info("scheduler started with %d jobs", len(JOBS))
    return scheduler
