"""Outbox rules: recording outgoing mail, claiming it for delivery, retries, caps, suppression.

Transport-free: `mail.outbound` composes the bytes and talks SMTP; this module decides what
may be sent and keeps each row's state honest.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable, Sequence
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


# -- many rows at once (the notice scan) -------------------------------------------------------


@dataclass
class AutomaticMailLedger:
    """`automatic_mail_block` for many recipients, read in two queries up front.

    `block(recipient)` answers as `automatic_mail_block` would (no per-ticket cap) if every
    row recorded so far had been flushed: call `counted(recipient)` for each row recorded with
    a status other than SUPPRESSED, which the cap counts.
    """

    caps: AutomaticMailCaps
    suppressed: dict[str, str]  # recipient -> why, in `automatic_mail_block`'s words
    recent: dict[str, int]  # automatic rows per recipient in the cap window

    def block(self, recipient: str) -> str | None:
        recipient = normalize_email(recipient)
        if (why := self.suppressed.get(recipient)) is not None:
            return why
        count = self.recent.get(recipient, 0)
        if count >= self.caps.per_recipient:
            return f"cap reached: {count} automatic emails to {recipient} in the last window"
        return None

    def counted(self, recipient: str, n: int = 1) -> None:
        recipient = normalize_email(recipient)
        self.recent[recipient] = self.recent.get(recipient, 0) + n


def automatic_mail_ledger(
    session: Session, recipients: Iterable[str], *, now: dt.datetime, caps: AutomaticMailCaps
) -> AutomaticMailLedger:
    """Live suppressions and recent automatic mail of `recipients` (see `AutomaticMailLedger`)."""
    addresses = sorted({normalize_email(r) for r in recipients})
    suppressed: dict[str, str] = {}
    recent: dict[str, int] = {}
    for start in range(0, len(addresses), 1000):
        chunk = addresses[start : start + 1000]
        for hit in session.scalars(
            sa.select(Suppression).where(Suppression.email.in_(chunk), Suppression.expires_at > now)
        ):
            suppressed[hit.email] = (
                f"{hit.email} is suppressed until {hit.expires_at:%Y-%m-%d}: {hit.reason}"
            )
        recent.update(
            session.execute(
                sa.select(OutboxMessage.recipient, sa.func.count(OutboxMessage.id))
                .where(
                    OutboxMessage.recipient.in_(chunk),
                    OutboxMessage.is_automatic,
                    OutboxMessage.created_at >= now - caps.window,
                    OutboxMessage.status != OutboxStatus.SUPPRESSED,
                )
                .group_by(OutboxMessage.recipient)
            )
            .tuples()
            .all()
        )
    return AutomaticMailLedger(caps=caps, suppressed=suppressed, recent=recent)


@dataclass(frozen=True, slots=True)
class NewOutboxRow:
    """One row for `record_many`: `record`'s arguments, with ids instead of objects."""

    kind: OutboxKind
    message_id: str
    envelope_from: str
    recipients: list[str]
    subject: str
    raw_sha256: str
    size: int
    ticket_id: int | None = None
    entry_id: int | None = None
    mailbox_id: int | None = None
    is_automatic: bool = False
    status: OutboxStatus = OutboxStatus.QUEUED
    note: str | None = None


_OUTBOX = OutboxMessage.__table__
# Built once. Ids come back keyed by the unique Message-ID, not in parameter order: asking for
# that order makes SQLAlchemy insert one row per statement on SQLite.
_INSERT_MANY = _OUTBOX.insert().returning(_OUTBOX.c.id, _OUTBOX.c.message_id)


def record_many(session: Session, rows: Sequence[NewOutboxRow], *, now: dt.datetime) -> list[int]:
    """`record` for many rows in one statement (on the session's connection, in its
    transaction); their ids, in order. Nothing is added to the session's identity map."""
    if not rows:
        return []
    params = [
        {
            "kind": row.kind,
            "status": row.status,
            "is_automatic": row.is_automatic,
            "ticket_id": row.ticket_id,
            "entry_id": row.entry_id,
            "mailbox_id": row.mailbox_id,
            "message_id": row.message_id,
            "envelope_from": row.envelope_from,
            "recipient": normalize_email(row.recipients[0]) if row.recipients else "",
            "recipients": [normalize_email(r) for r in row.recipients],
            "subject": row.subject[:998],
            "raw_sha256": row.raw_sha256,
            "size": row.size,
            "attempts": 0,
            "next_attempt_at": now,
            "last_error": row.note,
            "created_at": now,
        }
        for row in rows
    ]
    result = session.connection().execute(_INSERT_MANY, params)
    ids = {message_id: row_id for row_id, message_id in result}
    return [ids[row.message_id] for row in rows]
