"""Support mailboxes polled over IMAP, with the sync state the poller keeps."""

from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, validates

from ticketing.db import Base, str_enum, utcnow
from ticketing.models.people import normalize_email


class MailboxSecurity(enum.StrEnum):
    TLS = "tls"  # implicit TLS (IMAPS, usually port 993)
    STARTTLS = (
        "starttls"  # plain connection upgraded; refused upgrade is an error, never a fallback
    )
    PLAIN = "plain"  # loopback and tests only


class Mailbox(Base):
    """A support address and the IMAP account behind it.

    The password is stored encrypted (see services.mailboxes); `uidvalidity` and `last_uid`
    are the poller's bookmark in the folder.
    """

    __tablename__ = "mailboxes"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    address: Mapped[str] = mapped_column(sa.String(320))
    imap_host: Mapped[str] = mapped_column(sa.String(255), default="")
    imap_port: Mapped[int] = mapped_column(default=993)
    imap_user: Mapped[str] = mapped_column(sa.String(320), default="")
    imap_password_encrypted: Mapped[str] = mapped_column(sa.Text, default="")
    imap_security: Mapped[MailboxSecurity] = mapped_column(
        str_enum(MailboxSecurity), default=MailboxSecurity.TLS
    )
    folder: Mapped[str] = mapped_column(sa.String(255), default="INBOX")
    move_to_folder: Mapped[str | None] = mapped_column(sa.String(255))
    is_active: Mapped[bool] = mapped_column(default=True)
    # Outgoing mail for this mailbox's tickets goes through this SMTP server (encrypted URL);
    # empty means the global HANDOFF_SMTP_URL.
    smtp_url_encrypted: Mapped[str] = mapped_column(sa.Text, default="")
    # Send an acknowledgement for each new ticket from this mailbox (RFC 3834 rules apply).
    ack_enabled: Mapped[bool] = mapped_column(default=True)
    uidvalidity: Mapped[int | None] = mapped_column(sa.BigInteger)
    last_uid: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    last_polled_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    # Consecutive failed polls; the poller backs off exponentially while it grows.
    poll_failures: Mapped[int] = mapped_column(default=0)
    # Poll lease: one poller at a time per mailbox, across processes and machines. A crashed
    # holder's lease simply expires; every committed message extends it.
    lease_owner: Mapped[str | None] = mapped_column(sa.String(200))
    lease_expires_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    @validates("address")
    def _normalize(self, _key: str, value: str) -> str:
        return normalize_email(value)

    def __repr__(self) -> str:
        return f"<Mailbox {self.name} {self.address}>"
