"""Magic links: the customer portal's only credential (no passwords).

A link carries a 256-bit random token; only its SHA-256 is stored, so a leaked database
cannot be turned back into working links (a slow hash adds nothing for a random 256-bit
secret). Each link has one purpose, expires, and works once (`used_at`).
"""

from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ticketing.db import Base, str_enum, utcnow
from ticketing.models.people import Customer


class MagicLinkPurpose(enum.StrEnum):
    PORTAL_LOGIN = "portal_login"  # sign in to the customer portal


class MagicLink(Base):
    __tablename__ = "magic_links"
    __table_args__ = (
        sa.Index("ix_magic_links_customer_id_created_at", "customer_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # hex SHA-256 of the token; the token itself is only ever in the email.
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id", ondelete="CASCADE"))
    purpose: Mapped[MagicLinkPurpose] = mapped_column(str_enum(MagicLinkPurpose, length=30))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    used_at: Mapped[dt.datetime | None]

    customer: Mapped[Customer] = relationship(lazy="joined", innerjoin=True)

    def is_usable(self, now: dt.datetime) -> bool:
        return self.used_at is None and now < self.expires_at

    def __repr__(self) -> str:
        return f"<MagicLink {self.id} {self.purpose} customer={self.customer_id}>"
