"""The export contract: every ticket as one JSON-able record (JSON Lines on disk).

This is the user's backup and migration path and the oracle tests rely on, so its keys and
shapes are a stable interface (documented in the README). Keys may be added, never renamed.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ticketing.models import Entry, Ticket

EXPORT_VERSION = 1


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def entry_record(entry: Entry) -> dict[str, Any]:
    return {
        "kind": entry.kind.value,
        "author_email": entry.author_email,
        "author_name": entry.author_name,
        "subject": entry.subject,
        "created_at": _iso(entry.created_at),
        "body_text": entry.body_text,
        "message_id": entry.message_id,
        "in_reply_to": entry.in_reply_to,
        "threaded_by": entry.threaded_by or None,
        "attachments": [
            {
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
                "sha256": a.sha256,
            }
            for a in entry.attachments
        ],
    }


def ticket_record(
    ticket: Ticket, entries: list[Entry], *, merged_into: int | None = None
) -> dict[str, Any]:
    """One ticket as an export record; `merged_into` is the number of the ticket it was merged
    into (its entries are exported there), or None."""
    return {
        "number": ticket.number,
        "subject": ticket.subject,
        "status": ticket.status.value,
        "priority": ticket.priority.value,
        "channel": ticket.channel.value,
        "customer": {"email": ticket.customer.email, "name": ticket.customer.name},
        "assignee": (
            {"email": ticket.assignee.email, "name": ticket.assignee.name}
            if ticket.assignee
            else None
        ),
        "tags": [tag.name for tag in ticket.tags],
        "merged_into": merged_into,
        "created_at": _iso(ticket.created_at),
        "updated_at": _iso(ticket.updated_at),
        "first_response_at": _iso(ticket.first_response_at),
        "solved_at": _iso(ticket.solved_at),
        "entries": [entry_record(e) for e in entries],
    }


def iter_ticket_records(session: Session, *, batch_size: int = 200) -> Iterator[dict[str, Any]]:
    """Every ticket in number order, entries in history order; memory bounded by `batch_size`."""
    last_id = 0
    while True:
        tickets = session.scalars(
            sa.select(Ticket).where(Ticket.id > last_id).order_by(Ticket.id).limit(batch_size)
        ).all()
        if not tickets:
            return
        by_ticket: dict[int, list[Entry]] = defaultdict(list)
        entries = session.scalars(
            sa.select(Entry)
            .where(Entry.ticket_id.in_([t.id for t in tickets]))
            .order_by(Entry.ticket_id, Entry.id)
        ).all()
        for entry in entries:
            by_ticket[entry.ticket_id].append(entry)
        merged_ids = {t.merged_into_id for t in tickets if t.merged_into_id is not None}
        numbers = dict(
            session.execute(sa.select(Ticket.id, Ticket.number).where(Ticket.id.in_(merged_ids)))
            .tuples()
            .all()
            if merged_ids
            else []
        )
        for ticket in tickets:
            merged_into = numbers.get(ticket.merged_into_id) if ticket.merged_into_id else None
            yield ticket_record(ticket, by_ticket[ticket.id], merged_into=merged_into)
        last_id = tickets[-1].id
        session.expunge_all()
