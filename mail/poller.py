"""Polling IMAP mailboxes into tickets, one committed message at a time.

For each mailbox: SELECT the folder; if UIDVALIDITY changed, forget the UID bookmark and
rescan (the pipeline's dedupe makes the rescan harmless); finish the server-side flags of
messages committed before a crash; then fetch new UIDs in batches with BODY.PEEK[], and for
each message store the raw bytes, process it (or park it) and commit — only then flag it
\\Seen (or move it) on the server. Processed mail is never deleted or expunged.

A crash at any point therefore neither loses nor duplicates mail: before the commit the
message is still unseen and is fetched again; after it, the receipt's unique key
(mailbox, UIDVALIDITY, UID) and the Message-ID + content dedupe make the retry a no-op.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import uuid
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mail.imap import FetchedMessage, ImapError, ImapSettings, connect
from mail.inbound import Delivery, InboundSettings, park, process
from mail.prepare import LogSetup, Prepared, Preparer, Stored
from ticketing.db import make_durable, utcnow
from ticketing.models import Mailbox, Receipt
from ticketing.storage import BlobStore

log = logging.getLogger(__name__)

MAX_BACKOFF = dt.timedelta(hours=1)
DEFAULT_LEASE = dt.timedelta(minutes=2)
FaultHook = Callable[[str], None]
StopCheck = Callable[[], bool]  # True once the process was asked to stop (SIGTERM)


def default_owner() -> str:
    """This poller's identity in a lease: host, process and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def acquire_lease(
    session: Session, mailbox_id: int, *, owner: str, now: dt.datetime, ttl: dt.timedelta
) -> bool:
    """Take (or renew) the mailbox's poll lease; False while another poller holds it.

    One conditional UPDATE, atomic on SQLite and PostgreSQL alike, so two pollers can never
    both win — whatever process or machine they run on.
    """
    taken = session.execute(
        sa.update(Mailbox)
        .where(
            Mailbox.id == mailbox_id,
            sa.or_(
                Mailbox.lease_owner.is_(None),
                Mailbox.lease_owner == owner,
                Mailbox.lease_expires_at < now,
            ),
        )
        .values(lease_owner=owner, lease_expires_at=now + ttl)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    return taken == 1


def release_lease(session: Session, mailbox_id: int, *, owner: str) -> None:
    session.execute(
        sa.update(Mailbox)
        .where(Mailbox.id == mailbox_id, Mailbox.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    session.commit()


@dataclass
class PollResult:
    """What one poll of one mailbox did."""

    mailbox: str
    skipped: bool = False  # another poller holds the lease
    fetched: int = 0
    processed: int = 0
    duplicates: int = 0
    parked: int = 0
    error: str | None = None
    statuses: list[str] = field(default_factory=list, repr=False)

    def summary(self) -> str:
        if self.skipped:
            return f"{self.mailbox}: skipped (another poller is working on it)"
        if self.error:
            return f"{self.mailbox}: error: {self.error}"
        return (
            f"{self.mailbox}: {self.fetched} fetched, {self.processed} processed, "
            f"{self.duplicates} duplicates, {self.parked} parked"
        )


def _chunks(items: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def is_due(mailbox: Mailbox, *, interval: dt.timedelta, now: dt.datetime) -> bool:
    """Whether a mailbox that has been failing should be tried again yet (exponential backoff)."""
    if mailbox.poll_failures == 0 or mailbox.last_polled_at is None:
        return True
    wait = min(interval * (2 ** min(mailbox.poll_failures, 16)), MAX_BACKOFF)
    return now >= mailbox.last_polled_at + wait


def poll_mailbox(
    session: Session,
    mailbox: Mailbox,
    *,
    password: str,
    settings: InboundSettings,
    blobs: BlobStore,
    clock: Callable[[], dt.datetime] = utcnow,
    batch_size: int = 50,
    fault: FaultHook | None = None,
    imap_settings: ImapSettings | None = None,
    owner: str | None = None,
    lease: dt.timedelta = DEFAULT_LEASE,
    should_stop: StopCheck | None = None,
    preparer: Preparer | None = None,
) -> PollResult:
    """Poll one mailbox once, holding its lease. IMAP failures are recorded, never raised.

    `should_stop` is checked between messages: once it says so, the message in hand is
    finished and flagged, the rest are left unseen for the next poll, and the lease released.
    `preparer` parses and classifies each batch ahead of the database work (see
    `mail.prepare`); without one, every message is prepared in this process.
    """
    result = PollResult(mailbox.name)
    mailbox_id = mailbox.id
    imap_settings = imap_settings or ImapSettings.for_mailbox(mailbox, password=password)
    owner = owner or default_owner()
    if not acquire_lease(session, mailbox_id, owner=owner, now=clock(), ttl=lease):
        result.skipped = True
        return result
    try:
        _poll_leased(
            session,
            mailbox,
            imap_settings,
            result,
            settings=settings,
            blobs=blobs,
            clock=clock,
            batch_size=batch_size,
            fault=fault,
            lease=lease,
            should_stop=should_stop or _never,
            preparer=preparer or Preparer(settings.prepare_settings, blobs, processes=0),
        )
    finally:
        # A killed process never gets here; its lease expires instead.
        session.rollback()
        release_lease(session, mailbox_id, owner=owner)
    return result


def _poll_leased(
    session: Session,
    mailbox: Mailbox,
    imap_settings: ImapSettings,
    result: PollResult,
    *,
    settings: InboundSettings,
    blobs: BlobStore,
    clock: Callable[[], dt.datetime],
    batch_size: int,
    fault: FaultHook | None,
    lease: dt.timedelta,
    should_stop: StopCheck,
    preparer: Preparer,
) -> None:
    mailbox_id, move_to = mailbox.id, mailbox.move_to_folder
    try:
        with connect(imap_settings) as imap:
            state = imap.select()
            if mailbox.uidvalidity != state.uidvalidity:
                if mailbox.uidvalidity is not None:
                    log.warning(
                        "mailbox %s: UIDVALIDITY changed from %s to %s; rescanning the folder",
                        mailbox.name,
                        mailbox.uidvalidity,
                        state.uidvalidity,
                    )
                mailbox.uidvalidity = state.uidvalidity
                mailbox.last_uid = 0
                session.commit()
            uidvalidity = state.uidvalidity

            # Messages committed by an earlier run that crashed before flagging them.
            pending = list(
                session.scalars(
                    sa.select(Receipt.uid).where(
                        Receipt.mailbox_id == mailbox_id,
                        Receipt.uidvalidity == uidvalidity,
                        Receipt.flagged_at.is_(None),
                        Receipt.uid.is_not(None),
                    )
                )
            )
            if pending and move_to:
                make_durable(session)
            for chunk in _chunks(pending, 500):
                imap.mark_processed(chunk, move_to=move_to)
                _set_flagged(session, mailbox_id, uidvalidity, chunk, clock())

            uids = imap.new_uids(mailbox.last_uid)
            for batch in _chunks(uids, batch_size):
                known = set(
                    session.scalars(
                        sa.select(Receipt.uid).where(
                            Receipt.mailbox_id == mailbox_id,
                            Receipt.uidvalidity == uidvalidity,
                            Receipt.uid.in_(batch),
                        )
                    )
                )
                # Read once per batch: each message's commit expires the mailbox row, and
                # the pipeline would otherwise reload it per message to decide on an ack.
                acknowledges = mailbox.ack_enabled
                session.rollback()  # end the read before the network fetch (SQLite's lock)
                done: list[int] = []
                # One IMAP FETCH brings the whole batch into memory anyway.
                messages = list(
                    imap.fetch(batch, max_bytes=settings.max_message_bytes, batch_size=batch_size)
                )
                # Each new message's raw bytes are stored durably before it is processed
                # (one group of fsyncs per chunk, not one per message: ticketing.storage).
                preparations = preparer.map([f.raw for f in messages if f.uid not in known])
                try:
                    _ingest_batch(
                        session,
                        messages,
                        known,
                        preparations,
                        done,
                        result,
                        mailbox_id=mailbox_id,
                        uidvalidity=uidvalidity,
                        acknowledges=acknowledges,
                        settings=settings,
                        blobs=blobs,
                        clock=clock,
                        fault=fault,
                        lease=lease,
                        should_stop=should_stop,
                    )
                finally:
                    preparations.close()
                    preparer.cancel_pending()  # stopped early: nothing left queued in the helper
                if done:
                    if move_to:
                        # Moved mail is gone from the folder: the commits that recorded it
                        # must survive a power loss first (SQLite's WAL is synced lazily).
                        make_durable(session)
                    imap.mark_processed(done, move_to=move_to)
                    _set_flagged(session, mailbox_id, uidvalidity, done, clock())
                if should_stop():
                    # The bookmark stays at the last committed message: the rest of the
                    # batch is fetched again by the next poll, whichever worker runs it.
                    log.info("mailbox %s: stopping after %d messages", mailbox.name, len(done))
                    return
                if batch and (tail := max(batch)) > mailbox.last_uid:
                    # UIDs that vanished between SEARCH and FETCH: move the bookmark past them.
                    mailbox.last_uid = tail
                    session.commit()
        mailbox.last_polled_at = clock()
        mailbox.last_error = None
        mailbox.poll_failures = 0
        session.commit()
    except ImapError as exc:
        session.rollback()
        log.warning("mailbox %s: %s", mailbox.name, exc)
        result.error = str(exc)
        _record_failure(session, mailbox, str(exc), clock())


def _ingest_batch(
    session: Session,
    messages: list[FetchedMessage],
    known: set[int],
    preparations: Generator[Stored, None, None],
    done: list[int],
    result: PollResult,
    *,
    mailbox_id: int,
    uidvalidity: int,
    acknowledges: bool,
    settings: InboundSettings,
    blobs: BlobStore,
    clock: Callable[[], dt.datetime],
    fault: FaultHook | None,
    lease: dt.timedelta,
    should_stop: StopCheck,
) -> None:
    """Process and commit each fetched message in order; `done` collects the UIDs handled.

    `known` are the UIDs recorded before; `preparations` yields, for each of the others in
    order, its raw bytes' digest (stored) and its preparation.
    """
    for fetched in messages:
        if should_stop():
            break
        result.fetched += 1
        if fetched.uid not in known:
            raw_sha256, prepared = next(preparations)
            delivery = Delivery(
                raw=fetched.raw,
                source="imap",
                mailbox_id=mailbox_id,
                uidvalidity=uidvalidity,
                uid=fetched.uid,
                size=fetched.size,
                is_truncated=fetched.is_truncated,
                mailbox_acknowledges=acknowledges,
            )
            status = ingest_one(
                session,
                delivery,
                settings=settings,
                blobs=blobs,
                clock=clock,
                fault=fault,
                bookmark=(mailbox_id, fetched.uid, lease),
                raw_sha256=raw_sha256,
                prepared=prepared,
            )
            result.statuses.append(status)
            if status == "duplicate":
                result.duplicates += 1
            elif status == "parked":
                result.parked += 1
            else:
                result.processed += 1
        done.append(fetched.uid)


def _never() -> bool:
    return False


def _record_failure(session: Session, mailbox: Mailbox, error: str, now: dt.datetime) -> None:
    """Keep the failure on the mailbox (shown to admins) and back off before the next try."""
    mailbox.last_error = error[:2000]
    mailbox.poll_failures += 1
    mailbox.last_polled_at = now
    session.commit()


def ingest_one(
    session: Session,
    delivery: Delivery,
    *,
    settings: InboundSettings,
    blobs: BlobStore,
    clock: Callable[[], dt.datetime] = utcnow,
    fault: FaultHook | None = None,
    bookmark: tuple[int, int, dt.timedelta] | None = None,
    raw_sha256: str | None = None,
    prepared: Prepared | Exception | None = None,
) -> str:
    """Store, process and commit one message (parking it on failure); returns its status.

    The raw bytes go to the blob store before anything can fail — unless the caller already
    stored them (durably) and passes their `raw_sha256`. `bookmark` (mailbox id, UID, lease)
    advances the mailbox's last UID in the same transaction as the receipt.
    """
    if raw_sha256 is None:
        raw_sha256 = blobs.put(delivery.raw)
    try:
        receipt = process(
            session,
            delivery,
            raw_sha256=raw_sha256,
            settings=settings,
            blobs=blobs,
            now=clock(),
            prepared=prepared,
        )
        status = receipt.status.value  # read now: the commit expires it (a reload per message)
        context = {
            "mailbox_id": delivery.mailbox_id,
            "uid": delivery.uid,
            "message_id": receipt.message_id,
            "ticket_id": receipt.ticket_id,
            "receipt_status": status,
        }
        if bookmark is not None:
            _advance(session, *bookmark, now=clock())
        if fault:
            fault("before_commit")
        session.commit()
        log.info("inbound message %s", status, extra=context)
        if fault:
            fault("after_commit")
        return status
    except sa.exc.IntegrityError:
        # Another poller committed this very message meanwhile (its lease expired under a
        # slow run): the unique keys held, and there is nothing left to do.
        session.rollback()
        if delivery.uid is not None and _has_receipt(session, delivery):
            return "duplicate"
        return _park(session, delivery, raw_sha256, "IntegrityError", clock, bookmark)
    except Exception as exc:  # boundary: one bad message never blocks the others
        session.rollback()
        log.exception("parking message (uid=%s, sha256=%s)", delivery.uid, raw_sha256)
        return _park(session, delivery, raw_sha256, f"{type(exc).__name__}: {exc}", clock, bookmark)


def _park(
    session: Session,
    delivery: Delivery,
    raw_sha256: str,
    error: str,
    clock: Callable[[], dt.datetime],
    bookmark: tuple[int, int, dt.timedelta] | None,
) -> str:
    park(session, delivery, raw_sha256=raw_sha256, error=error, now=clock())
    if bookmark is not None:
        _advance(session, *bookmark, now=clock())
    session.commit()
    return "parked"


def _has_receipt(session: Session, delivery: Delivery) -> bool:
    return (
        session.scalar(
            sa.select(Receipt.id).where(
                Receipt.mailbox_id == delivery.mailbox_id,
                Receipt.uidvalidity == delivery.uidvalidity,
                Receipt.uid == delivery.uid,
            )
        )
        is not None
    )


def _advance(
    session: Session, mailbox_id: int, uid: int, lease: dt.timedelta, *, now: dt.datetime
) -> None:
    """Move the UID bookmark and extend the lease, in the message's own transaction.

    One UPDATE that compares in the database: going through the ORM object would first
    reload it (every commit expires it) — a SELECT per message for nothing. The object is
    expired by the commit that follows, so it never shows stale values.
    """
    params = {"mailbox_id": mailbox_id, "uid": uid, "lease_until": now + lease}
    session.connection().execute(_ADVANCE, params)


# Runs once per message: built once, on the table, and run on the session's connection (same
# transaction) — the ORM's bulk-UPDATE path costs about a millisecond of CPU per call.
_MAILBOXES = Mailbox.__table__
_ADVANCE = (
    sa.update(_MAILBOXES)
    .where(_MAILBOXES.c.id == sa.bindparam("mailbox_id"))
    .values(
        last_uid=sa.case(
            (_MAILBOXES.c.last_uid < sa.bindparam("uid"), sa.bindparam("uid")),
            else_=_MAILBOXES.c.last_uid,
        ),
        lease_expires_at=sa.bindparam("lease_until"),
    )
)


def _set_flagged(
    session: Session, mailbox_id: int, uidvalidity: int, uids: list[int], now: dt.datetime
) -> None:
    session.execute(
        sa.update(Receipt)
        .where(
            Receipt.mailbox_id == mailbox_id,
            Receipt.uidvalidity == uidvalidity,
            Receipt.uid.in_(uids),
        )
        .values(flagged_at=now)
    )
    session.commit()


def poll_all(
    session: Session,
    *,
    passwords: Callable[[Mailbox], str],
    settings: InboundSettings,
    blobs: BlobStore,
    interval: dt.timedelta,
    clock: Callable[[], dt.datetime] = utcnow,
    only_due: bool = True,
    lease: dt.timedelta = DEFAULT_LEASE,
    should_stop: StopCheck | None = None,
    prepare_processes: int = 0,
    helper_log_setup: LogSetup | None = None,
) -> list[PollResult]:
    """Poll every active mailbox; one mailbox's failure never stops the others.

    `prepare_processes` helper processes parse and classify big batches ahead of the database
    work (0: everything in this process), set up to log by `helper_log_setup`.
    """
    with Preparer(
        settings.prepare_settings,
        blobs,
        processes=prepare_processes,
        log_setup=helper_log_setup,
    ) as preparer:
        return _poll_each(
            session,
            passwords=passwords,
            settings=settings,
            blobs=blobs,
            interval=interval,
            clock=clock,
            only_due=only_due,
            lease=lease,
            should_stop=should_stop,
            preparer=preparer,
        )


def _poll_each(
    session: Session,
    *,
    passwords: Callable[[Mailbox], str],
    settings: InboundSettings,
    blobs: BlobStore,
    interval: dt.timedelta,
    clock: Callable[[], dt.datetime],
    only_due: bool,
    lease: dt.timedelta,
    should_stop: StopCheck | None,
    preparer: Preparer,
) -> list[PollResult]:
    results = []
    ids = list(session.scalars(sa.select(Mailbox.id).where(Mailbox.is_active).order_by(Mailbox.id)))
    for mailbox_id in ids:
        if should_stop is not None and should_stop():
            break
        mailbox = session.get(Mailbox, mailbox_id)
        if mailbox is None or (only_due and not is_due(mailbox, interval=interval, now=clock())):
            continue
        try:
            password = passwords(mailbox)
        except Exception as exc:  # e.g. SECRET_KEY changed: the password cannot be decrypted
            _record_failure(session, mailbox, str(exc), clock())
            results.append(PollResult(mailbox.name, error=str(exc)))
            continue
        try:
            results.append(
                poll_mailbox(
                    session,
                    mailbox,
                    password=password,
                    settings=settings,
                    blobs=blobs,
                    clock=clock,
                    lease=lease,
                    should_stop=should_stop,
                    preparer=preparer,
                )
            )
        except Exception as exc:  # boundary: per mailbox
            session.rollback()
            log.exception("polling mailbox %s failed", mailbox.name)
            results.append(PollResult(mailbox.name, error=f"{type(exc).__name__}: {exc}"))
    return results


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """Messages in the folder on the server vs messages we recorded from it."""

    uidvalidity: int
    on_server: int
    recorded: int  # of those on the server
    not_recorded: tuple[int, ...]  # UIDs on the server with no receipt yet (new, or missed)


def reconcile(session: Session, mailbox: Mailbox, imap_settings: ImapSettings) -> Reconciliation:
    """Compare the folder's UIDs with our receipts (read-only on both sides)."""
    with connect(imap_settings) as imap:
        state = imap.select()
        server_uids = imap.all_uids()
    recorded: set[int] = set()
    for chunk in _chunks(server_uids, 1000):
        recorded.update(
            session.scalars(
                sa.select(Receipt.uid).where(
                    Receipt.mailbox_id == mailbox.id,
                    Receipt.uidvalidity == state.uidvalidity,
                    Receipt.uid.in_(chunk),
                )
            )
        )
    missing = tuple(uid for uid in server_uids if uid not in recorded)
    return Reconciliation(state.uidvalidity, len(server_uids), len(recorded), missing)
