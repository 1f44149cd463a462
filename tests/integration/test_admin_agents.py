"""Admin: the agents page (invite, role, deactivate/reactivate, reset password), the admin
index and its nav link; admin-only on every route and action (security cases 29, 46)."""

from __future__ import annotations

import html as html_lib
import re

import pytest
import sqlalchemy as sa

from tests.conftest import TEST_PASSWORD, csrf_token
from ticketing.models import Agent, AgentRole
from ticketing.services.agents import create_agent

HOSTILE = '"><img src=x onerror=window.__pwned=1> {{7*7}}'


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


def agents_state(db_session) -> list[tuple]:
    db_session.expire_all()
    return [
        (a.id, a.email, a.name, a.role, a.is_active, a.password_hash)
        for a in db_session.scalars(sa.select(Agent).order_by(Agent.id))
    ]


def reload(db_session, agent: Agent) -> Agent:
    db_session.expire_all()
    return db_session.get(Agent, agent.id)


def temporary_password(response) -> str:
    assert response.status_code == 200, response.get_data(as_text=True)
    html = response.get_data(as_text=True)
    match = re.search(r'<input id="temporary-password" [^>]*value="([^"]+)"', html)
    assert match, "no temporary password on the page"
    return html_lib.unescape(match.group(1))


def can_sign_in(app, email: str, password: str) -> bool:
    other = app.test_client()
    token = csrf_token(other, "/login")
    response = other.post(
        "/login", data={"csrf_token": token, "email": email, "password": password}
    )
    return response.status_code == 302


def post(client, path: str, data: dict | None = None, *, token_from: str = "/admin/agents"):
    return client.post(path, data={"csrf_token": csrf_token(client, token_from), **(data or {})})


def invite(client, name="Sam Agent", email="sam@example.com", role="agent"):
    return post(client, "/admin/agents", {"name": name, "email": email, "role": role})


# -- access ----------------------------------------------------------------------------


def routes(target: Agent) -> list[tuple[str, str, dict]]:
    """Every agents/index route, with data that would change something if allowed."""
    return [
        ("GET", "/admin", {}),
        ("GET", "/admin/agents", {}),
        ("POST", "/admin/agents", {"name": "Eve", "email": "eve@example.com", "role": "admin"}),
        ("POST", f"/admin/agents/{target.id}/role", {f"agent-{target.id}-role": "agent"}),
        ("POST", f"/admin/agents/{target.id}/deactivate", {}),
        ("POST", f"/admin/agents/{target.id}/reactivate", {}),
        ("POST", f"/admin/agents/{target.id}/reset-password", {}),
    ]


def test_anonymous_visitors_are_sent_to_sign_in_and_change_nothing(app, admin, db_session):
    before = agents_state(db_session)
    anonymous = app.test_client()
    token = csrf_token(anonymous, "/login")  # a valid token, so only the sign-in check decides
    for method, path, data in routes(admin):
        if method == "GET":
            response = anonymous.get(path)
        else:
            response = anonymous.post(path, data={"csrf_token": token, **data})
        assert response.status_code == 302, (method, path)
        assert response.headers["Location"].startswith("/login"), (method, path)
    assert agents_state(db_session) == before


def test_agents_who_are_not_admins_get_404_and_change_nothing(login, agent, admin, db_session):
    before = agents_state(db_session)
    client = login(agent)
    token = csrf_token(client, "/tickets")
    for target in (admin, agent):
        for method, path, data in routes(target):
            if method == "GET":
                response = client.get(path)
            else:
                response = client.post(path, data={"csrf_token": token, **data})
            assert response.status_code == 404, (method, path)
            assert "Robin Admin" not in response.get_data(as_text=True)
    assert agents_state(db_session) == before
    # …and the nav offers them no Admin link.
    assert 'href="/admin"' not in client.get("/tickets").get_data(as_text=True)


def test_admin_sees_the_admin_link_and_an_index_of_the_sections(login, admin):
    client = login(admin)
    inbox = client.get("/tickets").get_data(as_text=True)
    assert re.search(r'<a href="/admin"[^>]*>Admin</a>', inbox)
    page = client.get("/admin")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for path, label in [
        ("/admin/agents", "Agents"),
        ("/admin/mailboxes", "Mailboxes"),
        ("/admin/saved-replies", "Saved replies"),
        ("/admin/mail/failed", "Failed mail"),
    ]:
        assert f'<a href="{path}">{label}</a>' in html
        assert client.get(path).status_code == 200


def test_agents_page_lists_name_email_role_status_and_last_sign_in(login, admin, agent, db_session):
    gone = create_agent(db_session, email="old@example.com", name="Olga", password=TEST_PASSWORD)
    gone.is_active = False
    db_session.commit()

    html = login(admin).get("/admin/agents").get_data(as_text=True)

    rows = {
        m.group(1): m.group(2)
        for m in re.finditer(r'<tr id="agent-(\d+)">(.*?)</tr>', html, flags=re.S)
    }
    assert set(rows) == {str(admin.id), str(agent.id), str(gone.id)}
    me = rows[str(admin.id)]
    assert "Robin Admin" in me and "root@example.com" in me and ">you<" in me
    assert '<option selected value="admin">' in me
    assert "Active" in me and "just now" in me  # signed in a moment ago
    dana = rows[str(agent.id)]
    assert '<option selected value="agent">' in dana and "never" in dana
    assert "Deactivate Dana" in dana
    olga = rows[str(gone.id)]
    assert "Deactivated" in olga and "Reactivate Olga" in olga
    assert html.index("Olga") > html.index("Dana")  # active agents first


# -- invite ----------------------------------------------------------------------------


def test_invited_agent_signs_in_with_the_password_shown_once(login, admin, app, db_session):
    client = login(admin)

    response = invite(client, email="Sam@Example.com")
    password = temporary_password(response)

    html = response.get_data(as_text=True)
    assert "does not send invitation emails yet" in html
    assert "sam@example.com" in html and "http://127.0.0.1:5000/login" in html
    assert response.headers["Cache-Control"] == "no-store"
    sam = db_session.scalar(sa.select(Agent).where(Agent.email == "sam@example.com"))
    assert (sam.name, sam.role, sam.is_active) == ("Sam Agent", AgentRole.AGENT, True)
    assert password not in sam.password_hash
    assert len(password) >= 20
    # Shown once: the agents page does not show it again.
    assert password not in client.get("/admin/agents").get_data(as_text=True)
    assert can_sign_in(app, "sam@example.com", password)
    assert not can_sign_in(app, "sam@example.com", password + "x")


def test_invite_as_admin_gives_the_admin_role(login, admin, db_session):
    temporary_password(invite(login(admin), name="Ada", email="ada@example.com", role="admin"))
    ada = db_session.scalar(sa.select(Agent).where(Agent.email == "ada@example.com"))
    assert ada.role == AgentRole.ADMIN


def test_invite_errors_are_next_to_the_field_and_keep_what_was_typed(login, admin, db_session):
    client = login(admin)
    before = agents_state(db_session)

    response = invite(client, name="Sam Agent", email="not an address", role="admin")

    assert response.status_code == 400
    html = response.get_data(as_text=True)
    field = html.split('<label for="email">')[1].split("</div>")[0]
    assert "Enter an email address like name@example.com." in field
    assert 'aria-invalid="true"' in field and 'value="not an address"' in field
    assert 'value="Sam Agent"' in html
    assert '<option selected value="admin">' in html.split('id="invite-heading"')[1]

    taken = invite(client, name="Another Dana", email="ROOT@example.com")
    assert taken.status_code == 400
    field = taken.get_data(as_text=True).split('<label for="email">')[1].split("</div>")[0]
    assert "An agent with the email root@example.com already exists." in field

    empty = invite(client, name="", email="")
    assert empty.status_code == 400
    assert "Enter the agent&#39;s name." in empty.get_data(as_text=True)

    bad_role = invite(client, role="superuser")
    assert bad_role.status_code == 400
    assert agents_state(db_session) == before


def test_hostile_agent_names_are_shown_escaped(login, admin, db_session):
    client = login(admin)
    response = invite(client, name=HOSTILE, email="x@example.com")
    temporary_password(response)
    for html in (response.get_data(as_text=True), client.get("/admin/agents").get_data(True)):
        assert "<img src=x" not in html
        assert "&lt;img src=x onerror=window.__pwned=1&gt; {{7*7}}" in html
        assert "&gt; 49" not in html  # the name, had {{7*7}} been evaluated
    stored = db_session.scalar(sa.select(Agent).where(Agent.email == "x@example.com"))
    assert stored.name == HOSTILE


# -- deactivate, reactivate, reset password --------------------------------------------


def test_deactivated_agent_cannot_sign_in_and_their_session_ends(
    login, admin, agent, app, db_session
):
    dana = app.test_client()
    token = csrf_token(dana, "/login")
    dana.post("/login", data={"csrf_token": token, "email": agent.email, "password": TEST_PASSWORD})
    assert dana.get("/tickets").status_code == 200
    client = login(admin)

    response = post(client, f"/admin/agents/{agent.id}/deactivate")

    assert response.status_code == 302 and response.headers["Location"] == "/admin/agents"
    assert "Dana is deactivated and signed out everywhere." in client.get("/admin/agents").text
    assert not reload(db_session, agent).is_active
    ended = dana.get("/tickets")
    assert ended.status_code == 302 and ended.headers["Location"].startswith("/login")
    assert not can_sign_in(app, agent.email, TEST_PASSWORD)
    # Deactivating twice changes nothing more.
    assert post(client, f"/admin/agents/{agent.id}/deactivate").status_code == 302


def test_reactivation_gives_a_new_password_and_never_revives_old_sessions(
    login, admin, agent, app, db_session
):
    dana = app.test_client()
    token = csrf_token(dana, "/login")
    dana.post("/login", data={"csrf_token": token, "email": agent.email, "password": TEST_PASSWORD})
    client = login(admin)
    post(client, f"/admin/agents/{agent.id}/deactivate")

    password = temporary_password(post(client, f"/admin/agents/{agent.id}/reactivate"))

    assert reload(db_session, agent).is_active
    # The session cookie Dana (or whoever copied it) still holds stays signed out.
    assert dana.get("/tickets").status_code == 302
    assert not can_sign_in(app, agent.email, TEST_PASSWORD)
    assert can_sign_in(app, agent.email, password)
    # Reactivating an active agent is refused in words.
    again = post(client, f"/admin/agents/{agent.id}/reactivate")
    assert again.status_code == 302
    assert "Dana is already active." in client.get("/admin/agents").get_data(as_text=True)


def test_reset_password_ends_the_agents_sessions_and_shows_a_new_one(
    login, admin, agent, app, db_session
):
    dana = app.test_client()
    token = csrf_token(dana, "/login")
    dana.post("/login", data={"csrf_token": token, "email": agent.email, "password": TEST_PASSWORD})
    client = login(admin)

    password = temporary_password(post(client, f"/admin/agents/{agent.id}/reset-password"))

    assert dana.get("/tickets").status_code == 302
    assert not can_sign_in(app, agent.email, TEST_PASSWORD)
    assert can_sign_in(app, agent.email, password)


# -- roles and the last admin ----------------------------------------------------------


def test_role_change_opens_and_closes_the_admin_pages(login, admin, agent, app, db_session):
    dana = app.test_client()
    token = csrf_token(dana, "/login")
    dana.post("/login", data={"csrf_token": token, "email": agent.email, "password": TEST_PASSWORD})
    assert dana.get("/admin").status_code == 404
    client = login(admin)

    promote = post(client, f"/admin/agents/{agent.id}/role", {f"agent-{agent.id}-role": "admin"})

    assert promote.status_code == 302
    assert reload(db_session, agent).role == AgentRole.ADMIN
    assert "Dana is now an admin." in client.get("/admin/agents").get_data(as_text=True)
    assert dana.get("/admin").status_code == 200  # the same session, no new sign-in

    post(client, f"/admin/agents/{agent.id}/role", {f"agent-{agent.id}-role": "agent"})
    assert reload(db_session, agent).role == AgentRole.AGENT
    assert dana.get("/admin").status_code == 404


def test_the_last_active_admin_cannot_demote_or_deactivate_themselves(
    login, admin, agent, db_session
):
    client = login(admin)
    before = agents_state(db_session)

    demote = post(client, f"/admin/agents/{admin.id}/role", {f"agent-{admin.id}-role": "agent"})
    assert demote.status_code == 302
    html = client.get("/admin/agents").get_data(as_text=True)
    assert "Robin Admin is the only active admin, and Handoff needs at least one." in html
    assert "Make another agent an admin first." in html

    deactivate = post(client, f"/admin/agents/{admin.id}/deactivate")
    assert deactivate.status_code == 302
    assert "is the only active admin" in client.get("/admin/agents").get_data(as_text=True)
    assert agents_state(db_session) == before
    assert client.get("/admin").status_code == 200  # still signed in, still admin


def test_an_inactive_admin_does_not_count_as_the_other_admin(login, admin, db_session):
    dormant = create_agent(
        db_session,
        email="dormant@example.com",
        name="Dormant",
        password=TEST_PASSWORD,
        role=AgentRole.ADMIN,
    )
    dormant.is_active = False
    db_session.commit()
    client = login(admin)

    post(client, f"/admin/agents/{admin.id}/role", {f"agent-{admin.id}-role": "agent"})

    assert reload(db_session, admin).role == AgentRole.ADMIN


def test_with_another_admin_an_admin_may_step_down(login, admin, db_session):
    create_agent(
        db_session,
        email="second@example.com",
        name="Second",
        password=TEST_PASSWORD,
        role=AgentRole.ADMIN,
    )
    db_session.commit()
    client = login(admin)

    response = post(client, f"/admin/agents/{admin.id}/role", {f"agent-{admin.id}-role": "agent"})

    assert response.status_code == 302 and response.headers["Location"] == "/tickets"
    assert reload(db_session, admin).role == AgentRole.AGENT
    assert client.get("/admin").status_code == 404


def test_an_admin_who_deactivates_themselves_is_signed_out(login, admin, app, db_session):
    create_agent(
        db_session,
        email="second@example.com",
        name="Second",
        password=TEST_PASSWORD,
        role=AgentRole.ADMIN,
    )
    db_session.commit()
    client = login(admin)

    response = post(client, f"/admin/agents/{admin.id}/deactivate")

    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert not reload(db_session, admin).is_active
    assert client.get("/tickets").status_code == 302
    assert not can_sign_in(app, admin.email, TEST_PASSWORD)


# -- CSRF and unknown ids --------------------------------------------------------------


def test_agent_actions_without_a_csrf_token_are_refused_and_change_nothing(
    login, admin, agent, db_session
):
    client = login(admin)
    before = agents_state(db_session)
    for method, path, data in routes(agent):
        if method == "POST":
            response = client.post(path, data=data)
            assert response.status_code == 400, path
            assert "Reload and retry" in response.get_data(as_text=True)
            forged = client.post(path, data={"csrf_token": "forged", **data})
            assert forged.status_code == 400, path
    assert agents_state(db_session) == before


def test_agent_actions_on_an_unknown_agent_are_not_found(login, admin):
    client = login(admin)
    for action in ("role", "deactivate", "reactivate", "reset-password"):
        response = post(client, f"/admin/agents/999999/{action}", {"agent-999999-role": "agent"})
        assert response.status_code == 404, action
