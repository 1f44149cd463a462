"""Ticket actions through the real forms: priority, tags, merge, bulk, saved replies, detach,
and the reply collision warning (issue 5, item 3; security.md cases 22, 29-31, 46)."""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest
import sqlalchemy as sa
from flask import g

from tests.conftest import TEST_PASSWORD, csrf_token
from ticketing.errors import Invalid
from ticketing.models import (
    Channel,
    Entry,
    EntryKind,
    Participant,
    Priority,
    SavedReply,
    Status,
    Ticket,
)
from ticketing.services import conversation, customers
from ticketing.services import saved_replies as saved_reply_service
from ticketing.services.agents import create_agent
from ticketing.services.export import iter_ticket_records

NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


def minutes(n: int) -> dt.datetime:
    return NOW + dt.timedelta(minutes=n)


def make_ticket(
    db_session,
    *,
    email="ann@example.com",
    name="Ann",
    subject="Card declined",
    body="My card was declined.",
    at=NOW,
    message_id=None,
):
    customer = customers.find_or_create(db_session, email=email, name=name)
    ticket = conversation.open_ticket(
        db_session, customer=customer, subject=subject, channel=Channel.EMAIL, now=at
    )
    conversation.add_customer_message(
        ticket,
        author=customer,
        kind=EntryKind.CUSTOMER_EMAIL,
        body_text=body,
        now=at,
        subject=subject,
        message_id=message_id,
    )
    db_session.commit()
    return ticket


def customer_says(db_session, ticket, body, *, at, email=None, message_id=None, subject=""):
    author = customers.find_or_create(db_session, email=email) if email else ticket.customer
    entry = conversation.add_customer_message(
        ticket,
        author=author,
        kind=EntryKind.CUSTOMER_EMAIL,
        body_text=body,
        now=at,
        message_id=message_id,
        subject=subject,
    )
    db_session.commit()
    return entry


def history(db_session, ticket) -> list[Entry]:
    db_session.expire_all()
    return list(
        db_session.scalars(sa.select(Entry).where(Entry.ticket_id == ticket.id).order_by(Entry.id))
    )


def events(db_session, ticket) -> list[str]:
    return [e.body_text for e in history(db_session, ticket) if e.kind == EntryKind.SYSTEM_EVENT]


@pytest.fixture
def sam(app, db_session):
    created = create_agent(db_session, email="sam@example.com", name="Sam", password=TEST_PASSWORD)
    db_session.commit()
    return created


def page_of(client, number: int, query: str = "") -> str:
    response = client.get(f"/tickets/{number}{query}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def hidden_value(page: str, name: str) -> str:
    match = re.search(rf'name="{re.escape(name)}" type="hidden" value="([^"]*)"', page)
    assert match, f"no hidden field {name}"
    return match.group(1)


# -- priority and tags -------------------------------------------------------------------------


def test_priority_and_tags_are_set_from_the_sidebar_and_recorded(login, agent, db_session):
    ticket = make_ticket(db_session)
    client = login(agent)
    page = f"/tickets/{ticket.number}"
    html_before = page_of(client, ticket.number)
    assert 'for="priority-priority">Priority</label>' in html_before
    assert 'for="tags-tags">Tags</label>' in html_before
    token = csrf_token(client, page)

    response = client.post(
        f"{page}/priority", data={"csrf_token": token, "priority-priority": "high"}
    )
    assert response.status_code == 302
    response = client.post(
        f"{page}/tags",
        data={"csrf_token": token, "tags-tags": " Billing, vip ,billing,, Card  Issue"},
    )
    assert response.status_code == 302

    db_session.expire_all()
    assert ticket.priority == Priority.HIGH
    assert [t.name for t in ticket.tags] == ["billing", "card issue", "vip"]
    assert events(db_session, ticket) == [
        "Priority changed to high by Dana",
        "Tags added billing, vip, card issue by Dana",
    ]
    client.post(f"{page}/tags", data={"csrf_token": token, "tags-tags": "vip"})
    assert events(db_session, ticket)[-1] == "Tags removed billing, card issue by Dana"
    after = page_of(client, ticket.number)
    assert 'value="vip"' in after and '<option selected value="high">' in after


def test_setting_the_same_priority_or_tags_again_records_nothing(login, agent, db_session):
    ticket = make_ticket(db_session)
    client = login(agent)
    page = f"/tickets/{ticket.number}"
    token = csrf_token(client, page)
    client.post(f"{page}/priority", data={"csrf_token": token, "priority-priority": "normal"})
    client.post(f"{page}/tags", data={"csrf_token": token, "tags-tags": ""})
    assert events(db_session, ticket) == []


# -- CSRF, whitelists, methods -----------------------------------------------------------------


def _state(db_session) -> list[tuple]:
    db_session.expire_all()
    tickets = db_session.execute(
        sa.select(
            Ticket.number,
            Ticket.status,
            Ticket.priority,
            Ticket.assignee_id,
            Ticket.merged_into_id,
        ).order_by(Ticket.id)
    ).all()
    entries = db_session.execute(
        sa.select(Entry.id, Entry.ticket_id, Entry.message_id).order_by(Entry.id)
    ).all()
    tags = db_session.scalar(sa.text("SELECT count(*) FROM ticket_tags"))
    return [*tickets, *entries, tags]


def _action_posts(a: Ticket, b: Ticket, entry_id: int) -> list[tuple[str, dict]]:
    return [
        (f"/tickets/{a.number}/priority", {"priority-priority": "urgent"}),
        (f"/tickets/{a.number}/tags", {"tags-tags": "vip"}),
        (f"/tickets/{a.number}/merge", {"merge-into": str(b.number)}),
        (f"/tickets/{a.number}/entries/{entry_id}/detach", {}),
        ("/tickets/bulk", {"numbers": [str(a.number), str(b.number)], "action": "status:solved"}),
    ]


def test_every_action_without_a_csrf_token_is_400_and_changes_nothing(login, agent, db_session):
    a = make_ticket(db_session)
    b = make_ticket(db_session, email="bob@example.com", name="Bob", subject="Refund")
    entry_id = history(db_session, a)[0].id
    client = login(agent)
    before = _state(db_session)
    for path, data in _action_posts(a, b, entry_id):
        assert client.post(path, data=data).status_code == 400, path
        assert client.post(path, data={**data, "csrf_token": "forged"}).status_code == 400, path
        assert client.get(path).status_code == 405, path
    assert _state(db_session) == before


def test_a_token_from_another_session_is_refused(login, agent, sam, db_session, app):
    a = make_ticket(db_session)
    b = make_ticket(db_session, email="bob@example.com", subject="Refund")
    other = app.test_client()
    other.post(
        "/login",
        data={
            "csrf_token": csrf_token(other, "/login"),
            "email": sam.email,
            "password": TEST_PASSWORD,
        },
    )
    sams_token = csrf_token(other, f"/tickets/{a.number}")
    # Requests reuse the test's app context, so the user and CSRF token Flask-Login and
    # Flask-WTF cache in `g` would carry over to the next client; forget them.
    g.pop("_login_user", None)
    g.pop("csrf_token", None)
    entry_id = history(db_session, a)[0].id
    client = login(agent)
    before = _state(db_session)
    for path, data in _action_posts(a, b, entry_id):
        response = client.post(path, data={**data, "csrf_token": sams_token})
        assert response.status_code == 400, path
    assert _state(db_session) == before


@pytest.mark.parametrize(
    ("suffix", "data"),
    [
        ("priority", {"priority-priority": "critical' OR '1'='1"}),
        ("priority", {"priority-priority": ""}),
        ("tags", {"tags-tags": '"><img src=x onerror=alert(1)>'}),
        ("tags", {"tags-tags": "x" * 51}),
        ("tags", {"tags-tags": ",".join(f"t{i}" for i in range(21))}),
        ("merge", {"merge-into": "abc"}),
        ("merge", {"merge-into": "-1"}),
        ("merge", {"merge-into": "99999999999999999999"}),
        ("merge", {}),
    ],
)
def test_invalid_values_are_a_400_never_a_500(login, agent, db_session, suffix, data):
    ticket = make_ticket(db_session)
    client = login(agent)
    page = f"/tickets/{ticket.number}"
    before = _state(db_session)
    response = client.post(
        f"{page}/{suffix}", data={**data, "csrf_token": csrf_token(client, page)}
    )
    assert response.status_code == 400
    assert "<img src=x" not in response.get_data(as_text=True)
    assert _state(db_session) == before


def test_extra_fields_are_ignored(login, agent, sam, db_session):
    """Mass assignment: only the form's own field counts (security.md case 30)."""
    ticket = make_ticket(db_session)
    client = login(agent)
    page = f"/tickets/{ticket.number}"
    client.post(
        f"{page}/priority",
        data={
            "csrf_token": csrf_token(client, page),
            "priority-priority": "low",
            "assignee_id": str(sam.id),
            "status": "closed",
            "customer_id": "999",
        },
    )
    db_session.expire_all()
    assert ticket.priority == Priority.LOW
    assert ticket.assignee_id is None and ticket.status == Status.NEW


# -- merge -------------------------------------------------------------------------------------


def test_merge_combines_histories_in_order_and_closes_the_source(login, agent, db_session):
    a = make_ticket(
        db_session, subject="Card declined", body="A1", at=minutes(0), message_id="a1@x"
    )
    b = make_ticket(
        db_session, email="bob@example.com", name="Bob", subject="Payment", body="B1", at=minutes(1)
    )
    customer_says(db_session, a, "A2", at=minutes(2), message_id="a2@x")
    carl = customers.find_or_create(db_session, email="carl@example.com", name="Carl")
    conversation.add_participant(a, carl)
    from ticketing.services import tags

    tags.set_tags(db_session, a, ["vip", "billing"], actor=agent, now=minutes(3))
    tags.set_tags(db_session, b, ["billing"], actor=agent, now=minutes(3))
    db_session.commit()
    ids_before = {e.id: e.message_id for e in history(db_session, a)}

    client = login(agent)
    page = f"/tickets/{a.number}"
    response = client.post(
        f"{page}/merge", data={"csrf_token": csrf_token(client, page), "merge-into": str(b.number)}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == f"/tickets/{b.number}"

    merged = history(db_session, b)
    bodies = [e.body_text for e in merged if e.kind != EntryKind.SYSTEM_EVENT]
    assert bodies == ["A1", "B1", "A2"]
    assert [e.created_at for e in merged if e.kind != EntryKind.SYSTEM_EVENT] == sorted(
        e.created_at for e in merged if e.kind != EntryKind.SYSTEM_EVENT
    )
    moved = {e.id: e.message_id for e in merged if e.id in ids_before}
    assert moved == ids_before  # ids and Message-IDs kept
    text = f"Merged #{a.number} into #{b.number} by Dana"
    assert merged[-1].body_text == text
    assert [e.body_text for e in history(db_session, a)] == [text]

    db_session.expire_all()
    assert a.status == Status.CLOSED and a.merged_into_id == b.id and a.closed_at is not None
    assert b.status.is_active
    assert sorted(t.name for t in b.tags) == ["billing", "vip"]
    joined = db_session.scalars(
        sa.select(Participant.customer_id).where(Participant.ticket_id == b.id)
    ).all()
    assert set(joined) == {a.customer_id, carl.id}

    html_b = page_of(client, b.number)
    assert "A1" in html_b and "B1" in html_b and f"Merged #{a.number} into #{b.number}" in html_b
    html_a = page_of(client, a.number)
    assert "This ticket was merged into" in html_a
    assert f'href="/tickets/{b.number}"' in html_a
    assert f'action="/tickets/{a.number}/messages"' not in html_a  # no composer on it

    records = {r["number"]: r for r in iter_ticket_records(db_session)}
    assert records[a.number]["merged_into"] == b.number
    assert records[b.number]["merged_into"] is None
    assert [e["body_text"] for e in records[b.number]["entries"]][:3] == ["A1", "B1", "A2"]
    assert records[a.number]["status"] == "closed"


def test_merge_keeps_both_copies_of_a_message_id_the_target_already_has(login, agent, db_session):
    a = make_ticket(db_session, body="copy on A", message_id="same@example.com")
    b = make_ticket(
        db_session, email="bob@example.com", body="copy on B", message_id="same@example.com"
    )
    client = login(agent)
    page = f"/tickets/{a.number}"
    response = client.post(
        f"{page}/merge", data={"csrf_token": csrf_token(client, page), "merge-into": str(b.number)}
    )
    assert response.status_code == 302
    entries = [e for e in history(db_session, b) if e.kind != EntryKind.SYSTEM_EVENT]
    assert [e.body_text for e in entries] == ["copy on A", "copy on B"]
    assert entries[1].message_id == "same@example.com"
    assert entries[0].message_id == f"same.merged{a.number}@example.com"
    assert "message_id_conflict" in entries[0].flags
    assert "Reused Message-ID" in page_of(client, b.number)


@pytest.mark.parametrize("case", ["self", "missing", "into_merged", "already_merged"])
def test_merge_refuses_impossible_targets_with_a_clear_error(login, agent, db_session, case):
    a = make_ticket(db_session)
    b = make_ticket(db_session, email="bob@example.com", subject="Refund")
    c = make_ticket(db_session, email="cy@example.com", subject="Invoice")
    client = login(agent)
    token = csrf_token(client, f"/tickets/{a.number}")
    if case in ("into_merged", "already_merged"):
        source = b if case == "into_merged" else a
        client.post(
            f"/tickets/{source.number}/merge",
            data={"csrf_token": token, "merge-into": str(c.number)},
        )
    into, expected = {
        "self": (a.number, "can&#39;t be merged into itself"),
        "missing": (99999, "There is no ticket #99999."),
        "into_merged": (b.number, f"was merged into #{c.number}; merge into #{c.number} instead"),
        "already_merged": (b.number, "was already merged"),
    }[case]
    before = _state(db_session)
    response = client.post(
        f"/tickets/{a.number}/merge", data={"csrf_token": token, "merge-into": str(into)}
    )
    assert response.status_code == 400
    assert expected in response.get_data(as_text=True)
    assert _state(db_session) == before


# -- bulk --------------------------------------------------------------------------------------


def bulk(client, numbers, action, *, token=None):
    token = token or csrf_token(client, "/tickets")
    return client.post(
        "/tickets/bulk",
        data={"csrf_token": token, "numbers": [str(n) for n in numbers], "action": action},
    )


def test_bulk_assign_and_status_update_every_selected_ticket(login, agent, sam, db_session):
    tickets = [make_ticket(db_session, subject=f"Q{i}") for i in range(4)]
    chosen = [t.number for t in tickets[:3]]
    client = login(agent)
    response = bulk(client, chosen, "assign_me")
    assert response.status_code == 302
    assert "Updated 3 tickets" in client.get(response.headers["Location"]).get_data(as_text=True)
    db_session.expire_all()
    assert [t.assignee_id for t in tickets] == [agent.id, agent.id, agent.id, None]
    assert events(db_session, tickets[0]) == ["Assigned to Dana"]

    bulk(client, chosen[:2], f"assign:{sam.id}")
    bulk(client, [chosen[2], chosen[2]], "unassign")
    bulk(client, chosen, "status:solved")
    db_session.expire_all()
    assert [t.assignee_id for t in tickets] == [sam.id, sam.id, None, None]
    assert [t.status for t in tickets] == [Status.SOLVED] * 3 + [Status.NEW]


@pytest.mark.parametrize(
    ("numbers", "action", "message"),
    [
        ("valid+unknown", "assign_me", "There is no ticket #99999."),
        ("valid", "status:hacked", "Choose an action from the list."),
        ("valid", "delete", "Choose an action from the list."),
        ("valid", "assign:99999", "Choose an active agent."),
        ("valid", "assign:1 OR 1=1", "Choose an action from the list."),
        ("valid", "status:closed;DROP TABLE tickets", "Choose an action from the list."),
        ("valid", "", "Choose an action."),
        ("none", "assign_me", "Select at least one ticket."),
        ("junk", "assign_me", "Select tickets from the list."),
        ("merged", "status:open", "was merged into another ticket"),
    ],
)
def test_bulk_is_all_or_nothing_and_refuses_anything_off_the_whitelist(
    login, agent, db_session, numbers, action, message
):
    a = make_ticket(db_session)
    b = make_ticket(db_session, email="bob@example.com")
    c = make_ticket(db_session, email="cy@example.com")
    client = login(agent)
    token = csrf_token(client, "/tickets")
    if numbers == "merged":
        client.post(
            f"/tickets/{c.number}/merge", data={"csrf_token": token, "merge-into": str(b.number)}
        )
    chosen = {
        "valid+unknown": [a.number, b.number, 99999],
        "valid": [a.number, b.number],
        "none": [],
        "junk": [a.number, "1001 OR 1=1"],
        "merged": [a.number, c.number],
    }[numbers]
    before = _state(db_session)
    response = bulk(client, chosen, action, token=token)
    assert response.status_code == 400
    assert html.escape(message, quote=True) in response.get_data(as_text=True)
    assert _state(db_session) == before


def test_bulk_redirects_only_to_same_origin_paths(login, agent, db_session):
    ticket = make_ticket(db_session)
    client = login(agent)
    token = csrf_token(client, "/tickets")
    for target, expected in (
        ("/tickets?view=mine", "/tickets?view=mine"),
        ("//evil.example/x", "/tickets"),
        ("https://evil.example/", "/tickets"),
    ):
        response = client.post(
            "/tickets/bulk",
            data={
                "csrf_token": token,
                "numbers": [str(ticket.number)],
                "action": "status:open",
                "next": target,
            },
        )
        assert response.status_code == 302
        assert response.headers["Location"] == expected


# -- saved replies -----------------------------------------------------------------------------


def add_saved_reply(db_session, agent, title, body):
    saved = saved_reply_service.create_saved_reply(
        db_session, title=title, body=body, actor=agent, now=NOW
    )
    db_session.commit()
    return saved


def raw_saved_reply(db_session, title, body):
    """A saved reply written straight to the table (as an older version or a bug might)."""
    saved = SavedReply(title=title, body=body)
    db_session.add(saved)
    db_session.commit()
    return saved


def test_saved_reply_fills_the_composer_with_placeholders_rendered(login, agent, db_session):
    ticket = make_ticket(db_session, subject="Card declined")
    saved = add_saved_reply(
        db_session,
        agent,
        "Card retry",
        "Hi {{ customer.name }} ({{ customer.email }}),\n"
        'about #{{ ticket.number }} "{{ ticket.subject }}": please retry.\n{{ agent.name }}',
    )
    client = login(agent)
    plain = page_of(client, ticket.number)
    assert '<label for="saved_reply">Saved reply</label>' in plain
    assert f'<option value="{saved.id}">Card retry</option>' in plain
    assert 'form="saved-reply-form"' in plain and ">Insert</button>" in plain

    filled = page_of(client, ticket.number, f"?saved_reply={saved.id}")
    textarea = re.search(r'<textarea[^>]*name="composer-body"[^>]*>(.*?)</textarea>', filled, re.S)
    assert textarea
    assert html.unescape(textarea.group(1)).strip() == (
        f'Hi Ann (ann@example.com),\nabout #{ticket.number} "Card declined": please retry.\nDana'
    )


def test_customer_text_in_a_saved_reply_is_data_never_evaluated(login, agent, db_session):
    ticket = make_ticket(db_session, name="{{7*7}}", subject="{{ ''.__class__ }}<script>x</script>")
    saved = add_saved_reply(
        db_session, agent, "Hello", "Hi {{ customer.name }}, re {{ ticket.subject }}"
    )
    filled = page_of(login(agent), ticket.number, f"?saved_reply={saved.id}")
    textarea = re.search(r'<textarea[^>]*name="composer-body"[^>]*>(.*?)</textarea>', filled, re.S)
    assert textarea
    value = textarea.group(1)
    assert "<script>" not in value
    assert html.unescape(value).strip() == "Hi {{7*7}}, re {{ ''.__class__ }}<script>x</script>"
    assert "49" not in value and "&lt;class" not in value


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{{ ''.__class__ }}", "tries something a template may not do"),
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "tries something a template may not do"),
        ("{{ cycler.__init__.__globals__.os.popen('id').read() }}", "tries something"),
        ("{{ 'x' * 100000000 }}", "tries something a template may not do"),
        ("{{ customer.phone }}", "placeholder Handoff doesn"),
        ("{{ config }}", "placeholder Handoff doesn"),
        ("{% for %}", "template error on line 1"),
    ],
)
def test_a_hostile_saved_reply_is_a_safe_error_not_execution(
    login, agent, db_session, body, message
):
    ticket = make_ticket(db_session)
    saved = raw_saved_reply(db_session, "Evil", body)
    filled = page_of(login(agent), ticket.number, f"?saved_reply={saved.id}")
    assert html.escape(message, quote=True) in filled
    assert "&lt;class" not in filled and "uid=" not in filled
    textarea = re.search(r'<textarea[^>]*name="composer-body"[^>]*>(.*?)</textarea>', filled, re.S)
    assert textarea and textarea.group(1).strip() == ""
    with pytest.raises(Invalid):
        saved_reply_service.create_saved_reply(
            db_session, title="Evil too", body=body, actor=agent, now=NOW
        )


@pytest.mark.parametrize("value", ["999999", "abc", "1 OR 1=1", "-1"])
def test_an_unknown_saved_reply_is_a_message_not_an_error(login, agent, db_session, value):
    ticket = make_ticket(db_session)
    add_saved_reply(db_session, agent, "Hello", "Hi")
    filled = page_of(login(agent), ticket.number, f"?saved_reply={value}")
    assert "doesn&#39;t exist any more" in filled


def test_saved_reply_services_create_update_list_delete(app, agent, db_session):
    first = add_saved_reply(db_session, agent, "  Refund   policy ", "Refunds take 5 days.")
    assert first.title == "Refund policy" and first.created_by_id == agent.id
    second = add_saved_reply(db_session, agent, "Apology", "Sorry, {{ customer.name }}.")
    assert [r.title for r in saved_reply_service.list_saved_replies(db_session)] == [
        "Apology",
        "Refund policy",
    ]
    with pytest.raises(Invalid, match="already exists"):
        saved_reply_service.create_saved_reply(
            db_session, title="refund POLICY", body="x", actor=agent, now=NOW
        )
    with pytest.raises(Invalid):
        saved_reply_service.create_saved_reply(db_session, title="", body="x", actor=agent, now=NOW)
    with pytest.raises(Invalid):
        saved_reply_service.create_saved_reply(
            db_session, title="Empty", body="  ", actor=agent, now=NOW
        )
    db_session.rollback()
    saved_reply_service.update_saved_reply(
        db_session, second, title="Apology", body="We're sorry.", now=minutes(5)
    )
    db_session.commit()
    with pytest.raises(Invalid, match="already exists"):
        saved_reply_service.update_saved_reply(
            db_session, second, title="Refund policy", body="x", now=minutes(5)
        )
    db_session.rollback()
    assert saved_reply_service.get_saved_reply(db_session, second.id).body == "We're sorry."
    saved_reply_service.delete_saved_reply(db_session, first)
    db_session.commit()
    assert [r.title for r in saved_reply_service.list_saved_replies(db_session)] == ["Apology"]


# -- detach ------------------------------------------------------------------------------------


def test_a_wrongly_threaded_message_moves_to_a_new_ticket(login, agent, db_session):
    ticket = make_ticket(db_session, body="First question", at=minutes(0))
    conversation.reply(ticket, actor=agent, body_text="Answer", now=minutes(1))
    db_session.commit()
    stray = customer_says(
        db_session,
        ticket,
        "Something else entirely",
        at=minutes(2),
        email="zoe@example.com",
        message_id="stray@example.com",
        subject="Re: Another topic",
    )
    client = login(agent)
    html_page = page_of(client, ticket.number)
    assert html_page.count("this message </span>to a new ticket</button>") == 2  # customer entries
    response = client.post(
        f"/tickets/{ticket.number}/entries/{stray.id}/detach",
        data={"csrf_token": csrf_token(client, f"/tickets/{ticket.number}")},
    )
    assert response.status_code == 302
    db_session.expire_all()
    new = db_session.scalar(sa.select(Ticket).where(Ticket.id == stray.ticket_id))
    assert new.id != ticket.id
    assert response.headers["Location"] == f"/tickets/{new.number}"
    assert new.customer.email == "zoe@example.com" and new.subject == "Another topic"
    assert new.channel == Channel.EMAIL and new.status == Status.NEW
    assert stray.message_id == "stray@example.com"
    new_history = history(db_session, new)
    assert new_history[0].id == stray.id
    assert new_history[-1].body_text == f"Moved here from #{ticket.number} by Dana"
    old_history = history(db_session, ticket)
    assert [e.body_text for e in old_history[:2]] == ["First question", "Answer"]
    assert old_history[-1].body_text == (
        f"Moved a message from zoe@example.com to new ticket #{new.number} by Dana"
    )
    assert ticket.preview == "Answer"


def test_only_customer_messages_of_this_ticket_can_be_detached(login, agent, db_session):
    ticket = make_ticket(db_session)
    other = make_ticket(db_session, email="bob@example.com")
    note = conversation.add_note(ticket, actor=agent, body_text="Internal", now=minutes(1))
    db_session.commit()
    foreign = history(db_session, other)[0]
    client = login(agent)
    token = csrf_token(client, f"/tickets/{ticket.number}")
    before = _state(db_session)
    response = client.post(
        f"/tickets/{ticket.number}/entries/{note.id}/detach", data={"csrf_token": token}
    )
    assert response.status_code == 400
    response = client.post(
        f"/tickets/{ticket.number}/entries/{foreign.id}/detach", data={"csrf_token": token}
    )
    assert response.status_code == 404
    assert (
        client.post(
            f"/tickets/{ticket.number}/entries/999999/detach", data={"csrf_token": token}
        ).status_code
        == 404
    )
    assert _state(db_session) == before


# -- collision warning -------------------------------------------------------------------------


def reply_form(page: str, body: str, **extra: str) -> dict[str, str]:
    data = {
        "csrf_token": hidden_value(page, "csrf_token"),
        "composer-seen_entry_id": hidden_value(page, "composer-seen_entry_id"),
        "composer-reviewed_entry_id": hidden_value(page, "composer-reviewed_entry_id"),
        "composer-mode": "reply",
        "composer-body": body,
        "composer-status": "pending",
    }
    data.update(extra)
    return data


def agent_replies(db_session, ticket, agent) -> list[str]:
    return [
        e.body_text
        for e in history(db_session, ticket)
        if e.kind == EntryKind.AGENT_REPLY and e.author_agent_id == agent.id
    ]


def test_a_reply_is_not_sent_over_one_the_agent_has_not_seen(login, agent, sam, db_session):
    ticket = make_ticket(db_session)
    client = login(agent)
    loaded = page_of(client, ticket.number)

    conversation.reply(ticket, actor=sam, body_text="Sam got there first.", now=minutes(1))
    db_session.commit()

    response = client.post(
        f"/tickets/{ticket.number}/messages", data=reply_form(loaded, "My carefully written answer")
    )
    assert response.status_code == 409
    warned = response.get_data(as_text=True)
    assert (
        "Sam replied" in warned
        and "after you opened this ticket. Review it, then send again." in warned
    )
    assert "Sam got there first." in warned  # the new entry is on the page
    assert "My carefully written answer</textarea>" in warned  # the text is kept
    assert '<label for="composer-send_anyway">Send anyway</label>' in warned
    assert agent_replies(db_session, ticket, agent) == []

    # Sending again from the warning page without confirming is held again ...
    again = client.post(
        f"/tickets/{ticket.number}/messages", data=reply_form(warned, "My carefully written answer")
    )
    assert again.status_code == 409
    assert agent_replies(db_session, ticket, agent) == []
    # ... and with "Send anyway" it goes out.
    sent = client.post(
        f"/tickets/{ticket.number}/messages",
        data=reply_form(warned, "My carefully written answer", **{"composer-send_anyway": "y"}),
    )
    assert sent.status_code == 302
    assert agent_replies(db_session, ticket, agent) == ["My carefully written answer"]


def test_send_anyway_covers_only_the_messages_shown_with_the_warning(login, agent, sam, db_session):
    ticket = make_ticket(db_session)
    client = login(agent)
    loaded = page_of(client, ticket.number)
    conversation.reply(ticket, actor=sam, body_text="First from Sam", now=minutes(1))
    db_session.commit()
    warned = client.post(
        f"/tickets/{ticket.number}/messages", data=reply_form(loaded, "Draft")
    ).get_data(as_text=True)
    customer_says(db_session, ticket, "Actually, never mind!", at=minutes(2))
    response = client.post(
        f"/tickets/{ticket.number}/messages",
        data=reply_form(warned, "Draft", **{"composer-send_anyway": "y"}),
    )
    assert response.status_code == 409
    assert "Ann replied" in response.get_data(as_text=True)
    assert agent_replies(db_session, ticket, agent) == []


def test_a_customer_message_since_page_load_also_holds_the_reply(login, agent, db_session):
    ticket = make_ticket(db_session)
    client = login(agent)
    loaded = page_of(client, ticket.number)
    customer_says(db_session, ticket, "One more detail", at=minutes(1))
    response = client.post(f"/tickets/{ticket.number}/messages", data=reply_form(loaded, "Hi"))
    assert response.status_code == 409
    assert "Ann replied" in response.get_data(as_text=True)


def test_notes_events_and_own_replies_do_not_hold_a_reply(login, agent, sam, db_session):
    ticket = make_ticket(db_session)
    client = login(agent)
    loaded = page_of(client, ticket.number)
    conversation.add_note(ticket, actor=sam, body_text="FYI", now=minutes(1))
    conversation.assign(ticket, sam, actor=sam, now=minutes(1))
    conversation.reply(ticket, actor=agent, body_text="From my other tab", now=minutes(1))
    db_session.commit()
    response = client.post(f"/tickets/{ticket.number}/messages", data=reply_form(loaded, "Hi"))
    assert response.status_code == 302
    assert agent_replies(db_session, ticket, agent) == ["From my other tab", "Hi"]


def test_a_note_is_never_held_and_a_garbled_guard_is_a_400(login, agent, sam, db_session):
    ticket = make_ticket(db_session)
    client = login(agent)
    loaded = page_of(client, ticket.number)
    conversation.reply(ticket, actor=sam, body_text="Sam", now=minutes(1))
    db_session.commit()
    note = client.post(
        f"/tickets/{ticket.number}/messages",
        data=reply_form(loaded, "Just a note", **{"composer-mode": "note"}),
    )
    assert note.status_code == 302
    bad = client.post(
        f"/tickets/{ticket.number}/messages",
        data=reply_form(loaded, "Hi", **{"composer-seen_entry_id": "1 OR 1=1"}),
    )
    assert bad.status_code == 400
    assert agent_replies(db_session, ticket, agent) == []
