"""Presence on a ticket: who has it open, who is writing a reply ("Dana is replying…").

The ticket page sends a heartbeat (web.agent.presence) every 20 seconds and whenever its
composer goes from empty to written or back; each one calls `touch`, which keeps the
agent's row alive for TTL. Rows past `expires_at` are ignored by every reader and pruned
by the next `touch` on the same ticket, so a closed tab fades out within TTL on its own.

The reply collision check (web.agent.actions.reply_collision) asks `replying` before a reply
goes out; the ticket page shows `others`.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ticketing.models import Agent, Ticket
from ticketing.models.presence import Activity, TicketPresence

# Three missed heartbeats (every 20 s) and the agent is gone.
TTL = dt.timedelta(seconds=60)


def touch(
    session: Session,
    ticket: Ticket,
    *,
    agent: Agent,
    activity: Activity,
    now: dt.datetime,
    ttl: dt.timedelta = TTL,
) -> TicketPresence:
    """Record that `agent` has `ticket` open (viewing, or writing a reply) until now + ttl.

    One row per (ticket, agent): updated in place, or inserted; two heartbeats racing to
    insert the same row meet the unique constraint, and the loser updates the winner's row.
    Expired rows of other agents on this ticket are deleted on the way. A heartbeat that
    changes nothing (same activity, row valid for more than half of `ttl`) writes nothing:
    on SQLite every write is a moment of the one write lock.
    """
    row = _row(session, ticket, agent)
    if row is not None and row.activity == activity and row.expires_at > now + ttl / 2:
        return row
    session.execute(
        sa.delete(TicketPresence).where(
            TicketPresence.ticket_id == ticket.id,
            TicketPresence.agent_id != agent.id,
            TicketPresence.expires_at <= now,
        )
    )
    if row is None:
        try:
            with session.begin_nested():
                row = TicketPresence(
                    ticket_id=ticket.id, agent_id=agent.id, activity=activity, expires_at=now + ttl
                )
                session.add(row)
        except IntegrityError:
            row = _row(session, ticket, agent)
            assert row is not None  # the concurrent insert that won
    row.activity = activity
    row.expires_at = now + ttl
    session.flush()
    return row


def _row(session: Session, ticket: Ticket, agent: Agent) -> TicketPresence | None:
    return session.scalar(
        sa.select(TicketPresence).where(
            TicketPresence.ticket_id == ticket.id, TicketPresence.agent_id == agent.id
        )
    )


def stop_replying(session: Session, ticket: Ticket, *, agent: Agent) -> None:
    """The agent sent (or dropped) their reply: they are only viewing the ticket now."""
    row = _row(session, ticket, agent)
    if row is not None and row.activity == Activity.REPLYING:
        row.activity = Activity.VIEWING
        session.flush()


def others(
    session: Session, ticket: Ticket, *, agent: Agent, now: dt.datetime
) -> list[TicketPresence]:
    """Other agents present on `ticket` now (not expired): those replying first, then by name."""
    rows = session.scalars(
        sa.select(TicketPresence)
        .join(Agent, Agent.id == TicketPresence.agent_id)
        .where(
            TicketPresence.ticket_id == ticket.id,
            TicketPresence.agent_id != agent.id,
            TicketPresence.expires_at > now,
            Agent.is_active,
        )
        .order_by(Agent.name, Agent.id)
    )
    return sorted(rows, key=lambda row: row.activity != Activity.REPLYING)


def replying(session: Session, ticket: Ticket, *, agent: Agent, now: dt.datetime) -> list[Agent]:
    """Other agents writing a reply on `ticket` right now (their presence not expired)."""
    return [
        row.agent
        for row in others(session, ticket, agent=agent, now=now)
        if row.activity == Activity.REPLYING
    ]
