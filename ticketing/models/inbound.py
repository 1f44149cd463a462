"""Custody of inbound email: one receipt per message fetched or imported.

A receipt is written in the same transaction as the entry the message produced (or as its
parked error), after the raw bytes are already in the blob store. Its unique key
(mailbox, UIDVALIDITY, UID) makes a re-poll after a crash harmless.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ticketing.db import Base, str_enum, utcnow

if TYPE_CHECKING:
    from ticketing.models.mailboxes import Mailbox
    from ticketing.models.tickets import Entry, Ticket


class ReceiptStatus(enum.StrEnum):
    PROCESSED = "processed"  # became (or joined) a ticket entry
    DUPLICATE = "duplicate"  # the same message (Message-ID and bytes) was already processed
    LOOP = "loop"  # our own mail came back: stored, no ticket change
    PARKED = "parked"  # processing failed; raw bytes kept; retry with `mail retry`


class Receipt(Base):
    __tablename__ = "inbound_receipts"
    __table_args__ = (
        sa.UniqueConstraint("mailbox_id", "uidvalidity", "uid"),
        sa.Index("ix_inbound_receipts_message_id", "message_id"),
        sa.Index("ix_inbound_receipts_status", "status"),
        sa.Index("ix_inbound_receipts_sender_sent_at", "sender", "sent_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("mailboxes.id", ondelete="SET NULL")
    )
    uidvalidity: Mapped[int | None] = mapped_column(sa.BigInteger)
    uid: Mapped[int | None] = mapped_column(sa.BigInteger)
    source: Mapped[str] = mapped_column(sa.String(20), default="imap")  # imap | import
    raw_sha256: Mapped[str] = mapped_column(sa.String(64))
    # Digest without trace headers: the same message delivered by two routes has one digest.
    content_sha256: Mapped[str] = mapped_column(sa.String(64))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    is_truncated: Mapped[bool] = mapped_column(default=False)  # only headers were downloaded
    # The Message-ID as sent, or a synthetic one derived from the raw digest.
    message_id: Mapped[str] = mapped_column(sa.String(998))
    sender: Mapped[str | None] = mapped_column(sa.String(320))
    subject: Mapped[str] = mapped_column(sa.String(998), default="")
    status: Mapped[ReceiptStatus] = mapped_column(str_enum(ReceiptStatus))
    disposition: Mapped[str] = mapped_column(sa.String(30), default="")  # mail.rules kind
    error: Mapped[str | None] = mapped_column(sa.Text)
    attempts: Mapped[int] = mapped_column(default=1)
    ticket_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("tickets.id", ondelete="SET NULL"), index=True
    )
    entry_id: Mapped[int | None] = mapped_column(sa.ForeignKey("entries.id", ondelete="SET NULL"))
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # When the sender sent it (Date header, clamped to the arrival time): rate limits judge
    # this, so a mailbox catching up on a backlog does not look like a flood.
    sent_at: Mapped[dt.datetime | None]
    opened_ticket: Mapped[bool] = mapped_column(default=False)
    processed_at: Mapped[dt.datetime | None]
    # Set once the server-side flag/move is done; a crash between commit and flag leaves it
    # NULL, and the next poll finishes the job.
    flagged_at: Mapped[dt.datetime | None]

    mailbox: Mapped[Mailbox | None] = relationship()
    ticket: Mapped[Ticket | None] = relationship()
    entry: Mapped[Entry | None] = relationship(foreign_keys=[entry_id])

    def __repr__(self) -> str:
        return f"<Receipt {self.id} {self.status} uid={self.uid} {self.message_id!r}>"
