"""Agents: creation, passwords (argon2id) and sign-in with a lockout on repeated failures."""

from __future__ import annotations

import datetime as dt
import functools

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session

from ticketing.errors import Invalid, RateLimited
from ticketing.models import Agent, AgentRole
from ticketing.models.people import normalize_email

MIN_PASSWORD_LENGTH = 10
MAX_FAILED_LOGINS = 5
LOCKOUT = dt.timedelta(minutes=15)

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the email is unknown, so a miss costs the same time as a wrong
    password and response timing does not reveal which agent accounts exist. Made on first
    use: hashing costs 64 MB, which the mail poller and other CLI commands need not pay."""
    return _hasher.hash("not-a-real-password-but-same-cost")


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(f"Use a password of at least {MIN_PASSWORD_LENGTH} characters.")
    return _hasher.hash(password)


def create_agent(
    session: Session,
    *,
    email: str,
    name: str,
    password: str,
    role: AgentRole = AgentRole.AGENT,
) -> Agent:
    """Add an agent. Raises Invalid if the email is taken or the password too short."""
    email = normalize_email(email)
    if "@" not in email or len(email) > 320:
        raise Invalid("Enter an email address like name@example.com.")
    if session.scalar(sa.select(Agent.id).where(Agent.email == email)) is not None:
        raise Invalid(f"An agent with the email {email} already exists.")
    agent = Agent(email=email, name=name.strip() or email, password_hash=hash_password(password))
    agent.role = role
    session.add(agent)
    session.flush()
    return agent


def set_password(agent: Agent, password: str) -> None:
    agent.password_hash = hash_password(password)


def authenticate(session: Session, *, email: str, password: str, now: dt.datetime) -> Agent | None:
    """The active agent with these credentials, or None.

    After MAX_FAILED_LOGINS failures the account is locked for LOCKOUT; while locked even the
    right password raises RateLimited, so guessing gains nothing. The caller commits either way
    (failures are counted).
    """
    agent = session.scalar(sa.select(Agent).where(Agent.email == normalize_email(email)))
    if agent is None or not agent.is_active:
        _verify(_dummy_hash(), password)
        return None
    if agent.locked_until is not None and agent.locked_until > now:
        raise RateLimited(
            "Too many failed sign-in attempts. Try again in a few minutes.",
            retry_after_seconds=int((agent.locked_until - now).total_seconds()) + 1,
        )
    if not _verify(agent.password_hash, password):
        agent.failed_logins += 1
        if agent.failed_logins >= MAX_FAILED_LOGINS:
            agent.locked_until = now + LOCKOUT
            agent.failed_logins = 0
        session.flush()
        return None
    agent.failed_logins = 0
    agent.locked_until = None
    agent.last_login_at = now
    if _hasher.check_needs_rehash(agent.password_hash):
        agent.password_hash = _hasher.hash(password)
    session.flush()
    return agent


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
