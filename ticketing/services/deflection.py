"""Articles in the acknowledgement, and the signed one-click "This solved it" links.

Place in the flow: when the email-out layer acknowledges a new ticket (web or email), it asks
`acknowledgement_articles` for up to three published articles matching the ticket's subject
and first message; each comes with a link to `<base URL>/contact/solved/<token>`. The token
is random (256 bits), stored only as its sha256, works once and expires. Opening the link
shows a confirmation page (link scanners prefetch GETs); its POST calls `use_solved_link`,
which solves the ticket with a system event and counts a deflection for the article.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ticketing import kb_search
from ticketing.models import Article, ArticleStatus, Status, Ticket
from ticketing.models.journeys import JourneyEventKind, JourneyOutcome, SolvedLink
from ticketing.services import conversation, journeys, kb

log = logging.getLogger(__name__)

SOLVED_LINK_TTL = dt.timedelta(days=14)
ACK_ARTICLES = 3
_TOKEN_MAX = 100


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def article_url(base_url: str, article: Article) -> str:
    """The public page of an article, on the configured base URL."""
    return f"{base_url.rstrip('/')}/help/articles/{article.id}-{article.slug}"


def solved_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/contact/solved/{token}"


def issue_solved_link(
    session: Session,
    *,
    ticket: Ticket,
    article_id: int,
    now: dt.datetime,
    ttl: dt.timedelta = SOLVED_LINK_TTL,
) -> str:
    """A new single-use token that solves `ticket` with this article; only its hash is kept."""
    token = secrets.token_urlsafe(32)
    session.add(
        SolvedLink(
            token_hash=_hash(token),
            ticket_id=ticket.id,
            article_id=article_id,
            created_at=now,
            expires_at=now + ttl,
        )
    )
    session.flush()
    return token


# One index probe (ix_kb_articles_status_views), built once: it runs per acknowledgement.
_ANY_PUBLISHED = sa.select(sa.exists().where(Article.status == ArticleStatus.PUBLISHED))


def _any_published(session: Session) -> bool:
    """Whether the knowledge base has a published article at all. Without one (a team that
    does not use it), the acknowledgement skips the journey lookup, the savepoint and the
    search: three to four statements per new ticket for nothing. Not cached, so an article
    published a moment ago is suggested in the very next acknowledgement."""
    return bool(session.scalar(_ANY_PUBLISHED))


def acknowledgement_articles(
    session: Session,
    *,
    ticket: Ticket,
    text: str,
    base_url: str,
    now: dt.datetime,
    limit: int = ACK_ARTICLES,
) -> list[dict[str, str]]:
    """Up to `limit` published articles for the acknowledgement of `ticket`, matched on
    `text` (its subject and first message), each with title, url, snippet and solved_url.

    Articles the customer opened before writing in (the ticket's journey) are left out. The
    articles are ours: nothing in them comes from the requester, so they are safe in an
    acknowledgement to an unverified address (security.md case 47).
    """
    if not text.strip() or not _any_published(session):
        return []
    # Articles the customer already read before writing in did not answer it: offer others.
    tried = journeys.articles_tried(session, ticket)
    try:
        with session.begin_nested():
            hits = kb_search.suggest(session, text[:2000], limit=min(limit + len(tried), 10))
    except sa.exc.SQLAlchemyError:
        # Articles are a courtesy: a search failure must not cost the ticket its acknowledgement
        # (nor park the inbound message that opened it).
        log.exception("no articles for the acknowledgement of ticket #%s", ticket.number)
        return []
    articles = kb.published_by_ids(session, [h.article_id for h in hits])
    result = []
    for hit in hits:
        article = articles.get(hit.article_id)
        if article is None or article.id in tried or len(result) >= limit:
            continue
        token = issue_solved_link(session, ticket=ticket, article_id=article.id, now=now)
        result.append(
            {
                "title": article.title,
                "url": article_url(base_url, article),
                "snippet": hit.snippet,
                "solved_url": solved_url(base_url, token),
            }
        )
    return result[:limit]


class LinkState(enum.StrEnum):
    VALID = "valid"
    USED = "used"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class SolvedLinkView:
    """What a solved link points at, for its confirmation page."""

    state: LinkState
    ticket: Ticket | None = None
    article_title: str = ""


def _load(session: Session, token: str) -> SolvedLink | None:
    if not token or len(token) > _TOKEN_MAX:
        return None
    digest = _hash(token)
    link = session.scalar(sa.select(SolvedLink).where(SolvedLink.token_hash == digest))
    if link is None or not hmac.compare_digest(link.token_hash, digest):
        return None
    return link


def inspect_solved_link(session: Session, *, token: str, now: dt.datetime) -> SolvedLinkView:
    """The state of a link without using it (the GET confirmation page)."""
    link = _load(session, token)
    if link is None:
        return SolvedLinkView(LinkState.UNKNOWN)
    ticket = session.get(Ticket, link.ticket_id)
    title = journeys.article_titles(session, {link.article_id}).get(link.article_id, "")
    if link.used_at is not None:
        return SolvedLinkView(LinkState.USED, ticket, title)
    if link.expires_at <= now:
        return SolvedLinkView(LinkState.EXPIRED, ticket, title)
    return SolvedLinkView(LinkState.VALID, ticket, title)


def use_solved_link(session: Session, *, token: str, now: dt.datetime) -> SolvedLinkView:
    """Solve the ticket with the link's article, once: a system event "Solved by the customer
    with article …" and a deflection (a `deflected` event on the ticket's journey; an email
    ticket without one gets a journey of its own). Used, expired and unknown links change
    nothing and say so in `state`. Every link of the ticket is spent with it."""
    view = inspect_solved_link(session, token=token, now=now)
    if view.state is not LinkState.VALID or view.ticket is None:
        return view
    link = _load(session, token)
    assert link is not None
    # Claim the link with a conditional UPDATE so two concurrent clicks solve it once.
    claimed = session.execute(
        sa.update(SolvedLink)
        .where(SolvedLink.id == link.id, SolvedLink.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if not claimed:
        return SolvedLinkView(LinkState.USED, view.ticket, view.article_title)
    session.execute(
        sa.update(SolvedLink)
        .where(SolvedLink.ticket_id == link.ticket_id, SolvedLink.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    ticket = view.ticket
    if ticket.merged_into_id is None and ticket.status.is_active:
        conversation.set_status(ticket, Status.SOLVED, actor=None, now=now, record=False)
    title = view.article_title or f"#{link.article_id}"
    conversation.record_event(
        ticket, text=f"Solved by the customer with article '{title}'", now=now
    )
    journey = journeys.journey_of(session, ticket)
    if journey is None:
        journey = journeys.start(session, token_hash=_hash(secrets.token_urlsafe(32)), now=now)
        journey.ticket_id = ticket.id
        journey.customer_email = ticket.customer.email
        journey.outcome = JourneyOutcome.SUBMITTED
    journeys.record(
        session, journey, kind=JourneyEventKind.DEFLECTED, now=now, article_id=link.article_id
    )
    session.flush()
    return SolvedLinkView(LinkState.VALID, ticket, view.article_title)


def purge_expired_links(session: Session, *, now: dt.datetime) -> int:
    """Delete "this solved it" links that expired (used or not): they can never work again."""
    result = session.execute(sa.delete(SolvedLink).where(SolvedLink.expires_at < now))
    session.flush()
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
