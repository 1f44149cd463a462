"""The contact form in Chromium: live suggestions while typing (debounced), an article opened in
place, "This answers my question" ending the visit with no ticket, the journey of a visitor
who wrote in after all on the agent's ticket page, and the acknowledgement's one-click
"this solved it" link, delivered through the SMTP sink, solving the ticket once; the panel's
place on wide and narrow screens, and the form without JavaScript (a second step)."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from tests.conftest import TEST_PASSWORD
from ticketing.db import utcnow
from ticketing.models import JourneyOutcome, SelfServiceSession, Status, Ticket
from ticketing.services import kb
from web.mail_runtime import send_outbox

pytestmark = pytest.mark.e2e


@pytest.fixture
def articles(db_session):
    made = {}
    for title, body in (
        ("Update your payment card", "If your card was declined, add a new card under Billing."),
        ("Why was my card declined?", "Banks decline cards for many reasons: limits, expiry."),
        ("Refunds", "How refunds work and how long they take."),
    ):
        made[title] = kb.create_article(
            db_session, title=title, body=body, actor=None, now=utcnow(), publish=True
        )
    db_session.commit()
    return made


@pytest.fixture
def smtp(app, smtp_server):
    app.config["HANDOFF_SMTP_URL"] = f"smtp://{smtp_server.host}:{smtp_server.port}"
    return smtp_server


def tickets(db_session) -> list[Ticket]:
    db_session.rollback()
    return list(db_session.scalars(sa.select(Ticket).order_by(Ticket.id)))


def test_typing_shows_suggestions_and_this_answers_my_question_deflects(
    live_server, page: Page, db_session, articles
):
    suggest_calls: list[str] = []
    page.on(
        "request",
        lambda r: suggest_calls.append(r.url) if "/api/v1/articles/suggest" in r.url else None,
    )
    page.goto(f"{live_server}/contact")
    page.get_by_label("Your name").fill("Ann Customer")
    page.get_by_label("Email address").fill("ann@example.org")
    page.get_by_label("Subject").press_sequentially("my card was declined", delay=40)

    panel = page.locator("#suggestions")
    expect(panel).to_be_visible()
    expect(panel.get_by_role("heading")).to_have_text("These articles might answer your question")
    expect(panel.get_by_role("button", name="Update your payment card")).to_be_visible()
    # Debounced: a handful of requests for 20 keystrokes, not one per key.
    assert 1 <= len(suggest_calls) <= 3, suggest_calls

    panel.get_by_role("button", name="Update your payment card").click()
    expect(page.locator("#article-content")).to_contain_text("add a new card under Billing")
    # What was typed is still there.
    expect(page.get_by_label("Subject")).to_have_value("my card was declined")
    page.get_by_role("button", name="This answers my question").click()
    expect(page.get_by_role("heading", name="Glad that helped")).to_be_visible()

    assert tickets(db_session) == []
    journey = db_session.scalar(sa.select(SelfServiceSession))
    assert journey.outcome == JourneyOutcome.DEFLECTED
    assert journey.customer_email == "ann@example.org"


def test_submission_after_reading_two_articles_shows_the_journey_to_the_agent(
    live_server, page: Page, db_session, articles, agent
):
    page.goto(f"{live_server}/contact")
    page.get_by_label("Your name").fill("Ann Customer")
    page.get_by_label("Email address").fill("ann@example.org")
    page.get_by_label("Subject").fill("card declined")
    panel = page.locator("#suggestions")
    for title in ("Update your payment card", "Why was my card declined?"):
        panel.get_by_role("button", name=title).click()
        expect(page.locator("#article-content")).to_contain_text(title)
        page.wait_for_timeout(1100)  # read it for a moment
        page.get_by_role("button", name="Back to suggestions").click()
        expect(panel.get_by_role("button", name=title)).to_be_visible()
    page.get_by_label("How can we help?").fill("Still declined after updating the card.")
    page.get_by_role("button", name="Send my request").click()
    expect(page.get_by_role("heading", name="We've received your request")).to_be_visible()
    [ticket] = tickets(db_session)
    expect(page.locator(".ticket-number")).to_contain_text(f"#{ticket.number}")

    page.goto(f"{live_server}/login")
    page.get_by_label("Email").fill(agent.email)
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"{live_server}/tickets/{ticket.number}")
    card = page.locator(".journey-card")
    expect(card.get_by_role("heading", name="Before writing in")).to_be_visible()
    expect(card).to_contain_text("Saw 2 suggested articles")
    expect(card).to_contain_text(re.compile(r"Read 'Update your payment card' for \d+ s"))
    expect(card).to_contain_text(re.compile(r"Read 'Why was my card declined\?' for \d+ s"))


def test_solved_link_in_the_acknowledgement_solves_the_ticket_once(
    app, live_server, page: Page, db_session, articles, smtp
):
    page.goto(f"{live_server}/contact")
    page.get_by_label("Your name").fill("Bea")
    page.get_by_label("Email address").fill("bea@example.org")
    page.get_by_label("Subject").fill("Refund question")
    page.get_by_label("How can we help?").fill("How long do refunds take?")
    page.get_by_role("button", name="Send my request").click()
    expect(page.get_by_role("heading", name="We've received your request")).to_be_visible()
    page.reload()  # refreshing the confirmation makes no second ticket
    expect(page.get_by_role("heading", name="We've received your request")).to_be_visible()
    assert len(tickets(db_session)) == 1

    db_session.rollback()
    send_outbox(app)
    [ack] = smtp.wait_for(1)
    text = ack.message.get_body(("plain",)).get_content()
    assert "How long do refunds take" not in text  # nothing the submitter wrote
    links = re.findall(rf"{re.escape(live_server)}/contact/solved/[A-Za-z0-9_-]+", text)
    assert links, text

    page.goto(links[0])
    expect(page.get_by_role("heading", name="Did this solve it?")).to_be_visible()
    assert tickets(db_session)[0].status == Status.NEW  # opening the link changes nothing
    page.get_by_role("button", name="Yes, close my request").click()
    expect(page.get_by_role("heading", name="Thanks, your request is closed")).to_be_visible()
    assert tickets(db_session)[0].status == Status.SOLVED

    page.goto(links[0])
    expect(page.get_by_role("heading", name="Already done")).to_be_visible()


def test_suggestions_sit_beside_the_form_when_wide_and_below_it_when_narrow(
    live_server, page: Page, articles
):
    page.goto(f"{live_server}/contact")
    page.get_by_label("Subject").fill("card declined")
    panel = page.locator("#suggestions")
    expect(panel).to_be_visible()
    form = page.locator("#contact-form").bounding_box()
    beside = panel.bounding_box()
    assert form and beside and beside["x"] > form["x"] + form["width"] - 1

    page.set_viewport_size({"width": 375, "height": 800})
    below = panel.bounding_box()
    form = page.locator("#contact-form").bounding_box()
    assert form and below and below["y"] >= form["y"] + form["height"] - 1


def test_without_javascript_the_suggestions_come_on_a_second_step(
    live_server, browser, db_session, articles
):
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(f"{live_server}/contact")
        expect(page.locator("#suggestions")).to_be_hidden()
        page.get_by_label("Your name").fill("Cy")
        page.get_by_label("Email address").fill("cy@example.org")
        page.get_by_label("Subject").fill("My card was declined")
        page.get_by_label("How can we help?").fill("It says declined.")
        page.get_by_role("button", name="Send my request").click()
        expect(page.get_by_role("heading", name="Did one of these answer it?")).to_be_visible()
        expect(page.get_by_role("link", name="Update your payment card")).to_be_visible()
        assert tickets(db_session) == []
        page.get_by_role("button", name="No, send my request").click()
        expect(page.get_by_role("heading", name="We've received your request")).to_be_visible()
        [ticket] = tickets(db_session)
        assert ticket.customer.email == "cy@example.org"
    finally:
        context.close()
