"""Self-service journeys: record what a visitor tried, end the visit, hand it to the agent.

Place in the flow: the web layer (help center, suggest endpoint, contact form) finds the
visitor's `SelfServiceSession` by its cookie and calls `record`; the visit ends with
`deflect` (self-service solved it) or `attach_to_ticket` (a web ticket). Mail that arrives
from the address the visitor gave, within a window, joins the journey through
`link_recent_by_email` (called by `mail.inbound` when it opens a ticket). The agent reads
`summary`; housekeeping calls `purge`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ticketing.models import Article, Ticket
from ticketing.models.journeys import (
    MAX_QUERY,
    JourneyEvent,
    JourneyEventKind,
    JourneyOutcome,
    SelfServiceSession,
)
from ticketing.models.people import normalize_email

# A journey is a person's visit, not a log: past this many events more are not recorded
# (a script hammering the suggest endpoint cannot grow one session without bound).
MAX_EVENTS_PER_SESSION = 300
MAX_SUGGESTED_IDS = 10


def start(session: Session, *, token_hash: str, now: dt.datetime) -> SelfServiceSession:
    """A new self-service session known by `token_hash` (the sha256 of its cookie value)."""
    journey = SelfServiceSession(
        token_hash=token_hash, created_at=now, last_seen_at=now, outcome=JourneyOutcome.NONE
    )
    session.add(journey)
    session.flush()
    return journey


def find(session: Session, *, token_hash: str) -> SelfServiceSession | None:
    """The session with this token hash, or None."""
    return session.scalar(
        sa.select(SelfServiceSession).where(SelfServiceSession.token_hash == token_hash)
    )


def record(
    session: Session,
    journey: SelfServiceSession,
    *,
    kind: JourneyEventKind,
    now: dt.datetime,
    query: str | None = None,
    article_id: int | None = None,
    article_ids: Sequence[int] | None = None,
    result_count: int | None = None,
    seconds: int | None = None,
    helpful: bool | None = None,
) -> JourneyEvent | None:
    """Append one event to the journey; None when it was not worth recording (over the
    per-session cap, or the same suggestions as the last event)."""
    journey.last_seen_at = now
    count = session.scalar(
        sa.select(sa.func.count(JourneyEvent.id)).where(JourneyEvent.session_id == journey.id)
    )
    if (count or 0) >= MAX_EVENTS_PER_SESSION:
        session.flush()
        return None
    ids = [int(i) for i in article_ids][:MAX_SUGGESTED_IDS] if article_ids is not None else None
    if kind == JourneyEventKind.SUGGESTIONS_SHOWN:
        last = session.scalar(
            sa.select(JourneyEvent)
            .where(JourneyEvent.session_id == journey.id)
            .order_by(JourneyEvent.id.desc())
            .limit(1)
        )
        if last is not None and last.kind == kind and last.article_ids == ids:
            session.flush()
            return None
    event = JourneyEvent(
        session_id=journey.id,
        kind=kind,
        query=_clean_query(query),
        article_id=article_id,
        article_ids=ids,
        result_count=result_count,
        seconds=max(0, min(int(seconds), 86_400)) if seconds is not None else None,
        helpful=helpful,
        created_at=now,
    )
    session.add(event)
    session.flush()
    return event


def remember_email(journey: SelfServiceSession, email: str) -> None:
    """Note the address the visitor gave, so later mail from it joins this journey."""
    cleaned = normalize_email(email)
    if cleaned and len(cleaned) <= 320:
        journey.customer_email = cleaned


def deflect(
    session: Session,
    journey: SelfServiceSession,
    *,
    now: dt.datetime,
    article_id: int | None = None,
    email: str | None = None,
) -> SelfServiceSession:
    """End the visit as deflected: self-service (this article) answered the question.

    A second "this answers my question" in the same visit records nothing more.
    """
    if email:
        remember_email(journey, email)
    if journey.outcome != JourneyOutcome.DEFLECTED:
        journey.outcome = JourneyOutcome.DEFLECTED
        record(session, journey, kind=JourneyEventKind.DEFLECTED, now=now, article_id=article_id)
    session.flush()
    return journey


def attach_to_ticket(
    session: Session,
    journey: SelfServiceSession,
    ticket: Ticket,
    *,
    now: dt.datetime,
    email: str | None = None,
) -> SelfServiceSession:
    """End the visit as submitted: the journey now belongs to `ticket`."""
    if email:
        remember_email(journey, email)
    journey.ticket_id = ticket.id
    journey.outcome = JourneyOutcome.SUBMITTED
    record(session, journey, kind=JourneyEventKind.SUBMITTED, now=now)
    return journey


_SESSIONS = SelfServiceSession.__table__
_RECENT_UNLINKED = (
    sa.select(_SESSIONS.c.id)
    .where(
        _SESSIONS.c.customer_email == sa.bindparam("email"),
        _SESSIONS.c.ticket_id.is_(None),
        _SESSIONS.c.last_seen_at >= sa.bindparam("since"),
    )
    .order_by(_SESSIONS.c.last_seen_at.desc())
    .limit(1)
)


def link_recent_by_email(
    session: Session, *, ticket_id: int, email: str, now: dt.datetime, window: dt.timedelta
) -> SelfServiceSession | None:
    """Give a new ticket from `email` the latest journey of that address seen within `window`
    that has no ticket yet (a visitor read articles, gave their address, then wrote in by
    mail). Returns the journey linked, or None."""
    address = normalize_email(email)
    if not address:
        return None
    # Every new email ticket asks, and nearly always the answer is no: one prepared query on
    # the session's connection for the id, the ORM only when there is a journey to link.
    params = {"email": address, "since": now - window}
    journey_id = session.connection().execute(_RECENT_UNLINKED, params).scalar()
    journey = session.get(SelfServiceSession, journey_id) if journey_id is not None else None
    if journey is None or (ticket := session.get(Ticket, ticket_id)) is None:
        return None
    attach_to_ticket(session, journey, ticket, now=now)
    record(session, journey, kind=JourneyEventKind.LINKED_BY_EMAIL, now=now)
    return journey


def journey_of(session: Session, ticket: Ticket) -> SelfServiceSession | None:
    """The latest journey that led to this ticket, if any."""
    return session.scalar(
        sa.select(SelfServiceSession)
        .where(SelfServiceSession.ticket_id == ticket.id)
        .order_by(SelfServiceSession.id.desc())
        .limit(1)
    )


def events(session: Session, journey: SelfServiceSession) -> list[JourneyEvent]:
    return list(
        session.scalars(
            sa.select(JourneyEvent)
            .where(JourneyEvent.session_id == journey.id)
            .order_by(JourneyEvent.id)
        )
    )


def articles_tried(session: Session, ticket: Ticket) -> set[int]:
    """Articles opened, read or voted on in the journey that led to `ticket`."""
    journey = journey_of(session, ticket)
    if journey is None:
        return set()
    kinds = (JourneyEventKind.ARTICLE_OPENED, JourneyEventKind.ARTICLE_READ, JourneyEventKind.VOTE)
    return set(
        session.scalars(
            sa.select(JourneyEvent.article_id).where(
                JourneyEvent.session_id == journey.id,
                JourneyEvent.kind.in_(kinds),
                JourneyEvent.article_id.is_not(None),
            )
        )
    )


def summary(session: Session, ticket: Ticket) -> list[str]:
    """The ticket's journey in plain sentences for the agent, oldest first; [] if none.

    "Searched 'card declined' (2 results)", "Saw 3 suggested articles",
    "Read 'Update your payment card' for 40 s", "Voted 'Refunds' not helpful".
    """
    journey = journey_of(session, ticket)
    if journey is None:
        return []
    steps = events(session, journey)
    titles = article_titles(
        session,
        {e.article_id for e in steps if e.article_id is not None}
        | {i for e in steps for i in (e.article_ids or [])},
    )
    return describe(steps, titles)


def describe(steps: Sequence[JourneyEvent], titles: Mapping[int, str]) -> list[str]:
    """Sentences for a sequence of events (see `summary`)."""

    def title(article_id: int | None) -> str:
        if article_id is None:
            return "an article"
        return f"'{titles.get(article_id, f'article #{article_id}')}'"

    read_seconds: dict[int, int] = {}
    for e in steps:
        if e.kind == JourneyEventKind.ARTICLE_READ and e.article_id is not None:
            read_seconds[e.article_id] = max(read_seconds.get(e.article_id, 0), e.seconds or 0)
    lines: list[str] = []
    opened: set[int] = set()
    shown: set[int] = set()
    searched: set[str] = set()
    for e in steps:
        if e.kind == JourneyEventKind.SEARCH and e.query:
            if e.query.casefold() in searched:
                continue
            searched.add(e.query.casefold())
            n = e.result_count or 0
            lines.append(f"Searched '{e.query}' ({n} result{'s' if n != 1 else ''})")
        elif e.kind == JourneyEventKind.SUGGESTIONS_SHOWN:
            shown.update(e.article_ids or [])
        elif e.kind == JourneyEventKind.ARTICLE_OPENED and e.article_id is not None:
            if e.article_id in opened:
                continue
            opened.add(e.article_id)
            seconds = read_seconds.get(e.article_id)
            if seconds:
                lines.append(f"Read {title(e.article_id)} for {_duration(seconds)}")
            else:
                lines.append(f"Opened {title(e.article_id)}")
        elif e.kind == JourneyEventKind.VOTE and e.helpful is not None:
            verdict = "helpful" if e.helpful else "not helpful"
            lines.append(f"Voted {title(e.article_id)} {verdict}")
        elif e.kind == JourneyEventKind.DEFLECTED:
            lines.append(f"Said {title(e.article_id)} answered the question")
    if shown:
        n = len(shown)
        lines.insert(0, f"Saw {n} suggested article{'s' if n != 1 else ''}")
    if any(e.kind == JourneyEventKind.LINKED_BY_EMAIL for e in steps):
        # Anyone can type any address on the help pages: say so before the agent relies on it.
        lines.insert(
            0,
            "Matched by the email address typed on the help pages (not verified: "
            "this may not have been the customer)",
        )
    return lines


def article_titles(session: Session, ids: set[int]) -> dict[int, str]:
    """Titles of knowledge-base articles by id (drafts too: the visitor saw it then)."""
    if not ids:
        return {}
    rows = session.execute(sa.select(Article.id, Article.title).where(Article.id.in_(ids)))
    return {int(i): str(t) for i, t in rows}


def purge(session: Session, *, now: dt.datetime, retention: dt.timedelta) -> int:
    """Delete journeys last seen before `now - retention` (their events go with them).
    Returns how many sessions were deleted."""
    cutoff = now - retention
    old = sa.select(SelfServiceSession.id).where(SelfServiceSession.last_seen_at < cutoff)
    session.execute(sa.delete(JourneyEvent).where(JourneyEvent.session_id.in_(old)))
    result = session.execute(
        sa.delete(SelfServiceSession).where(SelfServiceSession.last_seen_at < cutoff)
    )
    session.flush()
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _clean_query(query: str | None) -> str | None:
    if query is None:
        return None
    cleaned = " ".join("".join(c if c.isprintable() else " " for c in query).split())
    return cleaned[:MAX_QUERY] or None


def _duration(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"
