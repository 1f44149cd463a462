"""CLI commands (`flask --app wsgi …`). Each holds no logic: parse, call a service, commit.

These names and options are a stable interface, documented in the README.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from ticketing.db import utcnow
from ticketing.errors import Invalid
from ticketing.models import AgentRole
from ticketing.services import agents as agent_service
from ticketing.services import demo
from ticketing.services.export import iter_ticket_records
from web.extensions import db

agents_cli = AppGroup("agents", help="Manage agent accounts.")
tickets_cli = AppGroup("tickets", help="Export tickets.")
demo_cli = AppGroup("demo", help="Demo data for the embedded default.")


def _read_password(prompt: bool) -> str:
    if prompt and sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


@agents_cli.command("create")
@click.argument("email")
@click.option("--name", required=True, help="Display name shown to customers and colleagues.")
@click.option("--admin", is_flag=True, help="Give the agent the admin role.")
def agents_create(email: str, name: str, admin: bool) -> None:
    """Create an agent. The password is read from standard input (first line)."""
    password = _read_password(prompt=True)
    try:
        agent = agent_service.create_agent(
            db.session,
            email=email,
            name=name,
            password=password,
            role=AgentRole.ADMIN if admin else AgentRole.AGENT,
        )
    except Invalid as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(f"Created {agent.role.value} {agent.email}")


@agents_cli.command("list")
def agents_list() -> None:
    """List agents: email, name, role, active."""
    from ticketing.services.inbox import active_agents

    for agent in active_agents(db.session):
        click.echo(f"{agent.email}\t{agent.name}\t{agent.role.value}")


def _agent_by_email(email: str):  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    from ticketing.models import Agent
    from ticketing.models.people import normalize_email

    agent = db.session.scalar(sa.select(Agent).where(Agent.email == normalize_email(email)))
    if agent is None:
        raise click.ClickException(f"No agent has the email {email}.")
    return agent


@agents_cli.command("token")
@click.argument("email")
@click.option("--name", default="", help="What the token is for (shown by `agents tokens`).")
def agents_token(email: str, name: str) -> None:
    """Create an API token for an agent and print it once (only its hash is kept)."""
    from ticketing.services import api_tokens

    try:
        token, plaintext = api_tokens.create_token(
            db.session, _agent_by_email(email), name=name, now=utcnow()
        )
    except Invalid as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(plaintext)
    click.echo(
        f"API token {token.id} for {token.agent.email}. Copy it now: it will not be shown again.",
        err=True,
    )


@agents_cli.command("tokens")
@click.argument("email")
def agents_tokens(email: str) -> None:
    """List an agent's API tokens: id, name, created, last used, revoked (never the secret)."""
    from ticketing.services import api_tokens

    for token in api_tokens.list_tokens(db.session, _agent_by_email(email)):
        used = token.last_used_at.isoformat() if token.last_used_at else "never"
        revoked = token.revoked_at.isoformat() if token.revoked_at else "no"
        click.echo(
            f"{token.id}\t{token.name or '-'}\t{token.created_at.isoformat()}\t{used}\t{revoked}"
        )


@agents_cli.command("revoke-token")
@click.argument("token_id", metavar="ID", type=int)
def agents_revoke_token(token_id: int) -> None:
    """Revoke an API token for good (its id is in `agents tokens`)."""
    from ticketing.errors import NotFound
    from ticketing.services import api_tokens

    try:
        token = api_tokens.revoke_token(db.session, token_id, now=utcnow())
    except NotFound as exc:
        raise click.ClickException(f"No API token has the id {token_id}.") from exc
    db.session.commit()
    click.echo(f"Revoked API token {token.id} of {token.agent.email}.")


@tickets_cli.command("export")
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, writable=True), help="File (default stdout)."
)
def tickets_export(output: str | None) -> None:
    """Write every ticket as JSON Lines (one ticket a line; format in the README)."""
    out = open(output, "w", encoding="utf-8") if output else sys.stdout  # noqa: SIM115
    count = 0
    try:
        for record in iter_ticket_records(db.session):
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    finally:
        if output:
            out.close()
    if output:
        click.echo(f"Exported {count} tickets to {output}", err=True)


@demo_cli.command("seed")
@click.option(
    "--tickets",
    type=click.IntRange(min=0),
    default=0,
    help="Also add this many synthetic tickets (about 5 entries each, two years of history).",
)
@click.option(
    "--seed",
    "random_seed",
    type=int,
    default=42,
    show_default=True,
    help="Random seed for the synthetic tickets (same seed, same data).",
)
def demo_seed(tickets: int, random_seed: int) -> None:
    """Create the demo agent and tickets once, and print the demo sign-in.

    With --tickets N, also add N synthetic tickets in bulk (each run adds N more).
    """
    password_file = Path(current_app.config["HANDOFF_DATA_DIR"]) / "demo-admin-password"
    if password_file.exists():
        password = password_file.read_text().strip()
    else:
        password = secrets.token_urlsafe(12)
        password_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password)
    created = demo.seed(db.session, admin_password=password, now=utcnow())
    db.session.commit()
    click.echo("Demo data created." if created else "Demo data already present.")
    if tickets:
        started = time.monotonic()

        def _progress(done: int) -> None:
            db.session.commit()
            click.echo(f"  {done}/{tickets} tickets", err=True)

        summary = demo.seed_scale(
            db.session, tickets=tickets, now=utcnow(), seed=random_seed, on_chunk=_progress
        )
        db.session.commit()
        click.echo(
            f"Added {summary.tickets} tickets (#{summary.first_number}-#{summary.last_number}),"
            f" {summary.entries} entries, {summary.customers} customers"
            f" in {time.monotonic() - started:.1f} s."
        )
    click.echo(
        f"\n  Sign in at {current_app.config['HANDOFF_BASE_URL']}/login\n"
        f"  Email:    {demo.DEMO_ADMIN_EMAIL}\n  Password: {password}\n"
    )


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--threads", default=8, show_default=True, type=int)
def serve(host: str, port: int, threads: int) -> None:
    """Serve Handoff with waitress; on SQLite (or with HANDOFF_RUN_SCHEDULER) also run the jobs."""
    import waitress

    from web.worker import start_in_process_jobs

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    scheduler, note = start_in_process_jobs(app)
    click.echo(note)
    click.echo(f"Handoff is running on http://{host}:{port} (Ctrl+C to stop)")
    try:
        waitress.serve(app, host=host, port=port, threads=threads, ident="Handoff")
    finally:
        if scheduler is not None:
            scheduler.shutdown(wait=False)  # type: ignore[attr-defined]


@click.command("copy-database")
@click.option("--to", "target_url", required=True, help="The empty, migrated target database.")
def copy_database(target_url: str) -> None:
    """Copy this install's database (e.g. the SQLite default) into another (e.g. PostgreSQL)."""
    import sqlalchemy as sa

    from ticketing.db_copy import copy_database as copy
    from web.config import ConfigError, database_uri

    try:
        target = sa.create_engine(database_uri(target_url))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        counts = copy(db.engine, target, progress=None)
    except Invalid as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        target.dispose()
    for table, count in counts.items():
        click.echo(f"{table}\t{count}")
    click.echo(f"Copied {sum(counts.values())} rows.", err=True)


@click.command("worker")
def worker() -> None:
    """Run the background jobs (mail polling, outbox, scans) until SIGTERM, then exit 0."""
    from web.worker import JobsAlreadyRunning, run_worker

    try:
        run_worker(current_app._get_current_object())  # type: ignore[attr-defined]
    except JobsAlreadyRunning as exc:
        raise click.ClickException(str(exc)) from exc


def init_app(app: Flask) -> None:
    from web.cli_mailboxes import mailboxes_cli

    for command in (
        agents_cli,
        tickets_cli,
        demo_cli,
        mailboxes_cli,
        serve,
        worker,
        copy_database,
    ):
        app.cli.add_command(command)
    from web.cli_mail import mail_cli
    from web.cli_outbox import outbox_cli

    app.cli.add_command(mail_cli)
    app.cli.add_command(outbox_cli)
    from web.cli_accounts import accounts_cli, notices_cli

    app.cli.add_command(accounts_cli)
    app.cli.add_command(notices_cli)
    from web.cli_kb import kb_cli

    app.cli.add_command(kb_cli)
