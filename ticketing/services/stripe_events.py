"""Stripe-compatible billing events: signature check and what each event changes.

Place in the flow: `POST /webhooks/stripe` (web.webhooks) verifies the `Stripe-Signature`
header here, then `apply()`s the event. Account mapping: `Account.external_id` is the Stripe
customer id (``cus_…``), the `customer` field of every event object; cards are stored under
their Stripe id (``pm_…`` or legacy ``card_…``), and the most recently attached or updated
card is the default. Each event id is recorded once (UNIQUE `AccountEvent.external_id`): a
replay changes nothing. Expiry notices never depend on `customer.source.expiring` (Stripe
does not send it for PaymentMethods): the scan computes expiry from the card's month/year.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ticketing.cards import reject_pan
from ticketing.errors import Invalid
from ticketing.models import Account, AccountEvent, AccountEventKind, PaymentMethod
from ticketing.services import notices
from ticketing.services.accounts import CardRecord, parse_record

TOLERANCE_SECONDS = 300
CARD_EVENTS = ("payment_method.attached", "payment_method.updated", "customer.source.expiring")
HANDLED = (
    *CARD_EVENTS,
    "invoice.payment_failed",
    "invoice.payment_succeeded",
    "customer.subscription.updated",
)


class BadSignature(Invalid):
    """The Stripe-Signature header is missing, malformed, stale or does not match."""


def verify_signature(
    payload: bytes, header: str, *, secret: str, now: int, tolerance: int = TOLERANCE_SECONDS
) -> None:
    """Check ``Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "t.payload">[,v1=…]``.

    Any one `v1` may match (Stripe sends several while a secret is being rolled); the
    timestamp must be within `tolerance` seconds of `now`. Constant-time comparisons.
    """
    timestamp = None
    signatures = []
    for part in (header or "").split(","):
        key, _, value = part.strip().partition("=")
        # isdigit() alone admits "²"; a hex digest is ASCII, so anything else cannot match.
        if key == "t" and value.isascii() and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif key == "v1" and value and value.isascii():
            signatures.append(value.strip().lower())
    if timestamp is None or not signatures:
        raise BadSignature("Stripe-Signature header missing or malformed.")
    if abs(now - timestamp) > tolerance:
        raise BadSignature("Stripe-Signature timestamp outside the tolerance (replayed?).")
    expected = hmac.new(
        secret.encode(), str(timestamp).encode() + b"." + payload, hashlib.sha256
    ).hexdigest()
    if not any(hmac.compare_digest(expected, signature) for signature in signatures):
        raise BadSignature("Stripe-Signature does not match.")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an event did: ``applied``, ``replayed`` or ``ignored`` (with why), and a
    failed-payment notice to send now, if any."""

    result: str
    detail: str = ""
    notify: notices.Candidate | None = None


def _obj(event: dict[str, Any]) -> dict[str, Any]:
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise Invalid("event.data.object is missing.")
    return obj


def apply(session: Session, event: Any, *, now: dt.datetime) -> Outcome:
    """Apply one verified event. Raises `Invalid` for a malformed one (nothing changes)."""
    if not isinstance(event, dict):
        raise Invalid("The event must be a JSON object.")
    reject_pan([("event", event)])
    event_id, kind = event.get("id"), event.get("type")
    if not isinstance(event_id, str) or not event_id or len(event_id) > 200:
        raise Invalid("event.id is missing.")
    if not isinstance(kind, str) or kind not in HANDLED:
        return Outcome("ignored", f"event type {str(kind)[:80]!r} is not used")
    if session.scalar(sa.select(AccountEvent.id).where(AccountEvent.external_id == event_id)):
        return Outcome("replayed", "event already processed")
    obj = _obj(event)
    customer = obj.get("customer")
    account = (
        session.scalar(sa.select(Account).where(Account.external_id == customer))
        if isinstance(customer, str)
        else None
    )
    record = AccountEvent(
        account_id=account.id if account else None,
        external_id=event_id,
        kind=kind,
        summary="",
        occurred_at=now,
    )
    try:
        with session.begin_nested():
            session.add(record)
    except sa.exc.IntegrityError:
        return Outcome("replayed", "event already processed")
    if account is None:
        record.summary = "no account with this Stripe customer id"
        return Outcome("ignored", record.summary)
    if kind in CARD_EVENTS:
        return _card(session, account, obj, record, now=now, is_expiring=kind == CARD_EVENTS[2])
    if kind == "invoice.payment_failed":
        record.kind = AccountEventKind.PAYMENT_FAILED.value
        record.summary = "payment failed"
        # Stripe retries a failed invoice several times: one notice per unresolved episode.
        account.payment_failed_at = account.payment_failed_at or now
        account.updated_at = now
        session.flush()
        return Outcome(
            "applied",
            record.summary,
            notices.payment_failed_candidate(
                account_id=account.id,
                account_external_id=account.external_id,
                customer_id=account.customer_id,
                email=account.customer.email,
                failed_at=account.payment_failed_at,
            ),
        )
    if kind == "invoice.payment_succeeded":
        record.kind = AccountEventKind.PAYMENT_SUCCEEDED.value
        record.summary = "payment succeeded"
        notices.resolve(session, account_ids=[account.id], why="the payment went through", now=now)
        return Outcome("applied", record.summary)
    # customer.subscription.updated
    status = obj.get("status")
    if not isinstance(status, str) or not status or len(status) > 40:
        raise Invalid("subscription status is missing.")
    account.status = status
    account.updated_at = now
    if status == "past_due":
        record.kind = AccountEventKind.SUBSCRIPTION_PAST_DUE.value
    record.summary = f"subscription {status}"
    session.flush()
    return Outcome("applied", record.summary)


def _card(
    session: Session,
    account: Account,
    obj: dict[str, Any],
    record: AccountEvent,
    *,
    now: dt.datetime,
    is_expiring: bool,
) -> Outcome:
    card_id = obj.get("id")
    details = obj.get("card") if isinstance(obj.get("card"), dict) else obj  # legacy source
    if not isinstance(card_id, str) or not card_id or len(card_id) > 200:
        raise Invalid("the card's id is missing.")
    parsed = parse_record(
        {
            "external_id": account.external_id,
            "email": account.customer.email,
            "card_brand": str(details.get("brand") or ""),
            "card_last4": str(details.get("last4") or ""),
            "card_exp_month": str(details.get("exp_month") or ""),
            "card_exp_year": str(details.get("exp_year") or ""),
        }
    )
    if parsed.card is None:
        raise Invalid("the card's brand, last4 and expiry are missing.")
    card: CardRecord = parsed.card
    before = session.scalar(
        sa.select(PaymentMethod).where(
            PaymentMethod.account_id == account.id, PaymentMethod.is_default.is_(True)
        )
    )
    session.execute(
        sa.update(PaymentMethod)
        .where(PaymentMethod.account_id == account.id, PaymentMethod.external_id != card_id)
        .values(is_default=False)
        .execution_options(synchronize_session=False)
    )
    row = session.scalar(
        sa.select(PaymentMethod).where(
            PaymentMethod.account_id == account.id, PaymentMethod.external_id == card_id
        )
    )
    if row is None:
        row = PaymentMethod(account_id=account.id, external_id=card_id)
        session.add(row)
    changed = before is None or (before.id, before.exp_month, before.exp_year, before.last4) != (
        row.id,
        card.exp_month,
        card.exp_year,
        card.last4,
    )
    row.brand, row.last4 = card.brand, card.last4
    row.exp_month, row.exp_year, row.expires_on = card.exp_month, card.exp_year, card.expires_on
    row.is_default = True
    row.updated_at = now
    kind = AccountEventKind.CARD_EXPIRING if is_expiring else AccountEventKind.CARD_UPDATED
    record.kind = kind.value
    record.summary = (
        f"{card.brand} ending {card.last4}, expires {card.exp_month:02d}/{card.exp_year}"
    )
    session.flush()
    # The legacy expiry warning is about the same card: nothing was fixed by it.
    if changed and before is not None and not is_expiring:
        notices.resolve(session, account_ids=[account.id], why="the card was updated", now=now)
    return Outcome("applied", record.summary)
