"""Billing accounts and the proactive notices sent about them.

An Account mirrors a customer's account in the billing system (`external_id` is that system's
id; for Stripe, the Stripe customer id `cus_…`). A PaymentMethod holds only what a person
needs to recognise a card — brand, last four digits, expiry — never a card number
(`ticketing.cards` rejects anything that looks like one on every way in). Expiry is kept as
`expires_on`, the last day of the expiry month, indexed with the default flag, so "default
cards expiring before X" is one index range scan.

A Notice is one proactive email about one problem; its `dedupe_key` (rule, account, card,
expiry month) is UNIQUE, so two scans racing each other cannot both send it.
"""

from __future__ import annotations

import calendar
import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ticketing.db import Base, str_enum, utcnow
from ticketing.models.people import Customer


def expiry_date(exp_month: int, exp_year: int) -> dt.date:
    """The last day a card with this expiry can be used (cards expire at the month's end)."""
    return dt.date(exp_year, exp_month, calendar.monthrange(exp_year, exp_month)[1])


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(sa.String(200), unique=True)
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    plan: Mapped[str] = mapped_column(sa.String(100), default="")
    status: Mapped[str] = mapped_column(sa.String(40), default="")
    # The last failed payment not yet followed by a successful one (None: nothing owed).
    payment_failed_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    customer: Mapped[Customer] = relationship(lazy="joined", innerjoin=True)

    def __repr__(self) -> str:
        return f"<Account {self.id} {self.external_id}>"


class PaymentMethod(Base):
    """A card on file. `external_id` is the billing system's id (Stripe `pm_…`); cards from
    the CSV import or the API use ``"default"`` (one card per account)."""

    __tablename__ = "payment_methods"
    __table_args__ = (
        sa.UniqueConstraint("account_id", "external_id"),
        sa.Index("ix_payment_methods_is_default_expires_on", "is_default", "expires_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(sa.String(200), default="default")
    brand: Mapped[str] = mapped_column(sa.String(40), default="")
    last4: Mapped[str] = mapped_column(sa.String(4), default="")
    exp_month: Mapped[int]
    exp_year: Mapped[int]
    expires_on: Mapped[dt.date] = mapped_column(sa.Date)
    is_default: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    @property
    def label(self) -> str:
        return f"{self.brand or 'card'} ending {self.last4}".strip()

    def __repr__(self) -> str:
        return f"<PaymentMethod {self.id} {self.brand} {self.last4} {self.expires_on}>"


class AccountEventKind(enum.StrEnum):
    PAYMENT_FAILED = "payment_failed"
    PAYMENT_SUCCEEDED = "payment_succeeded"
    CARD_UPDATED = "card_updated"
    CARD_EXPIRING = "card_expiring"
    SUBSCRIPTION_PAST_DUE = "subscription_past_due"


class AccountEvent(Base):
    """Something the billing system told us. `external_id` (the webhook event id) is unique:
    a replayed event is recognised and changes nothing. `summary` never holds a card number."""

    __tablename__ = "account_events"
    __table_args__ = (
        sa.Index("ix_account_events_account_id_occurred_at", "account_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int | None] = mapped_column(sa.ForeignKey("accounts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(60))
    external_id: Mapped[str | None] = mapped_column(sa.String(200), unique=True)
    summary: Mapped[str] = mapped_column(sa.String(500), default="")
    occurred_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class NoticeRule(enum.StrEnum):
    EXPIRES_SOON = "expires_30d"
    EXPIRES_VERY_SOON = "expires_7d"
    EXPIRED = "expired"
    PAYMENT_FAILED = "payment_failed"


class NoticeStatus(enum.StrEnum):
    QUEUED = "queued"  # its email is in the outbox
    SENT = "sent"  # the email went out (known when it could no longer be cancelled)
    SKIPPED = "skipped"  # not emailed: suppressed or unsubscribed address (see `reason`)
    CANCELLED = "cancelled"  # the problem was fixed before the email went out


class Notice(Base):
    __tablename__ = "notices"
    __table_args__ = (sa.Index("ix_notices_customer_id_created_at", "customer_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(
        sa.ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id"))
    payment_method_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("payment_methods.id", ondelete="SET NULL")
    )
    rule: Mapped[NoticeRule] = mapped_column(str_enum(NoticeRule))
    dedupe_key: Mapped[str] = mapped_column(sa.String(300), unique=True)
    status: Mapped[NoticeStatus] = mapped_column(str_enum(NoticeStatus))
    reason: Mapped[str] = mapped_column(sa.String(500), default="")
    deadline: Mapped[dt.date | None] = mapped_column(sa.Date)
    outbox_id: Mapped[int | None] = mapped_column(sa.ForeignKey("outbox.id", ondelete="SET NULL"))
    ticket_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("tickets.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[dt.datetime | None]

    def __repr__(self) -> str:
        return f"<Notice {self.id} {self.rule} {self.status}>"


class NoticeOptOut(Base):
    """A customer who asked for no more notices (List-Unsubscribe, RFC 8058 one-click).

    A table of its own rather than a column on customers: one row per customer who opted out.
    """

    __tablename__ = "notice_opt_outs"

    customer_id: Mapped[int] = mapped_column(
        sa.ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
