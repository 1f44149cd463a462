"""Demo data for the embedded default: a few agents, customers and tickets to click through.

Idempotent: seeding twice changes nothing the second time (the demo admin's presence is the
marker), so `make run` can call it on every start.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ticketing.models import Agent, AgentRole, Channel, EntryKind, Priority, Status
from ticketing.services import agents, conversation, customers

DEMO_ADMIN_EMAIL = "admin@handoff.example"

_DEMO_TICKETS = [
    (
        "maria.lopez@example.com",
        "María López",
        "Card declined when renewing my plan",
        "Hi,\n\nI tried to renew my Pro plan this morning and my card was declined twice. "
        "The bank says everything is fine on their side. Can you check?\n\nThanks,\nMaría",
        Channel.EMAIL,
        Priority.HIGH,
    ),
    (
        "tom@northwind.example",
        "Tom Becker",
        "How do I export my invoices?",
        "Hello, our accountant needs all invoices from last year as PDF. Is there a bulk "
        "export somewhere? I looked in Settings but could not find it.",
        Channel.WEB,
        Priority.NORMAL,
    ),
    (
        "yuki@example.jp",
        "Yuki Tanaka",
        "Password reset email never arrives",
        "I requested a password reset three times in the last hour but nothing arrives, "
        "not even in spam. My address is yuki@example.jp.",
        Channel.EMAIL,
        Priority.NORMAL,
    ),
    (
        "sam@contoso.example",
        "Sam Rivera",
        "Feature request: dark mode",
        "Love the product! Any plans for a dark mode? Our team works late.",
        Channel.WEB,
        Priority.LOW,
    ),
]


def seed(session: Session, *, admin_password: str, now: dt.datetime) -> bool:
    """Create the demo data unless it exists. Returns True when something was created."""
    if session.scalar(sa.select(Agent.id).where(Agent.email == DEMO_ADMIN_EMAIL)):
        return False
    admin = agents.create_agent(
        session,
        email=DEMO_ADMIN_EMAIL,
        name="Dana Admin",
        password=admin_password,
        role=AgentRole.ADMIN,
    )
    start = now - dt.timedelta(days=2)
    for i, (email, name, subject, body, channel, priority) in enumerate(_DEMO_TICKETS):
        at = start + dt.timedelta(hours=7 * i)
        customer = customers.find_or_create(session, email=email, name=name)
        ticket = conversation.open_ticket(
            session, customer=customer, subject=subject, channel=channel, priority=priority, now=at
        )
        kind = EntryKind.CUSTOMER_EMAIL if channel == Channel.EMAIL else EntryKind.CUSTOMER_WEB
        conversation.add_customer_message(
            ticket, author=customer, kind=kind, subject=subject, body_text=body, now=at
        )
        if i == 0:
            conversation.assign(ticket, admin, actor=admin, now=at + dt.timedelta(minutes=5))
            conversation.add_note(
                ticket,
                actor=admin,
                body_text="Payment provider shows a 3-D Secure timeout. Checking with billing.",
                now=at + dt.timedelta(minutes=10),
            )
        if i == 2:
            conversation.reply(
                ticket,
                actor=admin,
                body_text="Hi Yuki, sorry about that. I have re-sent the reset link from our "
                "side; it should arrive within a few minutes. Let me know if it does not.",
                now=at + dt.timedelta(hours=1),
                status=Status.PENDING,
            )
    return True
