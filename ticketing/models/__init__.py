"""All models, imported here so `Base.metadata` knows every table (Alembic relies on it)."""

from ticketing.models.attachments import Attachment
from ticketing.models.counters import Counter
from ticketing.models.mailboxes import Mailbox, MailboxSecurity
from ticketing.models.people import Agent, AgentRole, Customer
from ticketing.models.tickets import (
    Channel,
    Entry,
    EntryKind,
    Priority,
    Status,
    Ticket,
)

__all__ = [
    "Agent",
    "AgentRole",
    "Attachment",
    "Channel",
    "Counter",
    "Customer",
    "Entry",
    "EntryKind",
    "Mailbox",
    "MailboxSecurity",
    "Priority",
    "Status",
    "Ticket",
]
