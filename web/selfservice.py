"""The visitor's self-service session in the web layer: the `handoff_ss` cookie and tracking.

The help center, the suggest endpoint and the contact form call these to record a journey
(`ticketing.services.journeys`). The cookie holds a random opaque value; the database keeps
only its sha256, and the value is trusted for nothing but linking events together.

Transactions: a GET request is read-only for the request's own session (see
`web.security`), so on GET an event is written and committed in its own short transaction;
on other methods it joins the request's transaction (in a savepoint), which the route
commits. Tracking is best effort: a failure is logged and undone, and the page goes on.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
from collections.abc import Callable, Iterator
from typing import TypeVar

from flask import Response, after_this_request, current_app, g, has_request_context, request
from sqlalchemy.orm import Session

from ticketing.db import utcnow
from ticketing.models.journeys import JourneyEventKind, SelfServiceSession
from ticketing.services import journeys
from web.extensions import db, sqlite_read_only

log = logging.getLogger(__name__)

COOKIE = "handoff_ss"
COOKIE_MAX_AGE = 30 * 86400
_TOKEN_MAX = 100
_READ_ONLY = ("GET", "HEAD", "OPTIONS")

T = TypeVar("T")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def _cookie_token() -> str | None:
    token = request.cookies.get(COOKIE)
    if not token or len(token) > _TOKEN_MAX or not token.isascii():
        return None
    return token


@contextlib.contextmanager
def _write_session() -> Iterator[Session]:
    """The session to record in: the request's own, or a short one of its own on GET."""
    if request.method not in _READ_ONLY:
        with db.session.begin_nested():  # a failure undoes the tracking, not the request
            yield db.session
        return
    # End this request's read transaction first: on SQLite a session whose snapshot is older
    # than these writes could not write later (the test client reuses one session).
    db.session.commit()
    reset = sqlite_read_only.set(False)
    try:
        with Session(db.engine, expire_on_commit=False) as own:
            yield own
            own.commit()
    finally:
        sqlite_read_only.reset(reset)


def current_journey(create: bool = True) -> SelfServiceSession | None:
    """This visitor's self-service session, started (and the cookie set) when `create`.

    It belongs to `db.session`, except one started on GET, which is detached: read its
    `id`, do not change it (a GET request's own session only reads).
    """
    if not has_request_context():
        return None
    cached = g.get("_selfservice_journey")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    token = _cookie_token()
    journey: SelfServiceSession | None = None
    if token is not None:
        journey = journeys.find(db.session, token_hash=token_hash(token))
    if journey is None and create:
        token = secrets.token_urlsafe(24)
        journey = _best_effort(
            lambda s: journeys.start(s, token_hash=token_hash(token), now=utcnow())
        )
        if journey is not None:
            _set_cookie(token)
    if journey is not None:
        g._selfservice_journey = journey
    return journey


def _set_cookie(token: str) -> None:
    secure = current_app.config["HANDOFF_BASE_URL"].startswith("https://")

    @after_this_request
    def _cookie(response: Response) -> Response:
        response.set_cookie(
            COOKIE,
            token,
            max_age=COOKIE_MAX_AGE,
            httponly=True,
            secure=secure,
            samesite="Lax",
            path="/",
        )
        return response


def _best_effort(action: Callable[[Session], T]) -> T | None:
    try:
        with _write_session() as s:
            return action(s)
    except Exception:
        # Tracking never breaks the page: whatever it wrote is undone, the request goes on.
        log.exception("self-service tracking failed on %s", request.path)
        return None


def _track(kind: JourneyEventKind, **fields: object) -> None:
    journey = current_journey(create=False)
    if journey is None:
        return
    journey_id = journey.id

    def _record(s: Session) -> None:
        target = s.get(SelfServiceSession, journey_id)
        if target is not None:
            journeys.record(s, target, kind=kind, now=utcnow(), **fields)  # type: ignore[arg-type]

    _best_effort(_record)


def track_search(query: str, result_count: int) -> None:
    """A help-center search and how many articles it found."""
    if query.strip():
        _track(JourneyEventKind.SEARCH, query=query, result_count=int(result_count))


def track_suggestions(query: str, article_ids: list[int]) -> None:
    """Suggestions shown for what the visitor typed (the same list twice is recorded once)."""
    if article_ids:
        _track(
            JourneyEventKind.SUGGESTIONS_SHOWN,
            query=query,
            article_ids=list(article_ids),
            result_count=len(article_ids),
        )


def track_article_view(article_id: int) -> None:
    """The visitor opened an article (its page or inline on the contact form)."""
    _track(JourneyEventKind.ARTICLE_OPENED, article_id=int(article_id))


def track_article_read_time(article_id: int, seconds: int) -> None:
    """How long the article stayed open (a beacon when the visitor leaves it)."""
    _track(JourneyEventKind.ARTICLE_READ, article_id=int(article_id), seconds=int(seconds))


def track_vote(article_id: int, helpful: bool) -> None:
    """The answer to "Was this helpful?" (yes: helpful)."""
    _track(JourneyEventKind.VOTE, article_id=int(article_id), helpful=bool(helpful))
