"""`GET /healthz`: whether the app can reach its database, and whether mail is flowing.

For load balancers and monitoring, so it needs no sign-in and shows only counts and mailbox
names: no addresses, no error texts (they may name hosts or users), no secrets. It answers even
when the database does not (503, "degraded"), since that is exactly when it is asked.
"""

from __future__ import annotations

import logging
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
