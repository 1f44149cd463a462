"""Shared steps of the email stories: the support mailbox in Dovecot, polling, and reading
back what landed. The `mailbox` fixture itself lives in tests/e2e/conftest.py."""

from __future__ import annotations

import sqlalchemy as sa

from ticketing.models import Entry, EntryKind, Mailbox, MailboxSecurity, Ticket
from ticketing.services.mailboxes import add_mailbox
from web.mail_runtime import poll_mailboxes

SUPPORT = "support@example.com"


class SimulatedCrash(BaseException):
    """Raised by a fault hook: not an Exception, so nothing in the pipeline catches it."""


def add_support_mailbox(app, db_session, imap_mailbox) -> Mailbox:
    """support@example.com in Dovecot, polled over plain IMAP on loopback."""
    box = add_mailbox(
        db_session,
        name="support",
        address=SUPPORT,
        imap_host=imap_mailbox.host,
        imap_port=imap_mailbox.port,
        imap_user=SUPPORT,
        imap_password=imap_mailbox.users[SUPPORT],
        imap_security=MailboxSecurity.PLAIN,
        secret_key=app.config["SECRET_KEY"],
    )
    db_session.commit()
    return box


def poll(app):
    results = poll_mailboxes(app, only_due=False)
    assert all(r.error is None for r in results), [r.error for r in results]
    return results


def tickets(db_session) -> list[Ticket]:
    db_session.expire_all()
    return list(db_session.scalars(sa.select(Ticket).order_by(Ticket.number)))


def entries(db_session, ticket: Ticket) -> list[Entry]:
    return list(
        db_session.scalars(sa.select(Entry).where(Entry.ticket_id == ticket.id).order_by(Entry.id))
    )


def customer_entries(db_session) -> list[Entry]:
    return list(
        db_session.scalars(
            sa.select(Entry).where(Entry.kind == EntryKind.CUSTOMER_EMAIL).order_by(Entry.id)
        )
    )
