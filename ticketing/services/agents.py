"""Agents: creation, passwords (argon2id) and sign-in with a lockout on repeated failures.

Also what an admin does to the team: invite (a temporary password shown once), change a
role, deactivate and reactivate, always keeping at least one active admin.
"""

from __future__ import annotations

import datetime as dt
import functools
import secrets

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session

from ticketing.db import utcnow
from ticketing.errors import Invalid, RateLimited
from ticketing.models import Agent, AgentRole
from ticketing.models.people import normalize_email
from ticketing.services.api_tokens import revoke_agent_tokens

MIN_PASSWORD_LENGTH = 10
# Temporary passwords: no look-alike characters (0/o, 1/l/i), so they can be read aloud or
# copied by hand; 20 of these 31 symbols are about 99 bits.
_TEMPORARY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
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


def temporary_password() -> str:
    """A random password to hand to someone once, like ``k7fq2-mx9pd-3hzta-wq4ne``."""
    groups = ("".join(secrets.choice(_TEMPORARY_ALPHABET) for _ in range(5)) for _ in range(4))
    return "-".join(groups)


def list_agents(session: Session) -> list[Agent]:
    """Every agent, active ones first, then by name."""
    return list(
        session.scalars(
            sa.select(Agent).order_by(Agent.is_active.desc(), sa.func.lower(Agent.name), Agent.id)
        )
    )


def invite_agent(
    session: Session, *, email: str, name: str, role: AgentRole = AgentRole.AGENT
) -> tuple[Agent, str]:
    """Add an agent with a random temporary password; return both.

    The password is not stored anywhere but as its hash: the caller shows it once to the
    admin, who hands it over. Raises Invalid like `create_agent`. Enqueues nothing (there is
    no invitation email).
    """
    password = temporary_password()
    agent = create_agent(session, email=email, name=name, password=password, role=role)
    return agent, password


def change_role(session: Session, agent: Agent, *, role: AgentRole) -> Agent:
    """Make `agent` an admin or a plain agent.

    Raises Invalid when that would leave no active admin (nobody could manage Handoff).
    """
    role = AgentRole(role)
    if agent.role == role:
        return agent
    if agent.is_admin and agent.is_active:
        _keep_an_active_admin(session, agent)
    agent.role = role
    session.flush()
    return agent


def deactivate_agent(session: Session, agent: Agent) -> Agent:
    """Stop `agent` from signing in and end every session they have, for good.

    The password hash is replaced by an unusable random marker: sessions carry a fragment of
    the hash (see `web.security.SessionAgent`), so even after a later reactivation no old
    session (or a cookie copied from a lost laptop) comes back. Reactivation issues a new
    temporary password. Raises Invalid for the last active admin.
    """
    if not agent.is_active:
        return agent
    if agent.is_admin:
        _keep_an_active_admin(session, agent)
    agent.is_active = False
    # Not an argon2 hash, so no password verifies against it (`_verify` returns False).
    agent.password_hash = "!deactivated$" + secrets.token_hex(16)
    agent.failed_logins = 0
    agent.locked_until = None
    # API tokens end with the sessions: reactivation must not bring them back.
    revoke_agent_tokens(session, agent, now=utcnow())
    session.flush()
    return agent


def reactivate_agent(session: Session, agent: Agent) -> tuple[Agent, str]:
    """Let a deactivated agent sign in again with a new temporary password; return both."""
    if agent.is_active:
        raise Invalid(f"{agent.name} is already active.")
    agent.is_active = True
    password = reset_password(session, agent)
    return agent, password


def reset_password(session: Session, agent: Agent) -> str:
    """Give `agent` a new temporary password (returned, to show once).

    Every existing session of the agent ends, since the password hash changed; a sign-in
    lockout is lifted.
    """
    password = temporary_password()
    set_password(agent, password)
    agent.failed_logins = 0
    agent.locked_until = None
    session.flush()
    return password


def _keep_an_active_admin(session: Session, agent: Agent) -> None:
    """Raise Invalid unless an active admin other than `agent` remains.

    The active admins' rows are locked (PostgreSQL; SQLite writers are serialised anyway),
    so two admins demoting each other at the same moment cannot both succeed.
    """
    admins = session.scalars(
        sa.select(Agent.id)
        .where(Agent.role == AgentRole.ADMIN, Agent.is_active.is_(True))
        .order_by(Agent.id)
        .with_for_update()
    ).all()
    if not [agent_id for agent_id in admins if agent_id != agent.id]:
        raise Invalid(
            f"{agent.name} is the only active admin, and Handoff needs at least one."
            " Make another agent an admin first."
        )
