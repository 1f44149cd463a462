"""Self-service journeys: what a visitor tried before writing in, and how the visit ended.

A `SelfServiceSession` is one visitor's first-party session in the help center and on the
contact form, known only by the hash of a random cookie value. Its `JourneyEvent`s are the
searches, suggestions shown, articles opened (and for how long), votes, and the ending:
deflected (self-service solved it) or submitted (a ticket). `SolvedLink` is the signed
"This solved it" link in an acknowledgement email, stored as a hash, single-use, expiring.

Article ids are plain integers, not foreign keys: a journey is history, and it stays
readable after an article is deleted.
"""

from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ticketing.db import Base, str_enum, utcnow

MAX_QUERY = 200


class JourneyOutcome(enum.StrEnum):
    NONE = "none"
    DEFLECTED = "deflected"
    SUBMITTED = "submitted"


class JourneyEventKind(enum.StrEnum):
    SEARCH = "search"
    SUGGESTIONS_SHOWN = "suggestions_shown"
    ARTICLE_OPENED = "article_opened"
    ARTICLE_READ = "article_read"
    VOTE = "vote"
    DEFLECTED = "deflected"
    SUBMITTED = "submitted"
    # The journey was joined to a ticket only because the email address the visitor typed
    # matched the ticket's sender: nobody proved the visitor owns that address.
    LINKED_BY_EMAIL = "linked_by_email"


class SelfServiceSession(Base):
    """One visitor's self-service session (the `handoff_ss` cookie, stored as a sha256)."""

    __tablename__ = "selfservice_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    outcome: Mapped[JourneyOutcome] = mapped_column(
        str_enum(JourneyOutcome), default=JourneyOutcome.NONE
    )
    ticket_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("tickets.id", ondelete="SET NULL"), index=True
    )
    # The address the visitor gave (contact form), lower-cased: later mail from it links here.
    customer_email: Mapped[str | None] = mapped_column(sa.String(320), index=True)

    def __repr__(self) -> str:
        return f"<SelfServiceSession {self.id} {self.outcome}>"


class JourneyEvent(Base):
    """One step of a journey. Which columns are set depends on `kind`."""

    __tablename__ = "journey_events"
    __table_args__ = (
        sa.Index("ix_journey_events_session_id_id", "session_id", "id"),
        sa.Index("ix_journey_events_kind_created_at", "kind", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(
        sa.ForeignKey("selfservice_sessions.id", ondelete="CASCADE")
    )
    kind: Mapped[JourneyEventKind] = mapped_column(str_enum(JourneyEventKind))
    query: Mapped[str | None] = mapped_column(sa.String(MAX_QUERY))
    article_id: Mapped[int | None] = mapped_column(index=True)
    # suggestions_shown: the ids shown, best first.
    article_ids: Mapped[list[int] | None] = mapped_column(sa.JSON)
    result_count: Mapped[int | None]
    seconds: Mapped[int | None]
    helpful: Mapped[bool | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SolvedLink(Base):
    """A one-click "This solved it" link from an acknowledgement: ticket + article.

    Only the sha256 of the token is stored; it works once, until `expires_at`.
    """

    __tablename__ = "solved_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    ticket_id: Mapped[int] = mapped_column(
        sa.ForeignKey("tickets.id", ondelete="CASCADE"), index=True
    )
    article_id: Mapped[int]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]


class WebSubmission(Base):
    """One contact-form submission, keyed by the form's idempotency token: a double submit
    or a refresh finds the ticket the first one created instead of opening another."""

    __tablename__ = "web_submissions"

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(sa.String(64), unique=True)
    ticket_id: Mapped[int] = mapped_column(
        sa.ForeignKey("tickets.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
