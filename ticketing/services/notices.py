"""Proactive notices: which customers to warn, claiming each warning once, and resolving.

Place in the flow: `mail.notices.scan` (the daily job, `flask notices scan`) asks `due()`
for candidates, checks `blocker()` (per-customer cap, opt-out, suppression list) and claims
each one — an INSERT guarded by the UNIQUE `dedupe_key` (rule, account, card, expiry month),
so concurrent scans cannot both send — then composes the email and records it on the
customer's notice ticket. The scan does that a batch at a time with the `*_many` functions
at the end of this module (a few statements per batch: `claim_many`, `open_notice_tickets`,
`reserve_notice_tickets`, `record_many`, `link_many`); `claim()`, `notice_ticket()` and
`record_on_ticket()` are the same steps for one notice. A card update or a successful payment
calls `resolve()`: queued notices are cancelled, the problem is marked fixed and the open
notice ticket is closed with a note. Nothing here composes mail (that is `mail.notices`).

Candidates come from one range scan over the `(is_default, expires_on)` index, never a
Python loop over every account.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ticketing.db import insert_or_skip
from ticketing.models import (
    Account,
    Channel,
    Customer,
    Entry,
    EntryKind,
    Notice,
    NoticeOptOut,
    NoticeRule,
    NoticeStatus,
    OutboxMessage,
    OutboxStatus,
    PaymentMethod,
    Priority,
    Status,
    Suppression,
    Ticket,
)
from ticketing.models.counters import reserve
from ticketing.services import conversation

LIVE = (NoticeStatus.QUEUED, NoticeStatus.SENT)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class NoticeSettings:
    """The rules' knobs (HANDOFF_NOTICE_* settings)."""

    soon_days: int = 30  # "expires within 30 days"
    very_soon_days: int = 7  # "expires within 7 days"
    expired_grace_days: int = 30  # "has expired" is sent only this long after expiry
    cap: int = 3  # at most this many notices per customer…
    cap_window: dt.timedelta = dt.timedelta(days=7)  # …in this window
    rules: frozenset[NoticeRule] = frozenset(NoticeRule)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One notice that is due: what rule, for which account and card, by when."""

    rule: NoticeRule
    account_id: int
    account_external_id: str
    customer_id: int
    email: str
    payment_method_id: int | None
    deadline: dt.date | None
    dedupe_key: str


def expiry_rule(expires_on: dt.date, *, today: dt.date, settings: NoticeSettings) -> NoticeRule:
    """The most urgent expiry rule for a card (a first notice 5 days out is the 7-day one)."""
    days = (expires_on - today).days
    if days < 0:
        return NoticeRule.EXPIRED
    if days <= settings.very_soon_days:
        return NoticeRule.EXPIRES_VERY_SOON
    return NoticeRule.EXPIRES_SOON


def card_key(rule: NoticeRule, account_id: int, card_id: int, year: int, month: int) -> str:
    return f"{rule.value}:{account_id}:{card_id}:{year:04d}-{month:02d}"


def payment_key(account_id: int, failed_at: dt.datetime) -> str:
    return f"{NoticeRule.PAYMENT_FAILED.value}:{account_id}:{failed_at:%Y%m%dT%H%M%S}"


def due(session: Session, *, today: dt.date, settings: NoticeSettings) -> Iterator[Candidate]:
    """Every notice due on `today` that was never claimed, most urgent first.

    Expiry: default cards with `expires_on` in [today - grace, today + soon_days] (an index
    range scan); the dedupe key is built in SQL and anti-joined against the notices' unique
    index. Payment failures: accounts with an unresolved `payment_failed_at`.
    """
    yield from _payment_failures(session, settings)
    if not settings.rules & {
        NoticeRule.EXPIRED,
        NoticeRule.EXPIRES_SOON,
        NoticeRule.EXPIRES_VERY_SOON,
    }:
        return
    pm = PaymentMethod
    rule = sa.case(
        (pm.expires_on < today, sa.literal(NoticeRule.EXPIRED.value)),
        (
            pm.expires_on <= today + dt.timedelta(days=settings.very_soon_days),
            sa.literal(NoticeRule.EXPIRES_VERY_SOON.value),
        ),
        else_=sa.literal(NoticeRule.EXPIRES_SOON.value),
    )

    def text(col: sa.ColumnElement[int]) -> sa.ColumnElement[str]:
        return sa.cast(col, sa.String)

    month = sa.case((pm.exp_month < 10, "0" + text(pm.exp_month)), else_=text(pm.exp_month))
    key = (
        rule + ":" + text(pm.account_id) + ":" + text(pm.id) + ":" + text(pm.exp_year) + "-" + month
    )
    stmt = (
        sa.select(
            pm.id,
            pm.account_id,
            pm.expires_on,
            pm.exp_year,
            pm.exp_month,
            Account.customer_id,
            Account.external_id,
        )
        .join(Account, Account.id == pm.account_id)
        .where(
            pm.is_default.is_(True),
            pm.expires_on >= today - dt.timedelta(days=settings.expired_grace_days),
            pm.expires_on <= today + dt.timedelta(days=settings.soon_days),
            ~sa.exists().where(Notice.dedupe_key == key),
        )
        .order_by(pm.expires_on, pm.id)
    )
    rows = session.execute(stmt).all()
    emails = _emails(session, {row.customer_id for row in rows})
    for row in rows:
        rule_value = expiry_rule(row.expires_on, today=today, settings=settings)
        if rule_value not in settings.rules:
            continue
        yield Candidate(
            rule=rule_value,
            account_id=row.account_id,
            account_external_id=row.external_id,
            customer_id=row.customer_id,
            email=emails[row.customer_id],
            payment_method_id=row.id,
            deadline=row.expires_on,
            dedupe_key=card_key(rule_value, row.account_id, row.id, row.exp_year, row.exp_month),
        )


def _emails(session: Session, customer_ids: set[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    ids = sorted(customer_ids)
    for start in range(0, len(ids), 5000):
        found.update(
            session.execute(
                sa.select(Customer.id, Customer.email).where(
                    Customer.id.in_(ids[start : start + 5000])
                )
            )
            .tuples()
            .all()
        )
    return found


def _payment_failures(session: Session, settings: NoticeSettings) -> Iterator[Candidate]:
    if NoticeRule.PAYMENT_FAILED not in settings.rules:
        return
    rows = session.execute(
        sa.select(
            Account.id,
            Account.external_id,
            Account.customer_id,
            Account.payment_failed_at,
            Customer.email,
        )
        .join(Customer, Customer.id == Account.customer_id)
        # A range, not IS NOT NULL: SQLite's planner then always uses the index.
        .where(Account.payment_failed_at > _EPOCH)
    ).all()
    for row in rows:
        candidate = payment_failed_candidate(
            account_id=row.id,
            account_external_id=row.external_id,
            customer_id=row.customer_id,
            email=row.email,
            failed_at=row.payment_failed_at,
        )
        exists = session.scalar(
            sa.select(Notice.id).where(Notice.dedupe_key == candidate.dedupe_key)
        )
        if exists is None:
            yield candidate


def payment_failed_candidate(
    *,
    account_id: int,
    account_external_id: str,
    customer_id: int,
    email: str,
    failed_at: dt.datetime,
) -> Candidate:
    """The notice about a failed payment (sent at once from the webhook, or by the scan)."""
    return Candidate(
        rule=NoticeRule.PAYMENT_FAILED,
        account_id=account_id,
        account_external_id=account_external_id,
        customer_id=customer_id,
        email=email,
        payment_method_id=None,
        deadline=None,
        dedupe_key=payment_key(account_id, failed_at),
    )


@dataclass(frozen=True, slots=True)
class Screen:
    """Who must not be emailed, read once per scan (both lists are short)."""

    opted_out: frozenset[int]
    suppressed: dict[str, str]  # address -> reason
    # Notices per customer within the cap window; the scan adds the ones it sends.
    recent: dict[int, int]


def screen(session: Session, *, now: dt.datetime, settings: NoticeSettings) -> Screen:
    """Opt-outs, live suppressions and recent notice counts, each read in one query."""
    return Screen(
        opted_out=frozenset(session.scalars(sa.select(NoticeOptOut.customer_id))),
        recent={
            customer_id: count
            for customer_id, count in session.execute(
                sa.select(Notice.customer_id, sa.func.count(Notice.id))
                .where(Notice.created_at >= now - settings.cap_window, Notice.status.in_(LIVE))
                .group_by(Notice.customer_id)
            ).tuples()
        },
        suppressed={
            email: reason
            for email, reason in session.execute(
                sa.select(Suppression.email, Suppression.reason).where(Suppression.expires_at > now)
            ).tuples()
        },
    )


def screen_for(
    session: Session, candidates: Sequence[Candidate], *, now: dt.datetime, settings: NoticeSettings
) -> Screen:
    """`screen()` for these candidates' customers only (a webhook's notice): indexed look-ups."""
    customer_ids = sorted({c.customer_id for c in candidates})
    emails = sorted({c.email for c in candidates})
    return Screen(
        opted_out=frozenset(
            session.scalars(
                sa.select(NoticeOptOut.customer_id).where(
                    NoticeOptOut.customer_id.in_(customer_ids)
                )
            )
        ),
        recent={
            customer_id: count
            for customer_id, count in session.execute(
                sa.select(Notice.customer_id, sa.func.count(Notice.id))
                .where(
                    Notice.customer_id.in_(customer_ids),
                    Notice.created_at >= now - settings.cap_window,
                    Notice.status.in_(LIVE),
                )
                .group_by(Notice.customer_id)
            ).tuples()
        },
        suppressed={
            email: reason
            for email, reason in session.execute(
                sa.select(Suppression.email, Suppression.reason).where(
                    Suppression.email.in_(emails), Suppression.expires_at > now
                )
            ).tuples()
        },
    )


def _screen_one(
    session: Session, candidate: Candidate, *, now: dt.datetime, settings: NoticeSettings
) -> Screen:
    """`screen()` for one candidate (a webhook's notice): three indexed look-ups."""
    suppressed = session.scalar(
        sa.select(Suppression.reason).where(
            Suppression.email == candidate.email, Suppression.expires_at > now
        )
    )
    recent = session.scalar(
        sa.select(sa.func.count(Notice.id)).where(
            Notice.customer_id == candidate.customer_id,
            Notice.created_at >= now - settings.cap_window,
            Notice.status.in_(LIVE),
        )
    )
    opted_out = session.get(NoticeOptOut, candidate.customer_id) is not None
    return Screen(
        opted_out=frozenset([candidate.customer_id]) if opted_out else frozenset(),
        suppressed={candidate.email: suppressed} if suppressed is not None else {},
        recent={candidate.customer_id: recent or 0},
    )


def blocker(
    session: Session,
    candidate: Candidate,
    *,
    now: dt.datetime,
    settings: NoticeSettings,
    screened: Screen | None = None,
) -> tuple[str, str] | None:
    """Why this notice must not be emailed: (kind, reason) — kind is ``cap`` (try again
    later), ``unsubscribed`` or ``suppressed`` (never; the latter is shown to agents).
    `screened` is `screen()` read at the start of a scan (None: look each one up)."""
    if screened is None:
        screened = _screen_one(session, candidate, now=now, settings=settings)
    if candidate.customer_id in screened.opted_out:
        return "unsubscribed", "the customer unsubscribed from notices"
    reason = screened.suppressed.get(candidate.email)
    if reason is not None:
        return "suppressed", f"{candidate.email} is on the suppression list: {reason}"
    recent = screened.recent.get(candidate.customer_id, 0)
    if (recent or 0) >= settings.cap:
        return "cap", f"cap reached: {recent} notices to this customer in the last window"
    return None


def claim(
    session: Session,
    candidate: Candidate,
    *,
    now: dt.datetime,
    status: NoticeStatus = NoticeStatus.QUEUED,
    reason: str = "",
) -> Notice | None:
    """Record the notice, or None when it was already claimed (by this or another scan).

    The INSERT runs in a savepoint: a duplicate key rolls back only itself.
    """
    notice = Notice(
        account_id=candidate.account_id,
        customer_id=candidate.customer_id,
        payment_method_id=candidate.payment_method_id,
        rule=candidate.rule,
        dedupe_key=candidate.dedupe_key,
        status=status,
        reason=reason[:500],
        deadline=candidate.deadline,
        created_at=now,
    )
    try:
        with session.begin_nested():
            session.add(notice)
    except sa.exc.IntegrityError:
        return None
    return notice


def notice_ticket(session: Session, notice: Notice, *, subject: str, now: dt.datetime) -> Ticket:
    """The account's open notice ticket (one per account problem), or a new one.

    New notice tickets are `solved`: nothing for an agent to do until the customer answers,
    and a reply reopens it into the inbox.
    """
    ticket = session.scalar(
        sa.select(Ticket)
        .join(Notice, Notice.ticket_id == Ticket.id)
        .where(
            Notice.account_id == notice.account_id,
            Ticket.channel == Channel.NOTICE,
            Ticket.status != Status.CLOSED,
            Ticket.merged_into_id.is_(None),
        )
        .order_by(Ticket.id.desc())
        .limit(1)
    )
    if ticket is None:
        customer = session.get(Customer, notice.customer_id)
        assert customer is not None
        ticket = conversation.open_ticket(
            session, customer=customer, subject=subject, channel=Channel.NOTICE, now=now
        )
        ticket.status = Status.SOLVED
        ticket.solved_at = now
    notice.ticket_id = ticket.id
    return ticket


def record_on_ticket(
    session: Session,
    ticket: Ticket,
    *,
    subject: str,
    body_text: str,
    message_id: str | None,
    now: dt.datetime,
) -> Entry:
    """The notice as a `notice` entry on the customer's notice ticket (their timeline)."""
    entry = Entry(
        ticket=ticket,
        kind=EntryKind.NOTICE,
        subject=conversation.clean_subject(subject),
        body_text=body_text,
        message_id=message_id,
        created_at=now,
    )
    session.add(entry)
    ticket.preview = conversation.preview_of(body_text) or ticket.preview
    ticket.updated_at = now
    session.flush()
    return entry


def surface_to_agents(
    session: Session, notice: Notice, *, subject: str, problem: str, now: dt.datetime
) -> Ticket:
    """A problem we could not email about: an internal note on a ticket agents will see."""
    ticket = notice_ticket(session, notice, subject=subject, now=now)
    if ticket.status != Status.NEW:
        ticket.status = Status.OPEN
        ticket.solved_at = None
    session.add(
        Entry(
            ticket=ticket,
            kind=EntryKind.INTERNAL_NOTE,
            body_text=f"Could not send a notice: {problem}\nPlease reach the customer another way.",
            created_at=now,
        )
    )
    ticket.updated_at = now
    session.flush()
    return ticket


def resolve(session: Session, *, account_ids: Sequence[int], why: str, now: dt.datetime) -> int:
    """The problem is fixed (card updated, payment succeeded): cancel notices still in the
    outbox, clear the failed payment, and close open notice tickets with a note.

    Returns how many notices were cancelled.
    """
    if not account_ids:
        return 0
    ids = list(account_ids)
    session.execute(
        sa.update(Account)
        .where(Account.id.in_(ids))
        .values(payment_failed_at=None)
        .execution_options(synchronize_session=False)
    )
    pending = session.scalars(
        sa.select(Notice).where(Notice.account_id.in_(ids), Notice.resolved_at.is_(None))
    ).all()
    cancelled = 0
    ticket_ids: set[int] = set()
    for notice in pending:
        notice.resolved_at = now
        if notice.ticket_id is not None:
            ticket_ids.add(notice.ticket_id)
        if notice.status != NoticeStatus.QUEUED:
            continue
        row = session.get(OutboxMessage, notice.outbox_id) if notice.outbox_id else None
        if row is not None and row.status == OutboxStatus.QUEUED and row.attempts == 0:
            row.status = OutboxStatus.SUPPRESSED
            row.last_error = f"cancelled: {why}"
            notice.status = NoticeStatus.CANCELLED
            cancelled += 1
        else:
            notice.status = NoticeStatus.SENT
    for ticket in session.scalars(sa.select(Ticket).where(Ticket.id.in_(ticket_ids))):
        if ticket.status == Status.CLOSED or ticket.merged_into_id is not None:
            continue
        # Only a ticket nobody is talking on: a customer's open question stays open.
        if ticket.status in (Status.NEW, Status.OPEN) and _has_customer_message(session, ticket):
            conversation.record_event(ticket, text=f"Account problem resolved: {why}", now=now)
            continue
        conversation.record_event(ticket, text=f"Account problem resolved: {why}", now=now)
        conversation.set_status(ticket, Status.CLOSED, actor=None, now=now)
    session.flush()
    return cancelled


def _has_customer_message(session: Session, ticket: Ticket) -> bool:
    return (
        session.scalar(
            sa.select(Entry.id)
            .where(
                Entry.ticket_id == ticket.id,
                Entry.kind.in_((EntryKind.CUSTOMER_EMAIL, EntryKind.CUSTOMER_WEB)),
            )
            .limit(1)
        )
        is not None
    )


def opt_out(session: Session, customer: Customer, *, now: dt.datetime) -> bool:
    """Stop notices to this customer; False if they had already opted out."""
    if session.get(NoticeOptOut, customer.id) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(NoticeOptOut(customer_id=customer.id, created_at=now))
    except sa.exc.IntegrityError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class AccountSummary:
    """What the agent sidebar shows about a customer's account."""

    account: Account
    card: PaymentMethod | None
    days_to_expiry: int | None
    days_since_failed_payment: int | None
    notices_sent: int
    last_notice: Notice | None
    is_unsubscribed: bool


def summaries(session: Session, customer: Customer, *, today: dt.date) -> list[AccountSummary]:
    """The customer's accounts with their default card and notice history (sidebar)."""
    out = []
    accounts = session.scalars(
        sa.select(Account).where(Account.customer_id == customer.id).order_by(Account.id)
    ).all()
    unsubscribed = session.get(NoticeOptOut, customer.id) is not None
    for account in accounts:
        card = session.scalar(
            sa.select(PaymentMethod)
            .where(PaymentMethod.account_id == account.id, PaymentMethod.is_default.is_(True))
            .order_by(PaymentMethod.updated_at.desc())
            .limit(1)
        )
        notices = session.scalars(
            sa.select(Notice)
            .where(Notice.account_id == account.id, Notice.status.in_(LIVE))
            .order_by(Notice.id.desc())
        ).all()
        failed = account.payment_failed_at
        out.append(
            AccountSummary(
                account=account,
                card=card,
                days_to_expiry=(card.expires_on - today).days if card else None,
                days_since_failed_payment=(today - failed.date()).days if failed else None,
                notices_sent=len(notices),
                last_notice=notices[0] if notices else None,
                is_unsubscribed=unsubscribed,
            )
        )
    return out


# -- many notices at once (the scan) -----------------------------------------------------------
#
# The scan writes a batch of notices with a few statements instead of the ORM's unit of work
# per notice: `claim_many` (one INSERT … ON CONFLICT DO NOTHING), `open_notice_tickets` (one
# query), `reserve_notice_tickets` (one counter UPDATE), `record_many` (an INSERT of the new
# tickets, one of the entries, an UPDATE of the reused tickets) and `link_many` (an UPDATE of
# the notices). Same rows as `claim` + `notice_ticket` + `record_on_ticket` one at a time.

_NOTICES = Notice.__table__
_TICKETS = Ticket.__table__
_ENTRIES = Entry.__table__


@dataclass(frozen=True, slots=True)
class Claim:
    """A notice to record: its candidate, and its status (and why) as decided so far."""

    candidate: Candidate
    status: NoticeStatus = NoticeStatus.QUEUED
    reason: str = ""


def _claim_statement(dialect: str) -> sa.Insert:
    return (  # type: ignore[no-any-return]
        insert_or_skip(dialect, _NOTICES, key=[_NOTICES.c.dedupe_key]).returning(
            _NOTICES.c.id, _NOTICES.c.dedupe_key
        )
    )


_CLAIM = {name: _claim_statement(name) for name in ("postgresql", "sqlite")}


def claim_many(session: Session, claims: Sequence[Claim], *, now: dt.datetime) -> dict[str, int]:
    """Record these notices; the ids of the ones this call inserted, by dedupe key.

    A key already claimed — by an earlier scan, or a concurrent one, whose INSERT this one
    waits for on PostgreSQL — is left out (``ON CONFLICT (dedupe_key) DO NOTHING``), so two
    scans still cannot both send a notice. Rows go in in dedupe-key order: two scans claiming
    overlapping batches take the key locks in the same order and cannot deadlock.
    """
    if not claims:
        return {}
    params = [
        {
            "account_id": c.candidate.account_id,
            "customer_id": c.candidate.customer_id,
            "payment_method_id": c.candidate.payment_method_id,
            "rule": c.candidate.rule,
            "dedupe_key": c.candidate.dedupe_key,
            "status": c.status,
            "reason": c.reason[:500],
            "deadline": c.candidate.deadline,
            "created_at": now,
        }
        for c in sorted(claims, key=lambda c: c.candidate.dedupe_key)
    ]
    connection = session.connection()
    rows = connection.execute(_CLAIM[connection.dialect.name], params).tuples()
    return {key: notice_id for notice_id, key in rows}


def unclaim(session: Session, notice_ids: Collection[int]) -> None:
    """Take back notices this transaction claimed but will not send now (the cap deferred
    them after all): nobody else ever saw them, and a later scan claims them again."""
    if notice_ids:
        session.execute(
            sa.delete(Notice)
            .where(Notice.id.in_(sorted(notice_ids)))
            .execution_options(synchronize_session=False)
        )


@dataclass(frozen=True, slots=True)
class NoticeTicket:
    """A notice ticket as a batch sees it (templates use ``ticket.number``). `id` is None
    for a ticket `reserve_notice_tickets` numbered and `record_many` has yet to insert."""

    number: int
    subject: str
    customer_id: int
    status: Status
    channel: Channel
    created_at: dt.datetime
    preview: str = ""
    id: int | None = None


def open_notice_tickets(session: Session, account_ids: Iterable[int]) -> dict[int, NoticeTicket]:
    """Each account's open notice ticket, the one `notice_ticket` would pick, by account id."""
    ids = sorted(set(account_ids))
    found: dict[int, NoticeTicket] = {}
    for start in range(0, len(ids), 1000):
        latest = (
            sa.select(Notice.account_id, sa.func.max(Ticket.id).label("ticket_id"))
            .join(Ticket, Ticket.id == Notice.ticket_id)
            .where(
                Notice.account_id.in_(ids[start : start + 1000]),
                Ticket.channel == Channel.NOTICE,
                Ticket.status != Status.CLOSED,
                Ticket.merged_into_id.is_(None),
            )
            .group_by(Notice.account_id)
            .subquery()
        )
        t = _TICKETS.c
        rows = session.execute(
            sa.select(
                latest.c.account_id,
                t.id,
                t.number,
                t.subject,
                t.customer_id,
                t.status,
                t.channel,
                t.created_at,
                t.preview,
            ).join(_TICKETS, t.id == latest.c.ticket_id)
        )
        for row in rows:
            found[row.account_id] = NoticeTicket(
                id=row.id,
                number=row.number,
                subject=row.subject,
                customer_id=row.customer_id,
                status=row.status,
                channel=row.channel,
                created_at=row.created_at,
                preview=row.preview,
            )
    return found


def reserve_notice_tickets(
    session: Session, opened: Sequence[tuple[int, str]], *, now: dt.datetime
) -> list[NoticeTicket]:
    """New notice tickets for (customer id, subject) pairs, with consecutive numbers reserved
    in one statement; `record_many` inserts them. As `notice_ticket`: solved from the start."""
    if not opened:
        return []
    first = reserve(session, "ticket_number", len(opened), start=conversation.FIRST_TICKET_NUMBER)
    return [
        NoticeTicket(
            number=first + i,
            subject=_clean_subject(subject),
            customer_id=customer_id,
            status=Status.SOLVED,
            channel=Channel.NOTICE,
            created_at=now,
        )
        for i, (customer_id, subject) in enumerate(opened)
    ]


def _clean_subject(subject: str) -> str:
    """`conversation.clean_subject`, without its per-character pass for printable ASCII."""
    if subject.isascii() and subject.isprintable():  # no control characters to replace
        return " ".join(subject.split())[: conversation.MAX_SUBJECT] or "(no subject)"
    return conversation.clean_subject(subject)


@dataclass(frozen=True, slots=True)
class NoticeEntry:
    """What `record_on_ticket` writes for one notice: its entry on `ticket`."""

    ticket: NoticeTicket
    subject: str
    body_text: str
    message_id: str


# Ids come back keyed by a unique column, not in parameter order: asking for that order makes
# SQLAlchemy insert one row per statement on SQLite (its RETURNING order is not guaranteed).
_INSERT_TICKETS = _TICKETS.insert().returning(_TICKETS.c.id, _TICKETS.c.number)
_INSERT_ENTRIES = _ENTRIES.insert().returning(
    _ENTRIES.c.id, _ENTRIES.c.ticket_id, _ENTRIES.c.message_id
)
_TOUCH_TICKETS = (
    _TICKETS.update()
    .where(_TICKETS.c.id == sa.bindparam("ticket_id"))
    .values(preview=sa.bindparam("new_preview"), updated_at=sa.bindparam("now"))
)


def record_many(
    session: Session, entries: Sequence[NoticeEntry], *, now: dt.datetime
) -> tuple[dict[int, int], list[int]]:
    """`record_on_ticket` for many notices: inserts the tickets not inserted yet and the
    entries, sets each ticket's preview (its last entry's) and `updated_at`.

    Returns (ticket id by ticket number, entry ids in the order of `entries`).
    """
    previews: dict[int, str] = {}
    tickets: dict[int, NoticeTicket] = {}
    for entry in entries:
        number = entry.ticket.number
        tickets.setdefault(number, entry.ticket)
        previews[number] = (
            conversation.preview_of(entry.body_text) or previews.get(number) or entry.ticket.preview
        )
    connection = session.connection()
    ticket_ids = {number: t.id for number, t in tickets.items() if t.id is not None}
    new = [t for t in tickets.values() if t.id is None]
    if new:
        rows = connection.execute(
            _INSERT_TICKETS,
            [
                {
                    "number": t.number,
                    "subject": t.subject,
                    "status": t.status,
                    "priority": Priority.NORMAL,
                    "channel": t.channel,
                    "customer_id": t.customer_id,
                    "preview": previews[t.number],
                    "created_at": now,
                    "updated_at": now,
                    "solved_at": now if t.status == Status.SOLVED else None,
                }
                for t in new
            ],
        )
        ticket_ids.update((number, ticket_id) for ticket_id, number in rows.tuples())
    touched = [
        {"ticket_id": t.id, "new_preview": previews[number], "now": now}
        for number, t in tickets.items()
        if t.id is not None
    ]
    if touched:
        connection.execute(_TOUCH_TICKETS, touched)
    if not entries:
        return ticket_ids, []
    rows = connection.execute(
        _INSERT_ENTRIES,
        [
            {
                "ticket_id": ticket_ids[entry.ticket.number],
                "kind": EntryKind.NOTICE,
                "subject": _clean_subject(entry.subject),
                "body_text": entry.body_text,
                "message_id": entry.message_id,
                "created_at": now,
            }
            for entry in entries
        ],
    )
    # (ticket, Message-ID) is unique: the entries' UNIQUE constraint.
    entry_ids = {(ticket_id, message_id): entry_id for entry_id, ticket_id, message_id in rows}
    return ticket_ids, [
        entry_ids[(ticket_ids[entry.ticket.number], entry.message_id)] for entry in entries
    ]


@dataclass(frozen=True, slots=True)
class NoticeLink:
    """A claimed notice's final state: its ticket, its outbox row, its status and reason."""

    notice_id: int
    ticket_id: int | None
    outbox_id: int | None
    status: NoticeStatus
    reason: str = ""


_LINK_NOTICES = (
    _NOTICES.update()
    .where(_NOTICES.c.id == sa.bindparam("notice_id"))
    .values(
        ticket_id=sa.bindparam("new_ticket_id"),
        outbox_id=sa.bindparam("new_outbox_id"),
        status=sa.bindparam("new_status"),
        reason=sa.bindparam("new_reason"),
    )
)


def link_many(session: Session, links: Sequence[NoticeLink]) -> None:
    """Write each claimed notice's ticket, outbox row, status and reason (one UPDATE)."""
    if links:
        session.connection().execute(
            _LINK_NOTICES,
            [
                {
                    "notice_id": link.notice_id,
                    "new_ticket_id": link.ticket_id,
                    "new_outbox_id": link.outbox_id,
                    "new_status": link.status,
                    "new_reason": link.reason[:500],
                }
                for link in links
            ],
        )
