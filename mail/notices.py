"""Proactive notices by email: the scan, and notices from claim to outbox row.

Place in the flow: the daily job / `flask notices scan` / the Stripe webhook call `scan()` or
`send()`; `ticketing.services.notices` decides what is due and claims it; this module renders
the `notice_card` / `notice_payment` templates (operator overrides first), composes the email
with a signed Message-ID and reply address — so a reply threads into the customer's notice
ticket like any reply to an agent — and records the outbox row in the same transaction as the
notice and its timeline entry. Every notice carries ``List-Unsubscribe`` with an https
one-click URL and ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058).

The first scan of a large billing export sends tens of thousands of notices, so notices go
a batch at a time (`send_many`; `send` is a batch of one, for the webhook): decided one by
one in memory, then written with a few statements per batch, the messages composed without
the email package when they are plain (`mail.compose_plain`) and stored with two filesystem
syncs per batch (`ticketing.storage.put_batch`) while the rows are written.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import hmac
import re
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from mail.compose import OutgoingMail, clean_address
from mail.message import Address
from mail.outbound import QUARANTINE_DOMAIN, OutboundContext, compose_many
from mail.tokens import make_loop_token, make_message_id, reply_address
from ticketing.emails import EmailTemplates, RenderedEmail
from ticketing.models import (
    Account,
    Notice,
    NoticeRule,
    NoticeStatus,
    OutboxKind,
    OutboxStatus,
    PaymentMethod,
    Ticket,
)
from ticketing.services import notices as notice_rules
from ticketing.services import outbox as outbox_rules
from ticketing.storage import put_batch


@dataclass(frozen=True, slots=True)
class NoticeContext:
    """What notices need from the configuration (built by `web.notices_runtime`)."""

    outbound: OutboundContext
    settings: notice_rules.NoticeSettings = field(default_factory=notice_rules.NoticeSettings)
    account_url: str = ""  # HANDOFF_ACCOUNT_URL: `{account_id}` placeholder or ?account=
    help_url: str = ""  # HANDOFF_NOTICE_HELP_URL


@dataclass
class ScanResult:
    sent: int = 0
    skipped: int = 0
    deferred: int = 0  # per-customer cap: tried again on a later scan
    stopped: bool = False  # asked to stop between batches: the next scan sends the rest
    lines: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{self.sent} notices queued, {self.skipped} skipped, {self.deferred} deferred (cap)"
        return text + ("; stopped early, the next scan sends the rest" if self.stopped else "")


# -- unsubscribe tokens ------------------------------------------------------------------------

_TOKEN = re.compile(r"([0-9]{1,12})\.([a-z2-7]{26})")


@functools.lru_cache(maxsize=4)
def _signing_key(secret_key: str) -> bytes:
    return hmac.new(secret_key.encode(), b"handoff/notice-unsubscribe", hashlib.sha256).digest()


def _signature(customer_id: int, secret_key: str) -> str:
    digest = hmac.new(_signing_key(secret_key), str(customer_id).encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode()[:26].lower()


def unsubscribe_token(customer_id: int, *, secret_key: str) -> str:
    """A per-customer token for the one-click unsubscribe URL (HMAC, 130 bits)."""
    return f"{customer_id}.{_signature(customer_id, secret_key)}"


def customer_from_unsubscribe_token(token: str, *, secret_key: str) -> int | None:
    """The customer id a token names, or None if it does not verify (constant-time)."""
    match = _TOKEN.fullmatch(token or "")
    if not match:
        return None
    customer_id = int(match.group(1))
    if not hmac.compare_digest(_signature(customer_id, secret_key), match.group(2)):
        return None
    return customer_id


def unsubscribe_url(customer_id: int, *, ctx: NoticeContext) -> str:
    token = unsubscribe_token(customer_id, secret_key=ctx.outbound.secret_key)
    return f"{ctx.outbound.base_url}/notices/unsubscribe/{token}"


def fix_url(account: Account, *, ctx: NoticeContext) -> str:
    """HANDOFF_ACCOUNT_URL for this account: `{account_id}` is replaced by its external id,
    otherwise ``account=<id>`` is added to the query."""
    base = ctx.account_url.strip()
    if not base:
        return ""
    account_id = quote(account.external_id, safe="")
    if "{account_id}" in base:
        return base.replace("{account_id}", account_id)
    return f"{base}{'&' if '?' in base else '?'}account={account_id}"


# -- sending -----------------------------------------------------------------------------------
#
# A batch of notices is decided one candidate after another, in memory, exactly as they used
# to be sent one by one (the per-customer cap counts the notices planned before it, the
# automatic-mail cap the emails), then written with a few statements for the whole batch:
# the claims, the tickets, the entries, the outbox rows, and the composed messages stored
# with one group of fsyncs before the boundary commits.


def _long_date(day: dt.date) -> str:
    return f"{day.day} {day:%B %Y}"


class NoticeTemplates:
    """The notice templates, looked up and compiled once (per scan, so an operator's new
    override is used from the next scan on)."""

    def __init__(self, ctx: NoticeContext) -> None:
        self._override_dir = ctx.outbound.template_dir
        self._loaded: dict[str, EmailTemplates] = {}

    def render(self, name: str, context: dict[str, object]) -> RenderedEmail:
        templates = self._loaded.get(name)
        if templates is None:
            templates = EmailTemplates(name, override_dir=self._override_dir)
            self._loaded[name] = templates
        return templates.render(context)


@dataclass(slots=True)
class _Decision:
    candidate: notice_rules.Candidate
    outcome: str  # "sent" | "skipped" | "deferred"
    block: tuple[str, str] | None = None  # `blocker()`: not emailed at all
    problem: str | None = None  # emailed but not sent: the outbox row is SUPPRESSED
    notice_id: int | None = None  # once claimed

    @property
    def claim(self) -> notice_rules.Claim:
        return notice_rules.Claim(
            self.candidate,
            status=NoticeStatus.QUEUED if self.outcome == "sent" else NoticeStatus.SKIPPED,
            reason=self.block[1] if self.block else self.problem or "",
        )


def send(
    session: Session,
    candidate: notice_rules.Candidate,
    *,
    now: dt.datetime,
    today: dt.date,
    ctx: NoticeContext,
    screened: notice_rules.Screen | None = None,
) -> tuple[str, Notice | None]:
    """Claim and send one notice: ("sent" | "skipped" | "deferred" | "duplicate", notice).

    Blocked by the per-customer cap: nothing is claimed, a later scan tries again. Opted
    out: claimed as skipped. Suppressed address: claimed as skipped and an internal note put
    where agents see it. Otherwise: the notice, its ticket entry and its outbox row.
    `screened`: `screen()` read at the start of a scan (None: look this customer up).
    """
    if screened is None:
        screened = notice_rules.screen_for(session, [candidate], now=now, settings=ctx.settings)
    [(outcome, notice_id)] = send_many(
        session, [candidate], now=now, today=today, ctx=ctx, screened=screened
    )
    return outcome, session.get(Notice, notice_id) if notice_id is not None else None


def send_many(
    session: Session,
    candidates: Sequence[notice_rules.Candidate],
    *,
    now: dt.datetime,
    today: dt.date,
    ctx: NoticeContext,
    screened: notice_rules.Screen,
    templates: NoticeTemplates | None = None,
) -> list[tuple[str, int | None]]:
    """`send` for a batch, in order: (outcome, notice id) for each candidate.

    Writes, in the caller's transaction: the claims (one INSERT; a notice another scan
    claimed first is a "duplicate"), each emailed notice's ticket entry and outbox row on the
    account's open notice ticket or a new one (ticket numbers reserved for the batch at
    once), the composed messages in the blob store (one `put_batch`, durable before this
    returns). `screened.recent` is kept up to date for the next batch.
    """
    session.flush()  # pending ORM changes first: what follows runs on the same connection
    batch: list[notice_rules.Candidate] = []
    seen: set[str] = set()
    for candidate in candidates:
        if candidate.dedupe_key not in seen:
            seen.add(candidate.dedupe_key)
            batch.append(candidate)
    ledger = outbox_rules.automatic_mail_ledger(
        session, [c.email for c in batch], now=now, caps=ctx.outbound.caps
    )
    decisions = _claim(session, batch, now=now, ctx=ctx, screened=screened, ledger=ledger)
    claimed = [d for d in decisions.values() if d.notice_id is not None]
    # Cards name the subject of emailed and surfaced notices; templates need the accounts.
    cards = _cards(
        session, [d.candidate for d in claimed if d.block is None or d.block[0] == "suppressed"]
    )
    accounts = _accounts(session, {d.candidate.account_id for d in claimed if d.block is None})
    for d in claimed:
        if d.block is not None and d.block[0] == "suppressed":
            notice = session.get(Notice, d.notice_id)
            assert notice is not None
            card = cards.get(d.candidate.dedupe_key)
            notice_rules.surface_to_agents(
                session,
                notice,
                subject=_subject_hint(d.candidate, card),
                problem=d.block[1],
                now=now,
            )
    emailed = [d for d in claimed if d.block is None]
    if emailed:
        _email(
            session,
            emailed,
            accounts,
            cards,
            now=now,
            today=today,
            ctx=ctx,
            screened=screened,
            ledger=ledger,
            templates=templates or NoticeTemplates(ctx),
        )
    out: list[tuple[str, int | None]] = []
    for candidate in candidates:
        found = decisions.get(candidate.dedupe_key)
        if found is None or found.candidate is not candidate:
            # Claimed first by another scan (or the same key twice in this batch).
            out.append(("duplicate", None))
        else:
            out.append((found.outcome, found.notice_id))
    return out


def _plan(
    session: Session,
    candidates: Sequence[notice_rules.Candidate],
    *,
    now: dt.datetime,
    ctx: NoticeContext,
    screened: notice_rules.Screen,
    ledger: outbox_rules.AutomaticMailLedger,
) -> list[_Decision]:
    decisions = []
    for candidate in candidates:
        block = notice_rules.blocker(
            session, candidate, now=now, settings=ctx.settings, screened=screened
        )
        if block is not None:
            outcome = "deferred" if block[0] == "cap" else "skipped"
            decisions.append(_Decision(candidate, outcome, block=block))
            continue
        problem = _mail_problem(candidate.email, ledger)
        if problem is None:
            _count(screened, ledger, candidate, 1)
        decisions.append(_Decision(candidate, "skipped" if problem else "sent", problem=problem))
    return decisions


def _mail_problem(email: str, ledger: outbox_rules.AutomaticMailLedger) -> str | None:
    """Why the email is recorded but not sent: suppressed or capped recipient, an unusable
    address, or no address at all (what composing it would say; it is checked again then)."""
    problem = ledger.block(email)
    if email.endswith("@" + QUARANTINE_DOMAIN):
        problem = "the customer's address is unusable; nothing was sent"
    try:
        clean_address(email)
    except ValueError as exc:
        problem = f"not sent: {exc}"
    return problem


def _count(
    screened: notice_rules.Screen,
    ledger: outbox_rules.AutomaticMailLedger,
    candidate: notice_rules.Candidate,
    n: int,
) -> None:
    """Count an email towards the customer's notice cap and the recipient's mail cap."""
    screened.recent[candidate.customer_id] = screened.recent.get(candidate.customer_id, 0) + n
    ledger.counted(candidate.email, n)


def _claim(
    session: Session,
    candidates: Sequence[notice_rules.Candidate],
    *,
    now: dt.datetime,
    ctx: NoticeContext,
    screened: notice_rules.Screen,
    ledger: outbox_rules.AutomaticMailLedger,
) -> dict[str, _Decision]:
    """Plan the batch and claim what it sends or skips; decisions by dedupe key.

    A notice a concurrent scan claimed first is left out, and the batch planned again
    without it (it may have counted towards a cap); a notice that this re-planning defers
    after all is unclaimed. Rare, and it ends: every round leaves out at least one more.
    """
    recent_before = {c.customer_id: screened.recent.get(c.customer_id) for c in candidates}
    ledger_before = dict(ledger.recent)
    claimed: dict[str, int] = {}
    duplicates: set[str] = set()
    while True:
        _restore(screened.recent, recent_before)
        ledger.recent = dict(ledger_before)
        decisions = _plan(
            session,
            [c for c in candidates if c.dedupe_key not in duplicates],
            now=now,
            ctx=ctx,
            screened=screened,
            ledger=ledger,
        )
        notice_rules.unclaim(
            session,
            [
                claimed.pop(d.candidate.dedupe_key)
                for d in decisions
                if d.outcome == "deferred" and d.candidate.dedupe_key in claimed
            ],
        )
        wanted = [
            d.claim
            for d in decisions
            if d.outcome != "deferred" and d.candidate.dedupe_key not in claimed
        ]
        got = notice_rules.claim_many(session, wanted, now=now)
        claimed.update(got)
        lost = {c.candidate.dedupe_key for c in wanted} - got.keys()
        if not lost:
            break
        duplicates |= lost
    for d in decisions:
        d.notice_id = claimed.get(d.candidate.dedupe_key)
    return {d.candidate.dedupe_key: d for d in decisions}


def _restore(counts: dict[int, int], before: dict[int, int | None]) -> None:
    for key, value in before.items():
        if value is None:
            counts.pop(key, None)
        else:
            counts[key] = value


def _email(
    session: Session,
    decisions: Sequence[_Decision],
    accounts: dict[int, Account],
    cards: dict[str, PaymentMethod | None],
    *,
    now: dt.datetime,
    today: dt.date,
    ctx: NoticeContext,
    screened: notice_rules.Screen,
    ledger: outbox_rules.AutomaticMailLedger,
    templates: NoticeTemplates,
) -> None:
    """Each notice's ticket entry, composed email and outbox row; the notices linked."""
    tickets = notice_rules.open_notice_tickets(session, [d.candidate.account_id for d in decisions])
    opening: dict[int, tuple[int, str]] = {}  # account id -> (customer id, subject)
    for d in decisions:
        account_id = d.candidate.account_id
        if account_id not in tickets and account_id not in opening:
            hint = _subject_hint(d.candidate, cards.get(d.candidate.dedupe_key))
            opening[account_id] = (d.candidate.customer_id, hint)
    new = notice_rules.reserve_notice_tickets(session, list(opening.values()), now=now)
    tickets.update(zip(opening, new, strict=True))

    outbound = ctx.outbound
    from_address = outbound.default_from
    domain = from_address.rpartition("@")[2] or "localhost"
    entries: list[notice_rules.NoticeEntry] = []
    mails: list[OutgoingMail] = []
    for d in decisions:
        candidate = d.candidate
        account = accounts[candidate.account_id]
        customer = account.customer
        card = cards.get(candidate.dedupe_key)
        ticket = tickets[candidate.account_id]
        context: dict[str, object] = {
            "rule": candidate.rule.value,
            "customer": customer,
            "account": account,
            "card": card,
            "ticket": ticket,
            "team_name": outbound.team_name,
            "fix_url": fix_url(account, ctx=ctx),
            "help_url": ctx.help_url,
            "unsubscribe_url": unsubscribe_url(customer.id, ctx=ctx),
        }
        if candidate.rule == NoticeRule.PAYMENT_FAILED:
            name = "notice_payment"
            context["failed_text"] = _long_date((account.payment_failed_at or now).date())
        else:
            name = "notice_card"
            assert candidate.deadline is not None
            context["deadline_text"] = _long_date(candidate.deadline)
            context["days_left"] = (candidate.deadline - today).days
        rendered = templates.render(name, context)
        message_id = make_message_id(ticket.number, secret_key=outbound.secret_key, domain=domain)
        entries.append(
            notice_rules.NoticeEntry(
                ticket=ticket,
                subject=rendered.subject,
                body_text=rendered.text,
                message_id=message_id,
            )
        )
        mails.append(
            OutgoingMail(
                from_address=from_address,
                from_name=outbound.team_name,
                to=(Address(customer.email, customer.name),),
                subject=rendered.subject,
                message_id=message_id,
                text=rendered.text,
                html=rendered.html,
                reply_to=reply_address(from_address, ticket.number, secret_key=outbound.secret_key),
                auto_submitted="auto-generated",
                loop_token=make_loop_token(secret_key=outbound.secret_key),
                date=now,
                list_unsubscribe=str(context["unsubscribe_url"]),
            )
        )
    composed = compose_many(mails)
    # The messages are stored while the rows naming them are written: the file writes wait on
    # the kernel and the disk, the INSERTs on SQLite's search-index triggers, and both release
    # the GIL. `put_batch` has returned — the bytes are durable — before this function does,
    # so before the boundary commits; if it fails, the exception rolls the batch back.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="notice-blobs") as pool:
        storing = pool.submit(put_batch, outbound.blobs, [data for data, _ in composed])
        _record(
            session,
            decisions,
            mails,
            entries,
            composed,
            now=now,
            ctx=ctx,
            screened=screened,
            ledger=ledger,
        )
        storing.result()
    # Tickets this session may hold were changed behind its back (preview, updated_at).
    for ticket in tickets.values():
        if ticket.id is not None:
            held = session.identity_map.get(identity_key(Ticket, ticket.id))
            if held is not None:
                session.expire(held)


def _record(
    session: Session,
    decisions: Sequence[_Decision],
    mails: Sequence[OutgoingMail],
    entries: Sequence[notice_rules.NoticeEntry],
    composed: Sequence[tuple[bytes, str | None]],
    *,
    now: dt.datetime,
    ctx: NoticeContext,
    screened: notice_rules.Screen,
    ledger: outbox_rules.AutomaticMailLedger,
) -> None:
    """The entries, the outbox rows and the notices' final state."""
    from_address = ctx.outbound.default_from
    ticket_ids, entry_ids = notice_rules.record_many(session, entries, now=now)
    rows = []
    for d, mail, entry, entry_id, (data, unbuildable) in zip(
        decisions, mails, entries, entry_ids, composed, strict=True
    ):
        if unbuildable and d.problem is None:
            # The address passed but the message did not (say, a bad From in the settings):
            # as ever, such a notice is skipped and counts towards no cap.
            _count(screened, ledger, d.candidate, -1)
            d.outcome = "skipped"
        d.problem = unbuildable or d.problem
        rows.append(
            outbox_rules.NewOutboxRow(
                kind=OutboxKind.NOTICE,
                message_id=mail.message_id,
                envelope_from=from_address,
                recipients=[d.candidate.email],
                subject=mail.subject,
                raw_sha256=hashlib.sha256(data).hexdigest(),  # as `put_batch` names it
                size=len(data),
                ticket_id=ticket_ids[entry.ticket.number],
                entry_id=entry_id,
                is_automatic=True,
                status=OutboxStatus.SUPPRESSED if d.problem else OutboxStatus.QUEUED,
                note=d.problem,
            )
        )
    outbox_ids = outbox_rules.record_many(session, rows, now=now)
    notice_rules.link_many(
        session,
        [
            notice_rules.NoticeLink(
                notice_id=d.notice_id,
                ticket_id=row.ticket_id,
                outbox_id=outbox_id,
                status=NoticeStatus.SKIPPED if d.problem else NoticeStatus.QUEUED,
                reason=d.problem or "",
            )
            for d, row, outbox_id in zip(decisions, rows, outbox_ids, strict=True)
            if d.notice_id is not None
        ],
    )


def _accounts(session: Session, account_ids: Collection[int]) -> dict[int, Account]:
    """The accounts, each with its customer (one query; the ORM objects templates expect)."""
    found: dict[int, Account] = {}
    ids = sorted(account_ids)
    for start in range(0, len(ids), 1000):
        found.update(
            (account.id, account)
            for account in session.scalars(
                sa.select(Account).where(Account.id.in_(ids[start : start + 1000]))
            )
        )
    return found


def _cards(
    session: Session, candidates: Sequence[notice_rules.Candidate]
) -> dict[str, PaymentMethod | None]:
    """Each candidate's card by dedupe key: the card it is about, else (a failed payment) the
    account's default card."""
    by_id: dict[int, PaymentMethod] = {}
    ids = sorted({c.payment_method_id for c in candidates if c.payment_method_id})
    for start in range(0, len(ids), 1000):
        by_id.update(
            (card.id, card)
            for card in session.scalars(
                sa.select(PaymentMethod).where(PaymentMethod.id.in_(ids[start : start + 1000]))
            )
        )
    default: dict[int, PaymentMethod] = {}
    accounts = sorted({c.account_id for c in candidates if not c.payment_method_id})
    for start in range(0, len(accounts), 1000):
        for card in session.scalars(
            sa.select(PaymentMethod)
            .where(
                PaymentMethod.account_id.in_(accounts[start : start + 1000]),
                PaymentMethod.is_default.is_(True),
            )
            .order_by(PaymentMethod.account_id, PaymentMethod.updated_at.desc())
        ):
            default.setdefault(card.account_id, card)  # the latest updated, as `send` took
    return {
        c.dedupe_key: by_id.get(c.payment_method_id)
        if c.payment_method_id
        else default.get(c.account_id)
        for c in candidates
    }


def _subject_hint(candidate: notice_rules.Candidate, card: PaymentMethod | None) -> str:
    if candidate.rule == NoticeRule.PAYMENT_FAILED:
        return "Payment failed"
    label = f"card ending {card.last4}" if card else "card"
    if candidate.rule == NoticeRule.EXPIRED:
        return f"Expired {label}"
    return f"Expiring {label}"


# -- the scan ----------------------------------------------------------------------------------


def scan(
    session: Session,
    *,
    today: dt.date,
    now: dt.datetime,
    ctx: NoticeContext,
    dry_run: bool = False,
    on_batch: Callable[[], None] | None = None,
    on_selected: Callable[[], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    batch_size: int = 500,
) -> ScanResult:
    """Send every notice due on `today`; idempotent (a second run sends nothing new).

    With `dry_run`, nothing is claimed or written: `lines` say who would be told what.
    Otherwise the candidates are sent `batch_size` at a time (`send_many`) and `on_batch` is
    called after each batch (the boundary commits there, so a crash loses at most one batch,
    which the next scan sends again). `should_stop` is asked before each batch: when it says
    yes (the worker is shutting down), the scan returns with `stopped` set and the next scan
    sends the rest. `on_selected` is called once the candidates are read, before anything is
    written (the boundary ends its read-only transaction there, so SQLite's write lock is not
    held during the selection).
    """
    result = ScanResult()
    screened = notice_rules.screen(session, now=now, settings=ctx.settings)
    candidates = list(notice_rules.due(session, today=today, settings=ctx.settings))
    if on_selected is not None:
        on_selected()
    if dry_run:
        for candidate in candidates:
            block = notice_rules.blocker(
                session, candidate, now=now, settings=ctx.settings, screened=screened
            )
            what = candidate.rule.value + (
                f", deadline {candidate.deadline}" if candidate.deadline else ""
            )
            who = f"{candidate.email} (account {candidate.account_external_id})"
            if block is None:
                result.sent += 1
                result.lines.append(f"would notify {who}: {what}")
                # As the real scan would: this notice counts towards the customer's cap.
                screened.recent[candidate.customer_id] = (
                    screened.recent.get(candidate.customer_id, 0) + 1
                )
            else:
                result.skipped += 1
                result.lines.append(f"would skip {who}: {what}: {block[1]}")
        return result
    templates = NoticeTemplates(ctx)
    for start in range(0, len(candidates), batch_size):
        if should_stop is not None and should_stop():
            result.stopped = True
            break
        outcomes = send_many(
            session,
            candidates[start : start + batch_size],
            now=now,
            today=today,
            ctx=ctx,
            screened=screened,
            templates=templates,
        )
        for outcome, _notice_id in outcomes:
            if outcome == "sent":
                result.sent += 1
            elif outcome == "skipped":
                result.skipped += 1
            elif outcome == "deferred":
                result.deferred += 1
        if on_batch is not None:
            on_batch()
    return result
