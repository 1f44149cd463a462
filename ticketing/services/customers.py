"""Customers: found by address (case-insensitively), created on first contact."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ticketing.models import Customer
from ticketing.models.people import normalize_email

# Built once: email ingest looks a sender up for every message.
_BY_EMAIL = sa.select(Customer).where(Customer.email == sa.bindparam("email"))


def find_or_create(session: Session, *, email: str, name: str = "") -> Customer:
    """The customer with this address, created if new. A name fills in a missing one only."""
    email = normalize_email(email)
    customer = session.scalar(_BY_EMAIL, {"email": email})
    if customer is None:
        try:
            with session.begin_nested():
                customer = Customer(email=email, name=name.strip()[:200])
                session.add(customer)
        except sa.exc.IntegrityError:
            # Created concurrently by another transaction: use theirs.
            customer = session.scalar(_BY_EMAIL, {"email": email})
            assert customer is not None
    elif name and not customer.name:
        customer.name = name.strip()[:200]
    return customer
