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
import hashlib
import re
from dataclasses import dataclass
from functools import partial

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mail.html import sanitize_html
from mail.message import ParsedEmail, SenderStatus
from mail.outbound import OutboundContext, acknowledge
from mail.parse import parse
from mail.quotes import split_reply
from mail.rules import Classification, Kind, classify, is_own_address
from mail.threader import ThreadDecision, decide, normalize_subject
from mail.tokens import ticket_from_message_id, verify_loop_token
from ticketing.models import (
    Channel,
    Customer,
    Entry,
    EntryKind,
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

# Headers each relay adds on the way in: two copies of one message delivered by different
# routes (or to two of our mailboxes) differ only here.
_TRACE_HEADERS = {
    b"return-path",
    b"received",
    b"delivered-to",
    b"x-original-to",
    b"x-delivered-to",
    b"envelope-to",
    b"x-envelope-to",
    b"x-envelope-from",
    b"received-spf",
    b"authentication-results",
    b"arc-seal",
    b"arc-message-signature",
    b"arc-authentication-results",
    b"x-spam-status",
    b"x-spam-score",
    b"x-spam-flag",
    b"x-virus-scanned",
}
_HEADER_START = re.compile(rb"^([!-9;-~]+):")


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


def content_digest(raw: bytes) -> str:
    """sha256 of the message without its leading trace headers and with normalised line ends."""
    head, sep, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    kept: list[bytes] = []
    skipping = False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        match = _HEADER_START.match(line)
        skipping = bool(match) and match.group(1).lower() in _TRACE_HEADERS  # type: ignore[union-attr]
        if not skipping:
            kept.append(line)
    return hashlib.sha256(b"\n".join(kept) + sep + body).hexdigest()


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
) -> Receipt:
    """Record one message; returns its receipt (new, or `receipt` updated on a retry).

    Raises on a processing failure; the caller rolls back and calls `park()`.
    Enqueues nothing: acknowledgements are the email-out layer's decision, made from the
    receipt's disposition and the entry's flags.
    """
    size = delivery.size if delivery.size is not None else len(delivery.raw)
    msg = parse(delivery.raw, max_part_bytes=settings.max_message_bytes)
    digest = content_digest(delivery.raw)
    message_id = (msg.message_id or synthetic_message_id(digest))[:998]
    if receipt is None:
        # A new receipt joins the session only once it is complete (`_flushed` below): one
        # INSERT instead of an INSERT and two UPDATEs, as autoflush before each query of the
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

    result = classify(
        msg,
        own_addresses=settings.own_addresses,
        verify_loop_token=partial(verify_loop_token, secret_key=settings.secret_key),
        raw=delivery.raw,
    )
    receipt.disposition = result.kind.value
    if result.kind == Kind.LOOP:
        receipt.status = ReceiptStatus.LOOP
        return _flushed(session, receipt)

    receipt.status = ReceiptStatus.PROCESSED
    if result.kind in (Kind.BOUNCE, Kind.DELIVERY_NOTICE):
        _record_bounce(session, msg, result, receipt, settings=settings, now=now)
        return _flushed(session, receipt)

    entry = _record_message(
        session,
        msg,
        result,
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
    receipt.ticket_id, receipt.entry_id = entry.ticket_id, entry.id
    if (
        receipt.opened_ticket
        and result.kind == Kind.NORMAL
        and msg.sender is not None
        and msg.sender_status == SenderStatus.OK
    ):
        journeys.link_recent_by_email(
            session,
            ticket=entry.ticket,
            email=msg.sender.email,
            now=now,
            window=settings.journey_link_window,
        )
    if _wants_acknowledgement(msg, result, entry, receipt, settings, delivery):
        acknowledge(session, entry.ticket, entry, now=now, ctx=settings.outbound)  # type: ignore[arg-type]
    return _flushed(session, receipt)


def _flushed(session: Session, receipt: Receipt) -> Receipt:
    session.add(receipt)
    session.flush()
    return receipt


def _wants_acknowledgement(
    msg: ParsedEmail,
    result: Classification,
    entry: Entry,
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
        and "rate_limited" not in entry.flags
    ):
        return False
    if delivery.mailbox_acknowledges is not None and entry.ticket.mailbox_id == delivery.mailbox_id:
        return delivery.mailbox_acknowledges
    mailbox = entry.ticket.mailbox
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
    msg: ParsedEmail,
    result: Classification,
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
) -> Entry:
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
    split = split_reply(msg.text, html=msg.html)
    automatic = result.kind != Kind.NORMAL
    ticket = decision.ticket
    is_new_ticket = ticket is None
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
        ticket = conversation.open_ticket(
            session,
            customer=sender,
            subject=normalize_subject(msg.subject) or "(no subject)",
            channel=Channel.EMAIL,
            mailbox_id=delivery.mailbox_id,
            follows_up=decision.follows_up,
            now=now,
            # The preview the first message sets anyway, in the ticket's INSERT (no UPDATE).
            preview=conversation.preview_of(split.visible),
            # Participants need the ticket's id now; otherwise the ticket is inserted by the
            # first message's flush below (one flush instead of two).
            flush=bool(colleagues),
        )
        for address in colleagues:
            colleague = customers.find_or_create(session, email=address.email, name=address.name)
            conversation.add_participant(ticket, colleague)
    elif decision.sender_joins and usable:
        conversation.add_participant(ticket, sender)
    # A ticket opened just now has no entries yet: only an existing one can hold this id.
    if not is_new_ticket and _has_message(session, ticket, entry_message_id):
        entry_message_id = _conflict_id(raw_sha256)
        flags.add("message_id_conflict")

    attachments = [
        conversation.NewAttachment(
            sha256=blobs.put(a.data),
            size=a.size,
            content_type=a.content_type,
            filename=a.filename,
            content_id=a.content_id,
            is_inline=a.is_inline,
        )
        for a in msg.attachments
        if not a.omitted
    ]
    entry = conversation.add_customer_message(
        ticket,
        author=sender,
        kind=EntryKind.CUSTOMER_EMAIL,
        subject=msg.subject,
        body_text=split.visible,
        quoted_text=split.trimmed,
        body_html=sanitize_html(msg.html) if msg.html else None,
        message_id=entry_message_id,
        in_reply_to=msg.in_reply_to,
        threaded_by=decision.reason,
        attachments=attachments,
        reopen=not automatic,
        flags=flags,
        raw_sha256=raw_sha256,
        now=now,
    )
    if delivery.is_truncated or "parts_omitted" in flags:
        conversation.record_event(
            ticket, text=_omission_note(msg, delivery, size, settings), now=now
        )
    return entry


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
