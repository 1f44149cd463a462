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


JOBS: list[JobDefinition] = [
    JobDefinition("mail-poll", _poll_mail, "HANDOFF_POLL_INTERVAL"),
    JobDefinition("outbox-send", _send_outbox, "HANDOFF_OUTBOX_INTERVAL"),
    JobDefinition("housekeeping", _expire_lockouts, "HANDOFF_HOUSEKEEPING_INTERVAL"),
]


def run_job(app: Flask, job: JobDefinition) -> None:
    """Run one job body in an app context and a transaction; log and go on if it fails."""
    with app.app_context():
        try:
            job.func(app)
            db.session.commit()
        except Exception:
            db.session.rollback()
            log.exception("job %s failed", job.id)
        finally:
            db.session.remove()


def start_scheduler(app: Flask) -> BackgroundScheduler:
    """Start every job on its interval in a background thread; returns the scheduler."""
    scheduler = BackgroundScheduler(timezone="UTC")
    for job in JOBS:
        scheduler.add_job(
            run_job,
            "interval",
            seconds=int(app.config.get(job.seconds_setting, 3600)),
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
