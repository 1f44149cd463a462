"""CLI contracts: `agents create`, `demo seed`, `tickets export` (names and shapes are stable)."""

import json

import sqlalchemy as sa

from ticketing.db import utcnow
from ticketing.models import Agent, AgentRole, Ticket
from ticketing.services.agents import authenticate


def test_agents_create_reads_the_password_from_stdin(runner, db_session):
    result = runner.invoke(
        args=["agents", "create", "Lee@Example.com", "--name", "Lee", "--admin"],
        input="a long enough password\n",
    )
    assert result.exit_code == 0, result.output
    agent = db_session.scalar(sa.select(Agent).where(Agent.email == "lee@example.com"))
    assert agent.role == AgentRole.ADMIN
    assert "a long enough password" not in result.output
    assert authenticate(
        db_session, email="lee@example.com", password="a long enough password", now=utcnow()
    )


def test_agents_create_fails_clearly_on_a_short_password(runner):
    result = runner.invoke(
        args=["agents", "create", "x@example.com", "--name", "X"], input="short\n"
    )
    assert result.exit_code != 0
    assert "at least 10 characters" in result.output


def test_demo_seed_is_idempotent_and_prints_the_login(runner, db_session, app):
    first = runner.invoke(args=["demo", "seed"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(args=["demo", "seed"])
    assert "already present" in second.output
    password = first.output.split("Password: ")[1].split()[0]
    assert password in second.output
    assert db_session.scalar(sa.select(sa.func.count(Ticket.id))) == 4
    assert authenticate(db_session, email="admin@handoff.example", password=password, now=utcnow())


def test_tickets_export_writes_one_json_line_per_ticket(runner, tmp_path, db_session):
    runner.invoke(args=["demo", "seed"])
    out = tmp_path / "export.jsonl"
    result = runner.invoke(args=["tickets", "export", "--output", str(out)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["number"] for r in records] == [1001, 1002, 1003, 1004]
    first = records[0]
    assert set(first) >= {
        "number",
        "subject",
        "status",
        "priority",
        "channel",
        "customer",
        "assignee",
        "created_at",
        "updated_at",
        "entries",
    }
    assert first["customer"] == {"email": "maria.lopez@example.com", "name": "María López"}
    entry = first["entries"][0]
    assert set(entry) >= {
        "kind",
        "author_email",
        "author_name",
        "subject",
        "created_at",
        "body_text",
        "message_id",
        "in_reply_to",
        "attachments",
    }
    assert entry["kind"] == "customer_email"
    assert [e["kind"] for e in first["entries"]] == [
        "customer_email",
        "system_event",
        "internal_note",
    ]


def test_tickets_export_to_stdout(runner):
    runner.invoke(args=["demo", "seed"])
    result = runner.invoke(args=["tickets", "export"])
    assert len(result.output.strip().splitlines()) == 4
