"""The first agent UI: inbox views, the ticket page, replies, notes, status and assignment."""

import datetime as dt

import sqlalchemy as sa

from tests.conftest import csrf_token
from ticketing.models import Channel, EntryKind, Status
from ticketing.services import conversation, customers
from ticketing.storage import BlobStore

NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)
XSS = '"><img src=x onerror=window.__pwned=1>{{7*7}}'


def make_ticket(db_session, *, subject="Card declined", body="My card was declined.", at=NOW):
    customer = customers.find_or_create(db_session, email="ann@example.com", name="Ann")
    ticket = conversation.open_ticket(
        db_session, customer=customer, subject=subject, channel=Channel.EMAIL, now=at
    )
    conversation.add_customer_message(
        ticket, author=customer, kind=EntryKind.CUSTOMER_EMAIL, body_text=body, now=at
    )
    db_session.commit()
    return ticket


def test_signed_out_visitors_are_sent_to_login(client):
    response = client.get("/tickets/1001")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


def test_inbox_lists_open_tickets_with_counts(login, agent, db_session):
    make_ticket(db_session, subject="Card declined")
    solved = make_ticket(db_session, subject="Old question")
    conversation.set_status(solved, Status.SOLVED, actor=agent, now=NOW)
    db_session.commit()
    client = login(agent)
    html = client.get("/tickets?view=open").get_data(as_text=True)
    assert "Card declined" in html and "Old question" not in html
    solved_html = client.get("/tickets?view=solved").get_data(as_text=True)
    assert "Old question" in solved_html and "Card declined" not in solved_html


def test_unknown_view_and_bad_cursor_do_not_error(login, agent, db_session):
    make_ticket(db_session)
    client = login(agent)
    assert client.get("/tickets?view=customer__password_hash").status_code == 200
    assert client.get("/tickets?after=%27%20OR%201=1--").status_code == 400


def test_inbox_pages_with_a_keyset_cursor(login, agent, db_session):
    for i in range(55):
        make_ticket(db_session, subject=f"Question {i:02d}", at=NOW + dt.timedelta(minutes=i))
    client = login(agent)
    first = client.get("/tickets?view=all").get_data(as_text=True)
    assert "Question 54" in first and "Question 04" not in first
    cursor = first.split("after=")[1].split('"')[0]
    second = client.get(f"/tickets?view=all&after={cursor}").get_data(as_text=True)
    assert "Question 04" in second and "Question 54" not in second


def test_ticket_page_shows_the_history(login, agent, db_session):
    ticket = make_ticket(db_session)
    conversation.add_note(ticket, actor=agent, body_text="Checking with billing.", now=NOW)
    db_session.commit()
    html = login(agent).get(f"/tickets/{ticket.number}").get_data(as_text=True)
    assert "My card was declined." in html
    assert "Checking with billing." in html and "entry-internal_note" in html


def test_missing_ticket_is_a_plain_404(login, agent):
    response = login(agent).get("/tickets/999999")
    assert response.status_code == 404
    assert "Page not found" in response.get_data(as_text=True)


def test_agent_replies_and_the_ticket_becomes_pending(login, agent, db_session):
    ticket = make_ticket(db_session)
    client = login(agent)
    page = f"/tickets/{ticket.number}"
    response = client.post(
        f"{page}/messages",
        data={
            "csrf_token": csrf_token(client, page),
            "composer-mode": "reply",
            "composer-body": "Please try again now.",
            "composer-status": "pending",
        },
    )
    assert response.status_code == 302
    db_session.expire_all()
    entries = list(db_session.scalars(ticket.entries.select()))
    assert entries[-1].kind == EntryKind.AGENT_REPLY
    assert entries[-1].author_agent_id == agent.id
    assert ticket.status == Status.PENDING and ticket.first_response_at is not None


def test_reply_without_csrf_token_changes_nothing(login, agent, db_session):
    ticket = make_ticket(db_session)
    response = login(agent).post(
        f"/tickets/{ticket.number}/messages",
        data={"composer-mode": "reply", "composer-body": "x", "composer-status": "pending"},
    )
    assert response.status_code == 400
    count = db_session.scalar(
        sa.select(sa.func.count()).select_from(ticket.entries.select().subquery())
    )
    assert count == 1


def test_note_status_and_assignment_are_recorded(login, agent, db_session):
    ticket = make_ticket(db_session)
    client = login(agent)
    page = f"/tickets/{ticket.number}"
    token = csrf_token(client, page)
    client.post(
        f"{page}/messages",
        data={"csrf_token": token, "composer-mode": "note", "composer-body": "Internal only"},
    )
    client.post(f"{page}/status", data={"csrf_token": token, "status-status": "solved"})
    client.post(f"{page}/assignee", data={"csrf_token": token, "assign-assignee": str(agent.id)})
    client.post(f"{page}/status", data={"csrf_token": token, "status-status": "nonsense"})
    db_session.expire_all()
    kinds = [e.kind for e in db_session.scalars(ticket.entries.select())]
    assert EntryKind.INTERNAL_NOTE in kinds
    assert ticket.status == Status.SOLVED
    assert ticket.assignee_id == agent.id
    assert kinds.count(EntryKind.SYSTEM_EVENT) == 2


def test_hostile_text_is_escaped_everywhere(login, agent, db_session):
    ticket = make_ticket(db_session, subject=XSS, body=XSS)
    conversation.add_note(ticket, actor=agent, body_text=XSS, now=NOW)
    db_session.commit()
    client = login(agent)
    for path in ("/tickets?view=open", f"/tickets/{ticket.number}"):
        html = client.get(path).get_data(as_text=True)
        assert "<img src=x" not in html
        assert "&lt;img src=x onerror" in html
        assert "{{7*7}}" in html and ">49<" not in html


def test_attachments_download_as_files_never_rendered(login, agent, db_session, app):
    ticket = make_ticket(db_session)
    blobs: BlobStore = app.extensions["handoff_blobs"]
    payload = b"<html><script>window.__pwned=1</script></html>"
    sha = blobs.put(payload)
    conversation.add_note(
        ticket,
        actor=agent,
        body_text="see file",
        now=NOW,
        attachments=[conversation.NewAttachment(sha, len(payload), "text/html", "invoice.html")],
    )
    db_session.commit()
    client = login(agent)
    html = client.get(f"/tickets/{ticket.number}").get_data(as_text=True)
    link = html.split('href="/attachments/')[1].split('"')[0]
    response = client.get(f"/attachments/{link}")
    assert response.status_code == 200
    assert response.data == payload
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert "sandbox" in response.headers["Content-Security-Policy"]
    assert client.get("/attachments/999999/x.txt").status_code == 404
