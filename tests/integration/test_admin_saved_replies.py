"""Admin: saved replies — list, create, edit, delete; hostile titles shown escaped and never
evaluated as templates (security cases 22, 29, 46, 53)."""

from __future__ import annotations

import html as html_lib
import re

import pytest
import sqlalchemy as sa

from tests.conftest import TEST_PASSWORD, csrf_token
from ticketing.db import utcnow
from ticketing.models import AgentRole, SavedReply
from ticketing.services.agents import create_agent
from ticketing.services.saved_replies import create_saved_reply

PAGE = "/admin/saved-replies"
HOSTILE = '"><img src=x onerror=window.__pwned=1>'
TEMPLATE = "{{7*7}}"
# A few strings from the Big List of Naughty Strings, each a known way to break a page.
NAUGHTY = [
    "<script>alert(123)</script>",
    "';!--\"<XSS>=&{()}",
    "{% raw %}{{ config }}{% endraw %}",
    "${7*7} #{7*7} <%= 7*7 %>",
    "1'; DROP TABLE saved_replies; --",
    "%s %n %x %d",
    "Ω≈ç√∫µ≤≥÷ 田中さんにあげて下さい",
    "‪‪test‪ \u202eRTL override \u200b zero width",
    "👾 🙇 💁 🙅 🙆 🙋 🙎 🙍 👨‍👩‍👦",
    "ﷺ Z̮̞̠͙͔ͅḀ̗̞͈̻̗Ḷ͙͎̯̹̞͓G̻O̭̗̮",
    "javascript:alert(1)",
    "\\u0000 \\x00 &amp; &lt;",
]


@pytest.fixture
def admin(db_session):
    created = create_agent(
        db_session,
        email="root@example.com",
        name="Robin Admin",
        password=TEST_PASSWORD,
        role=AgentRole.ADMIN,
    )
    db_session.commit()
    return created


def make_reply(db_session, admin, title="Refund on its way", body="Hi {{ customer.name }},"):
    reply = create_saved_reply(db_session, title=title, body=body, actor=admin, now=utcnow())
    db_session.commit()
    return reply


def replies_state(db_session) -> list[tuple]:
    db_session.expire_all()
    return [
        (r.id, r.title, r.body, r.updated_at)
        for r in db_session.scalars(sa.select(SavedReply).order_by(SavedReply.id))
    ]


def post(client, path: str, data: dict | None = None):
    return client.post(path, data={"csrf_token": csrf_token(client, PAGE), **(data or {})})


def field_html(html: str, field_id: str) -> str:
    return html.split(f'<label for="{field_id}">')[1].split("</div>")[0]


def textarea_value(html: str) -> str:
    # WTForms starts the content with a newline, which HTML parsers drop.
    match = re.search(r'<textarea [^>]*id="body"[^>]*>\r?\n(.*?)</textarea>', html, re.S)
    assert match, "no body textarea"
    return html_lib.unescape(match.group(1))


def input_value(html: str, field_id: str) -> str:
    match = re.search(rf'<input [^>]*id="{field_id}"[^>]*value="([^"]*)"', html)
    assert match, f"no {field_id} input"
    return html_lib.unescape(match.group(1))


# -- access ----------------------------------------------------------------------------


def routes(reply: SavedReply) -> list[tuple[str, str, dict]]:
    return [
        ("GET", PAGE, {}),
        ("POST", PAGE, {"title": "New", "body": "Text"}),
        ("GET", f"{PAGE}/{reply.id}", {}),
        ("POST", f"{PAGE}/{reply.id}", {"title": "Changed", "body": "Changed"}),
        ("POST", f"{PAGE}/{reply.id}/delete", {}),
    ]


def test_anonymous_visitors_are_sent_to_sign_in_and_change_nothing(app, admin, db_session):
    reply = make_reply(db_session, admin)
    before = replies_state(db_session)
    anonymous = app.test_client()
    token = csrf_token(anonymous, "/login")
    for method, path, data in routes(reply):
        response = (
            anonymous.get(path)
            if method == "GET"
            else anonymous.post(path, data={"csrf_token": token, **data})
        )
        assert response.status_code == 302, (method, path)
        assert response.headers["Location"].startswith("/login"), (method, path)
    assert replies_state(db_session) == before


def test_agents_who_are_not_admins_get_404_and_change_nothing(login, agent, admin, db_session):
    reply = make_reply(db_session, admin)
    before = replies_state(db_session)
    client = login(agent)
    token = csrf_token(client, "/tickets")
    for method, path, data in routes(reply):
        response = (
            client.get(path)
            if method == "GET"
            else client.post(path, data={"csrf_token": token, **data})
        )
        assert response.status_code == 404, (method, path)
        assert "Refund on its way" not in response.get_data(as_text=True)
    assert replies_state(db_session) == before


def test_saved_reply_actions_without_a_csrf_token_are_refused_and_change_nothing(
    login, admin, db_session
):
    reply = make_reply(db_session, admin)
    before = replies_state(db_session)
    client = login(admin)
    for method, path, data in routes(reply):
        if method == "POST":
            assert client.post(path, data=data).status_code == 400, path
            assert client.post(path, data={"csrf_token": "x", **data}).status_code == 400, path
    assert replies_state(db_session) == before


def test_unknown_saved_replies_are_not_found(login, admin):
    client = login(admin)
    assert client.get(f"{PAGE}/999999").status_code == 404
    assert post(client, f"{PAGE}/999999", {"title": "t", "body": "b"}).status_code == 404
    assert post(client, f"{PAGE}/999999/delete").status_code == 404


# -- create, list, edit, delete --------------------------------------------------------


def test_create_lists_the_reply_and_shows_the_placeholder_hint(login, admin, db_session):
    client = login(admin)
    empty = client.get(PAGE).get_data(as_text=True)
    assert "No saved replies yet." in empty
    for placeholder in ("{{ customer.name }}", "{{ ticket.number }}"):
        assert f"<code>{placeholder}</code>" in empty
    assert 'aria-describedby="placeholders-hint"' in empty

    response = post(
        client, PAGE, {"title": "Refund on its way", "body": "Hi {{ customer.name }},\n\nDone."}
    )

    assert response.status_code == 302 and response.headers["Location"] == PAGE
    reply = db_session.scalar(sa.select(SavedReply))
    assert (reply.title, reply.body, reply.created_by_id) == (
        "Refund on its way",
        "Hi {{ customer.name }},\n\nDone.",
        admin.id,
    )
    html = client.get(PAGE).get_data(as_text=True)
    assert "Saved reply “Refund on its way” created." in html
    row = html.split(f'<tr id="saved-reply-{reply.id}">')[1].split("</tr>")[0]
    assert f'<a href="{PAGE}/{reply.id}">Refund on its way</a>' in row
    assert "Hi {{ customer.name }}," in row  # shown as written, never rendered here


def test_edit_changes_title_and_body(login, admin, db_session):
    reply = make_reply(db_session, admin)
    client = login(admin)
    page = client.get(f"{PAGE}/{reply.id}").get_data(as_text=True)
    assert input_value(page, "title") == "Refund on its way"
    assert textarea_value(page) == "Hi {{ customer.name }},"

    response = post(
        client, f"{PAGE}/{reply.id}", {"title": "Refund sent", "body": "Dear {{ customer.name }}"}
    )

    assert response.status_code == 302
    db_session.expire_all()
    changed = db_session.get(SavedReply, reply.id)
    assert (changed.title, changed.body) == ("Refund sent", "Dear {{ customer.name }}")
    assert changed.updated_at >= changed.created_at
    assert "Saved reply “Refund sent” updated." in client.get(PAGE).get_data(as_text=True)


def test_delete_removes_the_reply(login, admin, db_session):
    keep = make_reply(db_session, admin, title="Keep me")
    gone = make_reply(db_session, admin, title="Delete me")
    client = login(admin)

    response = post(client, f"{PAGE}/{gone.id}/delete")

    assert response.status_code == 302
    assert [row[0] for row in replies_state(db_session)] == [keep.id]
    html = client.get(PAGE).get_data(as_text=True)
    assert "Saved reply “Delete me” deleted." in html
    assert f'id="saved-reply-{gone.id}"' not in html
    assert post(client, f"{PAGE}/{gone.id}/delete").status_code == 404


# -- errors keep what was typed --------------------------------------------------------


def test_errors_are_next_to_the_field_and_keep_what_was_typed(login, admin, db_session):
    make_reply(db_session, admin, title="Taken")
    before = replies_state(db_session)
    client = login(admin)
    body = "Hello {{ customer.name }},\n<b>kept</b> exactly"

    no_title = post(client, PAGE, {"title": "  ", "body": body})
    assert no_title.status_code == 400
    html = no_title.get_data(as_text=True)
    assert "Give the saved reply a title." in field_html(html, "title")
    assert textarea_value(html) == body

    taken = post(client, PAGE, {"title": "TAKEN", "body": body})
    assert taken.status_code == 400
    html = taken.get_data(as_text=True)
    assert "A saved reply with this title already exists." in field_html(html, "title")
    assert textarea_value(html) == body and input_value(html, "title") == "TAKEN"

    typo = post(client, PAGE, {"title": "Typo", "body": "Hi {{ customer.nmae }}"})
    assert typo.status_code == 400
    html = typo.get_data(as_text=True)
    assert "uses a placeholder Handoff doesn&#39;t know" in field_html(html, "body")
    assert textarea_value(html) == "Hi {{ customer.nmae }}" and input_value(html, "title") == "Typo"

    broken = post(client, PAGE, {"title": "Broken", "body": "Hi {{ customer.name"})
    assert broken.status_code == 400
    assert "template error on line 1" in field_html(broken.get_data(as_text=True), "body")

    no_body = post(client, PAGE, {"title": "Fresh", "body": ""})
    assert no_body.status_code == 400
    html = no_body.get_data(as_text=True)
    assert "Write the reply text." in field_html(html, "body")
    assert input_value(html, "title") == "Fresh"

    too_long = post(client, PAGE, {"title": "x" * 201, "body": body})
    assert "Use a title of at most 200 characters." in too_long.get_data(as_text=True)

    nul = post(client, PAGE, {"title": "Nul", "body": "a\x00b"})
    assert nul.status_code == 400
    assert "control characters" in field_html(nul.get_data(as_text=True), "body")
    assert replies_state(db_session) == before


def test_editing_to_a_taken_title_is_refused_and_keeps_the_edit(login, admin, db_session):
    make_reply(db_session, admin, title="Taken")
    reply = make_reply(db_session, admin, title="Mine")
    before = replies_state(db_session)

    response = post(login(admin), f"{PAGE}/{reply.id}", {"title": "Taken", "body": "New text"})

    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "already exists" in field_html(html, "title")
    assert textarea_value(html) == "New text"
    assert replies_state(db_session) == before


# -- hostile input ---------------------------------------------------------------------


def test_hostile_titles_are_escaped_and_never_evaluated(login, admin, db_session):
    client = login(admin)
    title = f"{HOSTILE} {TEMPLATE}"
    body = f"{HOSTILE}\n{TEMPLATE} {{{{ customer.name }}}}"

    post(client, PAGE, {"title": title, "body": body})

    reply = db_session.scalar(sa.select(SavedReply))
    assert (reply.title, reply.body) == (title, body)
    pages = [
        client.get(PAGE).get_data(as_text=True),
        client.get(f"{PAGE}/{reply.id}").get_data(as_text=True),
    ]
    for html in pages:
        assert "<img src=x" not in html
        assert "&lt;img src=x onerror=window.__pwned=1&gt;" in html
        assert TEMPLATE in html and ">49<" not in html and " 49" not in html
    edit = pages[1]
    assert input_value(edit, "title") == title and textarea_value(edit) == body
    # The delete flash escapes it too.
    post(client, f"{PAGE}/{reply.id}/delete")
    after = client.get(PAGE).get_data(as_text=True)
    assert "<img src=x" not in after and "&lt;img src=x" in after


@pytest.mark.parametrize("text", NAUGHTY)
def test_naughty_strings_are_stored_and_shown_back_exactly(login, admin, db_session, text):
    client = login(admin)

    response = post(client, PAGE, {"title": text, "body": f"{text}\n{text}"})

    assert response.status_code == 302, response.get_data(as_text=True)
    reply = db_session.scalar(sa.select(SavedReply))
    assert reply.title == " ".join(text.split())
    assert reply.body == f"{text}\n{text}"
    edit = client.get(f"{PAGE}/{reply.id}")
    assert edit.status_code == 200
    html = edit.get_data(as_text=True)
    assert input_value(html, "title") == reply.title
    assert textarea_value(html) == reply.body
    assert "<script>alert" not in html and "<XSS>" not in html
