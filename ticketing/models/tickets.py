"""Tickets and their timelines: one entry per event, in the order they happened."""

from __future__ import annotations

import datetime as dt
import enum
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, WriteOnlyMapped, mapped_column, relationship

from ticketing.db import Base, str_enum, utcnow

if TYPE_CHECKING:
    from ticketing.models.attachments import Attachment
    from ticketing.models.mailboxes import Mailbox
    from ticketing.models.people import Agent, Customer
    from ticketing.models.workspace import Tag


class Status(enum.StrEnum):
    NEW = "new"
    OPEN = "open"
    PENDING = "pending"
    SOLVED = "solved"
    CLOSED = "closed"

    @property
    def is_active(self) -> bool:
        return self in (Status.NEW, Status.OPEN, Status.PENDING)


class Priority(enum.StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"

    @property
    def rank(self) -> int:
        return list(Priority).index(self)


class Channel(enum.StrEnum):
    EMAIL = "email"
    WEB = "web"
    NOTICE = "notice"


class EntryKind(enum.StrEnum):
    CUSTOMER_EMAIL = "customer_email"
    CUSTOMER_WEB = "customer_web"
    AGENT_REPLY = "agent_reply"
    INTERNAL_NOTE = "internal_note"
    SYSTEM_EVENT = "system_event"
    NOTICE = "notice"

    @property
    def is_public(self) -> bool:
        """Whether the customer may ever see an entry of this kind."""
        return self not in (EntryKind.INTERNAL_NOTE, EntryKind.SYSTEM_EVENT)

    @property
    def is_from_customer(self) -> bool:
        return self in (EntryKind.CUSTOMER_EMAIL, EntryKind.CUSTOMER_WEB)


_NOT_MERGED = {
    "sqlite_where": sa.text("merged_into_id IS NULL"),
    "postgresql_where": sa.text("merged_into_id IS NULL"),
}


class Ticket(Base):
    """One customer issue. `number` is the human number shown as `[#1234]`."""

    __tablename__ = "tickets"
    __table_args__ = (
        # The inbox's views (see services.inbox): one index per sort order, each led by the
        # columns views filter on with `=`, so a page is an ordered index range scan and a count
        # an index-only scan. Partial: merged tickets never show in a view.
        sa.Index("ix_tickets_inbox_status_updated", "status", "updated_at", "id", **_NOT_MERGED),
        sa.Index("ix_tickets_inbox_status_created", "status", "created_at", "id", **_NOT_MERGED),
        sa.Index(
            "ix_tickets_inbox_status_priority",
            "status",
            "priority",
            "updated_at",
            "id",
            **_NOT_MERGED,
        ),
        sa.Index(
            "ix_tickets_inbox_assignee",
            "assignee_id",
            "status",
            "updated_at",
            "id",
            **_NOT_MERGED,
        ),
        sa.Index("ix_tickets_customer_id_updated_at", "customer_id", "updated_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[int] = mapped_column(unique=True)
    subject: Mapped[str] = mapped_column(sa.String(998))
    status: Mapped[Status] = mapped_column(str_enum(Status), default=Status.NEW)
    priority: Mapped[Priority] = mapped_column(str_enum(Priority), default=Priority.NORMAL)
    channel: Mapped[Channel] = mapped_column(str_enum(Channel))
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id"))
    assignee_id: Mapped[int | None] = mapped_column(sa.ForeignKey("agents.id"))
    mailbox_id: Mapped[int | None] = mapped_column(sa.ForeignKey("mailboxes.id"), index=True)
    # First line of the latest public message, kept so the inbox list needs no join.
    preview: Mapped[str] = mapped_column(sa.String(300), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    first_response_at: Mapped[dt.datetime | None]
    solved_at: Mapped[dt.datetime | None]
    closed_at: Mapped[dt.datetime | None]
    # A reply to a closed ticket opens a new ticket that points back at the old one.
    follows_up_id: Mapped[int | None] = mapped_column(sa.ForeignKey("tickets.id"))
    # Set when this ticket was merged into another: its history now lives there.
    merged_into_id: Mapped[int | None] = mapped_column(sa.ForeignKey("tickets.id"))

    customer: Mapped[Customer] = relationship(lazy="joined", innerjoin=True)
    assignee: Mapped[Agent | None] = relationship(lazy="joined", foreign_keys=[assignee_id])
    mailbox: Mapped[Mailbox | None] = relationship()
    tags: Mapped[list[Tag]] = relationship(
        secondary="ticket_tags", lazy="selectin", order_by="Tag.name"
    )
    entries: WriteOnlyMapped[Entry] = relationship(
        back_populates="ticket", order_by="Entry.id", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"<Ticket #{self.number} {self.status}>"


class Participant(Base):
    """Someone besides the ticket's customer who is part of the conversation (a CC'd colleague).

    Participants may thread follow-ups by subject token, like the customer.
    """

    __tablename__ = "ticket_participants"
    __table_args__ = (sa.UniqueConstraint("ticket_id", "customer_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(sa.ForeignKey("tickets.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(
        sa.ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Entry(Base):
    """One event in a ticket's history: a message, a note, a notice or a system event.

    `body_text` is the whole plain-text body; `body_html` is sanitized HTML (or None).
    For email, `message_id`/`in_reply_to` are bare ids without angle brackets, and
    `threaded_by` says in words why the entry landed on this ticket.
    """

    __tablename__ = "entries"
    __table_args__ = (
        sa.UniqueConstraint("ticket_id", "message_id"),
        sa.Index("ix_entries_ticket_id_id", "ticket_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(sa.ForeignKey("tickets.id", ondelete="CASCADE"))
    kind: Mapped[EntryKind] = mapped_column(str_enum(EntryKind))
    author_agent_id: Mapped[int | None] = mapped_column(sa.ForeignKey("agents.id"))
    author_customer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("customers.id"))
    subject: Mapped[str] = mapped_column(sa.String(998), default="")
    body_text: Mapped[str] = mapped_column(sa.Text, default="")
    body_html: Mapped[str | None] = mapped_column(sa.Text)
    message_id: Mapped[str | None] = mapped_column(sa.String(998), index=True)
    in_reply_to: Mapped[str | None] = mapped_column(sa.String(998))
    threaded_by: Mapped[str] = mapped_column(sa.String(300), default="")
    # Quoted history and signature split off the new part (reversible reply stripping):
    # body_text + quoted_text hold the whole plain-text body.
    quoted_text: Mapped[str] = mapped_column(sa.Text, default="")
    # Markers such as "autoreply", "bounce", "sender_unverified", "message_id_conflict",
    # "rate_limited", "parts_omitted" (see mail.inbound).
    flags: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    raw_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    ticket: Mapped[Ticket] = relationship(back_populates="entries")
    author_agent: Mapped[Agent | None] = relationship(lazy="joined")
    author_customer: Mapped[Customer | None] = relationship(lazy="joined")
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="entry", order_by="Attachment.id", lazy="selectin"
    )

    @property
    def author_email(self) -> str | None:
        if self.author_agent is not None:
            return self.author_agent.email
        if self.author_customer is not None:
            return self.author_customer.email
        return None

    @property
    def author_name(self) -> str | None:
        if self.author_agent is not None:
            return self.author_agent.name
        if self.author_customer is not None:
            return self.author_customer.name
        return None

    def __repr__(self) -> str:
        return f"<Entry {self.id} {self.kind} on ticket {self.ticket_id}>"
