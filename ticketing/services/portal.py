"""The customer portal: magic links in and out, and what a signed-in customer may see and do.

Place in the flow: `web.portal` (the routes) -> here; the email carrying a link is composed
and queued by `mail.portal_links`. A customer never has a password: they ask for a link,
the link signs them in once, and everything they see is limited to their own tickets and the
public part of each conversation (never internal notes or system events).

Tokens are 256-bit random strings; the database keeps only their SHA-256, found by an exact
index lookup and then compared with `hmac.compare_digest`. Every way a link can be wrong
(unknown, tampered, expired, used, for another purpose) raises the same `NotFound`, so the
page a visitor sees cannot tell them which.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ticketing.errors import Invalid, NotFound
from ticketing.models import (
    Attachment,
    Channel,
    Customer,
    Entry,
    EntryKind,
    MagicLink,
    MagicLinkPurpose,
    Status,
    Ticket,
)
from ticketing.models.people import normalize_email
from ticketing.services import conversation

TOKEN_BYTES = 32
MAX_REPLY = 50_000
PUBLIC_KINDS = tuple(kind for kind in EntryKind if kind.is_public)

# Status in the customer's words (ux.md "Their tickets").
STATUS_WORDS = {
    Status.NEW: "We're on it",
    Status.OPEN: "We're on it",
    Status.PENDING: "Waiting for you",
    Status.SOLVED: "Solved",
    Status.CLOSED: "Solved",
}


def new_token() -> str:
    """A fresh, unguessable token (URL-safe, 43 characters)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """What is stored for a token: hex SHA-256 (a fast hash suits a 256-bit random secret)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def portal_customer(session: Session, email: str) -> Customer | None:
    """The customer at this address if they have a ticket to see, else None."""
    address = normalize_email(email)
    return session.scalar(
        sa.select(Customer).where(
            Customer.email == address,
            sa.exists().where(Ticket.customer_id == Customer.id),
        )
    )


def issue_link(
    session: Session,
    *,
    customer: Customer,
    now: dt.datetime,
    ttl: dt.timedelta,
    purpose: MagicLinkPurpose = MagicLinkPurpose.PORTAL_LOGIN,
) -> tuple[MagicLink, str]:
    """Record a new link for `customer`; returns the row and the token (shown only once)."""
    token = new_token()
    link = MagicLink(
        token_hash=hash_token(token),
        customer=customer,
        purpose=purpose,
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(link)
    session.flush()
    return link, token


def redeem_link(
    session: Session,
    *,
    token: str,
    now: dt.datetime,
    purpose: MagicLinkPurpose = MagicLinkPurpose.PORTAL_LOGIN,
) -> Customer:
    """Use a link once: the customer it signs in, or `NotFound` for any bad link.

    The link is marked used by a conditional UPDATE, so two requests racing with the same
    link cannot both succeed.
    """
    digest = hash_token(token) if 20 <= len(token) <= 100 else ""
    link = (
        session.scalar(sa.select(MagicLink).where(MagicLink.token_hash == digest))
        if digest
        else None
    )
    if (
        link is None
        or not hmac.compare_digest(link.token_hash, digest)
        or link.purpose != purpose
        or not link.is_usable(now)
    ):
        raise NotFound("magic link")
    claimed = session.execute(
        sa.update(MagicLink)
        .where(MagicLink.id == link.id, MagicLink.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        raise NotFound("magic link")
    session.refresh(link)
    return link.customer


def purge_links(session: Session, *, now: dt.datetime, keep: dt.timedelta) -> int:
    """Delete links that expired more than `keep` ago; returns how many."""
    result = session.execute(sa.delete(MagicLink).where(MagicLink.expires_at < now - keep))
    return result.rowcount or 0


def customer_tickets(session: Session, customer: Customer) -> list[Ticket]:
    """The customer's own tickets, most recently active first (merged ones live on in their
    target and are not listed twice)."""
    return list(
        session.scalars(
            sa.select(Ticket)
            .where(Ticket.customer_id == customer.id, Ticket.merged_into_id.is_(None))
            .order_by(Ticket.updated_at.desc(), Ticket.id.desc())
        )
    )


def customer_ticket(session: Session, customer: Customer, number: int) -> Ticket:
    """The customer's ticket with this number; `NotFound` for anyone else's (no 403 oracle)."""
    ticket = session.scalar(
        sa.select(Ticket).where(Ticket.number == number, Ticket.customer_id == customer.id)
    )
    if ticket is None:
        raise NotFound(f"ticket {number}")
    return ticket


def public_history(session: Session, ticket: Ticket) -> list[Entry]:
    """The conversation the customer may see: their messages and our replies, oldest first."""
    return list(
        session.scalars(
            ticket.entries.select().where(Entry.kind.in_(PUBLIC_KINDS)).order_by(Entry.id)
        )
    )


def public_attachment(session: Session, ticket: Ticket, attachment_id: int) -> Attachment:
    """An attachment of a public entry of this ticket, else `NotFound`."""
    attachment = session.scalar(
        sa.select(Attachment)
        .join(Entry, Attachment.entry_id == Entry.id)
        .where(
            Attachment.id == attachment_id,
            Entry.ticket_id == ticket.id,
            Entry.kind.in_(PUBLIC_KINDS),
        )
    )
    if attachment is None:
        raise NotFound(f"attachment {attachment_id}")
    return attachment


def reply(
    session: Session, ticket: Ticket, *, customer: Customer, body_text: str, now: dt.datetime
) -> Entry:
    """The customer answers from the portal: a web message on the ticket, reopening it if it
    was waiting or solved. A closed ticket stays closed; the answer opens a follow-up ticket
    (as an email reply to a closed ticket does). Enqueues nothing."""
    if ticket.customer_id != customer.id:
        raise NotFound(f"ticket {ticket.number}")
    body_text = body_text.replace("\r\n", "\n").strip()
    if not body_text:
        raise Invalid("Write a message first.")
    if len(body_text) > MAX_REPLY:
        raise Invalid("That message is too long.")
    if ticket.merged_into_id is not None:
        target = session.get(Ticket, ticket.merged_into_id)
        if target is None or target.customer_id != customer.id:
            raise Invalid("This ticket was merged into another one; write to us again.")
        ticket = target
    if ticket.status == Status.CLOSED:
        ticket = conversation.open_ticket(
            session,
            customer=customer,
            subject=ticket.subject,
            channel=Channel.WEB,
            now=now,
            follows_up=ticket,
        )
    return conversation.add_customer_message(
        ticket,
        author=customer,
        kind=EntryKind.CUSTOMER_WEB,
        body_text=body_text,
        subject=ticket.subject,
        now=now,
        threaded_by="Customer portal",
    )
