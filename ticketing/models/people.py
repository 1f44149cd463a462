"""The people in a helpdesk: customers who write in, agents who answer."""

from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, validates

from ticketing.db import Base, str_enum, utcnow


def normalize_email(address: str) -> str:
    """The form an address is stored and compared in: trimmed and lower-cased.

    Local parts are case-sensitive by the letter of RFC 5321, but no real mail system treats
    them so, and a customer writing as Alice@ and alice@ is one person.
    """
    return address.strip().lower()


class Customer(Base):
    """Someone who writes in (by email, web form, or is written to by a notice)."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    @validates("email")
    def _normalize(self, _key: str, value: str) -> str:
        return normalize_email(value)

    @property
    def display_name(self) -> str:
        return self.name or self.email

    def __repr__(self) -> str:
        return f"<Customer {self.id} {self.email}>"


class AgentRole(enum.StrEnum):
    ADMIN = "admin"
    AGENT = "agent"


class Agent(Base):
    """A member of the support team. Passwords are argon2 hashes (see services.agents)."""

    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[AgentRole] = mapped_column(str_enum(AgentRole), default=AgentRole.AGENT)
    is_active: Mapped[bool] = mapped_column(default=True)
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[dt.datetime | None]
    last_login_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    @validates("email")
    def _normalize(self, _key: str, value: str) -> str:
        return normalize_email(value)

    @property
    def is_admin(self) -> bool:
        return self.role == AgentRole.ADMIN

    def __repr__(self) -> str:
        return f"<Agent {self.id} {self.email}>"
