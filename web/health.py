"""`GET /healthz` and `GET /readyz`: is the process up, and can it serve traffic.

`/healthz` says whether the app can reach its database and whether mail is flowing; `/readyz`
says whether this process should get requests: the database answers and its schema is at the
migrations' head (a rolling upgrade keeps new processes out until `flask db upgrade` ran).
For load balancers and monitoring, so they need no sign-in and show only counts, mailbox
names and revision ids: no addresses, no error texts (they may name hosts or users), no
secrets. They answer even when the database does not (503), since that is when they are asked.
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Blueprint
from sqlalchemy.orm import Session

from ticketing.models import Mailbox, Receipt, ReceiptStatus
from web.extensions import db

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)


def mail_health(session: Session) -> dict[str, Any]:
    """Parked messages (waiting for `mail retry`) and active mailboxes whose last poll failed."""
    parked = session.scalar(
        sa.select(sa.func.count(Receipt.id)).where(Receipt.status == ReceiptStatus.PARKED)
    )
    failing = session.scalars(
        sa.select(Mailbox.name)
        .where(Mailbox.is_active.is_(True), Mailbox.poll_failures > 0)
        .order_by(Mailbox.name)
    ).all()
    return {"parked": parked or 0, "failing_mailboxes": list(failing)}


@bp.get("/healthz")
def healthz() -> tuple[dict[str, Any], int, dict[str, str]]:
    headers = {"Cache-Control": "no-store"}
    try:
        mail = mail_health(db.session)
    except sa.exc.SQLAlchemyError:  # boundary: report, never raise
        log.warning("health check: the database is unreachable", exc_info=True)
        try:
            db.session.rollback()
        except sa.exc.SQLAlchemyError:
            log.debug("health check: rollback failed too", exc_info=True)
        return {"status": "degraded", "database": "unreachable"}, 503, headers
    return {"status": "ok", "mail": mail}, 200, headers


@cache
def migration_heads() -> frozenset[str]:
    """The head revision(s) of the migration scripts shipped with this code (read once)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option(
        "script_location", str(Path(__file__).resolve().parent.parent / "migrations")
    )
    return frozenset(ScriptDirectory.from_config(config).get_heads())


def database_revisions(session: Session) -> frozenset[str]:
    """The revision(s) Alembic recorded in the database (empty before the first upgrade)."""
    from alembic.runtime.migration import MigrationContext

    return frozenset(MigrationContext.configure(session.connection()).get_current_heads())


@bp.get("/readyz")
def readyz() -> tuple[dict[str, Any], int, dict[str, str]]:
    headers = {"Cache-Control": "no-store"}
    try:
        current = database_revisions(db.session)
        db.session.rollback()
    except sa.exc.SQLAlchemyError:  # boundary: report, never raise
        log.warning("readiness check: the database is unreachable", exc_info=True)
        try:
            db.session.rollback()
        except sa.exc.SQLAlchemyError:
            log.debug("readiness check: rollback failed too", exc_info=True)
        return {"status": "unavailable", "reason": "database unreachable"}, 503, headers
    heads = migration_heads()
    body: dict[str, Any] = {"database": sorted(current), "head": sorted(heads)}
    if current != heads:
        return {"status": "unavailable", "reason": "migrations not at head", **body}, 503, headers
    return {"status": "ok", **body}, 200, headers
