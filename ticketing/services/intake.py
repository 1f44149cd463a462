"""Web intake: a contact-form submission becomes a ticket, once.

Place in the flow: the contact form (web) validates the fields, stores the attachments and
calls `submit_web_request`; it then asks the email-out layer for the acknowledgement (only
when `is_new`) and commits. The form's idempotency token is a unique key here, so a double
click, a refresh or two racing requests make one ticket: the loser of a race finds the
winner's ticket instead of opening another.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ticketing.errors import RateLimited
from ticketing.models import Channel, Entry, EntryKind, Ticket
from ticketing.models.journeys import SelfServiceSession, WebSubmission
from ticketing.services import conversation, customers, journeys

DAY = dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class WebIntake:
    """The ticket a submission made, its first entry when this call made it (None: a
    replay of an earlier submission)."""

    ticket: Ticket
    entry: Entry | None

    @property
    def is_new(self) -> bool:
        return self.entry is not None


def idempotency_key(token: str) -> str:
    """The stored form of a form's idempotency token (fixed length, whatever was posted)."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def find_submission(session: Session, *, token: str) -> Ticket | None:
    """The ticket an earlier submission with this token opened, if any."""
    return session.scalar(
        sa.select(Ticket)
        .join(WebSubmission, WebSubmission.ticket_id == Ticket.id)
        .where(WebSubmission.idempotency_key == idempotency_key(token))
    )


def web_tickets_today(session: Session, *, now: dt.datetime) -> int:
    """Contact-form tickets opened in the last 24 hours (the global daily cap counts these)."""
    return int(
        session.scalar(
            sa.select(sa.func.count(WebSubmission.id)).where(WebSubmission.created_at > now - DAY)
        )
        or 0
    )


def submit_web_request(
    session: Session,
    *,
    name: str,
    email: str,
    subject: str,
    body: str,
    attachments: Sequence[conversation.NewAttachment],
    journey: SelfServiceSession | None,
    idempotency_token: str,
    now: dt.datetime,
    daily_cap: int,
) -> WebIntake:
    """Open a web ticket (channel `web`, first entry `customer_web`) for a contact-form
    submission, carrying the visitor's journey; or return the ticket this token already
    opened. Raises RateLimited when `daily_cap` web tickets were opened in the last 24 h.

    Enqueues nothing: the caller acknowledges a new ticket through the email-out layer.
    """
    existing = find_submission(session, token=idempotency_token)
    if existing is not None:
        return WebIntake(existing, None)
    if web_tickets_today(session, now=now) >= daily_cap:
        raise RateLimited(
            "We are receiving an unusual number of requests. Please try again later "
            "or write to us by email.",
            retry_after_seconds=3600,
        )
    try:
        with session.begin_nested():
            customer = customers.find_or_create(session, email=email, name=name)
            ticket = conversation.open_ticket(
                session, customer=customer, subject=subject, channel=Channel.WEB, now=now
            )
            entry = conversation.add_customer_message(
                ticket,
                author=customer,
                kind=EntryKind.CUSTOMER_WEB,
                subject=subject,
                body_text=body,
                attachments=attachments,
                now=now,
            )
            session.add(
                WebSubmission(
                    idempotency_key=idempotency_key(idempotency_token),
                    ticket_id=ticket.id,
                    created_at=now,
                )
            )
            session.flush()
    except sa.exc.IntegrityError:
        # The same token committed by a concurrent request: theirs is the ticket.
        existing = find_submission(session, token=idempotency_token)
        if existing is None:
            raise
        return WebIntake(existing, None)
    if journey is not None:
        journeys.attach_to_ticket(session, journey, ticket, now=now, email=email)
    return WebIntake(ticket, entry)
