"""`flask --app wsgi outbox …`: deliver queued mail, list it, retry failed mail."""

from __future__ import annotations

import time

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import AppGroup

from mail.poller import default_owner
from ticketing.db import utcnow
from ticketing.errors import Invalid
from ticketing.models import OutboxMessage, OutboxStatus
from ticketing.services import outbox as outbox_rules
from web.extensions import db
from web.mail_runtime import send_outbox

outbox_cli = AppGroup("outbox", help="Outgoing email: deliver, list, retry.")


@outbox_cli.command("send")
@click.option("--once", is_flag=True, help="Deliver what is due now and exit.")
def send(once: bool) -> None:
    """Deliver due outbox rows over HANDOFF_SMTP_URL (continuously unless --once)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    owner = default_owner()
    interval = int(app.config["HANDOFF_OUTBOX_INTERVAL"])
    while True:
        try:
            result = send_outbox(app, owner=owner)
        except Invalid as exc:
            raise click.ClickException(str(exc)) from None
        if result.claimed or once:
            click.echo(result.summary())
        db.session.remove()
        if once and result.claimed == 0:
            break
        if not once:
            time.sleep(0 if result.claimed else interval)


@outbox_cli.command("list")
@click.option("--failed", is_flag=True, help="Only failed and bounced messages.")
def list_outbox(failed: bool) -> None:
    """List outgoing mail: id, status, kind, recipient, attempts, subject, last error."""
    stmt = sa.select(OutboxMessage).order_by(OutboxMessage.id)
    if failed:
        stmt = stmt.where(OutboxMessage.status.in_((OutboxStatus.FAILED, OutboxStatus.BOUNCED)))
    for row in db.session.scalars(stmt):
        click.echo(
            f"{row.id}\t{row.status.value}\t{row.kind.value}\t{row.recipient}\t"
            f"attempts={row.attempts}\t{row.subject[:60]!r}\t{row.last_error or ''}"
        )


@outbox_cli.command("retry")
@click.argument("outbox_ids", nargs=-1, type=int, required=True)
def retry(outbox_ids: tuple[int, ...]) -> None:
    """Queue failed or bounced messages again (same bytes, same Message-ID)."""
    rows = db.session.scalars(
        sa.select(OutboxMessage).where(OutboxMessage.id.in_(outbox_ids))
    ).all()
    if not rows:
        raise click.ClickException("No such outbox messages.")
    for row in rows:
        outbox_rules.retry(row, now=utcnow())
        click.echo(f"{row.id}: queued")
    db.session.commit()
