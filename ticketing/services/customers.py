"""Customers: found by address (case-insensitively), created on first contact."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ticketing.db import insert_or_skip, utcnow
from ticketing.models import Customer
from ticketing.models.people import normalize_email

# Built once: email ingest looks a sender up for every message.
_BY_EMAIL = sa.select(Customer).where(Customer.email == sa.bindparam("email"))


def find_or_create(session: Session, *, email: str, name: str = "") -> Customer:
    """The customer with this address, created if new. A name fills in a missing one only."""
    email = normalize_email(email)
    customer = session.scalar(_BY_EMAIL, {"email": email})
    if customer is None:
        # INSERT ... ON CONFLICT DO NOTHING: a customer created concurrently by another
        # transaction is simply found by the SELECT after it (theirs is used), without the
        # savepoint an ORM insert would need to survive the unique key.
        values = {"email": email, "name": name.strip()[:200], "created_at": utcnow()}
        dialect = session.get_bind().dialect.name
        session.execute(insert_or_skip(dialect, Customer).values(values))
        customer = session.scalar(_BY_EMAIL, {"email": email})
        if customer is None:  # not even theirs: the row was deleted meanwhile
            raise RuntimeError(f"customer {email!r} vanished while being created")
    elif name and not customer.name:
        customer.name = name.strip()[:200]
    return customer
