"""Ticket actions in a real browser: bulk-assign from the list, priority and tags, a saved
reply, a collision warning, and a merge — every control found by its accessible label."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from tests.conftest import TEST_PASSWORD
from ticketing.db import utcnow
from ticketing.models import Entry, EntryKind, Priority, Ticket
from ticketing.services import conversation, demo
from ticketing.services import saved_replies as saved_reply_service
from ticketing.services.agents import create_agent

pytestmark = pytest.mark.e2e


@pytest.fixture
def seeded(app, db_session, agent):
    now = utcnow()
    demo.seed(db_session, admin_password="demo password 123", now=now)
    saved_reply_service.create_saved_reply(
        db_session,
        title="Card retry",
        body="Hi {{ customer.name }}, about #{{ ticket.number }}: please retry the payment.\n"
        "— {{ agent.name }}",
        actor=agent,
        now=now,
    )
    db_session.commit()


def sign_in(page: Page, base_url: str, email: str, password: str) -> None:
    page.goto(f"{base_url}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def ticket(db_session, number: int) -> Ticket:
    db_session.rollback()  # end this thread's read snapshot; see what the server committed
    found = db_session.scalar(sa.select(Ticket).where(Ticket.number == number))
    assert found is not None
    return found


def test_agent_assigns_prioritises_tags_answers_with_a_saved_reply_and_merges(
    page: Page, live_server, seeded, agent, db_session
):
    sign_in(page, live_server, agent.email, TEST_PASSWORD)
    expect(page).to_have_title(re.compile("All open"))

    # Bulk: assign two tickets to me from the list.
    page.get_by_label("Select ticket #1001").check()
    page.get_by_label("Select ticket #1002").check()
    page.get_by_label("With selected tickets").select_option(label="Assign to me")
    page.get_by_role("button", name="Update selected").click()
    expect(page.locator(".flashes")).to_contain_text("Updated 2 tickets")
    assert ticket(db_session, 1001).assignee_id == agent.id
    assert ticket(db_session, 1002).assignee_id == agent.id
    assert ticket(db_session, 1003).assignee_id is None

    # Priority and tags on the sidebar.
    page.get_by_role("link", name=re.compile("Card declined when renewing")).click()
    page.get_by_label("Priority", exact=True).select_option("urgent")
    page.get_by_role("button", name="Set priority").click()
    expect(page.locator(".flashes")).to_contain_text("Priority set to urgent")
    page.get_by_label("Tags", exact=True).fill("billing, VIP")
    page.get_by_role("button", name="Save tags").click()
    expect(page.locator(".history")).to_contain_text("Tags added billing, vip by Dana")
    t = ticket(db_session, 1001)
    assert t.priority == Priority.URGENT and [tag.name for tag in t.tags] == ["billing", "vip"]

    # A saved reply, inserted without JavaScript, edited, then sent.
    page.get_by_label("Saved reply").select_option(label="Card retry")
    page.get_by_role("button", name="Insert").click()
    message = page.get_by_label("Message")
    expect(message).to_have_value("Hi María López, about #1001: please retry the payment.\n— Dana")
    message.press("End")
    message.type(" Thanks!")
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator(".entry-agent_reply").last).to_contain_text("please retry the payment")

    # Merge #1002 into #1001: the history moves and #1002 points there.
    page.goto(f"{live_server}/tickets/1002")
    page.get_by_label("Merge into ticket number").fill("1001")
    page.get_by_role("button", name="Merge", exact=True).click()
    expect(page).to_have_url(f"{live_server}/tickets/1001")
    expect(page.locator(".flashes")).to_contain_text("Merged #1002 into #1001")
    expect(page.locator(".history")).to_contain_text("our accountant needs all invoices")
    page.goto(f"{live_server}/tickets/1002")
    expect(page.get_by_text("This ticket was merged into")).to_be_visible()
    page.get_by_role("link", name=re.compile("#1001")).first.click()
    expect(page).to_have_url(f"{live_server}/tickets/1001")

    merged = ticket(db_session, 1002)
    assert merged.merged_into_id == ticket(db_session, 1001).id
    kinds = [
        e.kind for e in db_session.scalars(sa.select(Entry).where(Entry.ticket_id == merged.id))
    ]
    assert kinds == [EntryKind.SYSTEM_EVENT]


def test_reply_waits_when_a_colleague_answered_meanwhile(
    page: Page, live_server, seeded, agent, db_session
):
    sam = create_agent(db_session, email="sam@example.com", name="Sam", password=TEST_PASSWORD)
    db_session.commit()
    sign_in(page, live_server, agent.email, TEST_PASSWORD)
    page.goto(f"{live_server}/tickets/1003")
    page.get_by_label("Message").fill("Let me resend the reset link.")

    conversation.reply(
        ticket(db_session, 1003), actor=sam, body_text="Sent you a new link.", now=utcnow()
    )
    db_session.commit()

    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text(
        "Sam replied just now, after you opened this ticket. Review it, then send again."
    )
    expect(page.locator(".history")).to_contain_text("Sent you a new link.")
    expect(page.get_by_label("Message")).to_have_value("Let me resend the reset link.")
    page.get_by_label("Send anyway").check()
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator(".entry-agent_reply").last).to_contain_text("resend the reset link")
