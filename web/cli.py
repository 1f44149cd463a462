"""CLI commands (`flask --app wsgi …`). Each holds no logic: parse, call a service, commit.

These names and options are a stable interface, documented in the README.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
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
def demo_seed() -> None:
    """Create the demo agent and tickets once, and print the demo sign-in."""
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
    click.echo(
        f"\n  Sign in at {current_app.config['HANDOFF_BASE_URL']}/login\n"
        f"  Email:    {demo.DEMO_ADMIN_EMAIL}\n  Password: {password}\n"
    )


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--threads", default=8, show_default=True, type=int)
def serve(host: str, port: int, threads: int) -> None:
    """Serve Handoff with waitress, running the background jobs in this process."""
    import waitress

    from web.jobs import start_scheduler

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    scheduler = start_scheduler(app)
    click.echo(f"Handoff is running on http://{host}:{port} (Ctrl+C to stop)")
    try:
        waitress.serve(app, host=host, port=port, threads=threads, ident="Handoff")
    finally:
        scheduler.shutdown(wait=False)


def init_app(app: Flask) -> None:
    from web.cli_mailboxes import mailboxes_cli

    for command in (agents_cli, tickets_cli, demo_cli, mailboxes_cli, serve):
        app.cli.add_command(command)
    from web.cli_mail import mail_cli
    from web.cli_outbox import outbox_cli

    app.cli.add_command(mail_cli)
    app.cli.add_command(outbox_cli)
