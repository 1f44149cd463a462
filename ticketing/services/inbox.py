"""Inbox queries: the agent's views of the ticket list, filters, sorts, counts and search.

Views (Mine, Unassigned, All open, Pending, Solved, All) are fixed sets of statuses, and for
Mine/Unassigned an assignee. Filters (status, priority, assignee, channel, mailbox, tag)
narrow a view; the sort is last update (default), created or priority, always newest first
with the ticket id breaking ties. Every value is parsed into an enum or an id before it gets
near SQL; column names never come from the request.

Speed at 100k+ tickets, without OFFSET:
- A page is keyset-paginated: the cursor carries the sort key and the id of the last row.
- A view spanning several statuses is read as one ordered, limited index range scan per
  status (`status = s`), united in one statement; only the top page of their keys is joined
  to full rows. A single `status IN (...) ORDER BY updated_at` query would sort the whole
  view. The priority sort does this per priority, urgent first, until the page is full.
  The partial indexes `ix_tickets_inbox_*` (models.tickets) exist for exactly these scans.
- Counts are index-only and capped at COUNT_CAP ("1,000+"), so a view of millions costs what
  a view of a thousand does; they come in one statement.
- Search ranks (ticketing.search), best first with the ticket id breaking ties, and pages
  through the MAX_CANDIDATES best matches: its cursor is the position in that ranked list
  after the last ticket shown (bounded, so a deep page costs at most one ranking of
  MAX_CANDIDATES ids). A cursor for a list and one for a search are never confused.

Merged tickets (`merged_into_id` set) never show in views, counts or search.
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ticketing import search
from ticketing.errors import Invalid, NotFound
from ticketing.models import (
    Agent,
    Channel,
    Customer,
    Entry,
    Mailbox,
    Participant,
    Priority,
    Status,
    Tag,
    Ticket,
    ticket_tags,
)

ACTIVE = (Status.NEW, Status.OPEN, Status.PENDING)
PAGE_SIZE = 50
# Views count up to here and then say "1,000+": a queue longer than that is a backlog whose
# exact size changes nothing on screen, and counting it would cost every page view.
COUNT_CAP = 1_000
# Search: how many ranked matches at most are checked against filters (and paged through).
MAX_CANDIDATES = 5_000
_SEARCH_CURSOR = "search"
_MAX_ID = 2**31 - 1


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

    @property
    def statuses(self) -> tuple[Status, ...]:
        return _VIEW_STATUSES[self]


_VIEW_STATUSES = {
    View.MINE: ACTIVE,
    View.UNASSIGNED: ACTIVE,
    View.OPEN: (Status.NEW, Status.OPEN),
    View.PENDING: (Status.PENDING,),
    View.SOLVED: (Status.SOLVED, Status.CLOSED),
    View.ALL: tuple(Status),
}


class Sort(enum.StrEnum):
    UPDATED = "updated"
    CREATED = "created"
    PRIORITY = "priority"

    @property
    def label(self) -> str:
        return {
            Sort.UPDATED: "Last update",
            Sort.CREATED: "Created",
            Sort.PRIORITY: "Priority",
        }[self]

    @classmethod
    def parse(cls, value: str | None) -> Sort:
        """The sort named by `value`; anything else is the default (never an error)."""
        try:
            return cls(value or cls.UPDATED)
        except ValueError:
            return cls.UPDATED


UNASSIGNED = "none"
ME = "me"


@dataclass(frozen=True, slots=True)
class Filters:
    """Narrowing of a view. `assignee` is an agent id, ME or UNASSIGNED; `tag` a tag name."""

    status: Status | None = None
    priority: Priority | None = None
    assignee: int | str | None = None
    channel: Channel | None = None
    mailbox_id: int | None = None
    tag: str | None = None

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> Filters:
        """Filters from request parameters; an empty value means "any".

        Raises Invalid, naming the parameter, for a value that is not one of the choices.
        """

        def value(name: str) -> str:
            raw = params.get(name)
            return raw.strip() if isinstance(raw, str) else ""

        def choice(name: str, enum_cls: type[enum.StrEnum]) -> Any:
            raw = value(name)
            if not raw:
                return None
            try:
                return enum_cls(raw)
            except ValueError:
                raise Invalid(f"Unknown {name}: choose one of the listed values.") from None

        assignee: int | str | None = value("assignee") or None
        if assignee not in (None, ME, UNASSIGNED):
            assignee = _parse_id("assignee", str(assignee))
        mailbox = value("mailbox")
        tag = value("tag").lower() or None
        if tag is not None and (len(tag) > 50 or not tag.isprintable()):
            raise Invalid("Unknown tag.")
        return cls(
            status=choice("status", Status),
            priority=choice("priority", Priority),
            assignee=assignee,
            channel=choice("channel", Channel),
            mailbox_id=_parse_id("mailbox", mailbox) if mailbox else None,
            tag=tag,
        )

    @property
    def is_empty(self) -> bool:
        return self == Filters()

    def as_params(self) -> dict[str, str]:
        """The non-empty filters as request parameters (for links that keep them)."""
        raw = {
            "status": self.status,
            "priority": self.priority,
            "assignee": self.assignee,
            "channel": self.channel,
            "mailbox": self.mailbox_id,
            "tag": self.tag,
        }
        return {k: str(v) for k, v in raw.items() if v is not None}


def _parse_id(name: str, raw: str) -> int:
    if not raw.isascii() or not raw.isdigit() or not 0 < int(raw) <= _MAX_ID:
        raise Invalid(f"Unknown {name}: choose one of the listed values.")
    return int(raw)


@dataclass(frozen=True, slots=True)
class Page:
    tickets: list[Ticket]
    next_cursor: str | None
    sort: Sort = Sort.UPDATED
    filters: Filters = field(default_factory=Filters)


# -- conditions --------------------------------------------------------------------------------

NOT_MERGED = Ticket.merged_into_id.is_(None)


def _view_filter(view: View, agent: Agent) -> sa.ColumnElement[bool]:
    """The view's condition (statuses and, for Mine/Unassigned, the assignee); never merged."""
    conditions = [NOT_MERGED, _status_condition(view.statuses)]
    if view == View.MINE:
        conditions.append(Ticket.assignee_id == agent.id)
    elif view == View.UNASSIGNED:
        conditions.append(Ticket.assignee_id.is_(None))
    return sa.and_(*conditions)


def _status_condition(statuses: tuple[Status, ...]) -> sa.ColumnElement[bool]:
    if set(statuses) == set(Status):
        return sa.true()
    if len(statuses) == 1:
        return Ticket.status == statuses[0]
    return Ticket.status.in_(statuses)


def _filter_conditions(
    session: Session, filters: Filters, agent: Agent
) -> list[sa.ColumnElement[bool]] | None:
    """SQL conditions for `filters` (besides status); None when nothing can match."""
    conditions: list[sa.ColumnElement[bool]] = []
    if filters.priority is not None:
        conditions.append(Ticket.priority == filters.priority)
    if filters.assignee == UNASSIGNED:
        conditions.append(Ticket.assignee_id.is_(None))
    elif filters.assignee == ME:
        conditions.append(Ticket.assignee_id == agent.id)
    elif filters.assignee is not None:
        conditions.append(Ticket.assignee_id == filters.assignee)
    if filters.channel is not None:
        conditions.append(Ticket.channel == filters.channel)
    if filters.mailbox_id is not None:
        conditions.append(Ticket.mailbox_id == filters.mailbox_id)
    if filters.tag is not None:
        tag_id = session.scalar(sa.select(Tag.id).where(Tag.name == filters.tag))
        if tag_id is None:
            return None
        conditions.append(
            sa.exists().where(ticket_tags.c.ticket_id == Ticket.id, ticket_tags.c.tag_id == tag_id)
        )
    return conditions


# -- cursors -------------------------------------------------------------------------------------

# A cursor is the sort's key of the last row shown: (updated_at or created_at, id), or for the
# priority sort (priority rank, updated_at, id). It names its sort, so a cursor from another
# sort is refused rather than misread.


def _sort_key(ticket_row: Any, sort: Sort) -> tuple[Any, ...]:
    if sort == Sort.CREATED:
        return (ticket_row.created_at, ticket_row.id)
    if sort == Sort.PRIORITY:
        return (Priority(ticket_row.priority).rank, ticket_row.updated_at, ticket_row.id)
    return (ticket_row.updated_at, ticket_row.id)


def encode_cursor(ticket: Ticket, sort: Sort = Sort.UPDATED) -> str:
    key = _sort_key(ticket, sort)
    parts = [sort.value] + [v.isoformat() if isinstance(v, dt.datetime) else str(v) for v in key]
    return base64.urlsafe_b64encode("|".join(parts).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort: Sort = Sort.UPDATED) -> tuple[Any, ...]:
    """The sort key in `cursor`; Invalid if it is not one this module made for `sort`."""
    try:
        if len(cursor) > 200:
            raise ValueError("long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        name, *parts = raw.split("|")
        if name != sort.value or len(parts) != (3 if sort == Sort.PRIORITY else 2):
            raise ValueError("another sort")
        rank = None
        if sort == Sort.PRIORITY:
            rank = int(parts.pop(0))
            if not 0 <= rank < len(Priority):
                raise ValueError("rank")
        at = dt.datetime.fromisoformat(parts[0])
        if at.tzinfo is None:
            raise ValueError("naive")
        ident = int(parts[1])
        if not 0 < ident <= _MAX_ID:
            raise ValueError("id")
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid("That page link is not valid.") from exc
    return (at, ident) if rank is None else (rank, at, ident)


# -- the list ------------------------------------------------------------------------------------


def list_tickets(
    session: Session,
    *,
    view: View,
    agent: Agent,
    cursor: str | None = None,
    limit: int = PAGE_SIZE,
    sort: Sort = Sort.UPDATED,
    filters: Filters = Filters(),
) -> Page:
    """One page of a view, narrowed by `filters`, in `sort` order (newest first)."""
    after = decode_cursor(cursor, sort) if cursor else None
    statuses = view.statuses
    if filters.status is not None:
        statuses = tuple(s for s in statuses if s == filters.status)
    extra = _filter_conditions(session, filters, agent)
    if not statuses or extra is None:
        return Page([], None, sort, filters)
    base = [NOT_MERGED, *extra]
    if view == View.MINE:
        base.append(Ticket.assignee_id == agent.id)
    elif view == View.UNASSIGNED:
        base.append(Ticket.assignee_id.is_(None))

    wanted = limit + 1
    if sort != Sort.PRIORITY:
        order_column = Ticket.created_at if sort == Sort.CREATED else Ticket.updated_at
        keyset = [sa.tuple_(order_column, Ticket.id) < sa.tuple_(*after)] if after else []
        tickets = _head_of(session, [*base, *keyset], statuses, order_column, wanted)
    else:
        # Urgent first, one priority at a time: a priority above the cursor's was shown in
        # full on earlier pages, and once the page is full lower ones can wait.
        tickets = []
        levels = [filters.priority] if filters.priority is not None else list(Priority)
        for level in sorted(levels, key=lambda p: p.rank, reverse=True):
            if after is not None and level.rank > after[0]:
                continue
            keyset = []
            if after is not None and level.rank == after[0]:
                keyset = [sa.tuple_(Ticket.updated_at, Ticket.id) < sa.tuple_(*after[1:])]
            conditions = [*base, *keyset, Ticket.priority == level]
            tickets += _head_of(
                session, conditions, statuses, Ticket.updated_at, wanted - len(tickets)
            )
            if len(tickets) >= wanted:
                break
    more = len(tickets) > limit
    tickets = tickets[:limit]
    next_cursor = encode_cursor(tickets[-1], sort) if more and tickets else None
    return Page(tickets, next_cursor, sort, filters)


def _head_of(
    session: Session,
    conditions: list[sa.ColumnElement[bool]],
    statuses: tuple[Status, ...],
    order_column: Any,
    wanted: int,
) -> list[Ticket]:
    """The first `wanted` tickets meeting `conditions`, newest `order_column` first.

    One ordered, limited index range scan per status, in one statement: the page is among
    the union of their heads. Only that union's top `wanted` keys are joined to full rows.
    """
    scans = [
        sa.select(order_column.label("at"), Ticket.id.label("id"))
        .where(*conditions, Ticket.status == status)
        .order_by(order_column.desc(), Ticket.id.desc())
        .limit(wanted)
        for status in statuses
    ]
    if len(scans) == 1:
        heads = scans[0].subquery("heads")
    else:
        # Each scan keeps its own ORDER BY/LIMIT inside a subquery (SQLite needs that shape).
        heads = sa.union_all(*(sa.select(*scan.subquery().c) for scan in scans)).subquery("heads")
    page = (
        sa.select(*heads.c)
        .order_by(heads.c.at.desc(), heads.c.id.desc())
        .limit(wanted)
        .subquery("page")
    )
    return list(
        session.scalars(
            sa.select(Ticket)
            .join(page, page.c.id == Ticket.id)
            .order_by(page.c.at.desc(), page.c.id.desc())
        )
    )


def search_tickets(
    session: Session,
    text: str,
    *,
    agent: Agent,
    filters: Filters = Filters(),
    limit: int = PAGE_SIZE,
) -> list[Ticket]:
    """The tickets best matching `text` (subject, messages, customer), best first, at most
    `limit`: the first page of `search_page`."""
    return search_page(session, text, agent=agent, filters=filters, limit=limit).tickets


def encode_search_cursor(position: int) -> str:
    """A search cursor: the position in the ranked matches where the next page starts."""
    raw = f"{_SEARCH_CURSOR}|{position}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_search_cursor(cursor: str) -> int:
    """The position in a cursor made by `encode_search_cursor`; Invalid for anything else."""
    try:
        if len(cursor) > 40:
            raise ValueError("long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        name, position = raw.split("|")
        if name != _SEARCH_CURSOR or not (position.isascii() and position.isdigit()):
            raise ValueError("not a search cursor")
        if not 0 < int(position) < MAX_CANDIDATES:
            raise ValueError("position")
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid("That page link is not valid.") from exc
    return int(position)


def search_page(
    session: Session,
    text: str,
    *,
    agent: Agent,
    filters: Filters = Filters(),
    cursor: str | None = None,
    limit: int = PAGE_SIZE,
) -> Page:
    """One page of the tickets best matching `text` (subject, messages, customer).

    Every word must match (stemmed: "declined" finds "decline"). Best first, ties broken by
    ticket id (newest first), so the order is the same on every request and a page's
    `next_cursor` continues exactly after its last ticket. Filters narrow the results;
    merged tickets are left out. Paging stops at the MAX_CANDIDATES best matches. Any text
    is safe, and text without words finds nothing. Invalid for a cursor this function did
    not make.
    """
    start = decode_search_cursor(cursor) if cursor else 0
    extra = _filter_conditions(session, filters, agent)
    if not search.terms(text) or extra is None:
        return Page([], None, Sort.UPDATED, filters)
    conditions = [NOT_MERGED, *extra]
    if filters.status is not None:
        conditions.append(Ticket.status == filters.status)
    # Rank first, then keep the candidates the filters allow, in rank order: a few more than
    # a page, or when filters are picky, up to MAX_CANDIDATES. `found` holds (position in
    # the ranking, ticket id); one more than a page tells whether another page exists.
    wanted = limit + 1
    found: list[tuple[int, int]] = []
    for candidates in sorted({min(start + wanted * 3, MAX_CANDIDATES), MAX_CANDIDATES}):
        ranked = search.ranked_ticket_ids(session, text, limit=candidates)
        found = []
        for chunk_start in range(start, len(ranked), 500):
            chunk = ranked[chunk_start : chunk_start + 500]
            allowed = set(
                session.scalars(sa.select(Ticket.id).where(Ticket.id.in_(chunk), *conditions))
            )
            found += [(chunk_start + i, t) for i, t in enumerate(chunk) if t in allowed]
            if len(found) >= wanted:
                break
        if len(found) >= wanted or len(ranked) < candidates:
            break
    shown = found[:limit]
    next_cursor = None
    if len(found) > limit and shown and shown[-1][0] + 1 < MAX_CANDIDATES:
        next_cursor = encode_search_cursor(shown[-1][0] + 1)
    ids = [t for _, t in shown]
    by_id = {t.id: t for t in session.scalars(sa.select(Ticket).where(Ticket.id.in_(ids)))}
    return Page([by_id[i] for i in ids if i in by_id], next_cursor, Sort.UPDATED, filters)


def view_counts(session: Session, *, agent: Agent) -> dict[View, int]:
    """Ticket count per view: index-only, and capped at COUNT_CAP + 1 ("more than").

    All is the sum of All open, Pending and Solved (their statuses partition every ticket),
    so the largest view is never counted on its own.
    """
    views = [view for view in View if view != View.ALL]
    columns = []
    for view in views:
        capped = (
            sa.select(sa.literal(1)).where(_view_filter(view, agent)).limit(COUNT_CAP + 1)
        ).subquery()
        columns.append(
            sa.select(sa.func.count()).select_from(capped).scalar_subquery().label(view.value)
        )
    row = session.execute(sa.select(*columns)).one()
    counts = {view: int(value or 0) for view, value in zip(views, row, strict=True)}
    parts = (counts[View.OPEN], counts[View.PENDING], counts[View.SOLVED])
    counts[View.ALL] = min(sum(parts), COUNT_CAP + 1)
    return counts


def filter_choices(session: Session) -> dict[str, list[Any]]:
    """What the filter controls offer: agents, mailboxes and tags (by name)."""
    return {
        "agents": active_agents(session),
        "mailboxes": list(session.scalars(sa.select(Mailbox).order_by(Mailbox.name))),
        "tags": list(session.scalars(sa.select(Tag).order_by(Tag.name).limit(500))),
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
