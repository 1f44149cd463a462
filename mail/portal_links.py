"""Email out for the customer portal: the magic-link email, queued through the outbox.

Place in the flow: `web.portal` (someone asks for a link) -> `request_link` -> a
`ticketing.services.portal` link row plus an outbox row, in the caller's transaction; the
outbox sender delivers it like any other mail. It is automatic mail (`Auto-Submitted:
auto-generated`), so the suppression list and the per-recipient caps apply, as they do to
acknowledgements.

Nothing here may tell the visitor whether the address is known: the web layer answers the
same page first and calls `request_link` only after the response has gone out, so neither
the page, its status nor its timing depends on it (security.md case 50).
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable

from sqlalchemy.orm import Session

from mail.compose import OutgoingMail
from mail.message import Address
from mail.outbound import QUARANTINE_DOMAIN, OutboundContext, store_composed
from mail.tokens import make_loop_token
from ticketing.emails import render_email
from ticketing.models import OutboxKind, OutboxMessage, OutboxStatus
from ticketing.services import outbox as outbox_rules
from ticketing.services import portal


def request_link(
    session: Session,
    *,
    email: str,
    now: dt.datetime,
    ctx: OutboundContext,
    ttl: dt.timedelta,
    link_for: Callable[[str], str],
) -> OutboxMessage | None:
    """Send a portal sign-in link to `email` if it is a customer with tickets.

    `link_for(token)` builds the absolute URL from the configured base URL (never from the
    request's Host). Returns the outbox row, or None for an address without tickets.
    """
    customer = portal.portal_customer(session, email)
    if customer is None:
        return None
    link, token = portal.issue_link(session, customer=customer, now=now, ttl=ttl)
    mail = _build(ctx, to=customer.email, url=link_for(token), ttl=ttl, now=now)
    blocked = outbox_rules.automatic_mail_block(
        session, recipient=customer.email, now=now, caps=ctx.caps
    )
    raw_sha256, size, unbuildable = store_composed(ctx, mail)  # an address no server takes
    blocked = unbuildable or blocked
    if customer.email.endswith("@" + QUARANTINE_DOMAIN):
        blocked = "the customer's address was unusable; nothing was sent"
    if blocked:
        # The link is useless if it cannot be delivered; a fresh request makes a new one.
        link.expires_at = now
    return outbox_rules.record(
        session,
        kind=OutboxKind.MAGIC_LINK,
        message_id=mail.message_id,
        envelope_from=mail.from_address,
        recipients=[customer.email],
        subject=mail.subject,
        raw_sha256=raw_sha256,
        size=size,
        now=now,
        is_automatic=True,
        status=OutboxStatus.SUPPRESSED if blocked else OutboxStatus.QUEUED,
        note=blocked,
    )


def _build(
    ctx: OutboundContext, *, to: str, url: str, ttl: dt.timedelta, now: dt.datetime
) -> OutgoingMail:
    rendered = render_email(
        "portal_link",
        {"url": url, "minutes": max(int(ttl.total_seconds() // 60), 1), "team_name": ctx.team_name},
        override_dir=ctx.template_dir,
    )
    domain = ctx.default_from.rpartition("@")[2] or "localhost"
    return OutgoingMail(
        from_address=ctx.default_from,
        from_name=ctx.team_name,
        to=(Address(to, ""),),
        subject=rendered.subject,
        message_id=f"handoff.portal.{secrets.token_hex(12)}@{domain}",
        text=rendered.text,
        html=rendered.html,
        auto_submitted="auto-generated",
        loop_token=make_loop_token(secret_key=ctx.secret_key),
        date=now,
    )
