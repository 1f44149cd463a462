"""`flask --app wsgi kb …`: import and export help articles as JSON Lines.

No logic here: read the file, call `ticketing.services.kb`, commit, print what happened.
"""

from __future__ import annotations

import json
import sys

import click
from flask.cli import AppGroup

from ticketing.db import utcnow
from ticketing.services import kb as kb_service
from web.extensions import db

kb_cli = AppGroup("kb", help="Import and export knowledge-base articles (JSON Lines).")


@kb_cli.command("import")
@click.argument("path", metavar="FILE.jsonl", type=click.Path(exists=True, dir_okay=False))
def kb_import(path: str) -> None:
    """Create or update articles from FILE.jsonl, one {"id","title","body"} a line.

    An optional "category" names the article's category (created when missing); an optional
    "status" is "published" (the default) or "draft". Articles are matched by "id": importing
    the same file twice changes nothing. Bad lines are reported with their number and skipped;
    the command then exits non-zero.
    """
    with open(path, encoding="utf-8", errors="replace", newline="") as lines:
        report = kb_service.import_articles(db.session, lines, now=utcnow())
    db.session.commit()
    for problem in report.errors:
        click.echo(f"line {problem.line}: {problem.message}", err=True)
    click.echo(
        f"{report.created} created, {report.updated} updated, {report.unchanged} unchanged,"
        f" {len(report.errors)} errors"
    )
    if report.errors:
        sys.exit(1)


@kb_cli.command("export")
@click.argument("path", metavar="[FILE]", required=False, type=click.Path(dir_okay=False))
def kb_export(path: str | None) -> None:
    """Write every article as JSON Lines to FILE (default: standard output), in the import
    format plus "status"."""
    out = open(path, "w", encoding="utf-8") if path else sys.stdout  # noqa: SIM115
    count = 0
    try:
        for record in kb_service.export_articles(db.session):
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    finally:
        if path:
            out.close()
    if path:
        click.echo(f"Exported {count} articles to {path}", err=True)
