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
from ticketing.models.workspace import ApiToken, SavedReply, Tag, ticket_tags

__all__ = [
    "Agent",
    "AgentRole",
    "ApiToken",
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
    "SavedReply",
    "Status",
    "Suppression",
    "Tag",
    "Ticket",
    "ticket_tags",
]
