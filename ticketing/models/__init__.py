"""All models, imported here so `Base.metadata` knows every table (Alembic relies on it)."""

from ticketing.models.attachments import Attachment
from ticketing.models.counters import Counter
from ticketing.models.inbound import Receipt, ReceiptStatus
from ticketing.models.mailboxes import Mailbox, MailboxSecurity
from ticketing.models.outbox import OutboxKind, OutboxMessage, OutboxStatus, Suppression
from ticketing.models.people import Agent, AgentRole, Customer
from ticketing.models.tickets import (
    Channel,
    Entry,
    EntryKind,
    Participant,
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
    "OutboxKind",
    "OutboxMessage",
    "OutboxStatus",
    "Participant",
    "Priority",
    "Receipt",
    "ReceiptStatus",
    "Status",
    "Suppression",
    "Ticket",
]
