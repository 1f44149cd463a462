"""`flask --app wsgi accounts import FILE.csv` and `flask --app wsgi notices scan`."""

from __future__ import annotations

import datetime as dt
import sys

import click
from flask import current_app
from flask.cli import AppGroup

from ticketing.db import utcnow
from ticketing.errors import Invalid
from ticketing.services import accounts as account_service
from web.extensions import db
from web.notices_runtime import run_scan

accounts_cli = AppGroup("accounts", help="Billing accounts and their cards.")
notices_cli = AppGroup("notices", help="Proactive notices about cards and payments.")


@accounts_cli.command("import")
@click.argument("csv_file", type=click.File("r", encoding="utf-8-sig"))
@click.option("--dry-run", is_flag=True, help="Check the file and count; change nothing.")
def import_accounts(csv_file, dry_run: bool) -> None:  # type: ignore[no-untyped-def]
    """Upsert accounts from a CSV file (columns: external_id,email,name,plan,status,
    card_brand,card_last4,card_exp_month,card_exp_year). Bad rows are reported with their
    line number and never stop the good ones; the exit status is 1 if any row was rejected."""
    rows = 0
    if csv_file.seekable():  # a file, not a pipe: count the rows for the progress bar
        rows = max(sum(1 for _ in csv_file) - 1, 0)
        csv_file.seek(0)
    with click.progressbar(length=rows, label="Importing", file=sys.stderr, show_pos=True) as bar:

        def chunk_done(rows_done: int) -> None:
            if dry_run:
                db.session.rollback()
            else:
                db.session.commit()
            bar.update(rows_done - bar.pos)

        try:
            result = account_service.upsert_records(
                db.session,
                account_service.read_csv(csv_file),
                now=utcnow(),
                dry_run=dry_run,
                on_chunk=chunk_done,
            )
        except Invalid as exc:
            db.session.rollback()
            raise click.ClickException(str(exc)) from None
    for error in result.errors:
        click.echo(f"line {error.line}: {error.reason}", err=True)
    click.echo(("Dry run: " if dry_run else "") + result.summary())
    if result.errors:
        sys.exit(1)


@notices_cli.command("scan")
@click.option("--today", type=click.DateTime(formats=["%Y-%m-%d"]), help="Scan as of this day.")
@click.option("--dry-run", is_flag=True, help="Print who would be told what; send nothing.")
def scan_notices(today: dt.datetime | None, dry_run: bool) -> None:
    """Send every notice that is due (expiring and expired cards, failed payments)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    result = run_scan(app, today=today.date() if today else None, dry_run=dry_run)
    for line in result.lines:
        click.echo(line)
    click.echo(("Dry run: " if dry_run else "") + result.summary())
