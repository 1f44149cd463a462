"""Email out, end to end: replies and acknowledgements go through the outbox to a real SMTP
server (aiosmtpd), thread correctly, survive SMTP failures, and never start a loop."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from tests.conftest import TEST_PASSWORD
from tests.support.flows import SUPPORT, SimulatedCrash, entries, poll, tickets
from tests.support.mailfactory import make_email
from ticketing.db import utcnow
from ticketing.models import (
    EntryKind,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Status,
    Suppression,
)
from web.mail_runtime import outbound_context
from web.mail_runtime import send_outbox as _send_outbox

pytestmark = pytest.mark.e2e


@pytest.fixture
def smtp(app, smtp_server):
    app.config["HANDOFF_SMTP_URL"] = f"smtp://{smtp_server.host}:{smtp_server.port}"
    return smtp_server


def send_outbox(app):
    """Run the sender as the job would: in a fresh transaction (the test thread may be holding
    an old read snapshot from before the browser's request)."""
    from web.extensions import db

    db.session.rollback()
    return _send_outbox(app)


def rows(db_session, **filters) -> list[OutboxMessage]:
    db_session.expire_all()
    stmt = sa.select(OutboxMessage).order_by(OutboxMessage.id)
    for key, value in filters.items():
        stmt = stmt.where(getattr(OutboxMessage, key) == value)
    return list(db_session.scalars(stmt))


def make_all_due(db_session) -> None:
    db_session.execute(
        sa.update(OutboxMessage).values(next_attempt_at=utcnow() - dt.timedelta(seconds=1))
    )
    db_session.commit()


def reply_as_agent(
    app, db_session, ticket, agent, body="Please try again now.", status=Status.PENDING
):
    from mail import outbound

    entry, row = outbound.reply(
        db_session,
        ticket,
        actor=agent,
        body_text=body,
        now=utcnow(),
        ctx=outbound_context(app),
        status=status,
    )
    db_session.commit()
    return entry, row


# --- the full round trip ------------------------------------------------------------------------


def test_customer_mail_agent_reply_in_the_browser_and_the_answer_threads_back(
    app, db_session, mailbox, imap_mailbox, smtp, agent, page: Page, live_server
):
    imap_mailbox.append(SUPPORT, make_email(message_id="ann-1@mail.example.org"))
    poll(app)
    [ticket] = tickets(db_session)

    # The acknowledgement is queued and goes out as automatic mail.
    send_outbox(app)
    [ack] = smtp.messages
    assert ack.rcpt_tos == ["ann@example.org"]
    assert ack.message["Auto-Submitted"] == "auto-replied"
    assert ack.message["X-Auto-Response-Suppress"] == "All"
    assert f"[#{ticket.number}]" in ack.message["Subject"]
    assert ack.message["In-Reply-To"] == "<ann-1@mail.example.org>"
    smtp.clear()

    # The agent answers in the browser.
    page.goto(f"{live_server}/login")
    page.get_by_label("Email").fill(agent.email)
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"{live_server}/tickets/{ticket.number}")
    page.get_by_label("Message").fill("Hi Ann, we fixed the card check. Please try again.")
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".entry-agent_reply .delivery")).to_contain_text(
        "Queued for ann@example.org"
    )

    result = send_outbox(app)
    assert result.sent == 1
    [sent] = smtp.messages
    msg = sent.message
    assert sent.rcpt_tos == ["ann@example.org"]
    assert msg["To"] == "Ann Customer <ann@example.org>"
    assert msg["From"].endswith(f"<{SUPPORT}>")
    assert msg["In-Reply-To"] == "<ann-1@mail.example.org>"
    assert "<ann-1@mail.example.org>" in msg["References"]
    assert f"[#{ticket.number}]" in msg["Subject"]
    assert re.fullmatch(rf"support\+t{ticket.number}\.[a-z2-7]{{16}}@example\.com", msg["Reply-To"])
    assert msg["Auto-Submitted"] is None  # a person's reply is not automatic mail
    assert msg["X-Handoff-Loop"]
    assert "we fixed the card check" in msg.get_body(("plain",)).get_content()
    page.reload()
    expect(page.locator(".entry-agent_reply .delivery")).to_contain_text("Sent to ann@example.org")
    expect(page.locator(".entry-customer_email .delivery").first).to_contain_text(
        "Acknowledgement: Sent to ann@example.org"
    )

    # Ann answers Gmail-style, quoting us; it threads back and the quote is collapsed.
    answer = make_email(
        subject=f"Re: {msg['Subject']}",
        body=(
            "It works now, thank you!\n\n"
            f"On Mon, Nov 23, 2026 at 11:02 AM Support <{SUPPORT}> wrote:\n"
            "> Hi Ann, we fixed the card check. Please try again.\n"
        ),
        message_id="ann-2@mail.example.org",
        in_reply_to=msg["Message-ID"].strip("<>"),
        references=["ann-1@mail.example.org", msg["Message-ID"].strip("<>")],
    )
    imap_mailbox.append(SUPPORT, answer)
    poll(app)
    [same] = tickets(db_session)
    last = entries(db_session, same)[-1]
    assert last.message_id == "ann-2@mail.example.org"
    assert last.threaded_by.startswith("References matched our message")
    assert last.body_text.strip() == "It works now, thank you!"
    assert "we fixed the card check" in last.quoted_text
    assert same.status == Status.OPEN
    page.reload()
    expect(page.get_by_text("It works now, thank you!")).to_be_visible()
    expect(page.get_by_text("Show trimmed content").last).to_be_visible()


# --- acknowledgements follow RFC 3834 and never loop -------------------------------------------


@pytest.mark.parametrize(
    ("headers", "sender", "acknowledged"),
    [
        ({}, "Ann <ann@example.org>", True),
        (
            {"Auto-Submitted": "no"},
            "Ann <ann@example.org>",
            True,
        ),  # FreeScout's bug: "no" is a person
        ({"Auto-Submitted": "auto-replied"}, "Ann <ann@example.org>", False),
        ({"Auto-Submitted": "auto-generated"}, "Ann <ann@example.org>", False),
        ({"X-Autoreply": "yes"}, "Ann <ann@example.org>", False),
        ({"Precedence": "bulk"}, "Ann <ann@example.org>", False),
        ({"Precedence": "list"}, "Ann <ann@example.org>", False),
        ({"Precedence": "junk"}, "Ann <ann@example.org>", False),
        ({"List-Id": "<news.example.org>"}, "Ann <ann@example.org>", False),
        ({"X-Auto-Response-Suppress": "All"}, "Ann <ann@example.org>", False),
        ({}, "MAILER-DAEMON@mx.example.org", False),
        ({}, "victim@corp.example <attacker@evil.example>", False),  # unverified sender
        ({}, f"Ourselves <{SUPPORT}>", False),
    ],
)
def test_acknowledgement_only_for_a_person_with_a_trustworthy_address(
    app, db_session, mailbox, imap_mailbox, headers, sender, acknowledged
):
    imap_mailbox.append(SUPPORT, make_email(sender=sender, headers=headers, message_id="ack@x"))
    poll(app)
    acks = rows(db_session, kind=OutboxKind.ACKNOWLEDGEMENT)
    assert len(acks) == (1 if acknowledged else 0)


def test_at_most_one_acknowledgement_per_sender_per_window(app, db_session, mailbox, imap_mailbox):
    for i in range(3):
        imap_mailbox.append(SUPPORT, make_email(message_id=f"multi{i}@x", subject=f"question {i}"))
    poll(app)
    assert len(tickets(db_session)) == 3
    assert len(rows(db_session, kind=OutboxKind.ACKNOWLEDGEMENT)) == 1


def test_a_dumb_autoresponder_cannot_start_a_loop(app, db_session, mailbox, imap_mailbox, smtp):
    """An autoresponder that answers everything at once, without any loop headers."""
    imap_mailbox.append(SUPPORT, make_email(sender="bot@robots.example", message_id="bot0@x"))
    for round_ in range(12):
        poll(app)
        make_all_due(db_session)
        send_outbox(app)
        for received in list(smtp.messages):
            # The bot answers each of our mails with a brand-new message (no threading headers).
            imap_mailbox.append(
                SUPPORT,
                make_email(
                    sender="bot@robots.example",
                    subject=f"Thanks for your mail ({round_})",
                    message_id=f"bot{round_}-{received.message['Message-ID'][1:9]}@x",
                ),
            )
        smtp.clear()
    sent_to_bot = [
        r
        for r in rows(db_session)
        if r.recipient == "bot@robots.example" and r.status == OutboxStatus.SENT
    ]
    assert len(sent_to_bot) <= 1  # one acknowledgement per sender per window, then silence


def test_our_own_acknowledgement_coming_back_changes_nothing(
    app, db_session, mailbox, imap_mailbox, smtp
):
    imap_mailbox.append(SUPPORT, make_email(message_id="own1@x"))
    poll(app)
    send_outbox(app)
    [ack] = smtp.messages
    imap_mailbox.append(SUPPORT, ack.content)  # e.g. the customer's server forwarded it back
    poll(app)
    [ticket] = tickets(db_session)
    assert len(entries(db_session, ticket)) == 1
    assert len(rows(db_session)) == 1


# --- SMTP failures: retries deliver exactly once; permanent failures show on the ticket --------


def test_temporary_failures_are_retried_and_delivered_exactly_once(
    app, db_session, mailbox, imap_mailbox, smtp, agent
):
    imap_mailbox.append(
        SUPPORT, make_email(message_id="t1@x", headers={"Auto-Submitted": "auto-generated"})
    )
    poll(app)
    [ticket] = tickets(db_session)
    _, row = reply_as_agent(app, db_session, ticket, agent)
    smtp.fail_next(451, "4.3.0 Try again later", times=2)

    assert send_outbox(app).retrying == 1
    [queued] = rows(db_session)
    assert queued.status == OutboxStatus.QUEUED and queued.attempts == 1
    assert queued.next_attempt_at > utcnow()  # backoff
    assert send_outbox(app).claimed == 0  # not due yet
    make_all_due(db_session)
    send_outbox(app)
    make_all_due(db_session)
    assert send_outbox(app).sent == 1
    [delivered] = smtp.messages
    assert delivered.message["Message-ID"] == f"<{row.message_id}>"
    [done] = rows(db_session)
    assert done.status == OutboxStatus.SENT and done.attempts == 3


def test_permanent_failure_is_shown_on_the_ticket_and_can_be_retried(
    app, db_session, mailbox, imap_mailbox, smtp, agent, login
):
    imap_mailbox.append(
        SUPPORT, make_email(message_id="p1@x", headers={"Auto-Submitted": "auto-generated"})
    )
    poll(app)
    [ticket] = tickets(db_session)
    reply_as_agent(app, db_session, ticket, agent)
    smtp.fail_next(550, "5.1.1 No such user", rcpt="ann@example.org")
    assert send_outbox(app).failed == 1
    [row] = rows(db_session)
    assert row.status == OutboxStatus.FAILED and row.last_code == 550
    assert "No such user" in row.last_error

    client = login(agent)
    page = client.get(f"/tickets/{ticket.number}").get_data(as_text=True)
    assert "Delivery failed" in page and "No such user" in page
    from tests.conftest import csrf_token

    token = csrf_token(client, f"/tickets/{ticket.number}")
    response = client.post(
        f"/tickets/{ticket.number}/outbox/{row.id}/retry", data={"csrf_token": token}
    )
    assert response.status_code == 302
    assert send_outbox(app).sent == 1
    assert rows(db_session)[0].status == OutboxStatus.SENT


def test_smtp_server_down_keeps_mail_queued(app, db_session, mailbox, imap_mailbox, agent):
    from tests.support.services import free_port

    app.config["HANDOFF_SMTP_URL"] = f"smtp://127.0.0.1:{free_port()}"
    imap_mailbox.append(SUPPORT, make_email(message_id="down@x"))
    poll(app)
    [ticket] = tickets(db_session)
    reply_as_agent(app, db_session, ticket, agent)
    result = send_outbox(app)
    assert result.sent == 0 and result.retrying == 2
    assert all(r.status == OutboxStatus.QUEUED and r.attempts == 1 for r in rows(db_session))


def test_smtp_auth_failure_never_reveals_the_password(
    app, db_session, mailbox, imap_mailbox, agent, smtp_server_auth, caplog
):
    import base64

    secret = "s3cr3t-Passw0rd!"
    app.config["HANDOFF_SMTP_URL"] = (
        f"smtp://{smtp_server_auth.username}:{secret}@{smtp_server_auth.host}:{smtp_server_auth.port}"
    )
    imap_mailbox.append(
        SUPPORT, make_email(message_id="auth@x", headers={"Auto-Submitted": "auto-generated"})
    )
    poll(app)
    [ticket] = tickets(db_session)
    reply_as_agent(app, db_session, ticket, agent)
    caplog.set_level("DEBUG")
    send_outbox(app)
    [row] = rows(db_session)
    payload = base64.b64encode(f"\0{smtp_server_auth.username}\0{secret}".encode()).decode()
    for text in (row.last_error or "", caplog.text):
        assert secret not in text and payload not in text
    assert row.last_error


# --- crash windows in the sender (security.md case 43) -----------------------------------------


def test_crash_after_250_resends_once_with_the_same_message_id(
    app, db_session, mailbox, imap_mailbox, smtp, agent
):
    from mail.outbound import deliver_due
    from web.mail_runtime import blobs, smtp_settings

    imap_mailbox.append(
        SUPPORT, make_email(message_id="c250@x", headers={"Auto-Submitted": "auto-generated"})
    )
    poll(app)
    [ticket] = tickets(db_session)
    reply_as_agent(app, db_session, ticket, agent)

    def crash(point):
        if point == "after_250":
            raise SimulatedCrash

    with pytest.raises(SimulatedCrash):
        deliver_due(db_session, smtp=smtp_settings(app), blobs=blobs(app), owner="w1", fault=crash)
    db_session.rollback()
    [still] = rows(db_session)
    assert still.status == OutboxStatus.QUEUED  # the mark was lost with the crash
    # Its claim expires; another sender delivers it again, byte for byte.
    db_session.execute(
        sa.update(OutboxMessage).values(claimed_until=utcnow() - dt.timedelta(seconds=1))
    )
    db_session.commit()
    deliver_due(db_session, smtp=smtp_settings(app), blobs=blobs(app), owner="w2")
    first, second = smtp.messages
    assert first.content == second.content  # at-least-once, same Message-ID: receivers dedupe
    assert rows(db_session)[0].status == OutboxStatus.SENT


def test_crash_before_smtp_sends_exactly_once_after_the_claim_expires(
    app, db_session, mailbox, imap_mailbox, smtp, agent
):
    from ticketing.services import outbox as outbox_rules

    imap_mailbox.append(
        SUPPORT, make_email(message_id="cb@x", headers={"Auto-Submitted": "auto-generated"})
    )
    poll(app)
    [ticket] = tickets(db_session)
    reply_as_agent(app, db_session, ticket, agent)
    # A sender claims the row and dies before talking SMTP.
    outbox_rules.claim_due(
        db_session, owner="dead", now=utcnow(), limit=10, lease=dt.timedelta(seconds=60)
    )
    assert send_outbox(app).claimed == 0  # still claimed by the dead sender
    db_session.execute(
        sa.update(OutboxMessage).values(claimed_until=utcnow() - dt.timedelta(seconds=1))
    )
    db_session.commit()
    assert send_outbox(app).sent == 1
    assert len(smtp.messages) == 1


def test_rolled_back_reply_sends_nothing(app, db_session, mailbox, imap_mailbox, smtp, agent):
    from mail import outbound

    imap_mailbox.append(
        SUPPORT, make_email(message_id="rb@x", headers={"Auto-Submitted": "auto-generated"})
    )
    poll(app)
    [ticket] = tickets(db_session)
    outbound.reply(
        db_session, ticket, actor=agent, body_text="draft", now=utcnow(), ctx=outbound_context(app)
    )
    db_session.rollback()
    assert rows(db_session) == []
    assert send_outbox(app).claimed == 0 and smtp.messages == []


# --- identity, headers and escaping -------------------------------------------------------------


def test_reply_to_a_newline_subject_has_one_recipient_and_no_bcc(
    app, db_session, mailbox, imap_mailbox, smtp, agent
):
    raw = make_email(message_id="nl@x", headers={"Auto-Submitted": "auto-generated"}).replace(
        b"Subject: My card was declined",
        b"Subject: Help =?UTF-8?Q?me=0ABcc:_attacker@evil.example?=",
    )
    imap_mailbox.append(SUPPORT, raw)
    poll(app)
    [ticket] = tickets(db_session)
    reply_as_agent(app, db_session, ticket, agent)
    send_outbox(app)
    [sent] = smtp.messages
    assert sent.rcpt_tos == ["ann@example.org"]
    assert sent.message["Bcc"] is None
    assert sent.content.count(b"\nSubject:") == 1


def test_replies_go_to_the_customer_not_to_a_reply_to_address(
    app, db_session, mailbox, imap_mailbox, smtp, agent
):
    imap_mailbox.append(
        SUPPORT,
        make_email(
            sender="victim@corp.example",
            message_id="rt@x",
            headers={"Reply-To": "attacker@evil.example", "Auto-Submitted": "auto-generated"},
        ),
    )
    poll(app)
    [ticket] = tickets(db_session)
    reply_as_agent(app, db_session, ticket, agent)
    send_outbox(app)
    [sent] = smtp.messages
    assert sent.rcpt_tos == ["victim@corp.example"]


def test_customer_html_quoted_in_a_reply_is_escaped(
    app, db_session, mailbox, imap_mailbox, smtp, agent
):
    imap_mailbox.append(
        SUPPORT,
        make_email(
            message_id="x@x",
            body="<script>alert(1)</script><b>x</b>",
            headers={"Auto-Submitted": "auto-generated"},
        ),
    )
    poll(app)
    [ticket] = tickets(db_session)
    reply_as_agent(app, db_session, ticket, agent, body="Thanks <b>for</b> writing {{7*7}}")
    send_outbox(app)
    [sent] = smtp.messages
    html = sent.message.get_body(("html",)).get_content()
    assert "<script>" not in html and "<b>for</b>" not in html
    assert "&lt;script&gt;" in html or "script" not in html
    assert "{{7*7}}" in sent.message.get_body(("plain",)).get_content()


# --- bounces ------------------------------------------------------------------------------------


def test_hard_bounce_marks_the_reply_and_suppresses_automatic_mail(
    app, db_session, mailbox, imap_mailbox, smtp, agent
):
    imap_mailbox.append(
        SUPPORT, make_email(message_id="hb@x", headers={"Auto-Submitted": "auto-generated"})
    )
    poll(app)
    [ticket] = tickets(db_session)
    _, row = reply_as_agent(app, db_session, ticket, agent)
    send_outbox(app)
    dsn = (
        "From: MAILER-DAEMON@mx.example.org\r\nTo: support@example.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-hb@mx.example.org>\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n"
        "Final-Recipient: rfc822; ann@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 mailbox unavailable\r\n"
        f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <{row.message_id}>\r\n--B--\r\n"
    ).encode()
    imap_mailbox.append(SUPPORT, dsn)
    poll(app)
    assert len(tickets(db_session)) == 1  # no new ticket, no acknowledgement of the bounce
    [bounced] = rows(db_session)
    assert bounced.status == OutboxStatus.BOUNCED
    assert "550 5.1.1 mailbox unavailable" in bounced.last_error
    suppression = db_session.scalar(sa.select(Suppression))
    assert suppression.email == "ann@example.org"
    assert suppression.expires_at > utcnow() + dt.timedelta(days=59)

    # A new ticket from that address gets no acknowledgement while it is suppressed.
    imap_mailbox.append(SUPPORT, make_email(message_id="hb2@x", subject="New question"))
    poll(app)
    [ack] = rows(db_session, kind=OutboxKind.ACKNOWLEDGEMENT)
    assert ack.status == OutboxStatus.SUPPRESSED and "suppressed" in ack.last_error


def test_first_response_time_is_set_by_the_first_agent_reply(
    app, db_session, mailbox, imap_mailbox, agent
):
    imap_mailbox.append(SUPPORT, make_email(message_id="fr@x"))
    poll(app)
    [ticket] = tickets(db_session)
    assert ticket.first_response_at is None
    entry, _ = reply_as_agent(app, db_session, ticket, agent)
    reply_as_agent(app, db_session, ticket, agent, body="And one more thing.")
    db_session.expire_all()
    assert ticket.first_response_at == entry.created_at
    assert [e.kind for e in entries(db_session, ticket)].count(EntryKind.AGENT_REPLY) == 2


def test_outbox_cli_lists_sends_and_retries(
    app, db_session, mailbox, imap_mailbox, smtp, agent, runner
):
    imap_mailbox.append(
        SUPPORT, make_email(message_id="cli@x", headers={"Auto-Submitted": "auto-generated"})
    )
    poll(app)
    [ticket] = tickets(db_session)
    _, row = reply_as_agent(app, db_session, ticket, agent)
    assert (
        f"{row.id}\tqueued\treply\tann@example.org" in runner.invoke(args=["outbox", "list"]).output
    )
    smtp.fail_next(554, "5.7.1 Rejected", times=1)
    runner.invoke(args=["outbox", "send", "--once"])
    assert "5.7.1 Rejected" in runner.invoke(args=["outbox", "list", "--failed"]).output
    assert runner.invoke(args=["outbox", "retry", str(row.id)]).exit_code == 0
    result = runner.invoke(args=["outbox", "send", "--once"])
    assert "1 sent" in result.output
    assert (
        email.message_from_bytes(smtp.messages[-1].content, policy=email.policy.default)[
            "Message-ID"
        ]
        == f"<{row.message_id}>"
    )


def test_reply_to_an_invalid_stored_address_is_recorded_not_sent(
    app, db_session, smtp, agent, login
):
    from tests.conftest import csrf_token
    from ticketing.models import Channel
    from ticketing.services import conversation, customers

    customer = customers.find_or_create(db_session, email="not an address@@example", name="Broken")
    ticket = conversation.open_ticket(
        db_session, customer=customer, subject="x", channel=Channel.WEB, now=utcnow()
    )
    conversation.add_customer_message(
        ticket, author=customer, kind=EntryKind.CUSTOMER_WEB, body_text="hi", now=utcnow()
    )
    db_session.commit()
    client = login(agent)
    page = f"/tickets/{ticket.number}"
    response = client.post(
        f"{page}/messages",
        data={
            "csrf_token": csrf_token(client, page),
            "composer-mode": "reply",
            "composer-body": "Hello",
            "composer-status": "pending",
        },
    )
    assert response.status_code == 302
    [row] = rows(db_session)
    assert row.status == OutboxStatus.SUPPRESSED and row.last_error.startswith("not sent:")
    assert send_outbox(app).claimed == 0 and smtp.messages == []
    assert "Not sent: not sent:" not in client.get(page).get_data(as_text=True)


def test_agent_reply_with_attachments_goes_out_with_them(
    app, db_session, mailbox, imap_mailbox, smtp, agent, login
):
    import io

    from tests.conftest import csrf_token

    imap_mailbox.append(
        SUPPORT, make_email(message_id="att@x", headers={"Auto-Submitted": "auto-generated"})
    )
    poll(app)
    [ticket] = tickets(db_session)
    client = login(agent)
    page = f"/tickets/{ticket.number}"
    response = client.post(
        f"{page}/messages",
        data={
            "csrf_token": csrf_token(client, page),
            "composer-mode": "reply",
            "composer-body": "Here is your invoice.",
            "composer-status": "pending",
            "composer-attachments": [
                (io.BytesIO(b"%PDF-1.4 invoice"), "Rechnung M\u00e4rz.pdf", "application/pdf"),
                (io.BytesIO(b"log line"), "../../etc/evil.log", "text/plain"),
            ],
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 302
    send_outbox(app)
    [sent] = smtp.messages
    parts = {p.get_filename(): p.get_content() for p in sent.message.iter_attachments()}
    assert parts == {"Rechnung M\u00e4rz.pdf": b"%PDF-1.4 invoice", "evil.log": "log line"}


def test_too_many_attachments_are_refused_with_a_clear_message(app, db_session, agent, login):
    import io

    from tests.conftest import csrf_token
    from ticketing.models import Channel, Entry
    from ticketing.services import conversation, customers

    customer = customers.find_or_create(db_session, email="ann@example.org", name="Ann")
    ticket = conversation.open_ticket(
        db_session, customer=customer, subject="x", channel=Channel.WEB, now=utcnow()
    )
    db_session.commit()
    client = login(agent)
    page = f"/tickets/{ticket.number}"
    response = client.post(
        f"{page}/messages",
        data={
            "csrf_token": csrf_token(client, page),
            "composer-mode": "note",
            "composer-body": "files",
            "composer-attachments": [
                (io.BytesIO(b"x"), f"f{i}.txt", "text/plain") for i in range(11)
            ],
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert "Attach at most 10 files." in response.get_data(as_text=True)
    db_session.rollback()
    assert db_session.scalar(sa.select(sa.func.count(Entry.id))) == 0


def test_a_mailbox_can_send_through_its_own_smtp_server(
    app, db_session, mailbox, imap_mailbox, smtp_server, smtp_server_auth, agent, runner
):
    # The global server is one aiosmtpd; the mailbox's own (with AUTH) is another.
    app.config["HANDOFF_SMTP_URL"] = f"smtp://{smtp_server.host}:{smtp_server.port}"
    url = f"smtp://{smtp_server_auth.username}:{smtp_server_auth.password}@{smtp_server_auth.host}:{smtp_server_auth.port}"
    result = runner.invoke(args=["mailboxes", "set-smtp", "support"], input=url + "\n")
    assert result.exit_code == 0, result.output
    assert smtp_server_auth.password not in result.output
    db_session.expire_all()
    assert (
        smtp_server_auth.password
        not in db_session.get(type(mailbox), mailbox.id).smtp_url_encrypted
    )

    imap_mailbox.append(
        SUPPORT, make_email(message_id="own-smtp@x", headers={"Auto-Submitted": "auto-generated"})
    )
    poll(app)
    [ticket] = tickets(db_session)
    reply_as_agent(app, db_session, ticket, agent)
    assert send_outbox(app).sent == 1
    assert len(smtp_server_auth.messages) == 1 and smtp_server.messages == []
    assert smtp_server_auth.messages[0].auth_user == smtp_server_auth.username


def test_without_any_smtp_server_mail_stays_queued_untouched(
    app, db_session, mailbox, imap_mailbox, agent, runner
):
    app.config["HANDOFF_SMTP_URL"] = ""
    imap_mailbox.append(SUPPORT, make_email(message_id="nosmtp@x"))
    poll(app)
    result = runner.invoke(args=["outbox", "send", "--once"])
    assert result.exit_code != 0 and "HANDOFF_SMTP_URL is not set" in result.output
    [ack] = rows(db_session)
    assert ack.status == OutboxStatus.QUEUED and ack.attempts == 0


def test_mail_with_no_smtp_server_for_it_waits_without_a_busy_loop(
    app, db_session, mailbox, smtp_server_auth, agent, runner
):
    from ticketing.models import Channel
    from ticketing.services import conversation, customers

    # Only the mailbox has a server; a web-form ticket (no mailbox) has none to go through.
    app.config["HANDOFF_SMTP_URL"] = ""
    url = f"smtp://{smtp_server_auth.username}:{smtp_server_auth.password}@{smtp_server_auth.host}:{smtp_server_auth.port}"
    assert runner.invoke(args=["mailboxes", "set-smtp", "support"], input=url + "\n").exit_code == 0
    customer = customers.find_or_create(db_session, email="web@example.org", name="Web")
    ticket = conversation.open_ticket(
        db_session, customer=customer, subject="web form", channel=Channel.WEB, now=utcnow()
    )
    db_session.commit()
    reply_as_agent(app, db_session, ticket, agent)

    result = runner.invoke(args=["outbox", "send", "--once"])  # must terminate

    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "1 due, 0 sent, 1 to retry, 0 failed",
        "0 due, 0 sent, 0 to retry, 0 failed",  # not due again at once: the loop ends
    ]
    [row] = rows(db_session)
    assert row.status == OutboxStatus.QUEUED and row.attempts == 0
    assert row.next_attempt_at > utcnow() and "HANDOFF_SMTP_URL is not set" in row.last_error
