"""The agent workspace from the keyboard and with htmx, in a real browser: j/k/Enter through
the inbox, / and ?, r/n/a/s on a ticket, filters that swap the list in place, and a
colleague's "is replying…" that holds a reply until it is confirmed."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.conftest import TEST_PASSWORD
from tests.support.browser import DEFAULT_TIMEOUT_MS, VIEWPORT
from ticketing.db import utcnow
from ticketing.models import Entry, EntryKind, Status, Ticket
from ticketing.services import demo
from ticketing.services.agents import create_agent

pytestmark = pytest.mark.e2e


@pytest.fixture
def seeded(app, db_session, agent):
    demo.seed(db_session, admin_password="demo password 123", now=utcnow())
    db_session.commit()


def sign_in(page: Page, base_url: str, email: str, password: str = TEST_PASSWORD) -> None:
    page.goto(f"{base_url}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_title(re.compile("All open"))
    scripts_ready(page)


def scripts_ready(page: Page) -> None:
    """Wait for the deferred scripts: keyboard.js reveals this button when it runs."""
    expect(page.get_by_role("button", name="Keyboard shortcuts")).to_be_visible()


def ticket(db_session, number: int) -> Ticket:
    db_session.rollback()  # end this thread's read snapshot; see what the server committed
    found = db_session.scalar(sa.select(Ticket).where(Ticket.number == number))
    assert found is not None
    return found


def row_numbers(page: Page) -> list[str]:
    return page.locator("table.tickets tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.ticketNumber)"
    )


def selected(page: Page) -> str | None:
    rows = page.locator('table.tickets tbody tr[aria-current="true"]')
    expect(rows).to_have_count(1)
    return rows.get_attribute("data-ticket-number")


def test_j_and_k_move_through_the_inbox_and_enter_opens(page: Page, live_server, seeded, agent):
    sign_in(page, live_server, agent.email)
    numbers = row_numbers(page)
    assert len(numbers) >= 3
    expect(page.locator('tr[aria-current="true"]')).to_have_count(0)

    page.keyboard.press("j")
    assert selected(page) == numbers[0]
    expect(page.locator(f'tr[data-ticket-number="{numbers[0]}"]')).to_have_class(
        re.compile("selected")
    )
    page.keyboard.press("j")
    page.keyboard.press("j")
    assert selected(page) == numbers[2]
    page.keyboard.press("k")
    assert selected(page) == numbers[1]
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{live_server}/tickets/{numbers[1]}")

    page.go_back()
    expect(page).to_have_title(re.compile("All open"))
    scripts_ready(page)
    page.keyboard.press("j")
    page.keyboard.press("o")
    expect(page).to_have_url(f"{live_server}/tickets/{numbers[0]}")


def test_slash_focuses_search_and_question_mark_shows_the_shortcuts(
    page: Page, live_server, seeded, agent
):
    sign_in(page, live_server, agent.email)
    page.keyboard.press("/")
    search = page.get_by_label("Search tickets")
    expect(search).to_be_focused()
    # Typing in a field is typing: "j" and "k" go into the box and select nothing.
    page.keyboard.type("jk")
    expect(search).to_have_value("jk")
    expect(page.locator('tr[aria-current="true"]')).to_have_count(0)
    # Modifier keys are the browser's, not ours.
    search.press("Escape")
    page.locator("h1").click()
    page.keyboard.press("Control+j")
    expect(page.locator('tr[aria-current="true"]')).to_have_count(0)

    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Assign the ticket to me")
    page.keyboard.press("j")  # no shortcuts behind an open dialog
    expect(page.locator('tr[aria-current="true"]')).to_have_count(0)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.get_by_role("button", name="Keyboard shortcuts").click()
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()

    # On a ticket, / goes to the search box in the top bar, which searches every ticket.
    page.goto(f"{live_server}/tickets/1002")
    scripts_ready(page)
    page.keyboard.press("/")
    expect(page.get_by_label("Search all tickets")).to_be_focused()
    page.keyboard.type("invoices")
    page.keyboard.press("Enter")
    expect(page).to_have_title(re.compile("Search: invoices"))
    expect(page.locator("table.tickets")).to_contain_text("How do I export my invoices?")


def test_note_assign_and_solve_from_the_keyboard(
    page: Page, live_server, seeded, agent, db_session
):
    sign_in(page, live_server, agent.email)
    page.goto(f"{live_server}/tickets/1002")
    scripts_ready(page)
    page.evaluate("window.sameDocument = true")

    page.keyboard.press("n")
    message = page.get_by_label("Message")
    expect(message).to_be_focused()
    expect(page.get_by_label("Type")).to_have_value("note")
    # Letters typed in the composer stay there: "j", "a", "s" trigger nothing.
    page.keyboard.type("Checked: just a duplicate invoice run, see logs.")
    expect(message).to_have_value("Checked: just a duplicate invoice run, see logs.")
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator(".entry-internal_note").last).to_contain_text("duplicate invoice run")
    t = ticket(db_session, 1002)
    assert t.assignee_id is None and t.status != Status.SOLVED
    notes = db_session.scalars(
        sa.select(Entry).where(Entry.ticket_id == t.id, Entry.kind == EntryKind.INTERNAL_NOTE)
    ).all()
    assert [n.body_text for n in notes] == ["Checked: just a duplicate invoice run, see logs."]

    scripts_ready(page)
    page.keyboard.press("r")
    expect(page.get_by_label("Type")).to_have_value("reply")
    expect(message).to_be_focused()
    message.press("Escape")
    page.locator("h1").click()  # leave the composer: shortcuts are back

    # a and s submit the sidebar's own forms; htmx swaps the sidebar and history in place.
    page.evaluate("window.sameDocument = true")
    page.keyboard.press("a")
    expect(page.locator(".flashes")).to_contain_text("Assigned to Dana")
    expect(page.get_by_label("Assignee")).to_have_value(str(agent.id))
    expect(page.locator(".history")).to_contain_text("Dana")
    assert ticket(db_session, 1002).assignee_id == agent.id

    page.keyboard.press("s")
    expect(page.locator(".flashes")).to_contain_text("Status set to solved")
    expect(page.locator("#ticket-sidebar dd .status")).to_have_text("solved")
    assert ticket(db_session, 1002).status == Status.SOLVED
    assert page.evaluate("window.sameDocument") is True  # no full page load


def test_filters_and_paging_swap_the_list_in_place_and_update_the_url(
    page: Page, live_server, seeded, agent
):
    sign_in(page, live_server, agent.email)
    page.evaluate("window.sameDocument = true")
    page.get_by_label("Channel").select_option("email")
    expect(page).to_have_url(re.compile(r"channel=email"))
    table = page.locator("table.tickets")
    expect(table).to_contain_text("Card declined when renewing")
    expect(table).not_to_contain_text("How do I export my invoices?")  # a web form ticket
    assert page.evaluate("window.sameDocument") is True
    expect(page.get_by_label("Channel")).to_have_value("email")

    page.get_by_role("navigation", name="Views").get_by_role(
        "link", name=re.compile("Solved")
    ).click()
    expect(page).to_have_url(re.compile(r"view=solved"))
    expect(page).to_have_title(re.compile("Solved"))
    expect(page.locator("#list-title")).to_have_text("Solved")
    assert page.evaluate("window.sameDocument") is True

    # j/k work on the swapped-in list too; Back restores the earlier list.
    page.get_by_role("navigation", name="Views").get_by_role(
        "link", name=re.compile("All open")
    ).click()
    expect(page.locator("#list-title")).to_have_text("All open")
    page.locator("h1").click()
    page.keyboard.press("j")
    expect(page.locator('tr[aria-current="true"]')).to_have_count(1)
    page.go_back()
    expect(page).to_have_url(re.compile(r"view=solved"))
    expect(page.locator("#list-title")).to_have_text("Solved")


@pytest.fixture
def second_context(browser: Browser) -> Iterator[BrowserContext]:
    """Another agent's browser (its own cookies), kept to loopback like the first one."""
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    context.route(re.compile(r"^(?!http://127\.0\.0\.1[:/]).*"), lambda route: route.abort())
    yield context
    context.close()


def test_a_colleague_writing_a_reply_holds_mine_until_i_confirm(
    page: Page, live_server, seeded, agent, db_session, second_context
):
    create_agent(db_session, email="sam@example.com", name="Sam", password=TEST_PASSWORD)
    db_session.commit()

    # Sam opens #1003 and starts writing a reply: the heartbeat says "replying".
    sam = second_context.new_page()
    sign_in(sam, live_server, "sam@example.com")
    sam.goto(f"{live_server}/tickets/1003")
    with sam.expect_response(re.compile(r"/tickets/1003/presence$")) as beat:
        sam.get_by_label("Message").fill("Looking into the mail logs now…")
    assert beat.value.ok

    # Dana opens it and sees Sam at work; her reply is held, her text kept.
    sign_in(page, live_server, agent.email)
    page.goto(f"{live_server}/tickets/1003")
    expect(page.locator("#presence")).to_have_text("Sam is replying…")
    page.get_by_label("Message").fill("I have re-sent the link once more.")
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("Sam is writing a reply to this ticket")
    expect(page.get_by_label("Message")).to_have_value("I have re-sent the link once more.")
    assert ticket(db_session, 1003).status == Status.PENDING
    replies = db_session.scalar(
        sa.select(sa.func.count(Entry.id)).where(
            Entry.ticket_id == ticket(db_session, 1003).id, Entry.kind == EntryKind.AGENT_REPLY
        )
    )
    assert replies == 1  # only the demo's earlier reply

    # Dana keeps writing on the warning page (her heartbeat says so); Sam sees her too: his
    # next heartbeat answers with her presence.
    with page.expect_response(re.compile(r"/tickets/1003/presence$")):
        page.get_by_label("Message").press_sequentially(" Sorry!")
    with sam.expect_response(re.compile(r"/tickets/1003/presence$")):
        sam.get_by_label("Message").fill("")
    expect(sam.locator("#presence")).to_contain_text("Dana is")

    page.get_by_label("Send anyway").check()
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator(".entry-agent_reply").last).to_contain_text("re-sent the link once more")
