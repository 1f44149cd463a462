"""Proactive notices by email: the scan, and one notice from claim to outbox row.

Place in the flow: the daily job / `flask notices scan` / the Stripe webhook call `scan()` or
`send()`; `ticketing.services.notices` decides what is due and claims it; this module renders
the `notice_card` / `notice_payment` templates (operator overrides first), composes the email
with a signed Message-ID and reply address — so a reply threads into the customer's notice
ticket like any reply to an agent — and records the outbox row in the same transaction as the
notice and its timeline entry. Every notice carries ``List-Unsubscribe`` with an https
one-click URL and ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mail.compose import OutgoingMail
from mail.message import Address
from mail.outbound import QUARANTINE_DOMAIN, OutboundContext, store_composed
from mail.tokens import make_loop_token, make_message_id, reply_address
from ticketing.emails import render_email
from ticketing.models import (
    Account,
    Customer,
    Notice,
    NoticeRule,
    NoticeStatus,
    OutboxKind,
    OutboxStatus,
    PaymentMethod,
)
from ticketing.services import notices as notice_rules
from ticketing.services import outbox as outbox_rules


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
    lines: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"{self.sent} notices queued, {self.skipped} skipped, {self.deferred} deferred (cap)"


# -- unsubscribe tokens ------------------------------------------------------------------------

_TOKEN = re.compile(r"([0-9]{1,12})\.([a-z2-7]{26})")


def _signature(customer_id: int, secret_key: str) -> str:
    key = hmac.new(secret_key.encode(), b"handoff/notice-unsubscribe", hashlib.sha256).digest()
    digest = hmac.new(key, str(customer_id).encode(), hashlib.sha256).digest()
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


# -- one notice --------------------------------------------------------------------------------


def _long_date(day: dt.date) -> str:
    return f"{day.day} {day:%B %Y}"


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
    """
    block = notice_rules.blocker(
        session, candidate, now=now, settings=ctx.settings, screened=screened
    )
    if block is not None and block[0] == "cap":
        return "deferred", None
    status = NoticeStatus.SKIPPED if block else NoticeStatus.QUEUED
    notice = notice_rules.claim(
        session, candidate, now=now, status=status, reason=block[1] if block else ""
    )
    if notice is None:
        return "duplicate", None
    account = session.get(Account, candidate.account_id)
    customer = session.get(Customer, candidate.customer_id)
    assert account is not None and customer is not None
    card = (
        session.get(PaymentMethod, candidate.payment_method_id)
        if candidate.payment_method_id
        else _default_card(session, account)
    )
    subject_hint = _subject_hint(candidate, card)
    if block is not None:
        if block[0] == "suppressed":
            notice_rules.surface_to_agents(
                session, notice, subject=subject_hint, problem=block[1], now=now
            )
        return "skipped", notice
    ticket = notice_rules.notice_ticket(session, notice, subject=subject_hint, now=now)
    context = {
        "rule": candidate.rule.value,
        "customer": customer,
        "account": account,
        "card": card,
        "ticket": ticket,
        "team_name": ctx.outbound.team_name,
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
    rendered = render_email(name, context, override_dir=ctx.outbound.template_dir)
    from_address = ctx.outbound.default_from
    domain = from_address.rpartition("@")[2] or "localhost"
    message_id = make_message_id(ticket.number, secret_key=ctx.outbound.secret_key, domain=domain)
    entry = notice_rules.record_on_ticket(
        session,
        ticket,
        subject=rendered.subject,
        body_text=rendered.text,
        message_id=message_id,
        now=now,
    )
    mail = OutgoingMail(
        from_address=from_address,
        from_name=ctx.outbound.team_name,
        to=(Address(customer.email, customer.name),),
        subject=rendered.subject,
        message_id=message_id,
        text=rendered.text,
        html=rendered.html,
        reply_to=reply_address(from_address, ticket.number, secret_key=ctx.outbound.secret_key),
        auto_submitted="auto-generated",
        loop_token=make_loop_token(secret_key=ctx.outbound.secret_key),
        date=now,
        list_unsubscribe=context["unsubscribe_url"],
    )
    problem = outbox_rules.automatic_mail_block(
        session, recipient=customer.email, now=now, caps=ctx.outbound.caps
    )
    if customer.email.endswith("@" + QUARANTINE_DOMAIN):
        problem = "the customer's address is unusable; nothing was sent"
    raw_sha256, size, unbuildable = store_composed(ctx.outbound, mail)
    problem = unbuildable or problem
    row = outbox_rules.record(
        session,
        kind=OutboxKind.NOTICE,
        message_id=message_id,
        envelope_from=from_address,
        recipients=[customer.email],
        subject=rendered.subject,
        raw_sha256=raw_sha256,
        size=size,
        now=now,
        ticket=ticket,
        entry=entry,
        is_automatic=True,
        status=OutboxStatus.SUPPRESSED if problem else OutboxStatus.QUEUED,
        note=problem,
    )
    notice.outbox_id = row.id
    if problem:
        notice.status = NoticeStatus.SKIPPED
        notice.reason = problem[:500]
        return "skipped", notice
    if screened is not None:
        screened.recent[customer.id] = screened.recent.get(customer.id, 0) + 1
    return "sent", notice


def _default_card(session: Session, account: Account) -> PaymentMethod | None:
    return session.scalar(
        sa.select(PaymentMethod)
        .where(PaymentMethod.account_id == account.id, PaymentMethod.is_default.is_(True))
        .order_by(PaymentMethod.updated_at.desc())
        .limit(1)
    )


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
    batch_size: int = 200,
) -> ScanResult:
    """Send every notice due on `today`; idempotent (a second run sends nothing new).

    With `dry_run`, nothing is claimed or written: `lines` say who would be told what.
    `on_batch` is called after every `batch_size` notices (the boundary commits there, so a
    crash loses at most one batch, which the next scan sends again). `on_selected` is called
    once the candidates are read, before anything is written (the boundary ends its read-only
    transaction there, so SQLite's write lock is not held during the selection).
    """
    result = ScanResult()
    screened = notice_rules.screen(session, now=now, settings=ctx.settings)
    candidates = list(notice_rules.due(session, today=today, settings=ctx.settings))
    if on_selected is not None:
        on_selected()
    done = 0
    for candidate in candidates:
        if dry_run:
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
            continue
        outcome, _notice = send(
            session, candidate, now=now, today=today, ctx=ctx, screened=screened
        )
        if outcome == "sent":
            result.sent += 1
        elif outcome == "skipped":
            result.skipped += 1
        elif outcome == "deferred":
            result.deferred += 1
        if outcome in ("sent", "skipped"):
            done += 1
            if on_batch is not None and done % batch_size == 0:
                on_batch()
    return result
