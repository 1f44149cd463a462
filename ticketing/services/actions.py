"""Agent actions on tickets beyond the conversation itself: priority, merge, detach, bulk
changes, and the check that keeps a reply from going out over one the agent has not seen.

Place in the flow (design.md §2, §4): the agent UI (ticket page, inbox list) and the API call
these verbs with the acting agent and the clock. Each one changes rows, records what happened
as system events through `conversation`, flushes, and leaves the commit to its caller, so a
failure anywhere leaves nothing half done. Nothing here enqueues email.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, object_session

from ticketing.errors import Invalid
from ticketing.models import (
    Agent,
    Channel,
    Entry,
    EntryKind,
    OutboxMessage,
    Priority,
    Receipt,
    Status,
    Ticket,
)
from ticketing.services import conversation, inbox

# One bulk request touches at most this many tickets (a page of the list is 50).
MAX_BULK = 500

# Entries that count as "someone answered" for the collision check: what the customer sees.
CONVERSATION_KINDS = (EntryKind.AGENT_REPLY, EntryKind.CUSTOMER_EMAIL, EntryKind.CUSTOMER_WEB)

_REPLY_PREFIX = re.compile(r"^\s*(?:(?:re|aw|sv|fwd?|wg)\s*:\s*)+", re.IGNORECASE)


def _session(ticket: Ticket) -> Session:
    session = object_session(ticket)
    assert session is not None, "ticket must be in a session"
    return session


def _require_not_merged(ticket: Ticket) -> None:
    if ticket.merged_into_id is not None:
        raise Invalid(f"Ticket #{ticket.number} was merged into another ticket; work there.")


# -- priority ----------------------------------------------------------------------------------


def set_priority(ticket: Ticket, priority: Priority, *, actor: Agent, now: dt.datetime) -> Ticket:
    """Change the priority and note it in the history ("Priority changed to high by Dana")."""
    _require_not_merged(ticket)
    if ticket.priority == priority:
        return ticket
    ticket.priority = priority
    ticket.updated_at = now
    conversation.record_event(
        ticket, text=f"Priority changed to {priority.value} by {actor.name}", now=now, actor=actor
    )
    return ticket


# -- merge -------------------------------------------------------------------------------------


def merge(session: Session, source: Ticket, *, into: int, actor: Agent, now: dt.datetime) -> Ticket:
    """Merge `source` into the ticket numbered `into`; return that ticket.

    Every entry of `source` moves to the target with its id and Message-ID, so the target's
    history (ordered by entry id, i.e. by arrival) interleaves both conversations as they
    happened, and later mail referencing those Message-IDs threads into the target. A
    Message-ID the target already holds (the same email landed on both tickets) would break
    the one-entry-per-Message-ID-per-ticket rule: the moved copy keeps its content under a
    suffixed id (`<local>.merged<source number>@<domain>`) and is flagged
    `message_id_conflict`, so nothing is lost. Outbox rows and inbound receipts follow the
    entries; `source`'s customer and participants become participants of the target; its
    tags are added. `source` is closed with `merged_into_id` set and both histories get
    "Merged #A into #B". An active source merged into an inactive target reopens the target,
    so the customer's newer question does not vanish from the views.

    Raises `Invalid` for a missing number, merging into itself, and either ticket already
    merged. Enqueues no email.
    """
    target = session.scalar(sa.select(Ticket).where(Ticket.number == into))
    if target is None:
        raise Invalid(f"There is no ticket #{into}.")
    if target.id == source.id:
        raise Invalid("A ticket can't be merged into itself.")
    # Lock both rows (in id order, so two crossing merges cannot deadlock) and re-read them:
    # A->B and B->A at the same moment must not both succeed and hide each other.
    session.execute(
        sa.select(Ticket.id)
        .where(Ticket.id.in_((source.id, target.id)))
        .order_by(Ticket.id)
        .with_for_update()
    )
    session.refresh(source)
    session.refresh(target)
    if source.merged_into_id is not None:
        raise Invalid(f"Ticket #{source.number} was already merged into another ticket.")
    if target.merged_into_id is not None:
        final = session.get(Ticket, target.merged_into_id)
        where = f" #{final.number}" if final is not None else " that ticket"
        raise Invalid(f"Ticket #{target.number} was merged into{where}; merge into{where} instead.")

    moved = list(session.scalars(sa.select(Entry).where(Entry.ticket_id == source.id)))
    held = _message_ids_on(session, target, [e.message_id for e in moved if e.message_id])
    for entry in moved:
        if entry.message_id and entry.message_id in held:
            entry.message_id = _free_message_id(session, target, entry.message_id, source.number)
            entry.flags = sorted({*entry.flags, "message_id_conflict"})
        entry.ticket = target
    session.flush()
    for model in (OutboxMessage, Receipt):
        session.execute(
            sa.update(model)
            .where(model.ticket_id == source.id)
            .values(ticket_id=target.id)
            .execution_options(synchronize_session=False)
        )

    for person in [source.customer, *inbox.participants(session, source)]:
        conversation.add_participant(target, person)
    for tag in source.tags:
        if tag not in target.tags:
            target.tags.append(tag)

    text = f"Merged #{source.number} into #{target.number} by {actor.name}"
    was_active = source.status.is_active
    conversation.set_status(source, Status.CLOSED, actor=actor, now=now, record=False)
    source.merged_into_id = target.id
    source.updated_at = now
    conversation.record_event(source, text=text, now=now, actor=actor)
    conversation.record_event(target, text=text, now=now, actor=actor)
    if was_active and not target.status.is_active:
        conversation.set_status(target, Status.OPEN, actor=actor, now=now)
    target.updated_at = now
    session.flush()
    return target


def _message_ids_on(session: Session, ticket: Ticket, candidates: Sequence[str]) -> set[str]:
    held: set[str] = set()
    for start in range(0, len(candidates), 500):  # bounded IN lists
        chunk = candidates[start : start + 500]
        held.update(
            session.scalars(
                sa.select(Entry.message_id).where(
                    Entry.ticket_id == ticket.id, Entry.message_id.in_(chunk)
                )
            )
        )
    return held


def _free_message_id(session: Session, ticket: Ticket, message_id: str, number: int) -> str:
    local, at, domain = message_id.rpartition("@")
    if not at:
        local, domain = message_id, ""
    for attempt in range(100):
        suffix = f".merged{number}" + (f".{attempt}" if attempt else "")
        candidate = f"{local}{suffix}@{domain}" if at else f"{local}{suffix}"
        if not _message_ids_on(session, ticket, [candidate]):
            return candidate
    raise Invalid("Too many copies of one message on this ticket.")  # pragma: no cover


# -- detach ------------------------------------------------------------------------------------


def detach_entry(session: Session, entry: Entry, *, actor: Agent, now: dt.datetime) -> Ticket:
    """Move one customer message to a new ticket of its own (undo a wrong thread).

    Only that entry moves (with its attachments, Message-ID, outbox rows and receipt); the new
    ticket belongs to the message's author, takes the message's subject (or the old ticket's),
    and both histories get an event naming the other ticket. Returns the new ticket.
    """
    if not entry.kind.is_from_customer:
        raise Invalid("Only a customer's message can be moved to a new ticket.")
    old = entry.ticket
    _require_not_merged(old)
    author = entry.author_customer or old.customer
    subject = _REPLY_PREFIX.sub("", entry.subject or "") or old.subject
    new = conversation.open_ticket(
        session,
        customer=author,
        subject=subject,
        channel=Channel.EMAIL if entry.kind == EntryKind.CUSTOMER_EMAIL else Channel.WEB,
        now=entry.created_at,
        priority=old.priority,
        mailbox_id=old.mailbox_id,
    )
    entry.ticket = new
    new.preview = conversation.preview_of(entry.body_text)
    new.updated_at = now
    session.flush()
    for model in (OutboxMessage, Receipt):
        session.execute(
            sa.update(model)
            .where(model.entry_id == entry.id)
            .values(ticket_id=new.id)
            .execution_options(synchronize_session=False)
        )
    old.preview = _latest_preview(session, old)
    who = author.display_name
    conversation.record_event(
        old,
        text=f"Moved a message from {who} to new ticket #{new.number} by {actor.name}",
        now=now,
        actor=actor,
    )
    conversation.record_event(
        new, text=f"Moved here from #{old.number} by {actor.name}", now=now, actor=actor
    )
    old.updated_at = now
    session.flush()
    return new


def _latest_preview(session: Session, ticket: Ticket) -> str:
    body = session.scalar(
        sa.select(Entry.body_text)
        .where(Entry.ticket_id == ticket.id, Entry.kind.in_(CONVERSATION_KINDS))
        .order_by(Entry.id.desc())
        .limit(1)
    )
    return conversation.preview_of(body or "")


# -- bulk --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BulkAction:
    """A parsed bulk action: `assign` (agent_id None unassigns) or `status`."""

    kind: str
    agent_id: int | None = None
    status: Status | None = None


def parse_bulk_action(value: str, *, actor: Agent) -> BulkAction:
    """`assign_me`, `unassign`, `assign:<agent id>` or `status:<status>`; anything else is
    Invalid (a whitelist, never a column name or a query)."""
    if value == "assign_me":
        return BulkAction("assign", agent_id=actor.id)
    if value == "unassign":
        return BulkAction("assign")
    name, _, arg = value.partition(":")
    if name == "assign" and arg.isascii() and arg.isdigit() and len(arg) < 12:
        return BulkAction("assign", agent_id=int(arg))
    if name == "status":
        try:
            return BulkAction("status", status=Status(arg))
        except ValueError:
            pass
    raise Invalid("Choose an action from the list.")


def bulk_update(
    session: Session,
    *,
    numbers: Sequence[int],
    action: str,
    actor: Agent,
    now: dt.datetime,
) -> list[Ticket]:
    """Apply one assign/status action to every ticket in `numbers`, or to none of them.

    Every number must name an existing, unmerged ticket and the action must parse (see
    `parse_bulk_action`) before anything changes. Each change is recorded on its ticket as
    the single-ticket action would record it. Returns the tickets, in the order given.
    """
    parsed = parse_bulk_action(action, actor=actor)
    wanted = list(dict.fromkeys(numbers))
    if not wanted:
        raise Invalid("Select at least one ticket.")
    if len(wanted) > MAX_BULK:
        raise Invalid(f"Select at most {MAX_BULK} tickets at a time.")
    found = {
        t.number: t for t in session.scalars(sa.select(Ticket).where(Ticket.number.in_(wanted)))
    }
    for number in wanted:
        if number not in found:
            raise Invalid(f"There is no ticket #{number}.")
        _require_not_merged(found[number])
    assignee: Agent | None = None
    if parsed.kind == "assign" and parsed.agent_id is not None:
        assignee = session.get(Agent, parsed.agent_id)
        if assignee is None or not assignee.is_active:
            raise Invalid("Choose an active agent.")
    tickets = [found[n] for n in wanted]
    for ticket in tickets:
        if parsed.kind == "assign":
            conversation.assign(ticket, assignee, actor=actor, now=now)
        else:
            assert parsed.status is not None
            conversation.set_status(ticket, parsed.status, actor=actor, now=now)
    session.flush()
    return tickets


# -- collision ---------------------------------------------------------------------------------


def unseen_replies(
    session: Session, ticket: Ticket, *, seen_entry_id: int, actor: Agent
) -> list[Entry]:
    """Public messages on `ticket` newer than entry `seen_entry_id` that `actor` did not write
    (another agent's reply, a customer's message), oldest first.

    The reply composer sends the id of the newest entry at page load; any of these means the
    agent is about to answer a conversation that moved on without them.
    """
    return list(
        session.scalars(
            sa.select(Entry)
            .where(
                Entry.ticket_id == ticket.id,
                Entry.id > seen_entry_id,
                Entry.kind.in_(CONVERSATION_KINDS),
                sa.or_(Entry.author_agent_id.is_(None), Entry.author_agent_id != actor.id),
            )
            .order_by(Entry.id)
        )
    )


def latest_entry_id(session: Session, ticket: Ticket) -> int:
    """The id of the newest entry on `ticket` (0 when it has none)."""
    return session.scalar(sa.select(sa.func.max(Entry.id)).where(Entry.ticket_id == ticket.id)) or 0
