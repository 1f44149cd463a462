"""Presence on a ticket ("Sam is replying…"): the heartbeat, expiry, and the reply collision
warning it adds (issue 5, item 3: "another agent … is replying")."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from tests.conftest import TEST_PASSWORD
from tests.integration.test_ticket_actions import (
    agent_replies,
    hidden_value,
    make_ticket,
    page_of,
    reply_form,
)
from ticketing.db import utcnow
from ticketing.models import Activity, TicketPresence
from ticketing.services import presence
from ticketing.services.agents import create_agent

T0 = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def sam(app, db_session):
    created = create_agent(db_session, email="sam@example.com", name="Sam", password=TEST_PASSWORD)
    db_session.commit()
    return created


def rows(db_session) -> list[tuple[int, str]]:
    db_session.expire_all()
    return [
        (row.agent_id, row.activity.value)
        for row in db_session.scalars(sa.select(TicketPresence).order_by(TicketPresence.id))
    ]


# -- the service ---------------------------------------------------------------------------------


def test_touch_keeps_one_row_per_agent_and_ticket_until_it_expires(db_session, agent, sam):
    ticket = make_ticket(db_session)
    presence.touch(db_session, ticket, agent=sam, activity=Activity.VIEWING, now=T0)
    presence.touch(db_session, ticket, agent=sam, activity=Activity.REPLYING, now=T0)
    db_session.commit()
    assert rows(db_session) == [(sam.id, "replying")]

    def replying_at(moment):
        return [a.name for a in presence.replying(db_session, ticket, agent=agent, now=moment)]

    assert replying_at(T0 + presence.TTL - dt.timedelta(seconds=1)) == ["Sam"]
    assert replying_at(T0 + presence.TTL) == []  # expired presence is ignored
    # Nobody is "present" to themselves.
    assert presence.others(db_session, ticket, agent=sam, now=T0) == []

    presence.stop_replying(db_session, ticket, agent=sam)
    assert replying_at(T0) == []
    assert [r.agent.name for r in presence.others(db_session, ticket, agent=agent, now=T0)] == [
        "Sam"
    ]


def test_expired_rows_are_pruned_by_the_next_heartbeat(db_session, agent, sam):
    ticket = make_ticket(db_session)
    other = make_ticket(db_session, subject="Another one")
    presence.touch(db_session, ticket, agent=sam, activity=Activity.REPLYING, now=T0)
    presence.touch(db_session, other, agent=sam, activity=Activity.REPLYING, now=T0)
    later = T0 + presence.TTL + dt.timedelta(minutes=5)
    presence.touch(db_session, ticket, agent=agent, activity=Activity.VIEWING, now=later)
    db_session.commit()
    # Sam's stale row on this ticket is gone; the other ticket is left to its own heartbeats.
    assert sorted(rows(db_session)) == sorted([(sam.id, "replying"), (agent.id, "viewing")])
    assert (
        db_session.scalar(sa.select(sa.func.count()).where(TicketPresence.ticket_id == ticket.id))
        == 1
    )


def test_others_lists_those_replying_first(db_session, agent, sam):
    ticket = make_ticket(db_session)
    zoe = create_agent(db_session, email="zoe@example.com", name="Zoe", password=TEST_PASSWORD)
    presence.touch(db_session, ticket, agent=sam, activity=Activity.VIEWING, now=T0)
    presence.touch(db_session, ticket, agent=zoe, activity=Activity.REPLYING, now=T0)
    db_session.commit()
    found = presence.others(db_session, ticket, agent=agent, now=T0)
    assert [(r.agent.name, r.activity.value) for r in found] == [
        ("Zoe", "replying"),
        ("Sam", "viewing"),
    ]


# -- the heartbeat over HTTP ---------------------------------------------------------------------


def beat(client, number, activity, *, token):
    headers = {"X-CSRFToken": token} if token else {}
    return client.post(f"/tickets/{number}/presence", data={"activity": activity}, headers=headers)


def test_heartbeat_records_presence_and_answers_with_who_else_is_there(
    login, agent, sam, db_session
):
    ticket = make_ticket(db_session)
    presence.touch(db_session, ticket, agent=sam, activity=Activity.REPLYING, now=utcnow())
    db_session.commit()
    client = login(agent)
    page = page_of(client, ticket.number)
    assert "Sam is replying…" in page  # shown on load, before any heartbeat

    token = hidden_value(page, "csrf_token")
    response = beat(client, ticket.number, "replying", token=token)
    assert response.status_code == 200
    assert (
        response.get_data(as_text=True).strip() == '<span class="replying">Sam is replying…</span>'
    )
    assert sorted(rows(db_session)) == sorted([(sam.id, "replying"), (agent.id, "replying")])

    assert beat(client, ticket.number, "viewing", token=token).status_code == 200
    assert (agent.id, "viewing") in rows(db_session)


def test_heartbeat_needs_csrf_a_sign_in_a_real_ticket_and_a_known_activity(
    login, client, agent, db_session
):
    ticket = make_ticket(db_session)
    anonymous = client.post(f"/tickets/{ticket.number}/presence", data={"activity": "viewing"})
    assert anonymous.status_code in (302, 400, 401)
    login(agent)
    token = hidden_value(page_of(client, ticket.number), "csrf_token")
    assert beat(client, ticket.number, "viewing", token=None).status_code == 400
    assert beat(client, ticket.number, "viewing", token="forged").status_code == 400
    assert beat(client, 99999, "viewing", token=token).status_code == 404
    for bad in ["", "typing", "replying' OR 1=1", "x" * 5000]:
        assert beat(client, ticket.number, bad, token=token).status_code == 400
    assert rows(db_session) == []


# -- the collision warning -----------------------------------------------------------------------


def test_a_reply_waits_while_a_colleague_is_replying_until_confirmed(login, agent, sam, db_session):
    ticket = make_ticket(db_session)
    client = login(agent)
    loaded = page_of(client, ticket.number)
    presence.touch(db_session, ticket, agent=sam, activity=Activity.REPLYING, now=utcnow())
    db_session.commit()

    response = client.post(
        f"/tickets/{ticket.number}/messages", data=reply_form(loaded, "My answer")
    )
    assert response.status_code == 409
    warned = response.get_data(as_text=True)
    assert "Sam is writing a reply to this ticket right now." in warned
    assert "My answer</textarea>" in warned
    assert agent_replies(db_session, ticket, agent) == []

    # Notes are never held.
    note = client.post(
        f"/tickets/{ticket.number}/messages",
        data=reply_form(loaded, "FYI", **{"composer-mode": "note"}),
    )
    assert note.status_code == 302

    sent = client.post(
        f"/tickets/{ticket.number}/messages",
        data=reply_form(warned, "My answer", **{"composer-send_anyway": "y"}),
    )
    assert sent.status_code == 302
    assert agent_replies(db_session, ticket, agent) == ["My answer"]


def test_expired_or_viewing_presence_does_not_hold_a_reply(login, agent, sam, db_session):
    ticket = make_ticket(db_session)
    client = login(agent)
    loaded = page_of(client, ticket.number)
    long_ago = utcnow() - presence.TTL - dt.timedelta(seconds=5)
    presence.touch(db_session, ticket, agent=sam, activity=Activity.REPLYING, now=long_ago)
    db_session.commit()
    sent = client.post(f"/tickets/{ticket.number}/messages", data=reply_form(loaded, "One"))
    assert sent.status_code == 302

    presence.touch(db_session, ticket, agent=sam, activity=Activity.VIEWING, now=utcnow())
    db_session.commit()
    loaded = page_of(client, ticket.number)
    assert "Sam is viewing" in loaded
    sent = client.post(f"/tickets/{ticket.number}/messages", data=reply_form(loaded, "Two"))
    assert sent.status_code == 302
    assert agent_replies(db_session, ticket, agent) == ["One", "Two"]


def test_sending_a_reply_ends_the_senders_replying_presence(login, agent, sam, db_session):
    ticket = make_ticket(db_session)
    client = login(agent)
    loaded = page_of(client, ticket.number)
    token = hidden_value(loaded, "csrf_token")
    assert beat(client, ticket.number, "replying", token=token).status_code == 200
    client.post(f"/tickets/{ticket.number}/messages", data=reply_form(loaded, "Done"))
    assert presence.replying(db_session, ticket, agent=sam, now=utcnow()) == []
    assert rows(db_session) == [(agent.id, "viewing")]
