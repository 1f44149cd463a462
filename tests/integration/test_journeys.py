"""Self-service journeys: recorded through the cookie, summarised for the agent, linked to
mail from the same address, purged after the retention period; and the signed "this solved
it" links of acknowledgements (web and email tickets), which work once."""

from __future__ import annotations

import datetime as dt
import email
import re
from email import policy

import sqlalchemy as sa

from mail.inbound import Delivery
from mail.poller import ingest_one
from tests.integration.test_contact_form import form_fields, publish, submit
from tests.support.mailfactory import make_email
from ticketing.db import utcnow
from ticketing.models import (
    Entry,
    EntryKind,
    JourneyEvent,
    JourneyEventKind,
    JourneyOutcome,
    OutboxKind,
    OutboxMessage,
    SelfServiceSession,
    SolvedLink,
    Status,
    Ticket,
)
from ticketing.services import journeys
from web.jobs import JOBS, run_job
from web.mail_runtime import blobs, inbound_settings


def only_ticket(db_session) -> Ticket:
    db_session.rollback()
    [ticket] = db_session.scalars(sa.select(Ticket))
    return ticket


def ack_text(app, db_session) -> str:
    db_session.rollback()
    [row] = db_session.scalars(
        sa.select(OutboxMessage).where(OutboxMessage.kind == OutboxKind.ACKNOWLEDGEMENT)
    )
    msg = email.message_from_bytes(blobs(app).get(row.raw_sha256), policy=policy.default)
    return msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def solved_links(text: str) -> list[str]:
    return re.findall(r"http://127\.0\.0\.1:5000(/contact/solved/[A-Za-z0-9_-]+)", text)


def test_tracking_without_a_cookie_records_nothing(app, db_session):
    from web import selfservice

    with app.test_request_context("/help/articles/1-x"):
        selfservice.track_search("refund", 3)
        selfservice.track_article_view(1)
        selfservice.track_article_read_time(1, 30)
        selfservice.track_vote(1, helpful=False)
        selfservice.track_suggestions("refund", [1, 2])
        assert selfservice.current_journey(create=False) is None
    db_session.rollback()
    assert db_session.scalar(sa.select(sa.func.count(SelfServiceSession.id))) == 0
    assert db_session.scalar(sa.select(sa.func.count(JourneyEvent.id))) == 0


def test_tracking_with_a_cookie_records_on_that_journey(app, client, db_session):
    from web import selfservice

    client.get("/contact")
    cookie = client.get_cookie("handoff_ss")
    headers = {"Cookie": f"handoff_ss={cookie.value}"}
    with app.test_request_context("/help/search", headers=headers):
        selfservice.track_search("card declined", 2)
        selfservice.track_suggestions("card", [3, 4, 5])
        selfservice.track_suggestions("card", [3, 4, 5])  # the same list again: once
        selfservice.track_vote(4, helpful=True)
    db_session.rollback()
    kinds = db_session.scalars(sa.select(JourneyEvent.kind).order_by(JourneyEvent.id)).all()
    assert kinds == [
        JourneyEventKind.SEARCH,
        JourneyEventKind.SUGGESTIONS_SHOWN,
        JourneyEventKind.VOTE,
    ]
    assert db_session.scalar(sa.select(sa.func.count(SelfServiceSession.id))) == 1


def test_cookie_is_http_only_lax_and_opaque(client, db_session):
    response = client.get("/contact")
    cookie = next(
        v for k, v in response.headers.items() if k == "Set-Cookie" and v.startswith("handoff_ss=")
    )
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    db_session.rollback()
    stored = db_session.scalar(sa.select(SelfServiceSession.token_hash))
    assert value not in stored and len(stored) == 64


def test_cookie_is_secure_behind_an_https_base_url(app, client):
    app.config["HANDOFF_BASE_URL"] = "https://help.example.com"
    cookie = next(
        v
        for k, v in client.get("/contact").headers.items()
        if k == "Set-Cookie" and v.startswith("handoff_ss=")
    )
    assert "Secure" in cookie


def test_agent_sees_the_journey_before_the_history(app, client, db_session, agent, login):
    card = publish(db_session, "Update your payment card", "Billing, then add a new card.")
    refund = publish(db_session, "Refunds", "How refunds work.")
    fields = form_fields(client)
    assert client.get("/help/search?q=card+declined").status_code == 200
    client.get(f"/contact/articles/{card.id}")
    client.post(
        f"/contact/articles/{card.id}/read",
        data={"csrf_token": fields["csrf_token"], "seconds": 40},
    )
    client.get(f"/help/articles/{refund.id}-{refund.slug}")
    vote = client.get(f"/help/articles/{refund.id}-{refund.slug}").get_data(as_text=True)
    vote_token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', vote) or re.search(
        r'name="csrf_token" value="([^"]+)"', vote
    )
    client.post(
        f"/help/articles/{refund.id}/vote",
        data={"csrf_token": vote_token.group(1), "helpful": "no"},
    )
    assert submit(client, fields).status_code == 303
    ticket = only_ticket(db_session)

    steps = journeys.summary(db_session, ticket)
    assert "Searched 'card declined' (1 result)" in steps or any(
        s.startswith("Searched 'card declined'") for s in steps
    )
    assert "Read 'Update your payment card' for 40 s" in steps
    assert "Opened 'Refunds'" in steps
    assert "Voted 'Refunds' not helpful" in steps

    login(agent)
    page = client.get(f"/tickets/{ticket.number}").get_data(as_text=True)
    assert "Before writing in" in page
    assert page.index("Before writing in") < page.index('id="history"')
    assert "Read &#39;Update your payment card&#39; for 40 s" in page


def test_ticket_without_a_journey_has_no_card(app, client, db_session, agent, login):
    ingest_one(
        db_session,
        Delivery(raw=make_email(), source="import"),
        settings=inbound_settings(app),
        blobs=blobs(app),
    )
    ticket = only_ticket(db_session)
    login(agent)
    assert "Before writing in" not in client.get(f"/tickets/{ticket.number}").get_data(as_text=True)


def test_email_from_the_address_a_deflected_visitor_gave_links_to_that_journey(
    app, client, db_session
):
    article = publish(db_session, "Card declined at checkout", "Update your card.")
    fields = form_fields(client)
    client.get(f"/contact/articles/{article.id}")
    client.post(
        "/contact/deflect",
        data={
            "csrf_token": fields["csrf_token"],
            "article_id": article.id,
            "email": "Ann@Example.org",
        },
    )
    # The same person writes in by email a little later after all.
    ingest_one(
        db_session,
        Delivery(raw=make_email(sender="Ann <ann@example.org>"), source="import"),
        settings=inbound_settings(app),
        blobs=blobs(app),
    )
    ticket = only_ticket(db_session)
    journey = db_session.scalar(sa.select(SelfServiceSession))
    assert journey.ticket_id == ticket.id
    steps = journeys.summary(db_session, ticket)
    assert "Opened 'Card declined at checkout'" in steps
    # Anyone could have typed Ann's address: the agent is told the match is unverified.
    assert steps[0].startswith("Matched by the email address typed on the help pages")
    assert "not verified" in steps[0]


def test_email_after_the_window_or_from_another_address_is_not_linked(app, client, db_session):
    app.config["HANDOFF_JOURNEY_LINK_WINDOW"] = 60
    fields = form_fields(client)
    client.post("/contact/deflect", data={"csrf_token": fields["csrf_token"], "email": "a@x.org"})
    db_session.rollback()
    journey = db_session.scalar(sa.select(SelfServiceSession))
    journey.last_seen_at = utcnow() - dt.timedelta(minutes=5)
    db_session.commit()
    for sender in ("a@x.org", "b@x.org"):
        ingest_one(
            db_session,
            Delivery(raw=make_email(sender=sender), source="import"),
            settings=inbound_settings(app),
            blobs=blobs(app),
        )
    db_session.rollback()
    assert db_session.scalar(sa.select(SelfServiceSession.ticket_id)) is None


def test_housekeeping_purges_journeys_past_retention(app, client, db_session):
    app.config["HANDOFF_JOURNEY_RETENTION_DAYS"] = 30
    client.get("/contact")
    client.get("/contact")
    fresh = app.test_client()
    fresh.get("/contact")
    db_session.rollback()
    old, new = db_session.scalars(sa.select(SelfServiceSession).order_by(SelfServiceSession.id))
    journeys.record(db_session, old, kind=JourneyEventKind.SEARCH, query="x", now=utcnow())
    old.last_seen_at = utcnow() - dt.timedelta(days=31)
    old_id, new_id = old.id, new.id
    db_session.commit()

    publish(db_session, "Card declined at checkout", "A declined card: update it in Billing.")
    submit(fresh, form_fields(fresh))  # an acknowledgement with a solved link
    db_session.rollback()
    link = db_session.scalar(sa.select(SolvedLink))
    link.expires_at = utcnow() - dt.timedelta(seconds=1)
    db_session.commit()

    [job] = [j for j in JOBS if j.id == "journey-purge"]
    run_job(app, job)
    db_session.rollback()
    assert db_session.scalars(sa.select(SelfServiceSession.id)).all() == [new_id]
    assert (
        db_session.scalar(
            sa.select(sa.func.count(JourneyEvent.id)).where(JourneyEvent.session_id == old_id)
        )
        == 0
    )
    assert db_session.scalar(sa.select(sa.func.count(SolvedLink.id))) == 0


def test_web_acknowledgement_solved_link_solves_the_ticket_once(app, client, db_session):
    publish(db_session, "Card declined at checkout", "A declined card: update it in Billing.")
    publish(db_session, "Update your payment card", "Billing, then add a new card.")
    fields = form_fields(client)
    assert submit(client, fields).status_code == 303
    ticket = only_ticket(db_session)
    links = solved_links(ack_text(app, db_session))
    assert len(links) == 2

    # GET (what a link scanner prefetches) changes nothing; it asks.
    page = client.get(links[0])
    assert page.status_code == 200
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "Did this solve it?" in page.get_data(as_text=True)
    assert only_ticket(db_session).status == Status.NEW

    token = re.search(
        r'name="csrf_token" type="hidden" value="([^"]+)"', page.get_data(as_text=True)
    )
    assert client.post(links[0]).status_code == 400  # no CSRF token: nothing happens
    assert only_ticket(db_session).status == Status.NEW
    done = client.post(links[0], data={"csrf_token": token.group(1)})
    assert done.status_code == 200
    assert "your request is closed" in done.get_data(as_text=True)
    assert only_ticket(db_session).status == Status.SOLVED
    events = db_session.scalars(
        sa.select(Entry.body_text).where(
            Entry.ticket_id == ticket.id, Entry.kind == EntryKind.SYSTEM_EVENT
        )
    ).all()
    assert any(e.startswith("Solved by the customer with article '") for e in events)
    deflections = db_session.scalars(
        sa.select(JourneyEvent).where(JourneyEvent.kind == JourneyEventKind.DEFLECTED)
    ).all()
    assert len(deflections) == 1

    # A second use, of this link or the ticket's other one, is "already done".
    for link in links:
        again = client.post(link, data={"csrf_token": token.group(1)})
        assert "Already done" in again.get_data(as_text=True)
    db_session.rollback()
    assert (
        len(
            db_session.scalars(
                sa.select(JourneyEvent).where(JourneyEvent.kind == JourneyEventKind.DEFLECTED)
            ).all()
        )
        == 1
    )


def test_solved_links_are_hashed_expiring_and_unguessable(app, client, db_session):
    publish(db_session, "Card declined at checkout", "A declined card: update it in Billing.")
    fields = form_fields(client)
    submit(client, fields)
    [link] = solved_links(ack_text(app, db_session))
    token = link.rsplit("/", 1)[1]
    db_session.rollback()
    stored = db_session.scalar(sa.select(SolvedLink))
    assert stored.token_hash != token and token not in stored.token_hash

    tampered = link[:-1] + ("A" if link[-1] != "A" else "B")
    assert client.get(tampered).status_code == 404
    assert client.get("/contact/solved/" + "x" * 500).status_code == 404

    stored.expires_at = utcnow() - dt.timedelta(seconds=1)
    db_session.commit()
    expired = client.get(link)
    assert expired.status_code == 410
    assert "no longer works" in expired.get_data(as_text=True)
    csrf = form_fields(client)["csrf_token"]
    client.post(link, data={"csrf_token": csrf})
    assert only_ticket(db_session).status == Status.NEW


def test_email_ticket_acknowledgement_lists_articles_and_its_link_solves(app, client, db_session):
    publish(db_session, "Card declined at checkout", "A declined card: update it in Billing.")
    ingest_one(
        db_session,
        Delivery(raw=make_email(subject="My card was declined"), source="import"),
        settings=inbound_settings(app),
        blobs=blobs(app),
    )
    text = ack_text(app, db_session)
    assert "Card declined at checkout" in text
    [link] = solved_links(text)
    csrf = form_fields(client)["csrf_token"]
    assert client.post(link, data={"csrf_token": csrf}).status_code == 200
    ticket = only_ticket(db_session)
    assert ticket.status == Status.SOLVED
    # The email ticket had no journey: the deflection got one of its own, tied to the ticket.
    journey = journeys.journey_of(db_session, ticket)
    assert journey is not None and journey.outcome == JourneyOutcome.SUBMITTED
    assert journeys.summary(db_session, ticket) == [
        "Said 'Card declined at checkout' answered the question"
    ]


def test_acknowledgement_without_matching_articles_has_no_list(app, client, db_session):
    fields = form_fields(client)
    submit(client, fields)
    text = ack_text(app, db_session)
    assert "/contact/solved/" not in text and "these articles" not in text


def test_solved_link_tokens_never_reach_the_request_log(app, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="werkzeug"):
        logging.getLogger("werkzeug").info(
            '127.0.0.1 - - "%s /contact/solved/%s HTTP/1.1" 200 -', "GET", "s3cretTOKEN_value"
        )
    assert "s3cretTOKEN_value" not in caplog.text
    assert "/contact/solved/[redacted]" in caplog.text


def test_acknowledgement_leaves_out_articles_the_visitor_already_read(app, client, db_session):
    read = publish(db_session, "Card declined at checkout", "A declined card: update it.")
    publish(db_session, "Why was my card declined?", "Banks decline cards: limits, expiry.")
    fields = form_fields(client)
    client.get(f"/contact/articles/{read.id}")
    submit(client, fields)
    text = ack_text(app, db_session)
    assert "Why was my card declined?" in text
    assert "Card declined at checkout" not in text
    assert len(solved_links(text)) == 1
