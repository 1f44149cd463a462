"""The signed-in customer: a portal session kept apart from agent sessions.

The portal keeps its own keys in the signed session cookie (`portal_customer_id`, and when
it ends), which Flask-Login never reads; agent pages read only Flask-Login's. So a customer
signed in through a link is never an agent, and an agent is never a customer, even in one
browser. A portal session ends at its own expiry (`HANDOFF_PORTAL_SESSION_TTL`) or on log out.
"""

from __future__ import annotations

import datetime as dt

from flask import current_app, g, session

from ticketing.db import utcnow
from ticketing.models import Customer
from web.extensions import db

CUSTOMER_KEY = "portal_customer_id"
EXPIRES_KEY = "portal_expires_at"


def start(customer: Customer, *, now: dt.datetime) -> None:
    """Sign `customer` in to the portal (any earlier portal sign-in ends)."""
    end()
    ttl = int(current_app.config["HANDOFF_PORTAL_SESSION_TTL"])
    session[CUSTOMER_KEY] = customer.id
    session[EXPIRES_KEY] = int(now.timestamp()) + ttl


def end() -> None:
    session.pop(CUSTOMER_KEY, None)
    session.pop(EXPIRES_KEY, None)
    g.pop("portal_customer", None)


def current_customer() -> Customer | None:
    """The customer signed in to the portal in this browser, or None."""
    if "portal_customer" in g:
        return g.portal_customer  # type: ignore[no-any-return]
    customer_id = session.get(CUSTOMER_KEY)
    expires_at = session.get(EXPIRES_KEY)
    customer = None
    if isinstance(customer_id, int) and isinstance(expires_at, int):
        if utcnow().timestamp() < expires_at:
            customer = db.session.get(Customer, customer_id)
        else:
            end()
    g.portal_customer = customer
    return customer
