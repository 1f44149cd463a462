"""`POST /webhooks/stripe`: signed events keep account data current; forged, stale and
replayed ones change nothing; a failed payment is noticed at once, a successful one resolves."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
import sqlalchemy as sa

from ticketing.db import utcnow
from ticketing.models import (
    Account,
    AccountEvent,
    Customer,
    Notice,
    NoticeStatus,
    OutboxMessage,
    OutboxStatus,
    PaymentMethod,
)

SECRET = "whsec_test_secret"


@pytest.fixture
def account(app, db_session):
    app.config["HANDOFF_STRIPE_WEBHOOK_SECRET"] = SECRET
    app.config["HANDOFF_MAIL_FROM"] = "support@example.com"
    customer = Customer(email="ann@example.com", name="Ann")
    db_session.add(customer)
    db_session.flush()
    account = Account(external_id="cus_ANN", customer_id=customer.id, plan="pro", status="active")
    db_session.add(account)
    db_session.commit()
    return account


def signed(payload: bytes, *, secret: str = SECRET, at: int | None = None) -> str:
    t = int(time.time()) if at is None else at
    sig = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={sig}"


def event(kind: str, obj: dict, event_id: str = "evt_1") -> bytes:
    return json.dumps({"id": event_id, "type": kind, "data": {"object": obj}}).encode()


def post(client, payload: bytes, header: str | None = None):
    return client.post(
        "/webhooks/stripe",
        data=payload,
        headers={
            "Stripe-Signature": signed(payload) if header is None else header,
            "Content-Type": "application/json",
        },
    )


def card_event(event_id="evt_1", last4="4242", month=12, year=2030, pm="pm_1"):
    return event(
        "payment_method.attached",
        {
            "id": pm,
            "customer": "cus_ANN",
            "card": {"brand": "visa", "last4": last4, "exp_month": month, "exp_year": year},
        },
        event_id,
    )


def cards(db_session):
    db_session.rollback()
    return db_session.scalars(sa.select(PaymentMethod).order_by(PaymentMethod.id)).all()


def test_a_signed_card_event_updates_the_account(client, db_session, account):
    response = post(client, card_event())
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["result"] == "applied"
    [card] = cards(db_session)
    assert (card.external_id, card.brand, card.last4, card.exp_month, card.exp_year) == (
        "pm_1",
        "visa",
        "4242",
        12,
        2030,
    )
    assert str(card.expires_on) == "2030-12-31" and card.is_default
    # A second card becomes the default.
    assert post(client, card_event("evt_2", "1881", 1, 2031, "pm_2")).status_code == 200
    first, second = cards(db_session)
    assert not first.is_default and second.is_default and second.last4 == "1881"


def test_forged_and_stale_signatures_change_nothing(client, db_session, account):
    payload = card_event()
    assert post(client, payload, signed(payload, secret="whsec_wrong")).status_code == 400
    assert post(client, payload, "t=123,v1=deadbeef").status_code == 400
    assert post(client, payload, "").status_code == 400
    stale = signed(payload, at=int(time.time()) - 301)
    assert post(client, payload, stale).status_code == 400
    # A valid signature for other bytes does not cover these.
    tampered = payload.replace(b"4242", b"0000")
    assert post(client, tampered, signed(payload)).status_code == 400
    assert cards(db_session) == []
    assert db_session.scalars(sa.select(AccountEvent)).all() == []


def test_any_v1_may_match_while_secrets_roll(client, db_session, account):
    payload = card_event()
    good = signed(payload)
    t, v1 = good.split(",")
    assert post(client, payload, f"{t},v1=00ff,{v1}").status_code == 200


def test_a_replayed_event_changes_nothing(client, db_session, account):
    assert post(client, card_event()).status_code == 200
    replay = card_event(last4="9999")  # same event id, new content, freshly signed
    response = post(client, replay)
    assert response.status_code == 200 and response.get_json()["result"] == "replayed"
    [card] = cards(db_session)
    assert card.last4 == "4242"


def test_unknown_events_and_no_secret(client, app, db_session, account):
    response = post(client, event("charge.refunded", {"customer": "cus_ANN"}))
    assert response.status_code == 200 and response.get_json()["result"] == "ignored"
    app.config["HANDOFF_STRIPE_WEBHOOK_SECRET"] = ""
    assert post(client, card_event()).status_code == 503
    assert cards(db_session) == []


def test_a_card_number_in_an_event_is_refused_and_not_stored(client, db_session, account):
    payload = event(
        "payment_method.attached",
        {"id": "pm_1", "customer": "cus_ANN", "card": {"number": "4242424242424242"}},
    )
    response = post(client, payload)
    assert response.status_code == 400
    assert "4242424242424242" not in response.get_data(as_text=True)
    assert cards(db_session) == []
    assert db_session.scalars(sa.select(AccountEvent)).all() == []


def test_payment_failed_notices_at_once_and_success_resolves(client, db_session, account):
    response = post(client, event("invoice.payment_failed", {"customer": "cus_ANN"}, "evt_f"))
    assert response.status_code == 200
    db_session.rollback()
    [notice] = db_session.scalars(sa.select(Notice)).all()
    assert notice.rule.value == "payment_failed" and notice.status == NoticeStatus.QUEUED
    row = db_session.get(OutboxMessage, notice.outbox_id)
    assert row.status == OutboxStatus.QUEUED and "did not go through" in row.subject
    assert db_session.get(Account, account.id).payment_failed_at is not None
    # Stripe retries the invoice: the same unresolved failure is not noticed twice.
    response = post(client, event("invoice.payment_failed", {"customer": "cus_ANN"}, "evt_f2"))
    assert response.status_code == 200
    db_session.rollback()
    assert db_session.scalar(sa.select(sa.func.count(Notice.id))) == 1

    response = post(client, event("invoice.payment_succeeded", {"customer": "cus_ANN"}, "evt_s"))
    assert response.status_code == 200
    db_session.rollback()
    notice = db_session.get(Notice, notice.id)
    assert notice.status == NoticeStatus.CANCELLED
    assert db_session.get(OutboxMessage, notice.outbox_id).status == OutboxStatus.SUPPRESSED
    assert db_session.get(Account, account.id).payment_failed_at is None


def test_subscription_past_due_and_legacy_source_expiring(client, db_session, account):
    sub = event("customer.subscription.updated", {"customer": "cus_ANN", "status": "past_due"})
    assert post(client, sub).status_code == 200
    legacy = event(
        "customer.source.expiring",
        {
            "id": "card_1",
            "object": "card",
            "customer": "cus_ANN",
            "brand": "Visa",
            "last4": "4242",
            "exp_month": 1,
            "exp_year": 2027,
        },
        "evt_2",
    )
    assert post(client, legacy).status_code == 200
    db_session.rollback()
    assert db_session.get(Account, account.id).status == "past_due"
    kinds = db_session.scalars(sa.select(AccountEvent.kind).order_by(AccountEvent.id)).all()
    assert kinds == ["subscription_past_due", "card_expiring"]
    [card] = cards(db_session)
    assert (card.external_id, card.expires_on.isoformat()) == ("card_1", "2027-01-31")
    assert utcnow()  # the scan, not this event, decides when to notice (see test_notices)


@pytest.mark.parametrize(
    "header",
    [
        "t=\u00b2,v1=00",  # a superscript two passes str.isdigit()
        f"t={int(time.time())},v1=\u00e9\u00e9",  # non-ASCII signature
        f"t={'9' * 40},v1=00",
    ],
)
def test_hostile_signature_headers_are_a_400_not_a_crash(client, db_session, account, header):
    payload = event("invoice.payment_failed", {"customer": "cus_ANN"})
    response = client.post(
        "/webhooks/stripe",
        data=payload,
        headers={"Stripe-Signature": header},  # sent as Latin-1, as HTTP does
        content_type="application/json",
    )
    assert response.status_code == 400
    assert db_session.scalar(sa.select(sa.func.count()).select_from(AccountEvent)) == 0
