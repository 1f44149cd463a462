"""The customer portal in Chromium: ask for a link, take it from the SMTP sink, see only your
own tickets, reply (issue 6, item 8)."""

from __future__ import annotations

import re
import time

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from ticketing.db import utcnow
from ticketing.models import Channel, Entry, EntryKind, OutboxKind, OutboxMessage, Status, Ticket
from ticketing.services import conversation, customers
from web.mail_runtime import send_outbox

pytestmark = pytest.mark.e2e

LINK = re.compile(r"https?://\S+/portal/login/[A-Za-z0-9_\-]+")


def make_ticket(db_session, email: str, subject: str, body: str) -> Ticket:
    customer = customers.find_or_create(db_session, email=email)
    now = utcnow()
    ticket = conversation.open_ticket(
        db_session, customer=customer, subject=subject, channel=Channel.EMAIL, now=now
    )
    conversation.add_customer_message(
        ticket, author=customer, kind=EntryKind.CUSTOMER_EMAIL, body_text=body, now=now
    )
    return ticket


def queued_links(db_session) -> int:
    db_session.rollback()
    return db_session.scalar(
        sa.select(sa.func.count(OutboxMessage.id)).where(
            OutboxMessage.kind == OutboxKind.MAGIC_LINK
        )
    )


def test_magic_link_shows_only_that_customers_tickets_and_takes_a_reply(
    app, db_session, agent, smtp_server, page: Page, live_server
):
    app.config["HANDOFF_SMTP_URL"] = f"smtp://{smtp_server.host}:{smtp_server.port}"
    mine = make_ticket(db_session, "ann@example.org", "Card declined", "My card was declined.")
    conversation.reply(mine, actor=agent, body_text="Please try again now.", now=utcnow())
    conversation.add_note(mine, actor=agent, body_text="Internal: fraud check", now=utcnow())
    theirs = make_ticket(db_session, "bob@example.org", "Refund for Bob", "Refund please.")
    db_session.commit()

    # Ann asks for a link.
    page.goto(f"{live_server}/portal")
    page.get_by_label("Email").fill("ann@example.org")
    page.get_by_role("button", name="Send me a link").click()
    expect(page.get_by_text("If we have tickets for that address, we sent a link")).to_be_visible()

    # The link is queued once the answer has gone out; the sender delivers it and the link
    # comes out of the real SMTP sink.
    deadline = time.monotonic() + 10
    while queued_links(db_session) == 0:
        assert time.monotonic() < deadline, "no link was queued"
        time.sleep(0.05)
    assert send_outbox(app).sent == 1
    [received] = smtp_server.messages
    assert received.rcpt_tos == ["ann@example.org"]
    assert received.message["Auto-Submitted"] == "auto-generated"
    text = received.message.get_body(preferencelist=("plain",)).get_content()
    link = LINK.search(text).group(0)
    assert link.startswith(f"{live_server}/portal/login/")

    # Opening it shows a button; continuing signs her in.
    page.goto(link)
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Your tickets")).to_be_visible()
    expect(page.get_by_role("link", name="Card declined")).to_be_visible()
    expect(page.get_by_text("Waiting for you")).to_be_visible()
    expect(page.get_by_text("Refund for Bob")).to_have_count(0)

    # The conversation: her message and our reply, never the note.
    page.get_by_role("link", name="Card declined").click()
    expect(page.get_by_text("My card was declined.")).to_be_visible()
    expect(page.get_by_text("Please try again now.")).to_be_visible()
    expect(page.get_by_text("Internal: fraud check")).to_have_count(0)

    # She replies; it lands on the ticket as a web message and reopens it.
    page.get_by_label("Your reply").fill("Still declined, sorry.")
    page.get_by_role("button", name="Send reply").click()
    expect(page.get_by_text("Thanks, we have your reply.")).to_be_visible()
    expect(page.get_by_text("Still declined, sorry.")).to_be_visible()
    db_session.rollback()
    entry = db_session.scalars(sa.select(Entry).order_by(Entry.id.desc())).first()
    assert entry.ticket_id == mine.id and entry.kind == EntryKind.CUSTOMER_WEB
    assert db_session.get(Ticket, mine.id).status == Status.OPEN

    # Bob's ticket is out of reach, and the used link does not work again.
    response = page.goto(f"{live_server}/portal/tickets/{theirs.number}")
    assert response is not None and response.status == 404
    page.goto(f"{live_server}/portal/tickets")
    page.get_by_role("button", name="Log out").click()
    page.goto(link)
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="This link doesn't work")).to_be_visible()
