"""Conversation verbs: open a ticket, add messages, replies, notes and events to its history.

Every public change to a ticket goes through here, so timestamps (updated, first response,
solved), the status rules and the inbox preview stay consistent wherever the change comes from
(email, web form, agent UI, notices). Outgoing email is not sent here: the email-out layer
enqueues it in the same transaction (see `mail`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, object_session

from ticketing.errors import Invalid
from ticketing.models import (
    Agent,
    Attachment,
    Channel,
    Customer,
    Entry,
    EntryKind,
    Participant,
    Priority,
    Status,
    Ticket,
)
from ticketing.models.counters import next_value

FIRST_TICKET_NUMBER = 1001
MAX_SUBJECT = 250
MAX_BODY = 1_000_000


@dataclass(frozen=True, slots=True)
class NewAttachment:
    """An attachment already in the blob store, about to be linked to an entry."""

    sha256: str
    size: int
    content_type: str
    filename: str
    content_id: str | None = None
    is_inline: bool = False


def clean_subject(subject: str) -> str:
    """One line, no control characters, bounded: safe to reuse in a header or a page title."""
    cleaned = "".join(" " if (ord(c) < 32 or ord(c) == 127) else c for c in subject)
    cleaned = " ".join(cleaned.split())
    return cleaned[:MAX_SUBJECT] or "(no subject)"


def preview_of(text: str) -> str:
    """The start of a message on one line, quoted lines left out, for the inbox list."""
    lines = (line.strip() for line in text.splitlines())
    return " ".join(line for line in lines if line and not line.startswith(">"))[:200]


def open_ticket(
    session: Session,
    *,
    customer: Customer,
    subject: str,
    channel: Channel,
    now: dt.datetime,
    priority: Priority = Priority.NORMAL,
    mailbox_id: int | None = None,
    follows_up: Ticket | None = None,
) -> Ticket:
    """Create an empty ticket with the next human number. Add its first message next."""
    ticket = Ticket(
        customer=customer,
        **_ticket_values(
            session,
            subject=subject,
            channel=channel,
            now=now,
            priority=priority,
            mailbox_id=mailbox_id,
            follows_up_id=follows_up.id if follows_up else None,
            preview="",
        ),
    )
    session.add(ticket)
    session.flush()
    return ticket


def add_customer_message(
    ticket: Ticket,
    *,
    author: Customer,
    kind: EntryKind,
    body_text: str,
    now: dt.datetime,
    subject: str = "",
    body_html: str | None = None,
    message_id: str | None = None,
    in_reply_to: str | None = None,
    threaded_by: str = "",
    attachments: Iterable[NewAttachment] = (),
    reopen: bool = True,
    quoted_text: str = "",
    flags: Iterable[str] = (),
    raw_sha256: str | None = None,
) -> Entry:
    """Record a message from the customer (or a CC'd participant) on the ticket.

    A pending or solved ticket is reopened unless `reopen` is False (auto-replies must not
    reopen anything). Closed tickets are never reopened here: callers open a new ticket.
    Email ingest writes the same rows with `insert_customer_message`.
    """
    if not kind.is_from_customer:
        raise Invalid("not a customer message kind")
    # The ticket changes first, so the flush in `_add_entry` writes them with the entry
    # (one UPDATE of the ticket) rather than leaving them to the next flush.
    _touch_for_customer_message(ticket, body_text=body_text, reopen=reopen)
    return _add_entry(
        ticket,
        kind=kind,
        now=now,
        author_customer=author,
        subject=subject,
        body_text=body_text,
        body_html=body_html,
        message_id=message_id,
        in_reply_to=in_reply_to,
        threaded_by=threaded_by,
        attachments=attachments,
        quoted_text=quoted_text,
        flags=flags,
        raw_sha256=raw_sha256,
    )


def reply(
    ticket: Ticket,
    *,
    actor: Agent,
    body_text: str,
    now: dt.datetime,
    body_html: str | None = None,
    status: Status | None = Status.PENDING,
    attachments: Iterable[NewAttachment] = (),
    message_id: str | None = None,
) -> Entry:
    """An agent's public reply. Sets first response time and, by default, status pending.

    Enqueues nothing itself; the email-out layer turns the returned entry into an outbox row
    in the same transaction.
    """
    _require_not_merged(ticket)
    _require_text(body_text)
    entry = _add_entry(
        ticket,
        kind=EntryKind.AGENT_REPLY,
        now=now,
        author_agent=actor,
        subject=ticket.subject,
        body_text=body_text,
        body_html=body_html,
        message_id=message_id,
        attachments=attachments,
    )
    if ticket.first_response_at is None:
        ticket.first_response_at = now
    ticket.preview = preview_of(body_text) or ticket.preview
    if status is not None:
        set_status(ticket, status, actor=actor, now=now, record=status != Status.PENDING)
    return entry


def add_participant(ticket: Ticket, customer: Customer) -> None:
    """Record `customer` as part of the conversation (a CC'd colleague), once."""
    session = object_session(ticket)
    assert session is not None
    add_participant_to(session, ticket.id, customer, ticket_customer_id=ticket.customer_id)


def add_participant_to(
    session: Session, ticket_id: int, customer: Customer, *, ticket_customer_id: int
) -> None:
    """`add_participant` for a ticket known by its id (and its customer's)."""
    if customer.id == ticket_customer_id:
        return
    exists = session.scalar(
        sa.select(Participant.id).where(
            Participant.ticket_id == ticket_id, Participant.customer_id == customer.id
        )
    )
    if exists is None:
        session.add(Participant(ticket_id=ticket_id, customer_id=customer.id))
        session.flush()


def add_note(
    ticket: Ticket,
    *,
    actor: Agent,
    body_text: str,
    now: dt.datetime,
    attachments: Iterable[NewAttachment] = (),
) -> Entry:
    """An internal note: visible to agents only, never emailed to the customer."""
    _require_not_merged(ticket)
    _require_text(body_text)
    return _add_entry(
        ticket,
        kind=EntryKind.INTERNAL_NOTE,
        now=now,
        author_agent=actor,
        body_text=body_text,
        attachments=attachments,
    )


def record_event(
    ticket: Ticket, *, text: str, now: dt.datetime, actor: Agent | None = None
) -> Entry:
    """A system event line in the history ("Assigned to Dana", "Status: solved")."""
    return _add_entry(
        ticket, kind=EntryKind.SYSTEM_EVENT, now=now, author_agent=actor, body_text=text
    )


def set_status(
    ticket: Ticket, status: Status, *, actor: Agent | None, now: dt.datetime, record: bool = True
) -> Ticket:
    """Change the status, keeping solved/closed times right, and note it in the history."""
    _require_not_merged(ticket)
    if ticket.status == status:
        return ticket
    ticket.status = status
    ticket.updated_at = now
    if status == Status.SOLVED:
        ticket.solved_at = now
    elif status == Status.CLOSED:
        ticket.closed_at = now
        ticket.solved_at = ticket.solved_at or now
    else:
        ticket.solved_at = None
        ticket.closed_at = None
    if record:
        who = f" by {actor.name}" if actor else ""
        record_event(ticket, text=f"Status changed to {status.value}{who}", now=now, actor=actor)
    return ticket


def assign(ticket: Ticket, assignee: Agent | None, *, actor: Agent, now: dt.datetime) -> Ticket:
    """Assign the ticket (None unassigns) and note it in the history."""
    _require_not_merged(ticket)
    if ticket.assignee_id == (assignee.id if assignee else None):
        return ticket
    ticket.assignee = assignee
    ticket.updated_at = now
    text = f"Assigned to {assignee.name}" if assignee else "Unassigned"
    record_event(ticket, text=text, now=now, actor=actor)
    return ticket


def _require_not_merged(ticket: Ticket) -> None:
    """A merged ticket is history: its conversation continues on the ticket it joined."""
    if ticket.merged_into_id is not None:
        raise Invalid(f"Ticket #{ticket.number} was merged into another ticket; work on that one.")


def _require_text(body_text: str) -> None:
    if not body_text.strip():
        raise Invalid("Write a message first.")
    if len(body_text) > MAX_BODY:
        raise Invalid("That message is too long.")


def _add_entry(
    ticket: Ticket,
    *,
    kind: EntryKind,
    now: dt.datetime,
    body_text: str,
    author_agent: Agent | None = None,
    author_customer: Customer | None = None,
    subject: str = "",
    body_html: str | None = None,
    message_id: str | None = None,
    in_reply_to: str | None = None,
    threaded_by: str = "",
    attachments: Iterable[NewAttachment] = (),
    quoted_text: str = "",
    flags: Iterable[str] = (),
    raw_sha256: str | None = None,
) -> Entry:
    session = object_session(ticket)
    assert session is not None, "ticket must be in a session"
    entry = Entry(
        ticket=ticket,
        author_agent=author_agent,
        author_customer=author_customer,
        **_entry_values(
            kind=kind,
            now=now,
            body_text=body_text,
            subject=subject,
            body_html=body_html,
            message_id=message_id,
            in_reply_to=in_reply_to,
            threaded_by=threaded_by,
            quoted_text=quoted_text,
            flags=flags,
            raw_sha256=raw_sha256,
        ),
    )
    for a in attachments:
        entry.attachments.append(Attachment(**_attachment_values(a)))
    session.add(entry)
    if kind != EntryKind.SYSTEM_EVENT:
        ticket.updated_at = now
    session.flush()
    return entry


# -- shared by the ORM path above and the INSERTs below ------------------------------------------


def _ticket_values(
    session: Session,
    *,
    subject: str,
    channel: Channel,
    now: dt.datetime,
    priority: Priority,
    mailbox_id: int | None,
    follows_up_id: int | None,
    preview: str,
) -> dict[str, object]:
    """A new ticket's columns (its customer aside), with the next human number reserved."""
    return {
        "number": next_value(session, "ticket_number", start=FIRST_TICKET_NUMBER),
        "subject": clean_subject(subject),
        "status": Status.NEW,
        "priority": priority,
        "channel": channel,
        "mailbox_id": mailbox_id,
        "follows_up_id": follows_up_id,
        "preview": preview,
        "created_at": now,
        "updated_at": now,
    }


def _entry_values(
    *,
    kind: EntryKind,
    now: dt.datetime,
    body_text: str,
    subject: str,
    body_html: str | None,
    message_id: str | None,
    in_reply_to: str | None,
    threaded_by: str,
    quoted_text: str,
    flags: Iterable[str],
    raw_sha256: str | None,
) -> dict[str, object]:
    """An entry's columns (its ticket and author aside), cleaned and bounded."""
    return {
        "kind": kind,
        "subject": clean_subject(subject) if subject else "",
        "body_text": body_text,
        "body_html": body_html,
        "message_id": message_id,
        "in_reply_to": in_reply_to,
        "threaded_by": threaded_by[:300],
        "quoted_text": quoted_text,
        "flags": sorted(set(flags)),
        "raw_sha256": raw_sha256,
        "created_at": now,
    }


def _attachment_values(a: NewAttachment) -> dict[str, object]:
    return {
        "sha256": a.sha256,
        "size": a.size,
        "content_type": a.content_type[:255],
        "filename": a.filename[:255],
        "content_id": a.content_id,
        "is_inline": a.is_inline,
    }


def _touch_for_customer_message(ticket: Ticket, *, body_text: str, reopen: bool) -> None:
    """What a customer's message changes on its ticket: the preview, and a reopen."""
    ticket.preview = preview_of(body_text) or ticket.preview
    if reopen and ticket.status in (Status.PENDING, Status.SOLVED):
        ticket.status = Status.OPEN
        ticket.solved_at = None


# -- email ingest's hot path: the same rows, as INSERTs without the unit of work ----------------
#
# Polled mail is recorded one transaction per message, and at hundreds of messages a second
# the ORM's unit of work for a new ticket and its entry costs more CPU than everything else
# the poller does with the database (about 1.5 ms of 2.5 ms per message, measured). These write
# the very same columns (`_ticket_values`, `_entry_values`) with statements built once, run on
# the session's connection in its transaction; the search index follows by its triggers.

_TICKETS = Ticket.__table__
_INSERT_TICKET = _TICKETS.insert()
_INSERT_ENTRY = Entry.__table__.insert()
_INSERT_ATTACHMENTS = Attachment.__table__.insert()


@dataclass(frozen=True, slots=True)
class InsertedTicket:
    id: int
    number: int


def insert_ticket(
    session: Session,
    *,
    customer_id: int,
    subject: str,
    channel: Channel,
    now: dt.datetime,
    priority: Priority = Priority.NORMAL,
    mailbox_id: int | None = None,
    follows_up_id: int | None = None,
    preview: str = "",
) -> InsertedTicket:
    """`open_ticket` as one INSERT, with no ORM object: its id and human number."""
    values = _ticket_values(
        session,
        subject=subject,
        channel=channel,
        now=now,
        priority=priority,
        mailbox_id=mailbox_id,
        follows_up_id=follows_up_id,
        preview=preview,
    )
    values["customer_id"] = customer_id
    result = session.connection().execute(_INSERT_TICKET, values)
    return InsertedTicket(id=result.inserted_primary_key[0], number=int(values["number"]))  # type: ignore[call-overload]


def insert_customer_message(
    session: Session,
    *,
    ticket_id: int,
    author_id: int,
    kind: EntryKind,
    body_text: str,
    now: dt.datetime,
    subject: str = "",
    body_html: str | None = None,
    message_id: str | None = None,
    in_reply_to: str | None = None,
    threaded_by: str = "",
    attachments: Iterable[NewAttachment] = (),
    quoted_text: str = "",
    flags: Iterable[str] = (),
    raw_sha256: str | None = None,
) -> int:
    """The entry `add_customer_message` adds, as INSERTs; returns the entry's id.

    Only the entry: the caller makes the ticket's changes (`touch_for_customer_message` on an
    existing ticket; a ticket from `insert_ticket` was written with its preview already).
    """
    if not kind.is_from_customer:
        raise Invalid("not a customer message kind")
    values = _entry_values(
        kind=kind,
        now=now,
        body_text=body_text,
        subject=subject,
        body_html=body_html,
        message_id=message_id,
        in_reply_to=in_reply_to,
        threaded_by=threaded_by,
        quoted_text=quoted_text,
        flags=flags,
        raw_sha256=raw_sha256,
    )
    values["ticket_id"], values["author_customer_id"] = ticket_id, author_id
    connection = session.connection()
    entry_id: int = connection.execute(_INSERT_ENTRY, values).inserted_primary_key[0]  # type: ignore[index]
    rows = [{**_attachment_values(a), "entry_id": entry_id} for a in attachments]
    if rows:
        connection.execute(_INSERT_ATTACHMENTS, rows)
    return entry_id


def touch_for_customer_message(
    ticket: Ticket, *, body_text: str, reopen: bool, now: dt.datetime
) -> None:
    """An existing ticket's changes for a customer message written by
    `insert_customer_message` (left to the next flush): preview, reopen, updated time."""
    _touch_for_customer_message(ticket, body_text=body_text, reopen=reopen)
    ticket.updated_at = now
