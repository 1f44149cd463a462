"""Proactive notices: rules on a fixed clock (`--today`), at most once per (account, card,
rule), a card updated between scans stops them, the per-customer cap, suppressed and
unsubscribed addresses, List-Unsubscribe one-click, and the email as delivered over SMTP."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa

from mail.notices import unsubscribe_token
from ticketing.db import utcnow
from ticketing.models import (
    Channel,
    Entry,
    EntryKind,
    Notice,
    NoticeOptOut,
    NoticeStatus,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Status,
    Ticket,
)
from ticketing.services import outbox as outbox_rules
from web.mail_runtime import send_outbox

HEADER = "external_id,email,name,plan,status,card_brand,card_last4,card_exp_month,card_exp_year\n"
TODAY = "2026-11-10"


@pytest.fixture
def configured(app):
    app.config["HANDOFF_MAIL_FROM"] = "support@example.com"
    app.config["HANDOFF_ACCOUNT_URL"] = "https://billing.example.com/accounts/{account_id}/card"
    app.config["HANDOFF_NOTICE_HELP_URL"] = "https://help.example.com/update-card"
    return app


def import_csv(runner, tmp_path, body, name="a.csv"):
    path = tmp_path / name
    path.write_text(HEADER + body)
    result = runner.invoke(args=["accounts", "import", str(path)])
    assert result.exit_code == 0, result.output
    return result


def scan(runner, today=TODAY, *extra):
    result = runner.invoke(args=["notices", "scan", "--today", today, *extra])
    assert result.exit_code == 0, result.output
    return result.output


def notices(db_session):
    db_session.rollback()
    return db_session.scalars(sa.select(Notice).order_by(Notice.id)).all()


def outbox(db_session):
    db_session.rollback()
    return db_session.scalars(
        sa.select(OutboxMessage).where(OutboxMessage.kind == OutboxKind.NOTICE)
    ).all()


def test_rules_pick_the_most_urgent_notice_for_each_card(configured, runner, db_session, tmp_path):
    import_csv(
        runner,
        tmp_path,
        "soon,soon@example.com,Soon,pro,active,visa,1111,12,2026\n"  # 2026-12-31: 51 days
        "month,month@example.com,Month,pro,active,visa,2222,11,2026\n"  # 2026-11-30: 20 days
        "week,week@example.com,Week,pro,active,visa,3333,11,2026\n"
        "gone,gone@example.com,Gone,pro,active,visa,4444,10,2026\n"  # expired 10 days ago
        "old,old@example.com,Old,pro,active,visa,5555,1,2024\n",  # expired long ago
    )
    out = scan(runner, "2026-11-25", "--dry-run")
    assert "would notify month@example.com (account month): expires_7d" in out
    assert "would notify gone@example.com (account gone): expired" in out
    assert "soon@" not in out and "old@" not in out
    assert notices(db_session) == []  # a dry run claims nothing

    out = scan(runner, "2026-11-10")
    # 2026-11-10: month/week expire in 20 days (30-day rule), gone expired 10 days ago (within
    # the 30-day grace), soon in 51 days, old long ago (nobody is told years later).
    assert "3 notices queued" in out
    assert sorted(n.rule.value for n in notices(db_session)) == [
        "expired",
        "expires_30d",
        "expires_30d",
    ]


def test_each_notice_goes_once_and_again_when_the_next_rule_is_due(
    configured, runner, db_session, tmp_path
):
    import_csv(runner, tmp_path, "acc_1,ann@example.com,Ann,pro,active,visa,4242,11,2026\n")
    assert "1 notices queued" in scan(runner, "2026-11-10")
    assert "0 notices queued" in scan(runner, "2026-11-10")
    assert "0 notices queued" in scan(runner, "2026-11-20")  # still the 30-day notice's window
    assert "1 notices queued" in scan(runner, "2026-11-25")  # 5 days left: the 7-day notice
    assert "1 notices queued" in scan(runner, "2026-12-02")  # expired
    assert "0 notices queued" in scan(runner, "2026-12-03")
    assert [n.rule.value for n in notices(db_session)] == ["expires_30d", "expires_7d", "expired"]
    # All three on one notice ticket for the customer, each an entry of kind notice.
    [ticket] = db_session.scalars(sa.select(Ticket)).all()
    assert ticket.channel == Channel.NOTICE and ticket.status == Status.SOLVED
    kinds = db_session.scalars(sa.select(Entry.kind).where(Entry.ticket_id == ticket.id)).all()
    assert kinds == [EntryKind.NOTICE] * 3
    assert len(outbox(db_session)) == 3


def test_a_card_updated_between_scans_gets_no_more_notices(
    configured, runner, db_session, tmp_path
):
    import_csv(runner, tmp_path, "acc_1,ann@example.com,Ann,pro,active,visa,4242,11,2026\n")
    scan(runner, "2026-11-10")
    [row] = outbox(db_session)
    assert row.status == OutboxStatus.QUEUED
    # The customer adds a new card before the email went out: it is cancelled, the ticket
    # closed with a note, and later scans say nothing.
    import_csv(runner, tmp_path, "acc_1,ann@example.com,Ann,pro,active,visa,1881,11,2030\n", "b")
    [row] = outbox(db_session)
    assert row.status == OutboxStatus.SUPPRESSED and "card was updated" in row.last_error
    [notice] = notices(db_session)
    assert notice.status == NoticeStatus.CANCELLED and notice.resolved_at is not None
    ticket = db_session.get(Ticket, notice.ticket_id)
    assert ticket.status == Status.CLOSED
    texts = db_session.scalars(sa.select(Entry.body_text).where(Entry.ticket_id == ticket.id))
    assert any("Account problem resolved: the card was updated" in t for t in texts)
    for day in ("2026-11-25", "2026-12-02"):
        assert "0 notices queued" in scan(runner, day)


def test_per_customer_cap_defers_the_rest(configured, runner, db_session, tmp_path):
    configured.config["HANDOFF_NOTICE_CAP"] = 2
    body = "".join(
        f"acc_{i},same@example.com,Shop {i},pro,active,visa,424{i},11,2026\n" for i in range(4)
    )
    import_csv(runner, tmp_path, body)
    out = scan(runner, "2026-11-10")
    assert "2 notices queued, 0 skipped, 2 deferred (cap)" in out
    assert "0 notices queued, 0 skipped, 2 deferred" in scan(runner, "2026-11-10")
    assert len(outbox(db_session)) == 2


def test_suppressed_address_is_skipped_and_shown_to_agents(
    configured, runner, db_session, tmp_path
):
    import_csv(runner, tmp_path, "acc_1,bounced@example.com,B,pro,active,visa,4242,11,2026\n")
    outbox_rules.suppress(db_session, "bounced@example.com", reason="550 5.1.1", now=utcnow())
    db_session.commit()
    assert "0 notices queued, 1 skipped" in scan(runner, "2026-11-10")
    assert outbox(db_session) == []
    [notice] = notices(db_session)
    assert notice.status == NoticeStatus.SKIPPED and "suppression list" in notice.reason
    ticket = db_session.get(Ticket, notice.ticket_id)
    assert ticket.status in (Status.NEW, Status.OPEN)  # in the agents' inbox
    note = db_session.scalar(
        sa.select(Entry).where(Entry.ticket_id == ticket.id, Entry.kind == EntryKind.INTERNAL_NOTE)
    )
    assert "suppression list" in note.body_text
    assert "0 notices queued, 0 skipped" in scan(runner, "2026-11-10")  # surfaced once


def test_one_click_unsubscribe_stops_notices(configured, runner, client, db_session, tmp_path):
    import_csv(
        runner,
        tmp_path,
        "acc_1,ann@example.com,Ann,pro,active,visa,4242,11,2026\n"
        "acc_2,ann@example.com,Ann 2,pro,active,visa,4343,11,2026\n",
    )
    configured.config["HANDOFF_NOTICE_RULES"] = "expires_7d,expired"
    scan(runner, "2026-11-10")
    assert notices(db_session) == []
    configured.config["HANDOFF_NOTICE_RULES"] = "expires_30d,expires_7d,expired,payment_failed"
    customer_id = db_session.scalar(sa.select(Ticket.customer_id)) or None
    from ticketing.models import Customer

    customer = db_session.scalar(sa.select(Customer))
    token = unsubscribe_token(customer.id, secret_key=configured.config["SECRET_KEY"])
    assert customer_id is None
    # A forged token changes nothing; GET only shows a confirmation page.
    assert client.post(f"/notices/unsubscribe/{customer.id}.{'a' * 26}").status_code == 404
    page = client.get(f"/notices/unsubscribe/{token}")
    assert page.status_code == 200 and "Unsubscribe" in page.get_data(as_text=True)
    assert db_session.get(NoticeOptOut, customer.id) is None
    # RFC 8058: the mail client POSTs "List-Unsubscribe=One-Click", no CSRF token, no cookie.
    response = client.post(f"/notices/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    db_session.rollback()
    assert db_session.get(NoticeOptOut, customer.id) is not None
    assert "0 notices queued, 2 skipped" in scan(runner, "2026-11-10")
    assert outbox(db_session) == []


def test_the_notice_email_as_delivered(configured, runner, db_session, tmp_path, smtp_server):
    configured.config["HANDOFF_SMTP_URL"] = f"smtp://{smtp_server.host}:{smtp_server.port}"
    import_csv(runner, tmp_path, "cus_A1,ann@example.com,Ann's shop,Pro,active,visa,4242,11,2026\n")
    scan(runner, "2026-11-25")
    db_session.rollback()
    assert send_outbox(configured).sent == 1
    [sent] = smtp_server.messages
    msg = sent.message
    [ticket] = db_session.scalars(sa.select(Ticket)).all()
    assert sent.rcpt_tos == ["ann@example.com"]
    assert msg["Subject"] == (
        f"[#{ticket.number}] Your card ending 4242 expires on 30 November 2026"
    )
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert re.fullmatch(
        r"<http://127\.0\.0\.1:5000/notices/unsubscribe/\d+\.[a-z2-7]{26}>",
        msg["List-Unsubscribe"],
    )
    assert re.fullmatch(rf"support\+t{ticket.number}\.[a-z2-7]{{16}}@example\.com", msg["Reply-To"])
    assert msg["Message-ID"].startswith(f"<handoff.{ticket.number}.")
    text = msg.get_body(("plain",)).get_content()
    assert "expires on 30 November 2026 (5 days from now)" in text
    assert "https://billing.example.com/accounts/cus_A1/card" in text
    assert "https://help.example.com/update-card" in text
    assert "reply to this email" in text
    html = msg.get_body(("html",)).get_content()
    assert "Ann&#39;s shop" in html or "Ann&#x27;s shop" in html
    entry = db_session.scalar(sa.select(Entry).where(Entry.kind == EntryKind.NOTICE))
    assert entry.message_id == msg["Message-ID"].strip("<>")


def test_operator_template_override(configured, runner, db_session, tmp_path):
    override = tmp_path / "data" / "templates" / "email"
    override.mkdir(parents=True, exist_ok=True)
    (override / "notice_card.txt").write_text("Custom words about {{ card.last4 }}.\n")
    import_csv(runner, tmp_path, "acc_1,ann@example.com,Ann,pro,active,visa,4242,11,2026\n")
    scan(runner, "2026-11-10")
    entry = db_session.scalar(sa.select(Entry).where(Entry.kind == EntryKind.NOTICE))
    assert entry.body_text == "Custom words about 4242.\n"


def test_clock_is_the_given_day(configured, runner, db_session, tmp_path):
    import_csv(runner, tmp_path, "acc_1,ann@example.com,Ann,pro,active,visa,4242,1,2027\n")
    assert "0 notices queued" in scan(runner, "2026-11-10")
    assert "1 notices queued" in scan(runner, "2027-01-01")
    [notice] = notices(db_session)
    assert notice.deadline == dt.date(2027, 1, 31)


def test_four_concurrent_scans_send_each_notice_exactly_once(
    configured, runner, db_session, tmp_path
):
    """security.md case 44: the notice job run from 4 processes at once, then again."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    body = "".join(
        f"acc_{i},c{i}@example.com,C{i},pro,active,visa,{i:04d},11,2026\n" for i in range(40)
    )
    import_csv(runner, tmp_path, body)
    db_session.commit()
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "DATABASE_URL": configured.config["SQLALCHEMY_DATABASE_URI"],
        "HANDOFF_DATA_DIR": configured.config["HANDOFF_DATA_DIR"],
        "SECRET_KEY": configured.config["SECRET_KEY"],
        "HANDOFF_MAIL_FROM": "support@example.com",
    }
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "notices", "scan", "--today", TODAY]
    procs = [
        subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    sent = sum(int(re.search(r"(\d+) notices queued", out).group(1)) for out in outputs)
    assert sent == 40
    assert "0 notices queued" in scan(runner, TODAY)
    all_notices = notices(db_session)
    assert len(all_notices) == 40 == len({n.dedupe_key for n in all_notices})
    assert len(outbox(db_session)) == 40
    entries = db_session.scalars(sa.select(Entry).where(Entry.kind == EntryKind.NOTICE)).all()
    assert len(entries) == 40


def test_the_daily_job_scans_once_per_day(configured, runner, db_session, tmp_path):
    from web.jobs import JOBS, run_job

    today = dt.datetime.now(dt.UTC).date()
    import_csv(
        runner,
        tmp_path,
        f"acc_1,ann@example.com,Ann,pro,active,visa,4242,{today.month},{today.year}\n",
    )
    db_session.commit()
    [job] = [job for job in JOBS if job.id == "notice-scan"]
    run_job(configured, job)
    run_job(configured, job)
    assert len(notices(db_session)) == 1
    assert len(outbox(db_session)) == 1


def test_unsubscribe_tokens_never_reach_the_request_log(app):
    import logging

    from web.logs import RedactTokenPath

    werkzeug = logging.getLogger("werkzeug")
    assert any(
        isinstance(f, RedactTokenPath) and f.prefix == "/notices/unsubscribe/"
        for f in werkzeug.filters
    )
    record = logging.LogRecord(
        "werkzeug", logging.INFO, __file__, 1, '"%s" %s',
        ("POST /notices/unsubscribe/c2VjcmV0.dG9rZW4 HTTP/1.1", "200"), None,
    )  # fmt: skip
    RedactTokenPath("/notices/unsubscribe/").filter(record)
    assert record.getMessage() == '"POST /notices/unsubscribe/[redacted] HTTP/1.1" 200'
