"""`flask --app wsgi mail …`: poll, list and retry parked mail, import archives."""

from __future__ import annotations

import time
from pathlib import Path

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import AppGroup

from mail.importer import iter_raw_messages, open_archive
from mail.inbound import Delivery, retry
from mail.poller import ingest_one
from ticketing.db import utcnow
from ticketing.models import Receipt, ReceiptStatus
from web.extensions import db
from web.mail_runtime import blobs, inbound_settings, poll_mailboxes

mail_cli = AppGroup("mail", help="Inbound email: poll mailboxes, parked mail, imports.")


@mail_cli.command("poll")
@click.option("--once", is_flag=True, help="Poll every mailbox once and exit.")
def poll(once: bool) -> None:
    """Poll all active mailboxes (every HANDOFF_POLL_INTERVAL seconds unless --once)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    interval = int(app.config["HANDOFF_POLL_INTERVAL"])
    failed = False
    while True:
        results = poll_mailboxes(app, only_due=not once)
        for result in results:
            click.echo(result.summary())
        failed = any(r.error for r in results)
        db.session.remove()
        if once:
            break
        time.sleep(interval)
    if failed:
        raise SystemExit(1)


@mail_cli.command("failed")
def failed() -> None:
    """List parked messages (processing failed; raw bytes kept): id, date, sender, error."""
    parked = db.session.scalars(
        sa.select(Receipt).where(Receipt.status == ReceiptStatus.PARKED).order_by(Receipt.id)
    ).all()
    if not parked:
        click.echo("No parked messages.")
    for r in parked:
        click.echo(
            f"{r.id}\t{r.received_at:%Y-%m-%d %H:%M}\t{r.sender or '-'}\t"
            f"{r.subject[:60]!r}\tattempts={r.attempts}\t{r.error}"
        )


@mail_cli.command("retry")
@click.argument("receipt_ids", nargs=-1, type=int)
@click.option("--all", "retry_all", is_flag=True, help="Retry every parked message.")
def retry_parked(receipt_ids: tuple[int, ...], retry_all: bool) -> None:
    """Re-run the current pipeline on parked messages from their stored raw bytes."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    stmt = sa.select(Receipt.id).where(Receipt.status == ReceiptStatus.PARKED)
    if not retry_all:
        if not receipt_ids:
            raise click.UsageError("Name receipt ids, or pass --all.")
        stmt = stmt.where(Receipt.id.in_(receipt_ids))
    ids = list(db.session.scalars(stmt.order_by(Receipt.id)))
    if not ids:
        raise click.ClickException("No such parked messages.")
    settings = inbound_settings(app)
    still_failing = 0
    for receipt_id in ids:
        receipt = db.session.get(Receipt, receipt_id)
        assert receipt is not None
        try:
            retry(db.session, receipt, settings=settings, blobs=blobs(app), now=utcnow())
            db.session.commit()
            click.echo(f"{receipt_id}: {receipt.status.value}")
        except Exception as exc:  # boundary: per message
            db.session.rollback()
            receipt = db.session.get(Receipt, receipt_id)
            assert receipt is not None
            receipt.attempts += 1
            receipt.error = f"{type(exc).__name__}: {exc}"[:2000]
            db.session.commit()
            still_failing += 1
            click.echo(f"{receipt_id}: still failing: {receipt.error}")
    if still_failing:
        raise SystemExit(1)


@mail_cli.command("import")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
def import_archive(path: Path) -> None:
    """Import an mbox file or a Maildir folder through the inbound pipeline."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        archive = open_archive(path)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    settings = inbound_settings(app)
    counts: dict[str, int] = {}
    total = len(archive)
    with click.progressbar(iter_raw_messages(archive), length=total, label="Importing") as bar:
        for raw in bar:
            status = ingest_one(
                db.session,
                Delivery(raw=raw, source="import"),
                settings=settings,
                blobs=blobs(app),
            )
            counts[status] = counts.get(status, 0) + 1
    click.echo(
        f"Imported {total} messages: "
        + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    )
