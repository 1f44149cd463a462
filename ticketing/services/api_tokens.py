"""Personal API tokens for the agent JSON API: create (shown once), authenticate, revoke.

A token is `hof_` followed by 256 random bits. Only its sha256 is stored, so a copy of the
database yields no usable token. Looking a token up by its hash is timing-safe with respect to
the secret: the comparison the database makes is on a digest the caller cannot steer, so
response times reveal nothing about how close a guess was. Random 256-bit secrets need no slow
hash (unlike passwords, they cannot be guessed from a dictionary).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ticketing.errors import Invalid, NotFound
from ticketing.models import Agent, ApiToken

PREFIX = "hof_"
MAX_NAME = 100
# A token is PREFIX + 43 url-safe characters; anything much longer is not one of ours, and
# is refused before hashing so a megabyte header costs nothing.
_MAX_TOKEN_CHARS = 100
# How stale `last_used_at` may get: one write a minute at most per token, not one per request.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


def token_digest(plaintext: str) -> str:
    """The hex sha256 of a token: what is stored and looked up."""
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def create_token(
    session: Session, agent: Agent, *, name: str = "", now: dt.datetime
) -> tuple[ApiToken, str]:
    """Issue a token for `agent`; return the row and the plaintext.

    The plaintext exists only in the return value: show it once and forget it. Raises Invalid
    for a deactivated agent or a name over MAX_NAME characters.
    """
    if not agent.is_active:
        raise Invalid(f"{agent.email} is deactivated; reactivate the agent first.")
    name = " ".join("".join(c if c.isprintable() else " " for c in name).split())
    if len(name) > MAX_NAME:
        raise Invalid(f"Use a token name of at most {MAX_NAME} characters.")
    plaintext = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(agent=agent, token_sha256=token_digest(plaintext), name=name, created_at=now)
    session.add(token)
    session.flush()
    return token, plaintext


def authenticate_token(session: Session, plaintext: str, *, now: dt.datetime) -> Agent | None:
    """The active agent a live token belongs to, or None (unknown, revoked, deactivated).

    Records the use in `last_used_at`, at most once per LAST_USED_RESOLUTION (the caller
    commits). Every refusal looks the same to the caller, so nobody learns whether a token
    ever existed.
    """
    if not plaintext.startswith(PREFIX) or len(plaintext) > _MAX_TOKEN_CHARS:
        return None
    try:
        digest = token_digest(plaintext)
    except UnicodeEncodeError:  # a lone surrogate: not a token of ours
        return None
    token = session.scalar(sa.select(ApiToken).where(ApiToken.token_sha256 == digest))
    if token is None or not hmac.compare_digest(token.token_sha256, digest):
        return None
    if token.revoked_at is not None or not token.agent.is_active:
        return None
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        token.last_used_at = now
        session.flush()
    return token.agent


def list_tokens(session: Session, agent: Agent) -> list[ApiToken]:
    """Every token of `agent`, revoked ones included, oldest first (no secrets in them)."""
    return list(
        session.scalars(
            sa.select(ApiToken).where(ApiToken.agent_id == agent.id).order_by(ApiToken.id)
        )
    )


def revoke_token(session: Session, token_id: int, *, now: dt.datetime) -> ApiToken:
    """Revoke the token with this id for good; revoking twice changes nothing.

    Raises NotFound for an unknown id.
    """
    token = session.get(ApiToken, token_id)
    if token is None:
        raise NotFound(f"API token {token_id}")
    if token.revoked_at is None:
        token.revoked_at = now
        session.flush()
    return token


def revoke_agent_tokens(session: Session, agent: Agent, *, now: dt.datetime) -> int:
    """Revoke every live token of `agent` (when the agent leaves); return how many."""
    result = session.execute(
        sa.update(ApiToken)
        .where(ApiToken.agent_id == agent.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session="fetch")
    )
    session.flush()
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
