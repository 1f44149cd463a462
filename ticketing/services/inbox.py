"""Inbox queries: the agent's views of the ticket list, keyset-paginated.

Keyset pagination on (updated_at, id) uses the `status, updated_at` and `assignee_id, status`
indexes and never scans skipped rows with OFFSET, so page 500 costs what page 1 costs.
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ticketing.errors import Invalid, NotFound
from ticketing.models import Agent, Customer, Entry, Participant, Status, Ticket

ACTIVE = (Status.NEW, Status.OPEN, Status.PENDING)


class View(enum.StrEnum):
    MINE = "mine"
    UNASSIGNED = "unassigned"
    OPEN = "open"
    PENDING = "pending"
    SOLVED = "solved"
    ALL = "all"

    @property
    def label(self) -> str:
        return {
            View.MINE: "Mine",
            View.UNASSIGNED: "Unassigned",
            View.OPEN: "All open",
            View.PENDING: "Pending",
            View.SOLVED: "Solved",
            View.ALL: "All tickets",
        }[self]


@dataclass(frozen=True, slots=True)
class Page:
    tickets: list[Ticket]
    next_cursor: str | None


def _view_filter(view: View, agent: Agent) -> sa.ColumnElement[bool]:
    if view == View.MINE:
        return sa.and_(Ticket.assignee_id == agent.id, Ticket.status.in_(ACTIVE))
    if view == View.UNASSIGNED:
        return sa.and_(Ticket.assignee_id.is_(None), Ticket.status.in_(ACTIVE))
    if view == View.OPEN:
        return Ticket.status.in_((Status.NEW, Status.OPEN))
    if view == View.PENDING:
        return Ticket.status == Status.PENDING
    if view == View.SOLVED:
        return Ticket.status.in_((Status.SOLVED, Status.CLOSED))
    return sa.true()


def encode_cursor(ticket: Ticket) -> str:
    raw = f"{ticket.updated_at.isoformat()}|{ticket.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, ident = raw.partition("|")
        at = dt.datetime.fromisoformat(stamp)
        if at.tzinfo is None:
            raise ValueError("naive")
        return at, int(ident)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid("That page link is not valid.") from exc


def list_tickets(
    session: Session, *, view: View, agent: Agent, cursor: str | None = None, limit: int = 50
) -> Page:
    """One page of a view, most recently updated first."""
    stmt = sa.select(Ticket).where(_view_filter(view, agent))
    if cursor:
        at, ident = decode_cursor(cursor)
        stmt = stmt.where(sa.tuple_(Ticket.updated_at, Ticket.id) < sa.tuple_(at, ident))
    stmt = stmt.order_by(Ticket.updated_at.desc(), Ticket.id.desc()).limit(limit + 1)
    rows = list(session.scalars(stmt))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_cursor(rows[-1]) if more and rows else None)


def view_counts(session: Session, *, agent: Agent) -> dict[View, int]:
    """Ticket count per view, each an index-backed count."""
    return {
        view: session.scalar(sa.select(sa.func.count(Ticket.id)).where(_view_filter(view, agent)))
        or 0
        for view in View
    }


def get_ticket(session: Session, number: int) -> Ticket:
    """The ticket with this human number, or NotFound."""
    ticket = session.scalar(sa.select(Ticket).where(Ticket.number == number))
    if ticket is None:
        raise NotFound(f"ticket {number}")
    return ticket


def history(session: Session, ticket: Ticket) -> list[Entry]:
    """The ticket's entries, oldest first."""
    return list(session.scalars(ticket.entries.select().order_by(Entry.id)))


def other_tickets(session: Session, ticket: Ticket, *, limit: int = 10) -> list[Ticket]:
    """The same customer's other tickets, newest first."""
    return list(
        session.scalars(
            sa.select(Ticket)
            .where(Ticket.customer_id == ticket.customer_id, Ticket.id != ticket.id)
            .order_by(Ticket.updated_at.desc())
            .limit(limit)
        )
    )


def participants(session: Session, ticket: Ticket) -> list[Customer]:
    """People besides the customer who are part of the conversation (CC'd colleagues)."""
    return list(
        session.scalars(
            sa.select(Customer)
            .join(Participant, Participant.customer_id == Customer.id)
            .where(Participant.ticket_id == ticket.id)
            .order_by(Participant.id)
        )
    )


def active_agents(session: Session) -> list[Agent]:
    return list(session.scalars(sa.select(Agent).where(Agent.is_active).order_by(Agent.name)))
