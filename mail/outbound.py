"""Email out: turning ticket events into outbox rows, and delivering due rows over SMTP.

Enqueueing happens in the caller's transaction, next to the change that caused the mail
(an agent reply, a new ticket's acknowledgement): the message is composed then, its bytes
go to the blob store and its row to the outbox, so a rollback sends nothing and a commit
loses nothing. `deliver_due` is the sender: claim due rows, send them over one reused SMTP
connection, and mark each one after the server's answer — one transaction per row.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mail.compose import OutgoingAttachment, OutgoingMail, compose
from mail.compose_plain import compose_plain
from mail.message import Address
from mail.tokens import make_loop_token, make_message_id, reply_address
from mail.transport import SmtpError, SmtpSettings, open_connection
from ticketing.db import utcnow
from ticketing.emails import render_email
from ticketing.models import (
    Agent,
    Entry,
    EntryKind,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Status,
    Ticket,
)
from ticketing.services import conversation, deflection
from ticketing.services import outbox as outbox_rules
from ticketing.storage import BlobStore

log = logging.getLogger(__name__)

QUARANTINE_DOMAIN = "handoff.invalid"


@dataclass(frozen=True, slots=True)
class OutboundContext:
    """What composing and enqueueing need from the configuration; built by the web layer."""

    secret_key: str
    base_url: str
    blobs: BlobStore
    default_from: str  # used when a ticket has no mailbox (web form tickets)
    team_name: str = "Support"
    template_dir: Path | None = None  # operator overrides: <data dir>/templates/email
    caps: outbox_rules.AutomaticMailCaps = field(default_factory=outbox_rules.AutomaticMailCaps)
    ack_window: dt.timedelta = dt.timedelta(hours=1)
    expected_reply: str = "within one business day"


def _domain(address: str) -> str:
    return address.rpartition("@")[2] or "localhost"


def _from_address(ticket: Ticket, ctx: OutboundContext) -> str:
    return ticket.mailbox.address if ticket.mailbox is not None else ctx.default_from


def _thread_ids(session: Session, ticket: Ticket) -> tuple[str | None, tuple[str, ...]]:
    """(In-Reply-To, References) continuing the email thread of this ticket."""
    rows = session.execute(
        sa.select(Entry.message_id, Entry.kind)
        .where(Entry.ticket_id == ticket.id, Entry.message_id.is_not(None))
        .order_by(Entry.id)
    ).all()
    ids = [mid for mid, _ in rows if mid and "handoff.invalid" not in mid]
    customer_ids = [
        mid for mid, kind in rows if mid and kind.is_from_customer and "handoff.invalid" not in mid
    ]
    return (customer_ids[-1] if customer_ids else None), tuple(ids)


def store_composed(ctx: OutboundContext, mail: OutgoingMail) -> tuple[str, int, str | None]:
    """Compose and keep the bytes; (sha256, size, None), or an error in words when the
    message cannot be built (an invalid stored address): then nothing is sent."""
    data = compose_plain(mail)  # the common case, without the email package's cost
    if data is None:
        try:
            data = compose(mail)
        except ValueError as exc:
            return ctx.blobs.put(b""), 0, f"not sent: {exc}"
    return ctx.blobs.put(data), len(data), None


def reply(
    session: Session,
    ticket: Ticket,
    *,
    actor: Agent,
    body_text: str,
    now: dt.datetime,
    ctx: OutboundContext,
    status: Status | None = Status.PENDING,
    attachments: Sequence[conversation.NewAttachment] = (),
) -> tuple[Entry, OutboxMessage]:
    """An agent's reply: the timeline entry and its outbox row, in one transaction.

    `attachments` are already in the blob store; they go out with the email.
    Goes to the ticket's customer only — never to a Reply-To the agent was not shown.
    """
    from_address = _from_address(ticket, ctx)
    message_id = make_message_id(
        ticket.number, secret_key=ctx.secret_key, domain=_domain(from_address)
    )
    in_reply_to, references = _thread_ids(session, ticket)
    entry = conversation.reply(
        ticket,
        actor=actor,
        body_text=body_text,
        now=now,
        status=status,
        message_id=message_id,
        attachments=attachments,
    )
    customer = ticket.customer
    rendered = render_email(
        "agent_reply",
        {
            "ticket": ticket,
            "customer": customer,
            "agent": actor,
            "body": body_text,
            "quoted": _last_customer_text(session, ticket),
            "ticket_url": None,
            "reply_hint": True,
        },
        override_dir=ctx.template_dir,
    )
    attachments = tuple(
        OutgoingAttachment(a.filename, a.content_type, ctx.blobs.get(a.sha256))
        for a in entry.attachments
    )
    mail = OutgoingMail(
        from_address=from_address,
        from_name=f"{actor.name} ({ctx.team_name})",
        to=(Address(customer.email, customer.name),),
        subject=rendered.subject,
        message_id=message_id,
        text=rendered.text,
        html=rendered.html,
        reply_to=reply_address(from_address, ticket.number, secret_key=ctx.secret_key),
        in_reply_to=in_reply_to,
        references=references,
        attachments=attachments,
        loop_token=make_loop_token(secret_key=ctx.secret_key),
        date=now,
    )
    raw_sha256, size, problem = store_composed(ctx, mail)
    if customer.email.endswith("@" + QUARANTINE_DOMAIN):
        problem = "the sender's address was unusable; nothing was sent"
    row = outbox_rules.record(
        session,
        kind=OutboxKind.REPLY,
        message_id=message_id,
        envelope_from=from_address,
        recipients=[customer.email],
        subject=rendered.subject,
        raw_sha256=raw_sha256,
        size=size,
        now=now,
        ticket=ticket,
        entry=entry,
        mailbox_id=ticket.mailbox_id,
        status=OutboxStatus.SUPPRESSED if problem else OutboxStatus.QUEUED,
        note=problem,
    )
    return entry, row


def _last_customer_text(session: Session, ticket: Ticket) -> str | None:
    return session.scalar(
        sa.select(Entry.body_text)
        .where(
            Entry.ticket_id == ticket.id,
            Entry.kind.in_((EntryKind.CUSTOMER_EMAIL, EntryKind.CUSTOMER_WEB)),
        )
        .order_by(Entry.id.desc())
        .limit(1)
    )


# Built once: email ingest asks it for every new ticket.
_RECENT_ACK = (
    sa.select(OutboxMessage.id)
    .where(
        OutboxMessage.kind == OutboxKind.ACKNOWLEDGEMENT,
        OutboxMessage.recipient == sa.bindparam("recipient"),
        OutboxMessage.created_at > sa.bindparam("since"),
    )
    .limit(1)
)


def recently_acknowledged(
    session: Session, recipient: str, *, now: dt.datetime, ctx: OutboundContext
) -> bool:
    """Whether `recipient` was sent an acknowledgement within `ack_window` (then no other)."""
    params = {"recipient": recipient, "since": now - ctx.ack_window}
    return session.scalar(_RECENT_ACK, params) is not None


def acknowledge(
    session: Session,
    ticket: Ticket,
    entry: Entry,
    *,
    now: dt.datetime,
    ctx: OutboundContext,
    articles: list[dict[str, str]] | None = None,
) -> OutboxMessage | None:
    """Acknowledge a new ticket to its customer, unless a rule says no; returns the row.

    Never to our own, suppressed or unusable addresses, at most one per sender per
    `ack_window`, and within the automatic-mail caps (RFC 3834 `Auto-Submitted:
    auto-replied`, so a well-behaved autoresponder stays silent). The caller has already
    ruled out auto-replies, bounces and unverified senders. `articles` (up to 3) default
    to the knowledge base's suggestions for the ticket, with signed "this solved it" links.
    """
    customer = ticket.customer
    if customer.email.endswith("@" + QUARANTINE_DOMAIN):
        return None
    if recently_acknowledged(session, customer.email, now=now, ctx=ctx):
        return None
    blocked = outbox_rules.automatic_mail_block(
        session, recipient=customer.email, now=now, caps=ctx.caps, ticket_id=ticket.id
    )
    if articles is None and not blocked:
        # Our own articles, each with a signed one-click "this solved it" link.
        articles = deflection.acknowledgement_articles(
            session,
            ticket=ticket,
            text=f"{ticket.subject}\n\n{entry.body_text}",
            base_url=ctx.base_url,
            now=now,
        )
    from_address = _from_address(ticket, ctx)
    message_id = make_message_id(
        ticket.number, secret_key=ctx.secret_key, domain=_domain(from_address)
    )
    rendered = render_email(
        "acknowledgement",
        {
            "ticket": ticket,
            "customer": customer,
            "expected_reply": ctx.expected_reply,
            "articles": (articles or [])[:3],
            # Nothing the sender wrote is echoed back: a forged From must not turn the
            # acknowledgement into a relay for someone else's words (security.md case 47).
            "include_subject": False,
        },
        override_dir=ctx.template_dir,
    )
    mail = OutgoingMail(
        from_address=from_address,
        from_name=ctx.team_name,
        # No display name either: it is the sender's words too (a web form's name field).
        to=(Address(customer.email, ""),),
        subject=rendered.subject,
        message_id=message_id,
        text=rendered.text,
        html=rendered.html,
        reply_to=reply_address(from_address, ticket.number, secret_key=ctx.secret_key),
        in_reply_to=entry.message_id,
        references=(entry.message_id,) if entry.message_id else (),
        auto_submitted="auto-replied",
        loop_token=make_loop_token(secret_key=ctx.secret_key),
        date=now,
    )
    raw_sha256, size, problem = store_composed(ctx, mail)
    blocked = blocked or problem
    return outbox_rules.record(
        session,
        kind=OutboxKind.ACKNOWLEDGEMENT,
        message_id=message_id,
        envelope_from=from_address,
        recipients=[customer.email],
        subject=rendered.subject,
        raw_sha256=raw_sha256,
        size=size,
        now=now,
        ticket=ticket,
        entry=entry,
        mailbox_id=ticket.mailbox_id,
        is_automatic=True,
        status=OutboxStatus.SUPPRESSED if blocked else OutboxStatus.QUEUED,
        note=blocked,
    )


@dataclass
class SendResult:
    claimed: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0

    def summary(self) -> str:
        return (
            f"{self.claimed} due, {self.sent} sent, {self.retrying} to retry, {self.failed} failed"
        )


SmtpChoice = SmtpSettings | Callable[[int | None], SmtpSettings]


def deliver_due(
    session: Session,
    *,
    smtp: SmtpChoice,
    blobs: BlobStore,
    owner: str,
    clock: Callable[[], dt.datetime] = utcnow,
    batch_size: int = 100,
    lease: dt.timedelta = dt.timedelta(minutes=5),
    policy: outbox_rules.RetryPolicy = outbox_rules.RetryPolicy(),  # noqa: B008 (frozen)
    fault: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SendResult:
    """Deliver one batch of due outbox rows, one reused SMTP connection per server.

    `smtp` is the server, or a function giving each mailbox's server (a mailbox may have its
    own; None is mail about tickets without a mailbox). Each row is committed on its own
    after the server's answer. A connection failure makes every still-claimed row of that
    server a temporary failure (retried with backoff), never a loss. `should_stop` is checked
    between rows: once true, the row in hand is finished and the other claims are released.
    """
    result = SendResult()
    ids = outbox_rules.claim_due(session, owner=owner, now=clock(), limit=batch_size, lease=lease)
    result.claimed = len(ids)
    if not ids:
        return result
    groups: dict[int | None, list[int]] = {}
    for row_id, mailbox_id in session.execute(
        sa.select(OutboxMessage.id, OutboxMessage.mailbox_id)
        .where(OutboxMessage.id.in_(ids))
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
    ):
        groups.setdefault(mailbox_id, []).append(row_id)
    session.rollback()
    stop = should_stop or (lambda: False)
    for mailbox_id, group in groups.items():
        if stop():
            _release(session, group, owner)
            continue
        try:
            settings = smtp if isinstance(smtp, SmtpSettings) else smtp(mailbox_id)
        except Exception as exc:  # no server configured, or its URL cannot be decrypted
            # Not the message's fault: release the rows untouched, say why, retry later.
            session.rollback()
            log.warning("no SMTP server for mailbox %s: %s", mailbox_id, exc)
            session.execute(
                sa.update(OutboxMessage)
                .where(OutboxMessage.id.in_(group), OutboxMessage.claimed_by == owner)
                .values(
                    claimed_by=None,
                    claimed_until=None,
                    # Not an attempt, but not due again at once either: no busy loop.
                    next_attempt_at=clock() + policy.base,
                    last_error=f"not sent yet: {exc}",
                )
                .execution_options(synchronize_session=False)
            )
            session.commit()
            result.retrying += len(group)
            continue
        _deliver_over(session, settings, group, owner, blobs, result, clock, policy, fault, stop)
    return result


def _release(session: Session, ids: list[int], owner: str) -> None:
    """Give back claims we will not work on (shutting down), so others need not wait them out."""
    session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids), OutboxMessage.claimed_by == owner)
        .values(claimed_by=None, claimed_until=None)
        .execution_options(synchronize_session=False)
    )
    session.commit()


def _deliver_over(
    session: Session,
    smtp: SmtpSettings,
    pending: list[int],
    owner: str,
    blobs: BlobStore,
    result: SendResult,
    clock: Callable[[], dt.datetime],
    policy: outbox_rules.RetryPolicy,
    fault: Callable[[str], None] | None,
    stop: Callable[[], bool],
) -> None:
    try:
        with open_connection(smtp) as connection:
            while pending:
                if stop():
                    _release(session, pending, owner)
                    return
                row = session.get(OutboxMessage, pending[0])
                if row is None or row.claimed_by != owner or row.status != OutboxStatus.QUEUED:
                    pending.pop(0)
                    session.rollback()
                    continue
                data = blobs.get(row.raw_sha256)
                try:
                    outcome = connection.send(
                        envelope_from=row.envelope_from, recipients=row.recipients, data=data
                    )
                except ValueError as exc:  # an address no server could accept
                    outbox_rules.mark_failed_attempt(
                        row, now=clock(), code=None, error=str(exc), permanent=True, policy=policy
                    )
                    session.commit()
                    pending.pop(0)
                    result.failed += 1
                    continue
                except SmtpError as exc:
                    if not exc.is_permanent and exc.code is None:
                        raise  # the connection itself failed: handled for all rows below
                    outbox_rules.mark_failed_attempt(
                        row,
                        now=clock(),
                        code=exc.code,
                        error=str(exc),
                        permanent=exc.is_permanent,
                        policy=policy,
                    )
                    session.commit()
                    pending.pop(0)
                    if row.status == OutboxStatus.FAILED:
                        result.failed += 1
                    else:
                        result.retrying += 1
                    continue
                if fault:
                    fault("after_250")
                outbox_rules.mark_sent(row, now=clock(), refused=outcome.refused)
                context = {
                    "outbox_id": row.id,
                    "ticket_id": row.ticket_id,
                    "message_id": row.message_id,
                }
                session.commit()
                log.info("outbox message sent", extra=context)
                pending.pop(0)
                result.sent += 1
    except SmtpError as exc:
        session.rollback()
        log.warning("SMTP delivery failed: %s", exc)
        _fail_pending(session, pending, owner, exc, result, clock, policy)


def _fail_pending(
    session: Session,
    pending: list[int],
    owner: str,
    exc: SmtpError,
    result: SendResult,
    clock: Callable[[], dt.datetime],
    policy: outbox_rules.RetryPolicy,
) -> None:
    """A server that could not be reached: every row still in hand is retried later."""
    for row_id in pending:
        row = session.get(OutboxMessage, row_id)
        if row is not None and row.claimed_by == owner and row.status == OutboxStatus.QUEUED:
            outbox_rules.mark_failed_attempt(
                row, now=clock(), code=exc.code, error=str(exc), permanent=False, policy=policy
            )
            result.retrying += 1 if row.status == OutboxStatus.QUEUED else 0
            result.failed += 1 if row.status == OutboxStatus.FAILED else 0
    session.commit()


def compose_many(mails: Sequence[OutgoingMail]) -> list[tuple[bytes, str | None]]:
    """Each message's bytes, or (b"", why) when it cannot be built, as `store_composed` says
    it. Plain messages (all of a notice scan's, as a rule) are written without the email
    package (`mail.compose_plain`), which takes 2 ms a message; the rest by `compose`. The
    caller stores the batch (`ticketing.storage.put_batch`) before its transaction commits."""
    composed: list[tuple[bytes, str | None]] = []
    for mail in mails:
        data = compose_plain(mail)
        if data is None:
            try:
                data = compose(mail)
            except ValueError as exc:
                composed.append((b"", f"not sent: {exc}"))
                continue
        composed.append((data, None))
    return composed
