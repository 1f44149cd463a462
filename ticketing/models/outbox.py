"""The transactional outbox: every outgoing email is a row written in the same transaction as
the ticket change that caused it, with its composed bytes already in the blob store.

A sender claims due rows, delivers them over SMTP and marks each one after the server's 250.
The only duplicate window is a crash between that 250 and the mark: the row is then sent
again with the same bytes and the same Message-ID (at-least-once), so receivers can dedupe.
"""

from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ticketing.db import Base, str_enum, utcnow


class OutboxKind(enum.StrEnum):
    REPLY = "reply"
    ACKNOWLEDGEMENT = "acknowledgement"
    NOTICE = "notice"
    MAGIC_LINK = "magic_link"  # customer portal sign-in link (no ticket)


class OutboxStatus(enum.StrEnum):
    QUEUED = "queued"  # waiting for (another) delivery attempt
    SENT = "sent"  # the server answered 250
    FAILED = "failed"  # permanent refusal (5xx) or retries exhausted; an agent may retry
    BOUNCED = "bounced"  # accepted, then a bounce came back for it
    SUPPRESSED = "suppressed"  # never sent: suppressed address, cap reached, no usable address


class OutboxMessage(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        sa.Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),
        sa.Index("ix_outbox_recipient_created_at", "recipient", "created_at"),
        sa.Index("ix_outbox_ticket_id_created_at", "ticket_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[OutboxKind] = mapped_column(str_enum(OutboxKind))
    status: Mapped[OutboxStatus] = mapped_column(str_enum(OutboxStatus))
    is_automatic: Mapped[bool] = mapped_column(default=False)
    ticket_id: Mapped[int | None] = mapped_column(sa.ForeignKey("tickets.id", ondelete="SET NULL"))
    entry_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("entries.id", ondelete="SET NULL"), index=True
    )
    mailbox_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("mailboxes.id", ondelete="SET NULL")
    )
    message_id: Mapped[str] = mapped_column(sa.String(998), unique=True)
    envelope_from: Mapped[str] = mapped_column(sa.String(320))
    # The first recipient (the customer), lower-cased: per-recipient caps and suppression.
    recipient: Mapped[str] = mapped_column(sa.String(320))
    recipients: Mapped[list[str]] = mapped_column(sa.JSON)
    subject: Mapped[str] = mapped_column(sa.String(998), default="")
    raw_sha256: Mapped[str] = mapped_column(sa.String(64))
    size: Mapped[int] = mapped_column(default=0)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(sa.String(200))
    claimed_until: Mapped[dt.datetime | None]
    last_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    sent_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"<OutboxMessage {self.id} {self.kind} {self.status} to {self.recipient}>"


class Suppression(Base):
    """An address automatic mail must not go to until `expires_at` (hard bounces, complaints)."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    reason: Mapped[str] = mapped_column(sa.String(500))
    expires_at: Mapped[dt.datetime]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
