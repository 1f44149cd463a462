"""Admin: the mailboxes page — status, "Test connection" against a real Dovecot, add, change
password, remove; passwords never in a page (security cases 11, 29, 45, 46)."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from tests.conftest import TEST_PASSWORD, csrf_token
from ticketing.db import utcnow
from ticketing.models import AgentRole, Channel, Mailbox, MailboxSecurity, Ticket
from ticketing.services import conversation, customers
from ticketing.services.agents import create_agent
from ticketing.services.mailboxes import add_mailbox, imap_password

PAGE = "/admin/mailboxes"
SUPPORT = "support@example.com"
IMAP_PASSWORD = "Imap-Pa55word-that-must-not-leak"


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


def make_mailbox(db_session, app, name="support", *, host="127.0.0.1", port=1143, **state):
    box = add_mailbox(
        db_session,
        name=name,
        address=f"{name}@example.com",
        imap_host=host,
        imap_port=port,
        imap_user=SUPPORT,
        imap_password=state.pop("password", IMAP_PASSWORD),
        imap_security=MailboxSecurity.PLAIN,
        secret_key=app.config["SECRET_KEY"],
    )
    for key, value in state.items():
        setattr(box, key, value)
    db_session.commit()
    return box


def mailboxes_state(db_session) -> list[tuple]:
    db_session.expire_all()
    return [
        (m.id, m.name, m.address, m.imap_host, m.imap_port, m.is_active, m.imap_password_encrypted)
        for m in db_session.scalars(sa.select(Mailbox).order_by(Mailbox.id))
    ]


def stored(db_session, name="support") -> Mailbox | None:
    db_session.expire_all()
    return db_session.scalar(sa.select(Mailbox).where(Mailbox.name == name))


def form(**changes) -> dict:
    data = {
        "name": "billing",
        "address": "Billing@Example.com",
        "imap_host": "imap.example.com",
        "imap_port": "993",
        "security": "tls",
        "imap_user": "billing@example.com",
        "imap_password": IMAP_PASSWORD,
        "folder": "INBOX",
        "move_to": "",
    }
    data.update(changes)
    return data


def post(client, path: str, data: dict | None = None):
    return client.post(path, data={"csrf_token": csrf_token(client, PAGE), **(data or {})})


def field_html(html: str, field_id: str) -> str:
    return html.split(f'<label for="{field_id}">')[1].split("</div>")[0]


def result_html(html: str, mailbox: Mailbox) -> str:
    match = re.search(rf'<div [^>]*id="mailbox-{mailbox.id}-result">(.*?)</div>', html, re.S)
    assert match, "no test result on the page"
    return match.group(1)


# -- access ----------------------------------------------------------------------------


def routes(box: Mailbox) -> list[tuple[str, str, dict]]:
    return [
        ("GET", PAGE, {}),
        ("POST", PAGE, form()),
        ("POST", f"{PAGE}/{box.id}/test", {}),
        ("POST", f"{PAGE}/{box.id}/password", {f"mailbox-{box.id}-imap_password": "new pw"}),
        ("POST", f"{PAGE}/{box.id}/remove", {}),
    ]


def test_anonymous_visitors_are_sent_to_sign_in_and_change_nothing(app, db_session):
    box = make_mailbox(db_session, app)
    before = mailboxes_state(db_session)
    anonymous = app.test_client()
    token = csrf_token(anonymous, "/login")
    for method, path, data in routes(box):
        response = (
            anonymous.get(path)
            if method == "GET"
            else anonymous.post(path, data={"csrf_token": token, **data})
        )
        assert response.status_code == 302, (method, path)
        assert response.headers["Location"].startswith("/login"), (method, path)
    assert mailboxes_state(db_session) == before


def test_agents_who_are_not_admins_get_404_and_change_nothing(login, agent, app, db_session):
    box = make_mailbox(db_session, app)
    before = mailboxes_state(db_session)
    client = login(agent)
    token = csrf_token(client, "/tickets")
    for method, path, data in routes(box):
        response = (
            client.get(path)
            if method == "GET"
            else client.post(path, data={"csrf_token": token, **data})
        )
        assert response.status_code == 404, (method, path)
        assert "support@example.com" not in response.get_data(as_text=True)
    assert mailboxes_state(db_session) == before


def test_mailbox_actions_without_a_csrf_token_are_refused_and_change_nothing(
    login, admin, app, db_session
):
    box = make_mailbox(db_session, app)
    before = mailboxes_state(db_session)
    client = login(admin)
    for method, path, data in routes(box):
        if method == "POST":
            assert client.post(path, data=data).status_code == 400, path
            assert client.post(path, data={"csrf_token": "x", **data}).status_code == 400, path
    assert mailboxes_state(db_session) == before


# -- the list --------------------------------------------------------------------------


def test_admin_sees_each_active_mailbox_with_its_status_but_no_password(
    login, admin, app, db_session
):
    make_mailbox(
        db_session,
        app,
        "sales",
        last_error="login failed for user support@example.com: check the user name and password",
        poll_failures=3,
        last_polled_at=utcnow(),
    )
    make_mailbox(db_session, app, "support", last_polled_at=utcnow())
    make_mailbox(db_session, app, "fresh")
    make_mailbox(db_session, app, "retired", is_active=False)

    html = login(admin).get(PAGE).get_data(as_text=True)

    names = re.findall(r'<h2 id="mailbox-\d+-name">([^<]+)</h2>', html)
    assert names == ["fresh", "sales", "support"]
    sales = html.split(">sales</h2>")[1].split("</section>")[0]
    assert "127.0.0.1:1143 (no encryption)" in sales
    assert "check the user name and password</span> (3 failures in a row)" in sales
    assert "Test connection to sales" in sales
    support = html.split(">support</h2>")[1].split("</section>")[0]
    assert "<dd>OK</dd>" in support
    assert "not polled yet" in html.split(">fresh</h2>")[1].split("</section>")[0]
    assert IMAP_PASSWORD not in html
    assert 'type="password"' in html


# -- test connection (real Dovecot) ----------------------------------------------------


def test_test_connection_with_the_right_password_reports_the_folder(
    login, admin, app, db_session, imap_mailbox
):
    imap_mailbox.append(SUPPORT, b"Subject: one\r\n\r\nHello\r\n")
    imap_mailbox.append(SUPPORT, b"Subject: two\r\n\r\nHello\r\n", flags=[r"\Seen"])
    box = make_mailbox(
        db_session,
        app,
        host=imap_mailbox.host,
        port=imap_mailbox.port,
        password=imap_mailbox.users[SUPPORT],
    )
    client = login(admin)

    response = post(client, f"{PAGE}/{box.id}/test")

    assert response.status_code == 200
    result = result_html(response.get_data(as_text=True), box)
    assert f"Signed in to {imap_mailbox.host}:{imap_mailbox.port} as {SUPPORT} (plain)." in result
    assert "Folder INBOX: 2 messages, 1 unread." in result
    assert "secret" not in response.get_data(as_text=True).replace('name="csrf_token"', "")
    # Testing changes nothing on the server or in the mailbox's poll state.
    assert imap_mailbox.uids(SUPPORT, criteria="UNSEEN") != []
    assert stored(db_session).last_polled_at is None


def test_test_connection_with_a_wrong_password_explains_in_words_without_the_password(
    login, admin, app, db_session, imap_server
):
    box = make_mailbox(db_session, app, host=imap_server.host, port=imap_server.port)
    client = login(admin)

    response = post(client, f"{PAGE}/{box.id}/test")

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    result = result_html(html, box)
    assert (
        f"The test failed: login failed for user {SUPPORT}: check the user name and password"
        in result
    )
    assert IMAP_PASSWORD not in html


def test_test_connection_to_a_closed_port_says_so(login, admin, app, db_session):
    from tests.support.services import free_port

    box = make_mailbox(db_session, app, port=free_port())
    response = post(login(admin), f"{PAGE}/{box.id}/test")
    result = result_html(response.get_data(as_text=True), box)
    assert "The test failed: connection refused" in result


def test_after_secret_key_changed_the_test_says_so(login, admin, app, db_session):
    box = make_mailbox(db_session, app)
    client = login(admin)
    app.config["SECRET_KEY"] = "another-secret-key-" + "y" * 32
    client = login(admin)  # the old session was signed with the old key

    response = post(client, f"{PAGE}/{box.id}/test")

    assert "was SECRET_KEY changed?" in result_html(response.get_data(as_text=True), box)


def test_a_new_password_makes_the_test_pass(login, admin, app, db_session, imap_server):
    box = make_mailbox(db_session, app, host=imap_server.host, port=imap_server.port)
    client = login(admin)

    response = post(
        client, f"{PAGE}/{box.id}/password", {f"mailbox-{box.id}-imap_password": "secret"}
    )

    assert response.status_code == 302
    assert imap_password(stored(db_session), secret_key=app.config["SECRET_KEY"]) == "secret"
    assert "Stored a new IMAP password for support." in client.get(PAGE).get_data(as_text=True)
    ok = post(client, f"{PAGE}/{box.id}/test").get_data(as_text=True)
    assert "Folder INBOX:" in result_html(ok, box)


def test_an_empty_new_password_is_refused_next_to_its_field(login, admin, app, db_session):
    box = make_mailbox(db_session, app)
    before = mailboxes_state(db_session)

    response = post(login(admin), f"{PAGE}/{box.id}/password", {})

    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "Enter the new IMAP password." in field_html(html, f"mailbox-{box.id}-imap_password")
    assert mailboxes_state(db_session) == before


# -- add -------------------------------------------------------------------------------


def test_add_stores_the_mailbox_with_its_password_encrypted(login, admin, app, db_session):
    client = login(admin)

    response = post(client, PAGE, form(move_to="Processed", security="starttls"))

    assert response.status_code == 302 and response.headers["Location"] == PAGE
    box = stored(db_session, "billing")
    assert (box.address, box.imap_host, box.imap_port, box.imap_user) == (
        "billing@example.com",
        "imap.example.com",
        993,
        "billing@example.com",
    )
    assert box.imap_security is MailboxSecurity.STARTTLS
    assert (box.folder, box.move_to_folder, box.is_active) == ("INBOX", "Processed", True)
    assert IMAP_PASSWORD not in box.imap_password_encrypted
    assert imap_password(box, secret_key=app.config["SECRET_KEY"]) == IMAP_PASSWORD
    page = client.get(PAGE).get_data(as_text=True)
    assert "Added mailbox billing." in page and IMAP_PASSWORD not in page


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"security": "plain"}, "security", "Plain IMAP would send the password"),
        ({"imap_port": "abc"}, "imap_port", "Enter the port as a number, such as 993."),
        ({"imap_port": "70000"}, "imap_port", "Enter a port between 1 and 65535."),
        ({"address": "not an address"}, "address", "is not an email address"),
        ({"name": "has space"}, "name", "A mailbox name is 1-100 letters"),
        ({"imap_host": ""}, "imap_host", "Enter the IMAP server&#39;s host name."),
        ({"imap_password": ""}, "imap_password", "Enter the IMAP password."),
        ({"move_to": "INBOX"}, "move_to", "The move-to folder must differ"),
        ({"security": "ssl3"}, "security", "Not a valid choice"),
    ],
)
def test_add_errors_are_next_to_the_field_and_keep_what_was_typed_except_the_password(
    login, admin, db_session, changes, field, message
):
    response = post(login(admin), PAGE, form(**changes))

    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert message in field_html(html, field)
    assert 'aria-invalid="true"' in field_html(html, field)
    assert 'role="alert"' in html  # the summary at the top of the form
    assert 'value="imap.example.com"' in html or changes.get("imap_host") == ""
    assert 'value="billing@example.com"' in field_html(html, "imap_user")
    assert IMAP_PASSWORD not in html
    assert "enter it again" in html
    assert stored(db_session, "billing") is None


def test_add_refuses_a_name_already_taken(login, admin, app, db_session):
    make_mailbox(db_session, app, "billing")
    before = mailboxes_state(db_session)

    response = post(login(admin), PAGE, form())

    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "A mailbox named &#39;billing&#39; already exists." in field_html(html, "name")
    assert mailboxes_state(db_session) == before


# -- remove ----------------------------------------------------------------------------


def test_remove_deletes_a_mailbox_nothing_refers_to(login, admin, app, db_session):
    box = make_mailbox(db_session, app)
    client = login(admin)

    response = post(client, f"{PAGE}/{box.id}/remove")

    assert response.status_code == 302
    assert stored(db_session) is None
    assert "Removed mailbox support." in client.get(PAGE).get_data(as_text=True)
    assert post(client, f"{PAGE}/{box.id}/remove").status_code == 404


def test_remove_keeps_a_mailbox_tickets_refer_to_but_stops_polling_it(
    login, admin, app, db_session
):
    box = make_mailbox(db_session, app)
    conversation.open_ticket(
        db_session,
        customer=customers.find_or_create(db_session, email="ann@example.org"),
        subject="Card declined",
        channel=Channel.EMAIL,
        now=utcnow(),
        mailbox_id=box.id,
    )
    db_session.commit()
    client = login(admin)

    post(client, f"{PAGE}/{box.id}/remove")

    kept = stored(db_session)
    assert kept is not None and not kept.is_active and kept.imap_password_encrypted == ""
    assert db_session.scalar(sa.select(Ticket.mailbox_id)) == kept.id
    html = client.get(PAGE).get_data(as_text=True)
    assert "no longer polled and its password was deleted" in html
    assert 'id="mailbox-' not in html  # no longer listed
    # Removed mailboxes are out of reach for every action.
    for action in ("test", "password", "remove"):
        assert post(client, f"{PAGE}/{kept.id}/{action}").status_code == 404, action
