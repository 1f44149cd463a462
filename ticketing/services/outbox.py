"""Outbox rules: recording outgoing mail, claiming it for delivery, retries, caps, suppression.

Transport-free: `mail.outbound` composes the bytes and talks SMTP; this module decides what
may be sent and keeps each row's state honest.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ticketing.models import (
    Entry,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Suppression,
    Ticket,
)
from ticketing.models.people import normalize_email


@dataclass(frozen=True, slots=True)
class AutomaticMailCaps:
    """Limits on automatic mail (acknowledgements, notices) so a dumb autoresponder cannot
    start a loop. Defaults follow Zammad: 10 per ticket and 30 per recipient per 10 minutes."""

    per_ticket: int = 10
    per_recipient: int = 30
    window: dt.timedelta = dt.timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter for temporary SMTP failures."""

    max_attempts: int = 8
    base: dt.timedelta = dt.timedelta(seconds=30)
    cap: dt.timedelta = dt.timedelta(hours=2)

    def delay(self, attempts: int) -> dt.timedelta:
        """Delay before attempt `attempts + 1`: base * 2^(attempts-1), capped, +-20% jitter."""
        raw = min(self.base * (2 ** max(attempts - 1, 0)), self.cap)
        return raw * random.uniform(0.8, 1.2)


def record(
    session: Session,
    *,
    kind: OutboxKind,
    message_id: str,
    envelope_from: str,
    recipients: list[str],
    subject: str,
    raw_sha256: str,
    size: int,
    now: dt.datetime,
    ticket: Ticket | None = None,
    entry: Entry | None = None,
    mailbox_id: int | None = None,
    is_automatic: bool = False,
    status: OutboxStatus = OutboxStatus.QUEUED,
    note: str | None = None,
) -> OutboxMessage:
    """Add an outbox row (in the caller's transaction, next to the change that caused it)."""
    row = OutboxMessage(
        kind=kind,
        status=status,
        is_automatic=is_automatic,
        ticket_id=ticket.id if ticket else None,
        entry_id=entry.id if entry else None,
        mailbox_id=mailbox_id,
        message_id=message_id,
        envelope_from=envelope_from,
        recipient=normalize_email(recipients[0]) if recipients else "",
        recipients=[normalize_email(r) for r in recipients],
        subject=subject[:998],
        raw_sha256=raw_sha256,
        size=size,
        next_attempt_at=now,
        last_error=note,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def is_suppressed(session: Session, email: str, *, now: dt.datetime) -> Suppression | None:
    """The live suppression for this address, if any."""
    return session.scalar(
        sa.select(Suppression).where(
            Suppression.email == normalize_email(email), Suppression.expires_at > now
        )
    )


def suppress(
    session: Session, email: str, *, reason: str, now: dt.datetime, days: int = 60
) -> Suppression:
    """Put (or keep) an address on the suppression list for `days` (Zammad uses 60)."""
    email = normalize_email(email)
    row = session.scalar(sa.select(Suppression).where(Suppression.email == email))
    if row is None:
        row = Suppression(email=email, reason=reason[:500], expires_at=now, created_at=now)
        session.add(row)
    row.reason = reason[:500]
    row.expires_at = max(row.expires_at, now + dt.timedelta(days=days))
    session.flush()
    return row


def automatic_mail_block(
    session: Session,
    *,
    recipient: str,
    now: dt.datetime,
    caps: AutomaticMailCaps,
    ticket_id: int | None = None,
) -> str | None:
    """Why automatic mail to `recipient` (about `ticket_id`) must not go now, or None."""
    recipient = normalize_email(recipient)
    if (hit := is_suppressed(session, recipient, now=now)) is not None:
        return f"{recipient} is suppressed until {hit.expires_at:%Y-%m-%d}: {hit.reason}"
    since = now - caps.window
    recent = sa.select(sa.func.count(OutboxMessage.id)).where(
        OutboxMessage.is_automatic,
        OutboxMessage.created_at >= since,
        OutboxMessage.status != OutboxStatus.SUPPRESSED,
    )
    if ticket_id is not None:
        count = session.scalar(recent.where(OutboxMessage.ticket_id == ticket_id)) or 0
        if count >= caps.per_ticket:
            return f"cap reached: {count} automatic emails on this ticket in the last window"
    count = session.scalar(recent.where(OutboxMessage.recipient == recipient)) or 0
    if count >= caps.per_recipient:
        return f"cap reached: {count} automatic emails to {recipient} in the last window"
    return None


def claim_due(
    session: Session, *, owner: str, now: dt.datetime, limit: int, lease: dt.timedelta
) -> list[int]:
    """Claim up to `limit` rows due for delivery; returns their ids (committed claim).

    On PostgreSQL `FOR UPDATE SKIP LOCKED` lets any number of senders claim disjoint rows
    without waiting on each other; SQLite has a single writer, which gives the same.
    A claim expires after `lease`, so rows held by a crashed sender are picked up again.
    """
    stmt = (
        sa.select(OutboxMessage.id)
        .where(
            OutboxMessage.status == OutboxStatus.QUEUED,
            OutboxMessage.next_attempt_at <= now,
            sa.or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now),
        )
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    ids = list(session.scalars(stmt))
    if ids:
        session.execute(
            sa.update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids))
            .values(claimed_by=owner, claimed_until=now + lease)
            .execution_options(synchronize_session=False)
        )
    session.commit()
    return ids


def mark_sent(row: OutboxMessage, *, now: dt.datetime, refused: dict[str, tuple[int, str]]) -> None:
    row.status = OutboxStatus.SENT
    row.attempts += 1
    row.sent_at = now
    row.claimed_by = row.claimed_until = None
    row.last_code = 250
    row.last_error = (
        "; ".join(f"{rcpt} refused: {code} {text}" for rcpt, (code, text) in refused.items())
        or None
    )


def mark_failed_attempt(
    row: OutboxMessage,
    *,
    now: dt.datetime,
    code: int | None,
    error: str,
    permanent: bool,
    policy: RetryPolicy,
) -> None:
    """Record a failed attempt: retry later with backoff, or give up (shown on the ticket)."""
    row.attempts += 1
    row.last_code = code
    row.last_error = error[:2000]
    row.claimed_by = row.claimed_until = None
    if permanent or row.attempts >= policy.max_attempts:
        row.status = OutboxStatus.FAILED
        if not permanent:
            row.last_error = f"gave up after {row.attempts} attempts: {row.last_error}"
    else:
        row.next_attempt_at = now + policy.delay(row.attempts)


def retry(row: OutboxMessage, *, now: dt.datetime) -> OutboxMessage:
    """An agent asks to send a failed message again (same bytes, same Message-ID)."""
    row.status = OutboxStatus.QUEUED
    row.attempts = 0
    row.next_attempt_at = now
    row.claimed_by = row.claimed_until = None
    return row


def mark_bounced(row: OutboxMessage, *, diagnostic: str) -> None:
    row.status = OutboxStatus.BOUNCED
    row.last_error = diagnostic[:2000]


def find_by_message_id(session: Session, message_id: str) -> OutboxMessage | None:
    return session.scalar(
        sa.select(OutboxMessage).where(OutboxMessage.message_id == message_id.strip("<> "))
    )


def for_entries(session: Session, entry_ids: list[int]) -> dict[int, OutboxMessage]:
    """The outbox row of each entry that sent mail (the ticket page shows delivery state)."""
    if not entry_ids:
        return {}
    rows = session.scalars(sa.select(OutboxMessage).where(OutboxMessage.entry_id.in_(entry_ids)))
    return {row.entry_id: row for row in rows if row.entry_id is not None}
