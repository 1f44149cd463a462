"""The inbound pipeline for one message: raw bytes kept -> parse -> classify -> thread -> record.

`process()` turns one delivery (from IMAP or an import) into a ticket entry and its receipt;
the caller stored the raw bytes first and commits after. `park()` records a message whose
processing failed, with its error, so it is never dropped and never blocks the others; `retry()`
re-runs the current pipeline on a parked message from its stored bytes.

Idempotency: the same message — its Message-ID together with a digest of its content (the raw
bytes minus the trace headers each hop adds) — never yields two entries, wherever it came
from; a reused Message-ID with different content is stored too, and flagged.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, lazyload, make_transient_to_detached

from mail.message import ParsedEmail, SenderStatus
from mail.outbound import OutboundContext, acknowledge, recently_acknowledged
from mail.prepare import Prepared, PrepareSettings, content_digest, prepare
from mail.rules import Classification, Kind, is_own_address
from mail.threader import ThreadDecision, decide, normalize_subject
from mail.tokens import ticket_from_message_id
from ticketing.models import (
    Channel,
    Customer,
    Entry,
    EntryKind,
    Mailbox,
    OutboxMessage,
    Receipt,
    ReceiptStatus,
    Ticket,
)
from ticketing.services import conversation, customers, journeys
from ticketing.services import outbox as outbox_rules
from ticketing.storage import BlobStore

QUARANTINE_ADDRESS = "unknown-sender@handoff.invalid"
SYNTHETIC_DOMAIN = "synthetic.handoff.invalid"


@dataclass(frozen=True, slots=True)
class InboundSettings:
    """What the pipeline needs from the configuration; built by the web layer."""

    secret_key: str
    own_addresses: frozenset[str] = frozenset()
    max_message_bytes: int = 25 * 1024 * 1024
    new_ticket_limit: int = 20  # new tickets per sender per window before entries are marked
    new_ticket_window: dt.timedelta = dt.timedelta(hours=1)
    # Set to send acknowledgements of new tickets (and link bounces to outbox rows).
    outbound: OutboundContext | None = None
    # A new ticket from an address a self-service visitor gave this recently gets that journey.
    journey_link_window: dt.timedelta = dt.timedelta(hours=24)

    @property
    def prepare_settings(self) -> PrepareSettings:
        return PrepareSettings(
            secret_key=self.secret_key,
            own_addresses=self.own_addresses,
            max_message_bytes=self.max_message_bytes,
        )


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message to process, with where it came from."""

    raw: bytes
    source: str = "imap"  # imap | import | retry
    mailbox_id: int | None = None
    uidvalidity: int | None = None
    uid: int | None = None
    size: int | None = None  # the server's RFC822.SIZE; len(raw) when None
    is_truncated: bool = False  # only the header was downloaded (over the size limit)
    # The mailbox's `ack_enabled`, when the caller already read it (the poller does, once per
    # batch); None reads it from the mailbox row. Every commit expires that row, so reading it
    # here would cost a SELECT per message.
    mailbox_acknowledges: bool | None = None


def synthetic_message_id(digest: str) -> str:
    """A deterministic id for a message that has none, derived from its content."""
    return f"{digest[:40]}@{SYNTHETIC_DOMAIN}"


def process(
    session: Session,
    delivery: Delivery,
    *,
    raw_sha256: str,
    settings: InboundSettings,
    blobs: BlobStore,
    now: dt.datetime,
    receipt: Receipt | None = None,
    prepared: Prepared | Exception | None = None,
) -> Receipt:
    """Record one message; returns its receipt (new, or `receipt` updated on a retry).

    `prepared` is the message already worked out from its bytes (`mail.prepare`, possibly in
    another process), or the exception that raised; None prepares it here.
    Raises on a processing failure; the caller rolls back and calls `park()`.
    Enqueues nothing: acknowledgements are the email-out layer's decision, made from the
    receipt's disposition and the entry's flags.
    """
    if prepared is None:
        prepared = prepare(delivery.raw, settings.prepare_settings)
    if isinstance(prepared, Exception):
        raise prepared
    size = delivery.size if delivery.size is not None else len(delivery.raw)
    msg, digest = prepared.msg, prepared.digest
    message_id = (msg.message_id or synthetic_message_id(digest))[:998]
    if receipt is None:
        # A new receipt joins the session only once it is complete (the flush that writes
        # the message's entry, or `_flushed` below): one INSERT instead of an INSERT and two
        # UPDATEs, as autoflush before each query of the
        # pipeline would otherwise write it half-filled and then again. Nothing queries it
        # before: dedupe and the rate limit exclude this message anyway.
        receipt = Receipt(
            mailbox_id=delivery.mailbox_id,
            uidvalidity=delivery.uidvalidity,
            uid=delivery.uid,
            source=delivery.source,
        )
    receipt.raw_sha256 = raw_sha256
    receipt.size = size
    receipt.is_truncated = delivery.is_truncated
    receipt.message_id = message_id
    receipt.content_sha256 = digest
    receipt.sender = msg.sender.email[:320] if msg.sender else None
    receipt.subject = msg.subject[:998]
    receipt.sent_at = sent_time(msg, now=now)
    receipt.error = None
    receipt.processed_at = now

    with session.no_autoflush:  # a retried receipt is not complete yet
        earlier = _earlier_receipts(session, message_id, exclude=receipt)
    same = next((r for r in earlier if r.content_sha256 == digest), None)
    if same is not None:
        receipt.status = ReceiptStatus.DUPLICATE
        receipt.disposition = same.disposition
        receipt.ticket_id, receipt.entry_id = same.ticket_id, same.entry_id
        return _flushed(session, receipt)

    result = prepared.classification
    receipt.disposition = result.kind.value
    if result.kind == Kind.LOOP:
        receipt.status = ReceiptStatus.LOOP
        return _flushed(session, receipt)

    receipt.status = ReceiptStatus.PROCESSED
    if result.kind in (Kind.BOUNCE, Kind.DELIVERY_NOTICE):
        _record_bounce(session, msg, result, receipt, settings=settings, now=now)
        return _flushed(session, receipt)

    recorded = _record_message(
        session,
        prepared,
        delivery,
        receipt,
        settings=settings,
        blobs=blobs,
        now=now,
        raw_sha256=raw_sha256,
        entry_message_id=message_id if not earlier else _conflict_id(digest),
        is_conflict=bool(earlier),
        size=size,
    )
    receipt.ticket_id, receipt.entry_id = recorded.ticket_id, recorded.entry_id
    if (
        receipt.opened_ticket
        and result.kind == Kind.NORMAL
        and msg.sender is not None
        and msg.sender_status == SenderStatus.OK
    ):
        journeys.link_recent_by_email(
            session,
            ticket_id=recorded.ticket_id,
            email=msg.sender.email,
            now=now,
            window=settings.journey_link_window,
        )
    if _wants_acknowledgement(session, msg, result, recorded, receipt, settings, delivery):
        assert settings.outbound is not None
        # Most new tickets come from someone acknowledged a moment ago: asked before the
        # ticket and entry are loaded as objects, which only the acknowledgement needs.
        email = recorded.sender_email
        if not recently_acknowledged(session, email, now=now, ctx=settings.outbound):
            ticket = session.get(Ticket, recorded.ticket_id, options=[lazyload(Ticket.tags)])
            entry = session.get(Entry, recorded.entry_id, options=[lazyload(Entry.attachments)])
            assert ticket is not None and entry is not None
            acknowledge(session, ticket, entry, now=now, ctx=settings.outbound)
    return _flushed(session, receipt)


@dataclass(frozen=True, slots=True)
class _Recorded:
    """Where a message was recorded, and the entry's flags."""

    ticket_id: int
    entry_id: int
    ticket_mailbox_id: int | None
    flags: frozenset[str]
    sender_email: str  # the author's address as stored (normalised)


def _flushed(session: Session, receipt: Receipt) -> Receipt:
    """Write the receipt: a new one as one INSERT built once (every message has one), then
    made persistent in the session without another statement; a retried one by the ORM."""
    if sa.inspect(receipt).transient:
        values = {key: value for key, value in vars(receipt).items() if key in _RECEIPT_COLUMNS}
        result = session.connection().execute(_INSERT_RECEIPT, values)
        receipt.id = result.inserted_primary_key[0]  # type: ignore[index]
        # Columns left to their defaults are read back only if something asks for them.
        make_transient_to_detached(receipt)
        session.add(receipt)
    else:
        session.add(receipt)
        session.flush()
    return receipt


def _wants_acknowledgement(
    session: Session,
    msg: ParsedEmail,
    result: Classification,
    recorded: _Recorded,
    receipt: Receipt,
    settings: InboundSettings,
    delivery: Delivery,
) -> bool:
    """A new ticket from a person with a trustworthy address, in a mailbox that acknowledges.

    Auto-replies, bounces, our own addresses, unverified or unusable senders and senders
    over the rate limit never get one (RFC 3834; and an acknowledgement to a forged From
    would make us a relay for whoever forged it).
    """
    if not (
        settings.outbound is not None
        and receipt.opened_ticket
        and result.kind == Kind.NORMAL
        and msg.sender_status == SenderStatus.OK
        and msg.sender is not None
        and not is_own_address(msg.sender.email, settings.own_addresses)
        and "rate_limited" not in recorded.flags
    ):
        return False
    mailbox_id = recorded.ticket_mailbox_id
    if delivery.mailbox_acknowledges is not None and mailbox_id == delivery.mailbox_id:
        return delivery.mailbox_acknowledges
    mailbox = session.get(Mailbox, mailbox_id) if mailbox_id is not None else None
    return mailbox is None or mailbox.ack_enabled


def park(
    session: Session,
    delivery: Delivery,
    *,
    raw_sha256: str,
    error: str,
    now: dt.datetime,
    receipt: Receipt | None = None,
) -> Receipt:
    """Record a message whose processing failed: raw bytes kept, error shown, retry possible."""
    if receipt is None:
        receipt = Receipt(
            mailbox_id=delivery.mailbox_id,
            uidvalidity=delivery.uidvalidity,
            uid=delivery.uid,
            source=delivery.source,
            attempts=1,
        )
        session.add(receipt)
    else:
        receipt.attempts += 1
    digest = content_digest(delivery.raw)
    receipt.raw_sha256 = raw_sha256
    receipt.content_sha256 = digest
    receipt.size = delivery.size if delivery.size is not None else len(delivery.raw)
    receipt.is_truncated = delivery.is_truncated
    receipt.message_id = receipt.message_id or synthetic_message_id(digest)
    receipt.status = ReceiptStatus.PARKED
    receipt.error = error[:2000]
    receipt.processed_at = now
    session.flush()
    return receipt


def retry(
    session: Session,
    receipt: Receipt,
    *,
    settings: InboundSettings,
    blobs: BlobStore,
    now: dt.datetime,
) -> Receipt:
    """Re-run the current pipeline on a parked message from its stored raw bytes."""
    raw = blobs.get(receipt.raw_sha256)
    delivery = Delivery(
        raw=raw,
        source=receipt.source,
        mailbox_id=receipt.mailbox_id,
        uidvalidity=receipt.uidvalidity,
        uid=receipt.uid,
        size=receipt.size,
        is_truncated=receipt.is_truncated,
    )
    receipt.attempts += 1
    return process(
        session,
        delivery,
        raw_sha256=receipt.raw_sha256,
        settings=settings,
        blobs=blobs,
        now=now,
        receipt=receipt,
    )


def _conflict_id(digest: str) -> str:
    return f"{digest[:40]}.conflict@{SYNTHETIC_DOMAIN}"


# These two run for every message. They are built once, on the table rather than the ORM
# class, and run on the session's connection (same transaction): building a statement and
# the ORM's execution path each cost more CPU than SQLite takes to answer the query. Only
# the columns the dedupe reads are loaded, not whole Receipt objects.
_RECEIPTS = Receipt.__table__
_EARLIER_RECEIPTS = (
    sa.select(
        _RECEIPTS.c.content_sha256,
        _RECEIPTS.c.disposition,
        _RECEIPTS.c.ticket_id,
        _RECEIPTS.c.entry_id,
    )
    .where(
        _RECEIPTS.c.message_id == sa.bindparam("message_id"),
        _RECEIPTS.c.status.in_((ReceiptStatus.PROCESSED, ReceiptStatus.LOOP)),
        _RECEIPTS.c.id != sa.bindparam("exclude_id"),
    )
    .order_by(_RECEIPTS.c.id)
)
_INSERT_RECEIPT = _RECEIPTS.insert()
_RECEIPT_COLUMNS = frozenset(column.key for column in _RECEIPTS.columns) - {"id"}
_RECENT_NEW_TICKETS = sa.select(sa.func.count(_RECEIPTS.c.id)).where(
    _RECEIPTS.c.sender == sa.bindparam("sender"),
    _RECEIPTS.c.opened_ticket,
    _RECEIPTS.c.sent_at > sa.bindparam("since"),
    _RECEIPTS.c.sent_at <= sa.bindparam("sent_at"),
)


def _earlier_receipts(session: Session, message_id: str, *, exclude: Receipt) -> list[sa.Row]:
    """Earlier processed copies of `message_id` (content digest, disposition, ticket, entry)."""
    # Receipt ids start at 1: 0 excludes nothing when this receipt is not stored yet.
    params = {"message_id": message_id, "exclude_id": exclude.id or 0}
    return list(session.connection().execute(_EARLIER_RECEIPTS, params))


def _sender(session: Session, msg: ParsedEmail) -> Customer:
    if msg.sender is None:
        return customers.find_or_create(session, email=QUARANTINE_ADDRESS, name="Unknown sender")
    return customers.find_or_create(session, email=msg.sender.email, name=msg.sender.name)


def _recipients(msg: ParsedEmail) -> tuple[str, ...]:
    found = [a.email for a in (*msg.to, *msg.cc)]
    for name in ("delivered-to", "x-original-to", "envelope-to"):
        found.extend(v.strip().strip("<>") for v in msg.header_all(name))
    return tuple(dict.fromkeys(found))


def _flags(msg: ParsedEmail, result: Classification, *, is_conflict: bool) -> set[str]:
    flags: set[str] = set()
    if result.kind in (Kind.AUTOREPLY, Kind.FEEDBACK_REPORT):
        flags.add("autoreply" if result.kind == Kind.AUTOREPLY else "feedback_report")
    if msg.sender_status == SenderStatus.UNVERIFIED:
        flags.add("sender_unverified")
    if msg.sender_status == SenderStatus.UNUSABLE:
        flags.add("unusable_sender")
    if is_conflict:
        flags.add("message_id_conflict")
    if any(a.omitted for a in msg.attachments):
        flags.add("parts_omitted")
    return flags


def _over_rate_limit(
    session: Session, sender: str, *, sent_at: dt.datetime, settings: InboundSettings
) -> bool:
    """Whether this sender already opened `new_ticket_limit` tickets in the window before
    this message was sent — judged by when they sent, so draining a backlog is no flood."""
    with session.no_autoflush:
        since = sent_at - settings.new_ticket_window
        params = {"sender": sender, "since": since, "sent_at": sent_at}
        recent = session.connection().execute(_RECENT_NEW_TICKETS, params).scalar()
    return (recent or 0) >= settings.new_ticket_limit


def sent_time(msg: ParsedEmail, *, now: dt.datetime) -> dt.datetime:
    """The message's Date, unless it is missing or in the future (then its arrival time)."""
    if msg.date is None or msg.date > now:
        return now
    return msg.date


def _record_message(
    session: Session,
    prepared: Prepared,
    delivery: Delivery,
    receipt: Receipt,
    *,
    settings: InboundSettings,
    blobs: BlobStore,
    now: dt.datetime,
    raw_sha256: str,
    entry_message_id: str,
    is_conflict: bool,
    size: int,
) -> _Recorded:
    msg, result, split = prepared.msg, prepared.classification, prepared.split
    sender = _sender(session, msg)
    usable = msg.sender is not None
    decision: ThreadDecision = decide(
        session,
        msg,
        sender=sender if usable else None,
        secret_key=settings.secret_key,
        recipients=_recipients(msg),
    )
    flags = _flags(msg, result, is_conflict=is_conflict)
    automatic = result.kind != Kind.NORMAL
    ticket = decision.ticket
    if ticket is None:
        if usable and _over_rate_limit(
            session, sender.email, sent_at=receipt.sent_at or now, settings=settings
        ):
            flags.add("rate_limited")
        receipt.opened_ticket = True
        colleagues = [
            address
            for address in (*msg.to, *msg.cc)
            if msg.sender_status == SenderStatus.OK
            and not is_own_address(address.email, settings.own_addresses)
            and address.email != sender.email
        ]
        # Written as plain INSERTs (see conversation.insert_ticket): the hot path.
        inserted = conversation.insert_ticket(
            session,
            customer_id=sender.id,
            subject=normalize_subject(msg.subject) or "(no subject)",
            channel=Channel.EMAIL,
            mailbox_id=delivery.mailbox_id,
            follows_up_id=decision.follows_up.id if decision.follows_up else None,
            now=now,
            # The preview the first message sets anyway, in the ticket's INSERT (no UPDATE).
            preview=conversation.preview_of(split.visible),
        )
        ticket_id, ticket_mailbox_id = inserted.id, delivery.mailbox_id
        for address in colleagues:
            colleague = customers.find_or_create(session, email=address.email, name=address.name)
            conversation.add_participant_to(
                session, ticket_id, colleague, ticket_customer_id=sender.id
            )
    else:
        ticket_id, ticket_mailbox_id = ticket.id, ticket.mailbox_id
        if decision.sender_joins and usable:
            conversation.add_participant(ticket, sender)
        # A ticket opened just now has no entries yet: only an existing one can hold this id.
        if _has_message(session, ticket, entry_message_id):
            entry_message_id = _conflict_id(raw_sha256)
            flags.add("message_id_conflict")
        conversation.touch_for_customer_message(
            ticket, body_text=split.visible, reopen=not automatic, now=now
        )

    attachments = [
        conversation.NewAttachment(
            sha256=stored or blobs.put(a.data),
            size=a.size,
            content_type=a.content_type,
            filename=a.filename,
            content_id=a.content_id,
            is_inline=a.is_inline,
        )
        for a, stored in prepared.kept_attachments()
    ]
    entry_id = conversation.insert_customer_message(
        session,
        ticket_id=ticket_id,
        author_id=sender.id,
        kind=EntryKind.CUSTOMER_EMAIL,
        subject=msg.subject,
        body_text=split.visible,
        quoted_text=split.trimmed,
        body_html=prepared.body_html,
        message_id=entry_message_id,
        in_reply_to=msg.in_reply_to,
        threaded_by=decision.reason,
        attachments=attachments,
        flags=flags,
        raw_sha256=raw_sha256,
        now=now,
    )
    if delivery.is_truncated or "parts_omitted" in flags:
        conversation.record_event(
            ticket or _ticket(session, ticket_id),
            text=_omission_note(msg, delivery, size, settings),
            now=now,
        )
    return _Recorded(ticket_id, entry_id, ticket_mailbox_id, frozenset(flags), sender.email)


def _ticket(session: Session, ticket_id: int) -> Ticket:
    ticket = session.get(Ticket, ticket_id)
    assert ticket is not None, "inserted in this transaction"
    return ticket


def _has_message(session: Session, ticket: Ticket, message_id: str) -> bool:
    return (
        session.scalar(
            sa.select(Entry.id).where(Entry.ticket_id == ticket.id, Entry.message_id == message_id)
        )
        is not None
    )


def _human_size(size: float) -> str:
    for unit in ("bytes", "KB", "MB"):
        if size < 1024 or unit == "MB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"  # pragma: no cover - unreachable


def _omission_note(
    msg: ParsedEmail, delivery: Delivery, size: int, settings: InboundSettings
) -> str:
    limit = _human_size(settings.max_message_bytes)
    if delivery.is_truncated:
        return (
            f"This email was {_human_size(size)}, over the {limit} limit: only its headers "
            "were downloaded. It is still on the mail server."
        )
    left_out = ", ".join(
        f"{a.filename} ({_human_size(a.size)})" for a in msg.attachments if a.omitted
    )
    return f"Attachments over the {limit} limit were left out: {left_out}."


def _link_bounce_to_outbox(
    session: Session,
    result: Classification,
    candidates: list[str | None],
    *,
    settings: InboundSettings,
    now: dt.datetime,
) -> OutboxMessage | None:
    """Mark the outbox row a bounce is about; a hard bounce suppresses the address."""
    row = None
    for mid in (c for c in candidates if c):
        if (row := outbox_rules.find_by_message_id(session, mid)) is not None:
            break
    if row is None or result.kind != Kind.BOUNCE:
        return row
    failed = [r for r in result.bounce_recipients if r.email.lower() in row.recipients] or list(
        result.bounce_recipients
    )
    diagnostic = "; ".join(f"{r.email}: {r.status} {r.diagnostic}".strip() for r in failed)
    outbox_rules.mark_bounced(row, diagnostic=f"delivery failed: {diagnostic or 'bounce received'}")
    for recipient in failed:
        if recipient.is_hard and recipient.email:
            outbox_rules.suppress(
                session,
                recipient.email,
                reason=f"hard bounce {recipient.status} {recipient.diagnostic}".strip(),
                now=now,
            )
    return row


def _record_bounce(
    session: Session,
    msg: ParsedEmail,
    result: Classification,
    receipt: Receipt,
    *,
    settings: InboundSettings,
    now: dt.datetime,
) -> None:
    """A delivery report goes on the ticket whose mail failed, as a note; never a new ticket."""
    candidates = [result.original_message_id, msg.in_reply_to, *reversed(msg.references)]
    ticket = None
    for mid in (c for c in candidates if c):
        number = ticket_from_message_id(mid, secret_key=settings.secret_key)
        if number is not None:
            ticket = session.scalar(sa.select(Ticket).where(Ticket.number == number))
        if ticket is None:
            ticket = session.scalar(
                sa.select(Ticket)
                .join(Entry, Entry.ticket_id == Ticket.id)
                .where(Entry.message_id == mid)
            )
        if ticket is not None:
            break
    bounced_row = _link_bounce_to_outbox(session, result, candidates, settings=settings, now=now)
    if ticket is None and bounced_row is not None and bounced_row.ticket_id is not None:
        ticket = session.get(Ticket, bounced_row.ticket_id)
    if ticket is None:
        return  # backscatter for mail we never sent: kept as a receipt only
    failures = "; ".join(
        f"{r.email}: {r.status or '?'} {r.diagnostic}".strip() for r in result.bounce_recipients
    )
    what = "Delivery failed" if result.kind == Kind.BOUNCE else "Delivery report"
    entry = conversation.record_event(
        ticket, text=f"{what}: {failures or msg.subject}"[:2000], now=now
    )
    entry.flags = ["bounce"]
    entry.raw_sha256 = receipt.raw_sha256
    receipt.ticket_id, receipt.entry_id = ticket.id, entry.id
