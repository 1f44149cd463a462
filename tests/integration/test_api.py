"""The agent JSON API (`/api/v1`): bearer tokens only, the export's shapes, whitelisted input,
JSON errors that name nothing but what was asked for, and an OpenAPI document that matches the
real routes."""

import datetime as dt
import json
import re

import pytest
import sqlalchemy as sa

from ticketing.models import (
    Agent,
    ApiToken,
    Channel,
    Entry,
    EntryKind,
    OutboxMessage,
    OutboxStatus,
    Priority,
    Status,
    Ticket,
)
from ticketing.services import actions, api_tokens, conversation, customers
from ticketing.services.agents import create_agent, deactivate_agent
from ticketing.services.export import iter_ticket_records

NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)
SECRET_SUBJECT = "Secret merger plans of Zeta Corp"
SECRET_EMAIL = "zed@zeta.example"


def make_ticket(
    db_session,
    *,
    subject="Card declined",
    body="My card was declined.",
    email="ann@example.com",
    name="Ann",
    at=NOW,
):
    customer = customers.find_or_create(db_session, email=email, name=name)
    ticket = conversation.open_ticket(
        db_session, customer=customer, subject=subject, channel=Channel.EMAIL, now=at
    )
    conversation.add_customer_message(
        ticket, author=customer, kind=EntryKind.CUSTOMER_EMAIL, body_text=body, now=at
    )
    db_session.commit()
    return ticket


@pytest.fixture
def token(db_session, agent) -> str:
    _, plaintext = api_tokens.create_token(db_session, agent, name="tests", now=NOW)
    db_session.commit()
    return plaintext


@pytest.fixture
def api(client, token):
    """The test client with the agent's bearer token on every request."""

    class Api:
        headers = {"Authorization": f"Bearer {token}"}

        def get(self, path, **kw):
            return client.get(path, headers=self.headers, **kw)

        def post(self, path, payload=None, **kw):
            return client.post(path, headers=self.headers, json=payload, **kw)

        def patch(self, path, payload=None, **kw):
            return client.patch(path, headers=self.headers, json=payload, **kw)

        def raw(self, method, path, data, content_type="application/json"):
            return client.open(
                path, method=method, headers=self.headers, data=data, content_type=content_type
            )

    return Api()


@pytest.fixture
def secret_ticket(db_session):
    """Another customer's ticket whose details must never appear in an error."""
    return make_ticket(
        db_session, subject=SECRET_SUBJECT, body="Top secret body.", email=SECRET_EMAIL, name="Zed"
    )


def error_of(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["status"] == status
    assert body["error"]["message"]
    return body["error"]["message"]


def refresh(db_session, ticket) -> Ticket:
    db_session.expire_all()
    return db_session.get(Ticket, ticket.id)


def entries_of(db_session, ticket) -> list[Entry]:
    db_session.expire_all()
    return list(
        db_session.scalars(sa.select(Entry).where(Entry.ticket_id == ticket.id).order_by(Entry.id))
    )


# -- authentication ------------------------------------------------------------------------------


def test_requests_without_a_token_get_a_401_bearer_challenge(client):
    response = client.get("/api/v1/tickets")
    message = error_of(response, 401)
    assert "Bearer" in message
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    assert "invalid_token" not in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize(
    "header",
    [
        "Bearer hof_not-a-real-token",
        "Bearer ",
        "Basic ZGFuYTpwYXNzd29yZA==",
        "hof_without_a_scheme",
        "Bearer hof_" + "x" * 5000,
    ],
)
def test_bad_tokens_get_a_401(client, header, token):
    response = client.get("/api/v1/tickets", headers={"Authorization": header})
    error_of(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_revoked_token_gets_a_401(client, db_session, token):
    row = db_session.scalar(sa.select(ApiToken))
    api_tokens.revoke_token(db_session, row.id, now=NOW)
    db_session.commit()
    response = client.get("/api/v1/tickets", headers={"Authorization": f"Bearer {token}"})
    error_of(response, 401)
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_a_deactivated_agents_token_gets_a_401(client, db_session, agent, token):
    deactivate_agent(db_session, agent)
    db_session.commit()
    response = client.get("/api/v1/tickets", headers={"Authorization": f"Bearer {token}"})
    error_of(response, 401)


def test_the_scheme_name_is_case_insensitive(client, token):
    response = client.get("/api/v1/tickets", headers={"Authorization": f"bearer {token}"})
    assert response.status_code == 200


def test_use_of_a_token_is_recorded(api, db_session):
    assert api.get("/api/v1/tickets").status_code == 200
    db_session.expire_all()
    assert db_session.scalar(sa.select(ApiToken)).last_used_at is not None


def test_a_signed_in_browser_session_does_not_authenticate_the_api(
    login, agent, db_session, client
):
    ticket = make_ticket(db_session)
    login(agent)
    assert client.get("/tickets").status_code == 200  # the cookie works for pages
    error_of(client.get("/api/v1/tickets"), 401)
    error_of(client.get(f"/api/v1/tickets/{ticket.number}"), 401)
    response = client.post(f"/api/v1/tickets/{ticket.number}/notes", json={"body": "via cookie"})
    error_of(response, 401)
    response = client.patch(f"/api/v1/tickets/{ticket.number}", json={"status": "solved"})
    error_of(response, 401)
    assert [e.kind for e in entries_of(db_session, ticket)] == [EntryKind.CUSTOMER_EMAIL]
    assert refresh(db_session, ticket).status == Status.NEW


def test_bearer_calls_need_no_csrf_token_and_set_no_cookie(api, db_session, app):
    assert app.config.get("WTF_CSRF_ENABLED", True)
    ticket = make_ticket(db_session)
    response = api.post(f"/api/v1/tickets/{ticket.number}/notes", {"body": "No CSRF needed."})
    assert response.status_code == 201, response.get_data(as_text=True)
    assert "Set-Cookie" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"
    assert "Access-Control-Allow-Origin" not in response.headers


def test_the_form_routes_still_require_csrf(login, agent, db_session, client):
    ticket = make_ticket(db_session)
    login(agent)
    response = client.post(f"/tickets/{ticket.number}/status", data={"status-status": "solved"})
    assert response.status_code == 400
    assert refresh(db_session, ticket).status == Status.NEW


# -- list ----------------------------------------------------------------------------------------


def test_list_returns_ticket_summaries(api, db_session, agent):
    ticket = make_ticket(db_session)
    conversation.assign(ticket, agent, actor=agent, now=NOW)
    db_session.commit()
    body = api.get("/api/v1/tickets").get_json()
    assert body["next_cursor"] is None
    [summary] = body["tickets"]
    assert summary == {
        "number": ticket.number,
        "subject": "Card declined",
        "status": "new",
        "priority": "normal",
        "channel": "email",
        "customer": {"email": "ann@example.com", "name": "Ann"},
        "assignee": {"email": "dana@example.com", "name": "Dana"},
        "tags": [],
        "created_at": NOW.isoformat(),
        "updated_at": NOW.isoformat(),
    }


def test_list_pages_with_a_keyset_cursor(api, db_session):
    for i in range(7):
        make_ticket(db_session, subject=f"Question {i}", at=NOW + dt.timedelta(minutes=i))
    seen, cursor, pages = [], None, 0
    while True:
        url = "/api/v1/tickets?limit=3" + (f"&cursor={cursor}" if cursor else "")
        body = api.get(url).get_json()
        seen += [t["subject"] for t in body["tickets"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [f"Question {i}" for i in reversed(range(7))]


def test_limit_defaults_to_50(api, db_session):
    for i in range(51):
        make_ticket(db_session, subject=f"Q{i}", at=NOW + dt.timedelta(seconds=i))
    body = api.get("/api/v1/tickets").get_json()
    assert len(body["tickets"]) == 50 and body["next_cursor"]
    assert len(api.get("/api/v1/tickets?limit=100").get_json()["tickets"]) == 51


def test_list_filters_by_status_and_assignee(api, db_session, agent):
    lee = create_agent(db_session, email="lee@example.com", name="Lee", password="x" * 12)
    mine = make_ticket(db_session, subject="Mine")
    conversation.assign(mine, agent, actor=agent, now=NOW)
    leas = make_ticket(db_session, subject="Lee's")
    conversation.assign(leas, lee, actor=agent, now=NOW)
    conversation.set_status(leas, Status.PENDING, actor=agent, now=NOW)
    make_ticket(db_session, subject="Nobody's")
    db_session.commit()

    def subjects(query):
        response = api.get(f"/api/v1/tickets?{query}")
        assert response.status_code == 200, response.get_data(as_text=True)
        return sorted(t["subject"] for t in response.get_json()["tickets"])

    assert subjects("assignee=me") == ["Mine"]
    assert subjects("assignee=none") == ["Nobody's"]
    assert subjects("assignee=LEE@example.com") == ["Lee's"]
    assert subjects("status=pending") == ["Lee's"]
    assert subjects("status=new&assignee=me") == ["Mine"]
    assert subjects("status=solved") == []
    assert subjects("status=&assignee=&q=") == ["Lee's", "Mine", "Nobody's"]


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("status=bogus", "status must be one of"),
        ("status=open'%20OR%20'1'='1", "status must be one of"),
        ("status[]=open", "Unknown query parameter"),
        ("sort=customer__password_hash", "Unknown query parameter"),
        ("status=open&status=new", "at most once"),
        ("assignee=nobody@example.com", "assignee must be"),
        ("assignee=%00", "NUL"),
        ("limit=0", "limit must be"),
        ("limit=101", "limit must be"),
        ("limit=ten", "limit must be"),
        ("limit=-1", "limit must be"),
        ("limit=%EF%BC%95", "limit must be"),  # a full-width digit five
        ("cursor=%27%20OR%201=1--", "cursor is not valid"),
        ("cursor=" + "A" * 500, "cursor is not valid"),
    ],
)
def test_list_rejects_bad_parameters_clearly(api, db_session, secret_ticket, query, words):
    response = api.get(f"/api/v1/tickets?{query}")
    message = error_of(response, 400)
    assert words in message
    text = response.get_data(as_text=True)
    assert SECRET_SUBJECT not in text and SECRET_EMAIL not in text


def test_q_searches_subjects_and_messages(api, db_session):
    make_ticket(db_session, subject="Card declined", body="The payment bounced twice.")
    make_ticket(db_session, subject="Password reset", body="I cannot sign in.")
    make_ticket(db_session, subject="Invoice copy", body="Please resend the invoice.")

    def subjects(q):
        response = api.get("/api/v1/tickets", query_string={"q": q})
        assert response.status_code == 200, response.get_data(as_text=True)
        return [t["subject"] for t in response.get_json()["tickets"]]

    assert subjects("declined") == ["Card declined"]
    assert subjects("payment") == ["Card declined"]
    assert subjects("INVOICE resend") == ["Invoice copy"]
    assert subjects("invoice password") == []
    for hostile in ("%", "_", "%%", '"', "*", "NEAR(", "' OR '1'='1", "\\"):
        assert subjects(hostile) == [], hostile


def test_q_ranks_pages_and_combines_with_filters(api, db_session, agent):
    for i in range(5):
        ticket = make_ticket(
            db_session, subject=f"Refund {i}", body="Refund please.", at=NOW + dt.timedelta(hours=i)
        )
        if i % 2:
            conversation.assign(ticket, agent, actor=agent, now=NOW + dt.timedelta(hours=i))
    make_ticket(db_session, subject="Unrelated", body="Nothing to see.")
    db_session.commit()
    everything = api.get("/api/v1/tickets?q=refund").get_json()
    assert sorted(t["subject"] for t in everything["tickets"]) == [f"Refund {i}" for i in range(5)]
    assert everything["next_cursor"] is None
    two = api.get("/api/v1/tickets?q=refund&limit=2").get_json()
    assert len(two["tickets"]) == 2 and two["next_cursor"]
    mine = api.get("/api/v1/tickets?q=refund&assignee=me").get_json()["tickets"]
    assert sorted(t["subject"] for t in mine) == ["Refund 1", "Refund 3"]
    assert api.get("/api/v1/tickets?q=refund&status=solved").get_json()["tickets"] == []


def test_q_ranks_subject_matches_first(api, db_session):
    make_ticket(db_session, subject="Question", body="Also about a refund.", at=NOW)
    make_ticket(db_session, subject="Refund", body="Refund, refund.", at=NOW - dt.timedelta(days=1))
    found = api.get("/api/v1/tickets?q=refund").get_json()["tickets"]
    assert [t["subject"] for t in found] == ["Refund", "Question"]


def test_search_pages_follow_next_cursor_through_every_match_once(api, db_session):
    # Equal ranks everywhere (same words): ties are broken by ticket id, so pages never
    # repeat or skip a ticket.
    for i in range(7):
        make_ticket(db_session, subject=f"Refund {i}", at=NOW + dt.timedelta(minutes=i))
    make_ticket(db_session, subject="Unrelated", body="Nothing to see.")
    db_session.commit()
    seen, cursor, pages = [], None, 0
    while True:
        url = "/api/v1/tickets?q=refund&limit=3" + (f"&cursor={cursor}" if cursor else "")
        body = api.get(url).get_json()
        seen += [t["subject"] for t in body["tickets"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert sorted(seen) == [f"Refund {i}" for i in range(7)] and len(set(seen)) == 7


def test_list_and_search_cursors_are_not_interchangeable(api, db_session):
    for i in range(3):
        make_ticket(db_session, subject=f"Refund {i}", at=NOW + dt.timedelta(minutes=i))
    db_session.commit()
    list_cursor = api.get("/api/v1/tickets?limit=1").get_json()["next_cursor"]
    search_cursor = api.get("/api/v1/tickets?q=refund&limit=1").get_json()["next_cursor"]
    assert list_cursor and search_cursor
    response = api.get(f"/api/v1/tickets?q=refund&cursor={list_cursor}")
    assert "cursor is not valid" in error_of(response, 400)
    response = api.get(f"/api/v1/tickets?cursor={search_cursor}")
    assert "cursor is not valid" in error_of(response, 400)


def test_merged_tickets_are_neither_listed_nor_found(api, db_session, agent):
    source = make_ticket(db_session, subject="Duplicate question", body="The widget broke.")
    target = make_ticket(db_session, subject="Original question")
    actions.merge(db_session, source, into=target.number, actor=agent, now=NOW)
    db_session.commit()
    listed = [t["number"] for t in api.get("/api/v1/tickets").get_json()["tickets"]]
    assert listed == [target.number]
    # The moved message is found on the ticket it now belongs to.
    searched = api.get("/api/v1/tickets?q=widget").get_json()["tickets"]
    assert [t["number"] for t in searched] == [target.number]
    error_of(api.get(f"/api/v1/tickets/{source.number}"), 404)
    error_of(api.post(f"/api/v1/tickets/{source.number}/notes", {"body": "x"}), 404)
    error_of(api.patch(f"/api/v1/tickets/{source.number}", {"status": "open"}), 404)


# -- one ticket ----------------------------------------------------------------------------------


def test_get_returns_the_export_record_with_internal_notes(api, db_session, agent):
    ticket = make_ticket(db_session)
    conversation.add_note(ticket, actor=agent, body_text="Checking with billing.", now=NOW)
    db_session.commit()
    body = api.get(f"/api/v1/tickets/{ticket.number}").get_json()
    [exported] = list(iter_ticket_records(db_session))
    assert body == json.loads(json.dumps(exported))
    assert [e["kind"] for e in body["entries"]] == ["customer_email", "internal_note"]
    assert body["entries"][1]["body_text"] == "Checking with billing."


@pytest.mark.parametrize("number", ["999999", "0", "99999999999999999999999", "abc", "-1"])
def test_unknown_tickets_are_404_with_no_other_data(api, secret_ticket, number):
    for response in (
        api.get(f"/api/v1/tickets/{number}"),
        api.post(f"/api/v1/tickets/{number}/replies", {"body": "Hello"}),
        api.post(f"/api/v1/tickets/{number}/notes", {"body": "Hello"}),
        api.patch(f"/api/v1/tickets/{number}", {"status": "solved"}),
    ):
        error_of(response, 404)
        text = response.get_data(as_text=True)
        assert SECRET_SUBJECT not in text and SECRET_EMAIL not in text
        assert str(secret_ticket.number) not in text


def test_unknown_api_paths_are_json_404s(api):
    error_of(api.get("/api/v1/customers"), 404)
    error_of(api.raw("DELETE", "/api/v1/tickets/1001", b""), 405)


# -- replies and notes ---------------------------------------------------------------------------


def test_a_reply_is_recorded_and_queued_in_the_outbox(api, db_session):
    ticket = make_ticket(db_session)
    response = api.post(f"/api/v1/tickets/{ticket.number}/replies", {"body": "We fixed it."})
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert body["entry"]["kind"] == "agent_reply"
    assert body["entry"]["body_text"] == "We fixed it."
    assert body["entry"]["author_email"] == "dana@example.com"
    assert body["entry"]["message_id"]
    assert body["outbox"]["status"] == "queued"
    assert body["ticket"]["status"] == "pending"
    row = db_session.get(OutboxMessage, body["outbox"]["id"])
    assert row.status == OutboxStatus.QUEUED
    assert row.recipients == ["ann@example.com"]
    assert row.ticket_id == ticket.id
    assert row.message_id == body["entry"]["message_id"]
    assert refresh(db_session, ticket).status == Status.PENDING
    assert refresh(db_session, ticket).first_response_at is not None


def test_a_reply_can_set_or_keep_the_status(api, db_session):
    ticket = make_ticket(db_session)
    solved = api.post(
        f"/api/v1/tickets/{ticket.number}/replies", {"body": "Done.", "status": "solved"}
    )
    assert solved.get_json()["ticket"]["status"] == "solved"
    kept = api.post(f"/api/v1/tickets/{ticket.number}/replies", {"body": "P.S.", "status": None})
    assert kept.get_json()["ticket"]["status"] == "solved"
    assert db_session.scalar(sa.select(sa.func.count(OutboxMessage.id))) == 2


def test_a_note_is_internal_and_sends_nothing(api, db_session):
    ticket = make_ticket(db_session)
    response = api.post(f"/api/v1/tickets/{ticket.number}/notes", {"body": "Internal only."})
    assert response.status_code == 201
    body = response.get_json()
    assert body["entry"]["kind"] == "internal_note"
    assert "outbox" not in body
    assert body["ticket"]["status"] == "new"
    assert db_session.scalar(sa.select(sa.func.count(OutboxMessage.id))) == 0
    with_status = api.post(
        f"/api/v1/tickets/{ticket.number}/notes", {"body": "Parking it.", "status": "pending"}
    )
    assert with_status.get_json()["ticket"]["status"] == "pending"


def test_message_text_is_stored_exactly(api, db_session):
    ticket = make_ticket(db_session)
    text = (
        "\"><img src=x onerror=alert(1)>{{7*7}} \ufdfd \U0001d573\U0001d58a \u202e \r\n' OR 1=1 --"
    )
    response = api.post(f"/api/v1/tickets/{ticket.number}/notes", {"body": text})
    assert response.status_code == 201
    assert entries_of(db_session, ticket)[-1].body_text == text


@pytest.mark.parametrize(
    ("data", "content_type", "status", "words"),
    [
        (b'{"body": "unterminated', "application/json", 400, "not valid JSON"),
        (b"\xff\xfe{}", "application/json", 400, "not valid JSON"),
        (b"[" * 100_000, "application/json", 400, "not valid JSON"),
        (b'["a list"]', "application/json", 400, "must be an object"),
        (b'"a string"', "application/json", 400, "must be an object"),
        (b"", "application/json", 400, "not valid JSON"),
        (b"body=hello", "application/x-www-form-urlencoded", 415, "application/json"),
        (b'{"body": "hi"}', "text/plain", 415, "application/json"),
        (b"{}", "application/json", 400, "body is required"),
        (b'{"body": "   "}', "application/json", 400, "must not be empty"),
        (b'{"body": 42}', "application/json", 400, "body must be a string"),
        (b'{"body": "a\\u0000b"}', "application/json", 400, "NUL"),
        (b'{"body": "\\ud800"}', "application/json", 400, "surrogates"),
        (b'{"body": "hi", "status": "gone"}', "application/json", 400, "status must be one of"),
        (b'{"body": "hi", "is_internal": true}', "application/json", 400, "Unknown field"),
        (b'{"body": "hi", "author_agent_id": 1}', "application/json", 400, "Unknown field"),
    ],
)
def test_bad_message_bodies_are_refused_clearly(
    api, db_session, secret_ticket, data, content_type, status, words
):
    ticket = make_ticket(db_session)
    for kind in ("replies", "notes"):
        response = api.raw("POST", f"/api/v1/tickets/{ticket.number}/{kind}", data, content_type)
        assert words in error_of(response, status)
        text = response.get_data(as_text=True)
        assert SECRET_SUBJECT not in text and SECRET_EMAIL not in text
    assert len(entries_of(db_session, ticket)) == 1
    assert db_session.scalar(sa.select(sa.func.count(OutboxMessage.id))) == 0


def test_oversized_bodies_are_413(api, db_session):
    ticket = make_ticket(db_session)
    data = json.dumps({"body": "x" * (3 * 1024 * 1024)}).encode()
    response = api.raw("POST", f"/api/v1/tickets/{ticket.number}/notes", data)
    error_of(response, 413)
    long = json.dumps({"body": "x" * 100_001}).encode()
    response = api.raw("POST", f"/api/v1/tickets/{ticket.number}/notes", long)
    assert "too long" in error_of(response, 400)


# -- PATCH ---------------------------------------------------------------------------------------


def test_patch_changes_each_field_and_records_it(api, db_session, agent):
    lee = create_agent(db_session, email="lee@example.com", name="Lee", password="x" * 12)
    db_session.commit()
    ticket = make_ticket(db_session)
    url = f"/api/v1/tickets/{ticket.number}"

    body = api.patch(url, {"status": "open"}).get_json()
    assert body["status"] == "open"
    body = api.patch(url, {"priority": "urgent"}).get_json()
    assert body["priority"] == "urgent"
    body = api.patch(url, {"assignee": "Lee@Example.com"}).get_json()
    assert body["assignee"] == {"email": "lee@example.com", "name": "Lee"}
    body = api.patch(url, {"assignee": "me"}).get_json()
    assert body["assignee"]["email"] == "dana@example.com"
    body = api.patch(url, {"assignee": None}).get_json()
    assert body["assignee"] is None
    body = api.patch(url, {"tags": ["VIP", "billing", "vip"]}).get_json()
    assert body["tags"] == ["billing", "vip"]
    body = api.patch(url, {"tags": []}).get_json()
    assert body["tags"] == []

    fresh = refresh(db_session, ticket)
    assert (fresh.status, fresh.priority, fresh.assignee_id) == (Status.OPEN, Priority.URGENT, None)
    events = [e.body_text for e in entries_of(db_session, ticket) if e.kind == "system_event"]
    assert any("open" in e for e in events)
    assert any("urgent" in e for e in events)
    assert "Assigned to Lee" in events and "Unassigned" in events
    assert any("billing" in e and "vip" in e for e in events)
    assert all(e.author_agent_id == agent.id for e in entries_of(db_session, ticket)[1:])
    assert lee.id != agent.id


def test_patch_applies_several_fields_at_once(api, db_session):
    ticket = make_ticket(db_session)
    body = api.patch(
        f"/api/v1/tickets/{ticket.number}",
        {"status": "solved", "priority": "low", "assignee": "dana@example.com", "tags": ["x"]},
    ).get_json()
    assert (body["status"], body["priority"], body["tags"]) == ("solved", "low", ["x"])
    assert body["assignee"]["email"] == "dana@example.com"
    assert body["solved_at"] is not None
    assert body["entries"][0]["kind"] == "customer_email"


@pytest.mark.parametrize(
    "field", ["customer_id", "number", "created_at", "subject", "merged_into_id", "id"]
)
def test_patch_refuses_mass_assignment(api, db_session, field):
    ticket = make_ticket(db_session)
    response = api.patch(f"/api/v1/tickets/{ticket.number}", {"status": "solved", field: 1})
    message = error_of(response, 400)
    assert field in message and "Unknown field" in message
    assert "status, priority, assignee, tags" in message
    fresh = refresh(db_session, ticket)
    assert fresh.status == Status.NEW and fresh.number == ticket.number


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ({}, "Nothing to change"),
        ({"status": "archived"}, "status must be one of"),
        ({"status": None}, "status must be one of"),
        ({"status": ["open"]}, "status must be one of"),
        ({"priority": "critical"}, "priority must be one of"),
        ({"priority": {"a": 1}}, "priority must be one of"),
        ({"assignee": "nobody@example.com"}, "assignee must be"),
        ({"assignee": 7}, "assignee must be a string"),
        ({"assignee": "lee@example.com"}, "assignee must be"),  # deactivated
        ({"tags": "vip"}, "tags must be a list"),
        ({"tags": [1]}, "must be a string"),
        ({"tags": ["x" * 51]}, "50"),
        ({"tags": ["<script>"]}, "Tags may contain"),
        ({"tags": [f"t{i}" for i in range(21)]}, "at most 20"),
        ({"status": "solved", "priority": "critical"}, "priority must be one of"),
    ],
)
def test_patch_refuses_invalid_values_and_changes_nothing(api, db_session, payload, words):
    lee = create_agent(db_session, email="lee@example.com", name="Lee", password="x" * 12)
    deactivate_agent(db_session, lee)
    db_session.commit()
    ticket = make_ticket(db_session)
    response = api.patch(f"/api/v1/tickets/{ticket.number}", payload)
    assert words in error_of(response, 400)
    fresh = refresh(db_session, ticket)
    assert (fresh.status, fresh.priority, fresh.assignee_id, fresh.tags) == (
        Status.NEW,
        Priority.NORMAL,
        None,
        [],
    )
    assert len(entries_of(db_session, ticket)) == 1


def test_patch_needs_json(api, db_session):
    ticket = make_ticket(db_session)
    url = f"/api/v1/tickets/{ticket.number}"
    assert "application/json" in error_of(
        api.raw("PATCH", url, b"status=solved", "application/x-www-form-urlencoded"), 415
    )
    assert "not valid JSON" in error_of(api.raw("PATCH", url, b"{status: solved}"), 400)


# -- the OpenAPI document ------------------------------------------------------------------------


def _routes(app) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1"):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        found.setdefault(path, set()).update(m.lower() for m in rule.methods - {"HEAD", "OPTIONS"})
    return found


def test_openapi_describes_exactly_the_real_routes(client, app):
    response = client.get("/api/v1/openapi.json")  # public: no token
    assert response.status_code == 200
    doc = response.get_json()
    assert doc["openapi"].startswith("3.1")
    base = doc["servers"][0]["url"]
    documented = {
        base + path: {m for m in item if m in {"get", "post", "put", "patch", "delete"}}
        for path, item in doc["paths"].items()
    }
    assert documented == _routes(app)
    assert len(documented) >= 5


def test_openapi_declares_bearer_auth_and_resolvable_references(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    assert doc["security"] == [{"bearerAuth": []}]

    def refs(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    yield value
                else:
                    yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(doc):
        target = doc
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        assert isinstance(target, dict), ref
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            assert operation["responses"], (path, method)
            for name in re.findall(r"{(\w+)}", path):
                params = item.get("parameters", []) + operation.get("parameters", [])
                assert any(p["name"] == name and p["in"] == "path" for p in params)


def test_the_documented_summary_fields_match_the_response(api, client, db_session):
    make_ticket(db_session)
    doc = client.get("/api/v1/openapi.json").get_json()
    summary = api.get("/api/v1/tickets").get_json()["tickets"][0]
    assert set(summary) == set(doc["components"]["schemas"]["TicketSummary"]["required"])
    ticket = api.get(f"/api/v1/tickets/{summary['number']}").get_json()
    assert set(ticket) == set(doc["components"]["schemas"]["Ticket"]["required"])
    assert set(ticket["entries"][0]) == set(doc["components"]["schemas"]["Entry"]["required"])


# -- CLI -----------------------------------------------------------------------------------------


def test_cli_token_is_printed_once_and_works(runner, client, db_session, agent):
    result = runner.invoke(args=["agents", "token", "DANA@example.com", "--name", "ci bot"])
    assert result.exit_code == 0, result.output
    plaintext = result.stdout.strip()
    assert plaintext.startswith("hof_") and "\n" not in plaintext
    assert "will not be shown again" in result.stderr
    response = client.get("/api/v1/tickets", headers={"Authorization": f"Bearer {plaintext}"})
    assert response.status_code == 200

    listing = runner.invoke(args=["agents", "tokens", "dana@example.com"])
    assert listing.exit_code == 0, listing.output
    [line] = listing.output.strip().splitlines()
    token_id, name, created, last_used, revoked = line.split("\t")
    assert name == "ci bot" and revoked == "no" and last_used != "never" and created
    assert plaintext not in listing.output and plaintext[4:] not in listing.output

    revoked_run = runner.invoke(args=["agents", "revoke-token", token_id])
    assert revoked_run.exit_code == 0, revoked_run.output
    response = client.get("/api/v1/tickets", headers={"Authorization": f"Bearer {plaintext}"})
    assert response.status_code == 401
    listing = runner.invoke(args=["agents", "tokens", "dana@example.com"])
    assert listing.output.strip().split("\t")[-1] != "no"


def test_cli_token_commands_fail_clearly(runner, agent):
    result = runner.invoke(args=["agents", "token", "nobody@example.com"])
    assert result.exit_code != 0 and "No agent has the email" in result.output
    result = runner.invoke(args=["agents", "tokens", "nobody@example.com"])
    assert result.exit_code != 0
    result = runner.invoke(args=["agents", "revoke-token", "4242"])
    assert result.exit_code != 0 and "No API token" in result.output


def test_the_agent_model_is_untouched_by_token_use(api, db_session, agent):
    """Token sign-ins are not browser sign-ins: no last_login_at, no lockout counters."""
    api.get("/api/v1/tickets")
    db_session.expire_all()
    fresh = db_session.get(Agent, agent.id)
    assert fresh.last_login_at is None and fresh.failed_logins == 0
