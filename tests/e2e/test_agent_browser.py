"""An agent's first minutes, in a real browser: sign in, open a ticket, write a note, reply."""

import re

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from tests.conftest import TEST_PASSWORD
from ticketing.models import Entry, EntryKind, Status, Ticket
from ticketing.services import demo

pytestmark = pytest.mark.e2e


@pytest.fixture
def seeded(app, db_session, agent):
    from ticketing.db import utcnow

    demo.seed(db_session, admin_password="demo password 123", now=utcnow())
    db_session.commit()


def sign_in(page: Page, base_url: str, email: str, password: str) -> None:
    page.goto(f"{base_url}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_agent_signs_in_opens_a_ticket_and_answers(
    page: Page, live_server, seeded, agent, db_session
):
    sign_in(page, live_server, agent.email, TEST_PASSWORD)
    expect(page).to_have_title(re.compile("All open"))
    expect(page.get_by_role("navigation", name="Views")).to_contain_text("Unassigned")

    page.get_by_role("link", name=re.compile("Card declined when renewing")).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Card declined")
    expect(page.get_by_text("my card was declined twice")).to_be_visible()

    page.get_by_label("Type").select_option("note")
    page.get_by_label("Message").fill("Checked the gateway: 3-D Secure timeout.")
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".entry-internal_note").last).to_contain_text("3-D Secure timeout")

    page.get_by_label("Type").select_option("reply")
    page.get_by_label("Message").fill("Hi María, please try once more; we fixed the timeout.")
    page.get_by_label("Then set status").select_option("solved")
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".entry-agent_reply").last).to_contain_text("please try once more")

    db_session.rollback()  # end this thread's read snapshot; see what the server committed
    ticket = db_session.scalar(sa.select(Ticket).where(Ticket.number == 1001))
    assert ticket.status == Status.SOLVED
    kinds = [
        e.kind for e in db_session.scalars(sa.select(Entry).where(Entry.ticket_id == ticket.id))
    ]
    assert kinds.count(EntryKind.AGENT_REPLY) == 1 and kinds.count(EntryKind.INTERNAL_NOTE) == 2


def test_wrong_password_shows_a_plain_message(page: Page, live_server, agent):
    sign_in(page, live_server, agent.email, "not my password")
    expect(page.get_by_text("don't match an active agent account")).to_be_visible()
    expect(page).to_have_title(re.compile("Sign in"))
