"""The customer portal through its real forms: magic links, the customer's own tickets, replies
(issue 6, item 8 and 9; security.md cases 28, 30, 46, 49, 50, 51, 53)."""

from __future__ import annotations

import datetime as dt
import logging
import re
from email import policy
from email.parser import BytesParser

import pytest
import sqlalchemy as sa

from tests.conftest import csrf_token
from ticketing.db import utcnow
from ticketing.models import (
    Channel,
    Entry,
    EntryKind,
    MagicLink,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Status,
    Ticket,
)
from ticketing.services import conversation, customers, portal
from ticketing.services import outbox as outbox_rules
from ticketing.storage import BlobStore
from web.jobs import JOBS, run_job

SENT_TEXT = "If we have tickets for that address, we sent a link"
LINK = re.compile(r"(https?://[^\s\"<>]+/portal/login/([A-Za-z0-9_\-]+))")


# --- helpers ------------------------------------------------------------------------------------


def make_ticket(db_session, *, email="ann@example.com", subject="Card declined", body="Help"):
    customer = customers.find_or_create(db_session, email=email, name=email.split("@")[0])
    now = utcnow()
    ticket = conversation.open_ticket(
        db_session, customer=customer, subject=subject, channel=Channel.EMAIL, now=now
    )
    conversation.add_customer_message(
        ticket, author=customer, kind=EntryKind.CUSTOMER_EMAIL, body_text=body, now=now
    )
    db_session.commit()
    return ticket


def ask_for_link(client, email, **kwargs):
    page = client.get("/portal", headers=kwargs.get("headers"))
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    response = client.post("/portal", data={"csrf_token": token, "email": email}, **kwargs)
    response.get_data()
    # A server closes the response once it has gone out; the link is queued then.
    response.close()
    return response


def link_rows(db_session) -> list[OutboxMessage]:
    db_session.rollback()  # the links were queued in another transaction, after the response
    return list(
        db_session.scalars(
            sa.select(OutboxMessage)
            .where(OutboxMessage.kind == OutboxKind.MAGIC_LINK)
            .order_by(OutboxMessage.id)
        )
    )


def emailed_link(app, row: OutboxMessage) -> tuple[str, str]:
    """(url, token) from the queued email's bytes, as the customer would receive them."""
    blobs: BlobStore = app.extensions["handoff_blobs"]
    message = BytesParser(policy=policy.default).parsebytes(blobs.get(row.raw_sha256))
    text = message.get_body(preferencelist=("plain",)).get_content()
    match = LINK.search(text)
    assert match, text
    return match.group(1), match.group(2)


def sign_in_with(client, token: str):
    page = client.get(f"/portal/login/{token}")
    assert page.status_code == 200
    form_token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text)
    assert form_token
    return client.post("/portal/login", data={"csrf_token": form_token.group(1), "token": token})


def signed_in_as(app, client, db_session, email="ann@example.com"):
    assert ask_for_link(client, email).status_code == 200
    _, token = emailed_link(app, link_rows(db_session)[-1])
    response = sign_in_with(client, token)
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/portal/tickets")
    return client


# --- asking for a link --------------------------------------------------------------------------


def test_known_and_unknown_addresses_get_the_same_answer(app, client, db_session):
    make_ticket(db_session)

    known = ask_for_link(client, "Ann@Example.com")
    unknown = ask_for_link(client, "nobody@example.com")

    assert known.status_code == unknown.status_code == 200
    assert SENT_TEXT in known.text
    assert known.data == unknown.data
    # Only the known address got mail, built from the configured base URL.
    [row] = link_rows(db_session)
    assert row.recipient == "ann@example.com"
    assert row.status == OutboxStatus.QUEUED
    assert row.is_automatic and row.ticket_id is None
    url, token = emailed_link(app, row)
    assert url.startswith("http://127.0.0.1:5000/portal/login/")
    # Only a hash of the token is kept.
    [link] = db_session.scalars(sa.select(MagicLink)).all()
    assert link.token_hash == portal.hash_token(token) != token
    assert token not in link.token_hash
    assert link.expires_at - link.created_at == dt.timedelta(minutes=30)


def test_a_customer_without_tickets_gets_no_link(app, client, db_session):
    customers.find_or_create(db_session, email="lead@example.com")
    db_session.commit()
    assert SENT_TEXT in ask_for_link(client, "lead@example.com").text
    assert link_rows(db_session) == []


def test_link_is_made_only_after_the_answer_has_gone_out(app, client, db_session):
    """So the answer's timing cannot depend on whether the address is known (case 50): the
    whole answer exists before any lookup, token or email work starts."""
    make_ticket(db_session)
    token = csrf_token(client, "/portal")
    answers = {}
    for email in ("ann@example.com", "nobody@example.com", "ann@example.com"):
        before = len(link_rows(db_session))
        response = client.post("/portal", data={"csrf_token": token, "email": email})
        answers[email] = (response.status_code, response.get_data())
        # The server has the complete answer; nothing has been looked up or queued yet.
        assert len(link_rows(db_session)) == before
        response.close()  # what a WSGI server does once the answer is sent
    assert answers["ann@example.com"] == answers["nobody@example.com"]
    assert [row.recipient for row in link_rows(db_session)] == ["ann@example.com"] * 2
    assert db_session.scalar(sa.select(sa.func.count(MagicLink.id))) == 2


def test_host_headers_never_reach_the_emailed_link(app, client, db_session):
    app.config["HANDOFF_BASE_URL"] = "https://help.example.com"
    make_ticket(db_session)
    response = ask_for_link(
        client,
        "ann@example.com",
        headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"},
    )
    assert response.status_code == 200
    url, _ = emailed_link(app, link_rows(db_session)[0])
    assert url.startswith("https://help.example.com/portal/login/")
    raw = app.extensions["handoff_blobs"].get(link_rows(db_session)[0].raw_sha256)
    assert b"evil.example" not in raw


def test_link_email_is_automatic_mail_that_repeats_nothing_typed(app, client, db_session):
    make_ticket(db_session)
    ask_for_link(client, "ann@example.com")
    [row] = link_rows(db_session)
    raw = app.extensions["handoff_blobs"].get(row.raw_sha256)
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["To"] == "ann@example.com"
    assert message["Subject"] == "Your link to see your tickets"
    assert "Card declined" not in raw.decode()


def test_suppressed_address_gets_no_mail_but_the_same_page(app, client, db_session):
    make_ticket(db_session)
    outbox_rules.suppress(db_session, "ann@example.com", reason="hard bounce", now=utcnow())
    db_session.commit()
    response = ask_for_link(client, "ann@example.com")
    assert response.status_code == 200 and SENT_TEXT in response.text
    [row] = link_rows(db_session)
    assert row.status == OutboxStatus.SUPPRESSED
    assert "suppressed" in row.last_error
    # The undeliverable link does not work either.
    _, token = emailed_link(app, row)
    assert sign_in_with(client, token).status_code == 400


def test_link_requests_are_throttled_per_address_and_per_client(app, client, db_session):
    make_ticket(db_session)
    # Per email address (3 per 15 minutes by default), whichever client asks.
    for i in range(3):
        response = ask_for_link(
            client, "ann@example.com", environ_base={"REMOTE_ADDR": f"10.0.0.{i}"}
        )
        assert response.status_code == 200
    limited = ask_for_link(client, "ANN@example.com", environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert limited.status_code == 429
    assert "Too many attempts" in limited.text
    assert limited.headers.get("Retry-After")
    assert len(link_rows(db_session)) == 3
    # Per client address (5 per minute by default), whatever address is asked for.
    for i in range(5):
        response = ask_for_link(
            client, f"x{i}@example.com", environ_base={"REMOTE_ADDR": "10.1.1.1"}
        )
        assert response.status_code == 200
    limited = ask_for_link(client, "y@example.com", environ_base={"REMOTE_ADDR": "10.1.1.1"})
    assert limited.status_code == 429


def test_link_request_needs_csrf_and_a_valid_address(app, client, db_session):
    make_ticket(db_session)
    assert client.post("/portal", data={"email": "ann@example.com"}).status_code == 400
    token = csrf_token(client, "/portal")
    bad = client.post("/portal", data={"csrf_token": token, "email": "not an address"})
    assert bad.status_code == 400
    assert "Enter an email address" in bad.text
    assert link_rows(db_session) == []


# --- following a link ---------------------------------------------------------------------------


def test_link_signs_in_once_and_shows_only_that_customers_tickets(app, client, db_session):
    mine = make_ticket(db_session, subject="My card was declined")
    theirs = make_ticket(db_session, email="bob@example.com", subject="Bob's refund")
    ask_for_link(client, "ann@example.com")
    _, token = emailed_link(app, link_rows(db_session)[0])

    # The GET only shows a button (link scanners prefetch), and changes nothing.
    page = client.get(f"/portal/login/{token}")
    assert page.status_code == 200 and "Continue" in page.text
    assert page.headers["Referrer-Policy"] == "no-referrer"
    db_session.expire_all()
    assert db_session.scalar(sa.select(MagicLink.used_at)) is None
    assert client.get("/portal/tickets").status_code == 302

    response = sign_in_with(client, token)
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    listing = client.get("/portal/tickets")
    assert listing.status_code == 200
    assert "Access-Control-Allow-Origin" not in listing.headers
    assert "frame-ancestors 'none'" in listing.headers["Content-Security-Policy"]
    assert listing.headers["Referrer-Policy"] == "no-referrer"
    assert "My card was declined" in listing.text and "We&#39;re on it" in listing.text
    assert "Bob" not in listing.text
    # Another customer's ticket is simply not there (404, not 403), nor its parts.
    missing = client.get(f"/portal/tickets/{theirs.number}")
    assert missing.status_code == 404
    assert "Page not found" in missing.text and "Back to your tickets" in missing.text
    assert "inbox" not in missing.text.lower()
    assert client.get(f"/portal/tickets/{mine.number}").status_code == 200
    assert client.get("/portal/tickets/999999").status_code == 404

    # Reuse: the link worked once.
    client.post("/portal/logout", data={"csrf_token": csrf_token(client, "/portal/tickets")})
    again = sign_in_with(client, token)
    assert again.status_code == 400
    assert "This link doesn" in again.text
    assert client.get("/portal/tickets").status_code == 302


def bad_link_pages(app, client, db_session):
    """The neutral page for: reused, expired, tampered, unknown and another purpose's link."""
    make_ticket(db_session)
    pages = []

    def fresh_token() -> str:
        ask_for_link(
            client, "ann@example.com", environ_base={"REMOTE_ADDR": f"10.2.{len(pages)}.1"}
        )
        return emailed_link(app, link_rows(db_session)[-1])[1]

    used = fresh_token()
    assert sign_in_with(client, used).status_code == 302
    client.post("/portal/logout", data={"csrf_token": csrf_token(client, "/portal/tickets")})
    pages.append(("reused", sign_in_with(client, used)))

    expired = fresh_token()
    db_session.execute(
        sa.update(MagicLink)
        .where(MagicLink.token_hash == portal.hash_token(expired))
        .values(expires_at=utcnow() - dt.timedelta(seconds=1))
    )
    db_session.commit()
    pages.append(("expired", sign_in_with(client, expired)))

    good = fresh_token()
    tampered = good[:-1] + ("A" if good[-1] != "A" else "B")
    pages.append(("tampered", sign_in_with(client, tampered)))
    pages.append(("unknown", sign_in_with(client, portal.new_token())))
    pages.append(("garbage", sign_in_with(client, "x")))
    return pages, good


def test_every_bad_link_gets_one_neutral_page(app, client, db_session):
    app.config["HANDOFF_PORTAL_LINK_EMAIL_LIMIT"] = "100/minute"
    pages, good = bad_link_pages(app, client, db_session)
    bodies = {name: (r.status_code, re.sub(r'value="[^"]+"', "", r.text)) for name, r in pages}
    assert len(set(bodies.values())) == 1, bodies
    status, body = next(iter(bodies.values()))
    assert status == 400 and "This link doesn" in body
    assert client.get("/portal/tickets").status_code == 302
    # The tampered link's original still works: a wrong guess burns nothing.
    assert sign_in_with(client, good).status_code == 302


def test_as_link_for_one_customer_never_shows_anothers_tickets(app, client, db_session):
    anns = make_ticket(db_session, email="ann@example.com", subject="Ann's ticket")
    bobs = make_ticket(db_session, email="bob@example.com", subject="Bob's ticket")
    sha = app.extensions["handoff_blobs"].put(b"bob's statement")
    bob_entry = conversation.add_customer_message(
        bobs,
        author=bobs.customer,
        kind=EntryKind.CUSTOMER_WEB,
        body_text="statement",
        now=utcnow(),
        attachments=[conversation.NewAttachment(sha, 15, "text/plain", "s.txt")],
    )
    db_session.commit()
    bob_attachment = bob_entry.attachments[0].id
    signed_in_as(app, client, db_session, "ann@example.com")
    assert client.get(f"/portal/tickets/{bobs.number}").status_code == 404
    for number in (anns.number, bobs.number):
        path = f"/portal/tickets/{number}/attachments/{bob_attachment}/s.txt"
        assert client.get(path).status_code == 404
    response = client.post(
        f"/portal/tickets/{bobs.number}/reply",
        data={"csrf_token": csrf_token(client, "/portal/tickets"), "body": "mine now"},
    )
    assert response.status_code == 404
    db_session.expire_all()
    assert (
        db_session.scalar(sa.select(sa.func.count(Entry.id)).where(Entry.ticket_id == bobs.id)) == 2
    )


def test_sign_in_needs_csrf(app, client, db_session):
    make_ticket(db_session)
    ask_for_link(client, "ann@example.com")
    _, token = emailed_link(app, link_rows(db_session)[0])
    assert client.post("/portal/login", data={"token": token}).status_code == 400
    # A GET of the POST endpoint is not a way round it.
    assert client.get("/portal/login").status_code in (404, 405)
    db_session.expire_all()
    assert db_session.scalar(sa.select(MagicLink.used_at)) is None


def test_tokens_never_reach_the_request_log(app, client, db_session, caplog):
    from web.logs import RedactTokenPath

    make_ticket(db_session)
    ask_for_link(client, "ann@example.com")
    _, token = emailed_link(app, link_rows(db_session)[0])
    # What werkzeug's request handler logs for that GET.
    record = logging.LogRecord(
        "werkzeug",
        logging.INFO,
        __file__,
        1,
        '%s - - [%s] "%s" %s %s',
        ("127.0.0.1", "now", f"GET /portal/login/{token} HTTP/1.1", "200", "-"),
        None,
    )
    with caplog.at_level(logging.INFO, logger="werkzeug"):
        logging.getLogger("werkzeug").handle(record)
        sign_in_with(client, token)
    assert any(
        isinstance(f, RedactTokenPath) and f.prefix == "/portal/login/"
        for f in logging.getLogger("werkzeug").filters
    )
    # gunicorn's access log formats from a dict of atoms.
    access = logging.LogRecord(
        "gunicorn.access",
        logging.INFO,
        __file__,
        1,
        '%(h)s "%(r)s"',
        ({"h": "10.0.0.1", "r": f"GET /portal/login/{token}?x=1 HTTP/1.1"},),
        None,
    )
    RedactTokenPath("/portal/login/").filter(access)
    assert access.getMessage() == '10.0.0.1 "GET /portal/login/[redacted]?x=1 HTTP/1.1"'
    assert "/portal/login/[redacted]" in caplog.text
    assert token not in caplog.text


# --- sessions: customers and agents stay apart --------------------------------------------------


def test_an_agent_session_is_not_a_customer_session_nor_the_reverse(
    app, client, db_session, agent, login
):
    make_ticket(db_session)
    login(agent)
    assert client.get("/portal/tickets").status_code == 302
    client.post("/logout", data={"csrf_token": csrf_token(client, "/tickets")})

    fresh = app.test_client()
    signed_in_as(app, fresh, db_session)
    assert fresh.get("/portal/tickets").status_code == 200
    agent_page = fresh.get("/tickets")
    assert agent_page.status_code == 302 and "/login" in agent_page.headers["Location"]


def test_a_portal_session_expires(app, client, db_session):
    make_ticket(db_session)
    app.config["HANDOFF_PORTAL_SESSION_TTL"] = 0
    signed_in_as(app, client, db_session)
    assert client.get("/portal/tickets").status_code == 302


def test_log_out_ends_the_portal_session(app, client, db_session):
    make_ticket(db_session)
    signed_in_as(app, client, db_session)
    assert client.post("/portal/logout", data={}).status_code == 400  # no CSRF token
    token = csrf_token(client, "/portal/tickets")
    response = client.post("/portal/logout", data={"csrf_token": token})
    assert response.status_code == 302
    assert client.get("/portal/tickets").status_code == 302


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example",
        "//evil.example",
        "/\\evil.example",
        "javascript:alert(1)",
        "%2F%2Fevil.example",
    ],
)
def test_no_redirect_goes_anywhere_a_request_names(app, client, db_session, target):
    make_ticket(db_session)
    assert ask_for_link(client, "ann@example.com").status_code == 200
    _, token = emailed_link(app, link_rows(db_session)[0])
    page = client.get(f"/portal/login/{token}?next={target}")
    form_token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    response = client.post(
        f"/portal/login?next={target}",
        data={"csrf_token": form_token, "token": token, "next": target},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/portal/tickets"
    anonymous = app.test_client().get(f"/portal/tickets?next={target}")
    assert anonymous.headers["Location"] == "/portal"


# --- the conversation and replies ---------------------------------------------------------------


def test_the_conversation_shows_public_entries_only(app, client, db_session, agent):
    ticket = make_ticket(db_session, body="My card was declined twice.")
    now = utcnow()
    conversation.add_note(ticket, actor=agent, body_text="SECRET NOTE: check fraud", now=now)
    conversation.reply(ticket, actor=agent, body_text="Please try again now.", now=now)
    conversation.record_event(ticket, text="Assigned to Dana", now=now, actor=agent)
    db_session.commit()

    signed_in_as(app, client, db_session)
    listing = client.get("/portal/tickets")
    assert "Waiting for you" in listing.text
    page = client.get(f"/portal/tickets/{ticket.number}")
    assert page.status_code == 200
    assert "My card was declined twice." in page.text
    assert "Please try again now." in page.text and "Dana" in page.text
    assert "SECRET NOTE" not in page.text
    assert "Assigned to Dana" not in page.text
    assert "Status changed" not in page.text


def test_attachments_of_public_entries_only(app, client, db_session, agent):
    blobs: BlobStore = app.extensions["handoff_blobs"]
    ticket = make_ticket(db_session)
    public_sha = blobs.put(b"receipt bytes")
    secret_sha = blobs.put(b"internal bytes")
    now = utcnow()
    conversation.reply(
        ticket,
        actor=agent,
        body_text="Here is the receipt.",
        now=now,
        attachments=[conversation.NewAttachment(public_sha, 13, "application/pdf", "receipt.pdf")],
    )
    note = conversation.add_note(
        ticket,
        actor=agent,
        body_text="internal",
        now=now,
        attachments=[conversation.NewAttachment(secret_sha, 14, "text/plain", "fraud.txt")],
    )
    db_session.commit()
    secret_id = note.attachments[0].id

    signed_in_as(app, client, db_session)
    page = client.get(f"/portal/tickets/{ticket.number}")
    assert "receipt.pdf" in page.text and "fraud.txt" not in page.text
    href = re.search(r'href="(/portal/tickets/\d+/attachments/\d+/receipt.pdf)"', page.text).group(
        1
    )
    download = client.get(href)
    assert download.status_code == 200 and download.data == b"receipt bytes"
    assert download.headers["Content-Disposition"].startswith("attachment")
    hidden = client.get(f"/portal/tickets/{ticket.number}/attachments/{secret_id}/fraud.txt")
    assert hidden.status_code == 404


def test_a_portal_reply_lands_in_the_ticket_and_reopens_it(app, client, db_session, agent):
    ticket = make_ticket(db_session)
    conversation.reply(ticket, actor=agent, body_text="Fixed?", now=utcnow(), status=Status.SOLVED)
    db_session.commit()
    signed_in_as(app, client, db_session)

    token = csrf_token(client, f"/portal/tickets/{ticket.number}")
    body = "Still declined <script>alert(1)</script> — ünïcode"
    response = client.post(
        f"/portal/tickets/{ticket.number}/reply",
        data={
            "csrf_token": token,
            "body": body,
            # Mass assignment: extra fields are ignored (security.md case 30).
            "customer_id": "999",
            "status": "closed",
            "kind": "internal_note",
        },
    )
    assert response.status_code == 302
    db_session.expire_all()
    entry = db_session.scalars(sa.select(Entry).order_by(Entry.id.desc())).first()
    assert entry.kind == EntryKind.CUSTOMER_WEB
    assert entry.ticket_id == ticket.id
    assert entry.author_customer.email == "ann@example.com"
    assert entry.body_text == body
    assert db_session.get(Ticket, ticket.id).status == Status.OPEN
    page = client.get(f"/portal/tickets/{ticket.number}")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "<script>alert(1)" not in page.text


def test_a_reply_to_a_closed_ticket_opens_a_follow_up(app, client, db_session, agent):
    ticket = make_ticket(db_session)
    conversation.set_status(ticket, Status.CLOSED, actor=agent, now=utcnow())
    db_session.commit()
    signed_in_as(app, client, db_session)
    token = csrf_token(client, f"/portal/tickets/{ticket.number}")
    response = client.post(
        f"/portal/tickets/{ticket.number}/reply", data={"csrf_token": token, "body": "Again"}
    )
    assert response.status_code == 302
    db_session.expire_all()
    follow_up = db_session.scalar(sa.select(Ticket).where(Ticket.follows_up_id == ticket.id))
    assert follow_up is not None and follow_up.channel == Channel.WEB
    assert f"/portal/tickets/{follow_up.number}" in response.headers["Location"]
    assert db_session.get(Ticket, ticket.id).status == Status.CLOSED


def test_a_reply_needs_csrf_and_text(app, client, db_session):
    ticket = make_ticket(db_session)
    signed_in_as(app, client, db_session)
    path = f"/portal/tickets/{ticket.number}/reply"
    assert client.post(path, data={"body": "no token"}).status_code == 400
    assert client.get(path).status_code == 405
    # A token from another browser's session is no good either.
    other = app.test_client()
    foreign = csrf_token(other, "/portal")
    assert client.post(path, data={"csrf_token": foreign, "body": "forged"}).status_code == 400
    cross_origin = client.post(path, data={"body": "x"}, headers={"Origin": "https://evil.example"})
    assert cross_origin.status_code == 400
    assert "Access-Control-Allow-Origin" not in cross_origin.headers
    token = csrf_token(client, f"/portal/tickets/{ticket.number}")
    empty = client.post(path, data={"csrf_token": token, "body": "   "})
    assert empty.status_code == 400 and "Write a message first" in empty.text
    db_session.expire_all()
    assert (
        db_session.scalar(sa.select(sa.func.count(Entry.id)).where(Entry.ticket_id == ticket.id))
        == 1
    )


def test_hostile_strings_are_stored_and_shown_exactly(app, client, db_session):
    ticket = make_ticket(db_session)
    signed_in_as(app, client, db_session)
    strings = [
        "{{7*7}}",
        "' OR '1'='1",
        "\u202etxt.exe",
        "😀" * 50,
        "%s%s%n",
        "<img src=x onerror=alert(1)>",
    ]
    for text in strings:
        token = csrf_token(client, f"/portal/tickets/{ticket.number}")
        response = client.post(
            f"/portal/tickets/{ticket.number}/reply", data={"csrf_token": token, "body": text}
        )
        assert response.status_code == 302, text
    db_session.expire_all()
    stored = db_session.scalars(
        sa.select(Entry.body_text).where(Entry.ticket_id == ticket.id).order_by(Entry.id)
    ).all()[1:]
    assert stored == strings
    page = client.get(f"/portal/tickets/{ticket.number}").text
    assert "{{7*7}}" in page and "<img src=x" not in page
    # And as an address to send a link to.
    anonymous = app.test_client()
    for i, text in enumerate(strings):
        response = ask_for_link(anonymous, text, environ_base={"REMOTE_ADDR": f"10.9.9.{i}"})
        assert response.status_code in (200, 400), text


def test_expired_links_are_purged(app, db_session):
    ticket = make_ticket(db_session)
    now = utcnow()
    portal.issue_link(
        db_session,
        customer=ticket.customer,
        now=now - dt.timedelta(days=3),
        ttl=dt.timedelta(minutes=30),
    )
    portal.issue_link(db_session, customer=ticket.customer, now=now, ttl=dt.timedelta(minutes=30))
    db_session.commit()
    # The housekeeping job removes links a day after they expired.
    [job] = [j for j in JOBS if j.id == "magic-link-purge"]
    run_job(app, job)
    db_session.rollback()
    assert db_session.scalar(sa.select(sa.func.count(MagicLink.id))) == 1
    assert portal.purge_links(db_session, now=now, keep=dt.timedelta(days=1)) == 0


def test_a_merged_ticket_leads_to_the_one_it_joined(app, client, db_session, agent):
    from ticketing.services import actions

    first = make_ticket(db_session, subject="Card declined")
    second = make_ticket(db_session, subject="Card declined again")
    actions.merge(db_session, second, into=first.number, actor=agent, now=utcnow())
    db_session.commit()
    signed_in_as(app, client, db_session)
    listing = client.get("/portal/tickets").text
    assert f"#{first.number}" in listing and f"#{second.number}" not in listing
    response = client.get(f"/portal/tickets/{second.number}")
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/portal/tickets/{first.number}")
    # A reply through the old number lands on the ticket it joined.
    token = csrf_token(client, f"/portal/tickets/{first.number}")
    client.post(
        f"/portal/tickets/{second.number}/reply", data={"csrf_token": token, "body": "Any news?"}
    )
    db_session.rollback()
    entry = db_session.scalars(sa.select(Entry).order_by(Entry.id.desc())).first()
    assert entry.body_text == "Any news?" and entry.ticket_id == first.id
