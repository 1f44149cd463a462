"""Agent sign-in: argon2 hashes, CSRF on the form, lockout, safe redirects, cookie flags."""

import pytest

from tests.conftest import TEST_PASSWORD, csrf_token
from ticketing.models import Agent


def _post_login(client, email, password, path="/login"):
    token = csrf_token(client, "/login")
    return client.post(path, data={"csrf_token": token, "email": email, "password": password})


def test_password_is_stored_as_argon2id(agent):
    assert agent.password_hash.startswith("$argon2id$")
    assert TEST_PASSWORD not in agent.password_hash


def test_agent_signs_in_and_sees_the_inbox(client, agent):
    response = _post_login(client, "DANA@example.com", TEST_PASSWORD)
    assert response.status_code == 302
    assert response.headers["Location"] == "/tickets"
    assert "Nothing here" in client.get("/tickets").get_data(as_text=True)


def test_session_cookie_is_httponly_and_samesite(client, agent):
    response = _post_login(client, agent.email, TEST_PASSWORD)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_wrong_password_is_refused_without_saying_which_part(client, agent):
    response = _post_login(client, agent.email, "wrong password!")
    assert response.status_code == 401
    unknown = _post_login(client, "nobody@example.com", "wrong password!")
    assert unknown.status_code == 401
    assert "don&#39;t match" in response.get_data(as_text=True)
    assert client.get("/tickets").status_code == 302  # still signed out


def test_login_without_csrf_token_is_rejected(client, agent):
    response = client.post("/login", data={"email": agent.email, "password": TEST_PASSWORD})
    assert response.status_code == 400
    assert client.get("/tickets").status_code == 302


def test_repeated_failures_lock_the_account_even_for_the_right_password(client, agent, db_session):
    for _ in range(5):
        assert _post_login(client, agent.email, "not the password").status_code == 401
    locked = _post_login(client, agent.email, TEST_PASSWORD)
    assert locked.status_code == 429
    db_session.expire_all()
    assert db_session.get(Agent, agent.id).locked_until is not None


def test_many_failures_from_one_address_are_throttled(client, agent):
    statuses = [
        _post_login(client, f"x{i}@example.com", "nope nope").status_code for i in range(21)
    ]
    assert statuses[:20] == [401] * 20
    assert statuses[20] == 429


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example",
        "/\\evil.example",
        "javascript:alert(1)",
        "%2F%2Fevil.example",
    ],
)
def test_next_parameter_never_redirects_off_site(client, agent, target):
    response = _post_login(client, agent.email, TEST_PASSWORD, path=f"/login?next={target}")
    assert response.status_code == 302
    assert response.headers["Location"] == "/tickets"


def test_next_parameter_keeps_same_site_paths(client, agent):
    response = _post_login(client, agent.email, TEST_PASSWORD, path="/login?next=/tickets/1001")
    assert response.headers["Location"] == "/tickets/1001"


def test_inactive_agent_cannot_sign_in(client, agent, db_session):
    agent.is_active = False
    db_session.commit()
    assert _post_login(client, agent.email, TEST_PASSWORD).status_code == 401


def test_logout_needs_post_with_token(login, agent):
    client = login(agent)
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 400  # no CSRF token
    token = csrf_token(client, "/tickets")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/tickets").status_code == 302


def test_security_headers_on_every_page(client):
    response = client.get("/login")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert "Access-Control-Allow-Origin" not in response.headers
