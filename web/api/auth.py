"""Bearer-token authentication for the agent JSON API.

Only `Authorization: Bearer <token>` signs a request in: the browser's session cookie is
never consulted (Flask-Login's `current_user` is not touched here), so a page on another site
cannot borrow a signed-in agent's cookie to call the API, and the API can safely skip CSRF
tokens (`csrf.exempt` on the blueprint). Browsers never attach an Authorization header on
their own, and no CORS headers are sent, so a cross-origin script cannot set one either.
"""

from __future__ import annotations

from flask import g, request

from ticketing.db import utcnow
from ticketing.models import Agent
from ticketing.services.api_tokens import authenticate_token
from web.extensions import db

REALM = "Handoff API"


class ApiError(Exception):
    """An API failure with an HTTP status and a message safe to show (rendered as JSON)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _unauthorized(message: str, error: str | None = None) -> ApiError:
    # RFC 6750 §3: a request without credentials gets the bare challenge; a bad token gets
    # error="invalid_token".
    challenge = f'Bearer realm="{REALM}"'
    if error:
        challenge += f', error="{error}"'
    return ApiError(401, message, {"WWW-Authenticate": challenge})


def bearer_token() -> str | None:
    """The token in the Authorization header, or None when there is no Bearer credential."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def authenticate_request() -> Agent:
    """The agent the request's bearer token belongs to; raises a 401 ApiError otherwise.

    The token's `last_used_at` stamp (written at most once a minute) is committed at once, in
    its own short transaction, so the request's own work starts from a clean session.
    """
    token = bearer_token()
    if token is None:
        raise _unauthorized(
            "Authentication required: send an API token as 'Authorization: Bearer <token>'."
        )
    agent = authenticate_token(db.session, token, now=utcnow())
    if agent is None:
        db.session.rollback()
        raise _unauthorized("The API token is not valid (unknown or revoked).", "invalid_token")
    db.session.commit()
    g.api_agent = agent
    return agent


def current_agent() -> Agent:
    """The agent signed in by bearer token for this request."""
    return g.api_agent  # type: ignore[no-any-return]
