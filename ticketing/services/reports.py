"""Reports for agents: how well self-service answers customers (the deflection report).

Place in the flow: the help center and contact form record journeys
(`ticketing.services.journeys`); `web.agent.reports` asks `self_service` for one period and
draws it. Everything is aggregated in SQL: COUNT(DISTINCT)/GROUP BY over `journey_events`
read by ranges of its `(kind, created_at)` index, and "same session" conditions as correlated
EXISTS on its `(session_id, id)` index. The cost grows with the events in the period; nothing
loops over rows in Python.

Definitions (a "session" is one visitor's self-service session):
- sessions: sessions active in the period (started before its end, last seen after its start);
- searches / zero-result searches: search events (a zero-result one found no article);
- suggestion click-through: sessions that opened an article after being shown suggestions,
  divided by sessions shown suggestions;
- deflected: sessions that ended as "this answered my question" (on the form, or later by the
  one-click link in an acknowledgement); submitted: sessions that wrote in and were not
  deflected. Deflection rate = deflected / (deflected + submitted);
- articles that fail to deflect: articles opened in sessions that then wrote in anyway.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from ticketing.errors import Invalid
from ticketing.models.journeys import JourneyEvent, JourneyEventKind, SelfServiceSession
from ticketing.services import journeys

DEFAULT_DAYS = 30
MAX_DAYS = 366
TOP = 10
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

K = JourneyEventKind


@dataclass(frozen=True, slots=True)
class Period:
    """Whole UTC days, `first` to `last` inclusive."""

    first: dt.date
    last: dt.date

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.combine(self.first, dt.time(), tzinfo=dt.UTC)

    @property
    def end(self) -> dt.datetime:
        """Exclusive: midnight after `last`."""
        return dt.datetime.combine(self.last + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)

    @property
    def days(self) -> list[dt.date]:
        return [self.first + dt.timedelta(days=i) for i in range((self.last - self.first).days + 1)]


def parse_period(first: str | None, last: str | None, *, today: dt.date) -> Period:
    """A period from `YYYY-MM-DD` strings; missing ones default to the last 30 days.

    Raises `Invalid` (safe to show) for anything else: bad dates, reversed, over a year.
    """
    if any(v and not _DATE.fullmatch(v) for v in (first, last)):
        raise Invalid("Use dates like 2026-11-01.")
    try:
        end = dt.date.fromisoformat(last) if last else today
        start = dt.date.fromisoformat(first) if first else end - dt.timedelta(days=DEFAULT_DAYS - 1)
    except (ValueError, OverflowError):  # 0001-01-01 minus 29 days
        raise Invalid("Use dates like 2026-11-01.") from None
    if start > end:
        raise Invalid("The start date must be on or before the end date.")
    if (end - start).days + 1 > MAX_DAYS:
        raise Invalid(f"Choose a period of at most {MAX_DAYS} days.")
    return Period(start, end)


@dataclass(frozen=True, slots=True)
class Funnel:
    """Sessions reaching each step, in order."""

    searched: int
    shown: int
    opened: int
    clicked: int  # opened an article after suggestions were shown
    deflected: int
    submitted: int


@dataclass(frozen=True, slots=True)
class QueryCount:
    query: str
    count: int


@dataclass(frozen=True, slots=True)
class ArticleFailure:
    article_id: int
    title: str
    opened: int  # sessions that opened it
    submitted: int  # ... and then wrote in anyway, not deflected

    @property
    def failure_rate(self) -> float:
        return self.submitted / self.opened if self.opened else 0.0


@dataclass(frozen=True, slots=True)
class Day:
    day: dt.date
    searches: int
    deflected: int
    submitted: int

    @property
    def total(self) -> int:
        return self.deflected + self.submitted


@dataclass(frozen=True, slots=True)
class SelfServiceReport:
    period: Period
    sessions: int
    searches: int
    zero_result_searches: int
    funnel: Funnel
    top_zero_queries: list[QueryCount]
    failing_articles: list[ArticleFailure]
    daily: list[Day]

    @property
    def click_through(self) -> float | None:
        """Sessions that opened a suggested article / sessions shown suggestions."""
        return self.funnel.clicked / self.funnel.shown if self.funnel.shown else None

    @property
    def deflection_rate(self) -> float | None:
        decided = self.funnel.deflected + self.funnel.submitted
        return self.funnel.deflected / decided if decided else None


def self_service(session: Session, period: Period) -> SelfServiceReport:
    """The self-service report for `period` (a handful of aggregate queries)."""
    return SelfServiceReport(
        period=period,
        sessions=_sessions(session, period),
        searches=_count(session, period, zero_only=False),
        zero_result_searches=_count(session, period, zero_only=True),
        funnel=_funnel(session, period),
        top_zero_queries=_top_zero_queries(session, period),
        failing_articles=_failing_articles(session, period),
        daily=_daily(session, period),
    )


def _in_period(period: Period, *kinds: JourneyEventKind) -> sa.ColumnElement[bool]:
    # Naming the kinds lets both databases read the (kind, created_at) index by ranges.
    ev = JourneyEvent
    return sa.and_(
        ev.kind.in_(kinds or tuple(K)), ev.created_at >= period.start, ev.created_at < period.end
    )


def _sessions(session: Session, period: Period) -> int:
    s = SelfServiceSession
    stmt = sa.select(sa.func.count(s.id)).where(
        s.last_seen_at >= period.start, s.created_at < period.end
    )
    return int(session.scalar(stmt) or 0)


def _count(session: Session, period: Period, *, zero_only: bool) -> int:
    stmt = sa.select(sa.func.count(JourneyEvent.id)).where(_in_period(period, K.SEARCH))
    if zero_only:
        stmt = stmt.where(JourneyEvent.result_count == 0)
    return int(session.scalar(stmt) or 0)


def _events(
    period: Period, kind: JourneyEventKind, ev: Any = JourneyEvent
) -> sa.ColumnElement[bool]:
    """`kind` events of the period (of `ev`, an alias in correlated subqueries)."""
    return sa.and_(ev.kind == kind, ev.created_at >= period.start, ev.created_at < period.end)


def _same_session_has(
    period: Period, kind: JourneyEventKind, *, before_id: sa.ColumnElement[int] | None = None
) -> sa.Exists:
    """EXISTS: the outer event's session has a `kind` event in the period (optionally one
    earlier than `before_id`). Read through the (session_id, id) index: a session is short."""
    other = aliased(JourneyEvent)
    cond = [other.session_id == JourneyEvent.session_id, _events(period, kind, other)]
    if before_id is not None:
        cond.append(other.id < before_id)
    return sa.exists().where(*cond)


def _not_deflected(period: Period) -> sa.ColumnElement[bool]:
    return ~_same_session_has(period, K.DEFLECTED)


def _funnel(session: Session, period: Period) -> Funnel:
    ev = JourneyEvent
    sessions = sa.func.count(sa.distinct(ev.session_id))
    steps = dict(
        session.execute(
            sa.select(ev.kind, sessions)
            .where(_in_period(period, K.SEARCH, K.SUGGESTIONS_SHOWN, K.ARTICLE_OPENED, K.DEFLECTED))
            .group_by(ev.kind)
        ).all()
    )
    clicked = session.scalar(
        sa.select(sessions).where(
            _events(period, K.ARTICLE_OPENED),
            _same_session_has(period, K.SUGGESTIONS_SHOWN, before_id=ev.id),
        )
    )
    submitted = session.scalar(
        sa.select(sessions).where(_events(period, K.SUBMITTED), _not_deflected(period))
    )
    return Funnel(
        searched=int(steps.get(K.SEARCH, 0)),
        shown=int(steps.get(K.SUGGESTIONS_SHOWN, 0)),
        opened=int(steps.get(K.ARTICLE_OPENED, 0)),
        clicked=int(clicked or 0),
        deflected=int(steps.get(K.DEFLECTED, 0)),
        submitted=int(submitted or 0),
    )


def _top_zero_queries(session: Session, period: Period) -> list[QueryCount]:
    ev = JourneyEvent
    query = sa.func.lower(ev.query)
    rows = session.execute(
        sa.select(query.label("q"), sa.func.count(ev.id).label("n"))
        .where(_in_period(period, K.SEARCH), ev.result_count == 0, ev.query.is_not(None))
        .group_by(query)
        .order_by(sa.desc("n"), "q")
        .limit(TOP)
    )
    return [QueryCount(str(q), int(n)) for q, n in rows]


def _failing_articles(session: Session, period: Period) -> list[ArticleFailure]:
    ev = JourneyEvent
    # Each (session, article) opened in the period, with when it was first opened...
    opened = (
        sa.select(
            ev.session_id.label("session_id"),
            ev.article_id.label("article_id"),
            sa.func.min(ev.id).label("first_opened"),
        )
        .where(_events(period, K.ARTICLE_OPENED), ev.article_id.is_not(None))
        .group_by(ev.session_id, ev.article_id)
        .subquery("opened")
    )
    # ... and each session that wrote in (and was not deflected after all), with when.
    wrote_in = (
        sa.select(ev.session_id.label("session_id"), sa.func.max(ev.id).label("last_submitted"))
        .where(_events(period, K.SUBMITTED), _not_deflected(period))
        .group_by(ev.session_id)
        .subquery("wrote_in")
    )
    failed = sa.func.sum(sa.case((wrote_in.c.last_submitted > opened.c.first_opened, 1), else_=0))
    rows = session.execute(
        sa.select(opened.c.article_id, sa.func.count().label("n_opened"), failed.label("n_failed"))
        .select_from(opened)
        .outerjoin(wrote_in, wrote_in.c.session_id == opened.c.session_id)
        .group_by(opened.c.article_id)
        .having(failed > 0)
        .order_by(sa.desc("n_failed"), sa.desc("n_opened"), opened.c.article_id)
        .limit(TOP)
    ).all()
    titles = journeys.article_titles(session, {int(r[0]) for r in rows})
    return [
        ArticleFailure(int(a), titles.get(int(a), f"Deleted article {a}"), int(n), int(f))
        for a, n, f in rows
    ]


def _daily(session: Session, period: Period) -> list[Day]:
    ev = JourneyEvent
    if session.get_bind().dialect.name == "postgresql":
        day = sa.func.date(sa.func.timezone("UTC", ev.created_at))
    else:  # SQLite keeps UTC without an offset
        day = sa.func.date(ev.created_at)

    def count(kind: JourneyEventKind) -> sa.ColumnElement[int]:
        return sa.func.sum(sa.case((ev.kind == kind, 1), else_=0))

    rows = session.execute(
        sa.select(day.label("day"), count(K.SEARCH), count(K.DEFLECTED), count(K.SUBMITTED))
        .where(_in_period(period, K.SEARCH, K.DEFLECTED, K.SUBMITTED))
        .group_by(day)
    )
    found = {str(d)[:10]: (int(s), int(df), int(sb)) for d, s, df, sb in rows}
    return [Day(d, *found.get(d.isoformat(), (0, 0, 0))) for d in period.days]
