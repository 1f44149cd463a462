"""Threading: which ticket does an inbound email belong to, and why.

Rules, in order (the first that matches wins):
  a. In-Reply-To/References name a Message-ID we sent (HMAC-signed, so it proves the writer
     saw our mail) — or one we received on a ticket, when the sender is that ticket's
     customer or a recorded participant;
  b. a signed reply address (`support+t1234.<sig>@…`) among the recipients;
  c. a ticket token in the subject (`[#1234]`), only when the sender is the ticket's customer
     or a recorded participant and the From header is trustworthy.
Otherwise a new ticket. A stranger quoting a number or forging References therefore gets a
new ticket, never someone else's thread (Zammad #5064, FreeScout GHSA-j49f-9g94-3wh4).
Every decision carries `reason`, stored on the entry as `threaded_by`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, lazyload

from mail.message import ParsedEmail, SenderStatus
from mail.tokens import ticket_from_message_id, ticket_from_reply_address
from ticketing.models import Customer, Entry, Participant, Ticket

_SUBJECT_TOKEN = re.compile(r"\[#(\d{1,12})\]")
# Reply and forward prefixes in the languages mail clients localise them into.
_PREFIX = re.compile(
    r"^\s*(?:(?:re|aw|sv|vs|wg|fw|fwd|tr|rv|r|ref|antw|odp|res|enc|доп|ответ|回复|转发|答复)"
    r"\s*(?:\[\d+\])?\s*[:：]\s*|\[#\d{1,12}\]\s*)+",  # noqa: RUF001 (CJK colon)
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class ThreadDecision:
    """Where a message goes. `ticket` is None for a new ticket; `follows_up` is the closed
    ticket a new one continues; `sender_joins` says the sender becomes a participant."""

    ticket: Ticket | None
    reason: str
    follows_up: Ticket | None = None
    sender_joins: bool = False


def normalize_subject(subject: str) -> str:
    """The subject without reply/forward prefixes and ticket tokens, for a new ticket."""
    cleaned = _PREFIX.sub("", subject)
    cleaned = _SUBJECT_TOKEN.sub("", cleaned)
    return " ".join(cleaned.split())


def subject_token(subject: str) -> int | None:
    match = _SUBJECT_TOKEN.search(subject)
    return int(match.group(1)) if match else None


def is_participant(session: Session, ticket: Ticket, customer: Customer | None) -> bool:
    if customer is None or customer.id is None:
        return False
    if ticket.customer_id == customer.id:
        return True
    return (
        session.scalar(
            sa.select(Participant.id).where(
                Participant.ticket_id == ticket.id, Participant.customer_id == customer.id
            )
        )
        is not None
    )


# Threading never reads a ticket's tags: load them only if something asks (a query each).
_NO_TAGS = lazyload(Ticket.tags)


# Built once: every follow-up asks which tickets hold the ids it references.
_RECEIVED_ON = (
    sa.select(Entry.message_id, Ticket)
    .join(Ticket, Entry.ticket_id == Ticket.id)
    .where(Entry.message_id.in_(sa.bindparam("ids", expanding=True)))
    .options(_NO_TAGS)
)


def _by_number(session: Session, number: int) -> Ticket | None:
    """The ticket with this number — or, if it was merged, the ticket it was merged into."""
    ticket = session.scalar(sa.select(Ticket).where(Ticket.number == number).options(_NO_TAGS))
    for _ in range(10):  # merge chains are short; bounded against a cycle
        if ticket is None or ticket.merged_into_id is None:
            break
        ticket = session.get(Ticket, ticket.merged_into_id)
    return ticket


def decide(
    session: Session,
    msg: ParsedEmail,
    *,
    sender: Customer | None,
    secret_key: str,
    recipients: tuple[str, ...] = (),
) -> ThreadDecision:
    """Choose the ticket for `msg` from `sender` (None when the sender is unusable)."""
    trusted_sender = sender is not None and msg.sender_status == SenderStatus.OK
    decision = _decide(session, msg, sender, trusted_sender, secret_key, recipients)
    if decision.ticket is not None and decision.ticket.closed_at is not None:
        return ThreadDecision(
            None,
            f"{decision.reason}; ticket #{decision.ticket.number} is closed, so a new ticket",
            follows_up=decision.ticket,
        )
    return decision


def _decide(
    session: Session,
    msg: ParsedEmail,
    sender: Customer | None,
    trusted_sender: bool,
    secret_key: str,
    recipients: tuple[str, ...],
) -> ThreadDecision:
    # (a) References: most recent first (In-Reply-To, then References from the end).
    ids: list[str] = []
    for mid in ([msg.in_reply_to] if msg.in_reply_to else []) + list(reversed(msg.references)):
        if mid not in ids:
            ids.append(mid)
    ids = ids[:50]
    received: dict[str, Ticket] = {}
    if trusted_sender and ids:
        rows = session.execute(_RECEIVED_ON, {"ids": ids}).all()
        received = {mid: ticket for mid, ticket in rows}
    for mid in ids:
        number = ticket_from_message_id(mid, secret_key=secret_key)
        if number is not None and (ticket := _by_number(session, number)) is not None:
            joins = not is_participant(session, ticket, sender)
            return ThreadDecision(
                ticket, f"References matched our message <{mid}>", sender_joins=joins
            )
        ticket = received.get(mid)
        if ticket is not None and is_participant(session, ticket, sender):
            return ThreadDecision(ticket, f"References matched <{mid}>, sender is a participant")
    # (b) A signed reply address among the recipients.
    for address in recipients:
        number = ticket_from_reply_address(address, secret_key=secret_key)
        if number is not None and (ticket := _by_number(session, number)) is not None:
            joins = not is_participant(session, ticket, sender)
            return ThreadDecision(ticket, f"signed reply address {address}", sender_joins=joins)
    # (c) Subject token, only from the customer or a participant with a trustworthy From.
    number = subject_token(msg.subject)
    if number is not None:
        ticket = _by_number(session, number)
        if ticket is not None and trusted_sender and is_participant(session, ticket, sender):
            who = "the customer" if ticket.customer_id == sender.id else "a participant"  # type: ignore[union-attr]
            return ThreadDecision(ticket, f"subject token [#{number}], sender is {who}")
        return ThreadDecision(
            None, f"new ticket (subject token [#{number}] ignored: sender is not a participant)"
        )
    return ThreadDecision(None, "new ticket")
