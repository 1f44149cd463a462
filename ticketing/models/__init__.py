"""All models, imported here so `Base.metadata` knows every table (Alembic relies on it)."""

from ticketing.models.accounts import (
    Account,
    AccountEvent,
    AccountEventKind,
    Notice,
    NoticeOptOut,
    NoticeRule,
    NoticeStatus,
    PaymentMethod,
)
from ticketing.models.attachments import Attachment
from ticketing.models.counters import Counter
from ticketing.models.inbound import Receipt, ReceiptStatus
from ticketing.models.journeys import (
    JourneyEvent,
    JourneyEventKind,
    JourneyOutcome,
    SelfServiceSession,
    SolvedLink,
    WebSubmission,
)
from ticketing.models.kb import Article, ArticleRevision, ArticleStatus, Category
from ticketing.models.mailboxes import Mailbox, MailboxSecurity
from ticketing.models.operations import JobRun
from ticketing.models.outbox import OutboxKind, OutboxMessage, OutboxStatus, Suppression
from ticketing.models.people import Agent, AgentRole, Customer
from ticketing.models.portal import MagicLink, MagicLinkPurpose
from ticketing.models.presence import Activity, TicketPresence
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
    "Account",
    "AccountEvent",
    "AccountEventKind",
    "Activity",
    "Agent",
    "AgentRole",
    "ApiToken",
    "Article",
    "ArticleRevision",
    "ArticleStatus",
    "Attachment",
    "Category",
    "Channel",
    "Counter",
    "Customer",
    "Entry",
    "EntryKind",
    "JobRun",
    "JourneyEvent",
    "JourneyEventKind",
    "JourneyOutcome",
    "MagicLink",
    "MagicLinkPurpose",
    "Mailbox",
    "MailboxSecurity",
    "Notice",
    "NoticeOptOut",
    "NoticeRule",
    "NoticeStatus",
    "OutboxKind",
    "OutboxMessage",
    "OutboxStatus",
    "Participant",
    "PaymentMethod",
    "Priority",
    "Receipt",
    "ReceiptStatus",
    "SavedReply",
    "SelfServiceSession",
    "SolvedLink",
    "Status",
    "Suppression",
    "Tag",
    "Ticket",
    "TicketPresence",
    "WebSubmission",
    "ticket_tags",
]
