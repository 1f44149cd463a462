"""The self-service (deflection) report: the numbers from real journeys, the page agents see
(issue 6, item 7; security.md cases 29, 31)."""

from __future__ import annotations

import datetime as dt
import re
import secrets

import pytest
import sqlalchemy as sa

from ticketing.errors import Invalid
from ticketing.models import Channel
from ticketing.models.journeys import JourneyEventKind as K
from ticketing.services import conversation, customers, journeys, kb, reports

DAY = dt.date(2026, 11, 10)
NOON = dt.datetime(2026, 11, 10, 12, 0, tzinfo=dt.UTC)
PERIOD = reports.Period(dt.date(2026, 11, 1), dt.date(2026, 11, 30))


def at(days: int = 0, minutes: int = 0) -> dt.datetime:
    return NOON + dt.timedelta(days=days, minutes=minutes)


def visit(db_session, steps, *, start: dt.datetime = NOON):
    """One self-service session doing `steps`: (kind, fields) pairs, a minute apart."""
    journey = journeys.start(db_session, token_hash=secrets.token_hex(32), now=start)
    for i, (kind, fields) in enumerate(steps):
        now = start + dt.timedelta(minutes=i)
        if kind == K.DEFLECTED:
            journeys.deflect(db_session, journey, now=now, article_id=fields.get("article_id"))
        elif kind == K.SUBMITTED:
            customer = customers.find_or_create(db_session, email=f"v{journey.id}@example.com")
            ticket = conversation.open_ticket(
                db_session, customer=customer, subject="Help", channel=Channel.WEB, now=now
            )
            journeys.attach_to_ticket(db_session, journey, ticket, now=now)
        else:
            journeys.record(db_session, journey, kind=kind, now=now, **fields)
    return journey


@pytest.fixture
def articles(db_session, agent):
    made = {
        name: kb.create_article(
            db_session, title=title, body="Body", actor=agent, now=NOON, publish=True
        )
        for name, title in (
            ("card", "Update your payment card"),
            ("refund", "Ask for a refund"),
            ("login", "Reset your password"),
        )
    }
    db_session.commit()
    return made


@pytest.fixture
def story(db_session, articles):
    """Six visits in November and one outside the period."""
    card, refund, login = (articles[k].id for k in ("card", "refund", "login"))
    # 1. Searched, saw suggestions, opened the card article, was answered.
    visit(
        db_session,
        [
            (K.SEARCH, {"query": "card declined", "result_count": 3}),
            (K.SUGGESTIONS_SHOWN, {"article_ids": [card, refund]}),
            (K.ARTICLE_OPENED, {"article_id": card}),
            (K.DEFLECTED, {"article_id": card}),
        ],
    )
    # 2. Searched for nothing found, saw suggestions, opened the card article, wrote in.
    visit(
        db_session,
        [
            (K.SEARCH, {"query": "Chargeback", "result_count": 0}),
            (K.SUGGESTIONS_SHOWN, {"article_ids": [card]}),
            (K.ARTICLE_OPENED, {"article_id": card}),
            (K.ARTICLE_OPENED, {"article_id": refund}),
            (K.SUBMITTED, {}),
        ],
        start=at(days=1),
    )
    # 3. The same empty search, suggestions, nothing opened, wrote in.
    visit(
        db_session,
        [
            (K.SEARCH, {"query": "chargeback", "result_count": 0}),
            (K.SUGGESTIONS_SHOWN, {"article_ids": [refund]}),
            (K.SUBMITTED, {}),
        ],
        start=at(days=1),
    )
    # 4. Opened the card article from the help center (no suggestions), wrote in.
    visit(
        db_session, [(K.ARTICLE_OPENED, {"article_id": card}), (K.SUBMITTED, {})], start=at(days=2)
    )
    # 5. Wrote in, then the acknowledgement's "this solved it" link deflected it.
    visit(
        db_session,
        [
            (K.SEARCH, {"query": "password", "result_count": 0}),
            (K.SUBMITTED, {}),
            (K.DEFLECTED, {"article_id": login}),
        ],
        start=at(days=3),
    )
    # 6. Only looked around.
    visit(db_session, [(K.SEARCH, {"query": "hours", "result_count": 2})], start=at(days=4))
    # Outside the period: counted nowhere.
    visit(
        db_session,
        [
            (K.SEARCH, {"query": "chargeback", "result_count": 0}),
            (K.SUBMITTED, {}),
        ],
        start=dt.datetime(2026, 12, 5, 9, 0, tzinfo=dt.UTC),
    )
    db_session.commit()
    return articles


def test_report_counts_sessions_searches_funnel_and_rates(db_session, story):
    report = reports.self_service(db_session, PERIOD)

    assert report.sessions == 6
    assert report.searches == 5
    assert report.zero_result_searches == 3
    assert [(q.query, q.count) for q in report.top_zero_queries] == [
        ("chargeback", 2),
        ("password", 1),
    ]
    f = report.funnel
    assert (f.searched, f.shown, f.opened, f.clicked) == (5, 3, 3, 2)
    assert (f.deflected, f.submitted) == (2, 3)
    assert report.click_through == pytest.approx(2 / 3)
    assert report.deflection_rate == pytest.approx(2 / 5)


def test_articles_that_fail_to_deflect(db_session, story):
    report = reports.self_service(db_session, PERIOD)
    rows = [(a.title, a.opened, a.submitted) for a in report.failing_articles]
    # Card: opened in 3 sessions, two of which wrote in anyway; refund: 1 of 1.
    assert rows == [("Update your payment card", 3, 2), ("Ask for a refund", 1, 1)]
    assert report.failing_articles[0].failure_rate == pytest.approx(2 / 3)


def test_daily_series_covers_every_day_of_the_period(db_session, story):
    report = reports.self_service(db_session, PERIOD)
    assert len(report.daily) == 30
    by_day = {d.day: d for d in report.daily}
    assert (by_day[DAY].searches, by_day[DAY].deflected, by_day[DAY].submitted) == (1, 1, 0)
    nov11 = by_day[DAY + dt.timedelta(days=1)]
    assert (nov11.searches, nov11.submitted) == (2, 2)
    assert by_day[dt.date(2026, 11, 1)].total == 0
    assert sum(d.searches for d in report.daily) == report.searches


def test_an_empty_period_has_no_rates(db_session):
    report = reports.self_service(db_session, PERIOD)
    assert report.sessions == report.searches == 0
    assert report.click_through is None and report.deflection_rate is None
    assert report.failing_articles == [] and report.top_zero_queries == []


@pytest.mark.parametrize(
    ("first", "last", "expected"),
    [
        (None, None, (dt.date(2026, 10, 24), dt.date(2026, 11, 22))),
        ("2026-11-01", "2026-11-30", (dt.date(2026, 11, 1), dt.date(2026, 11, 30))),
        ("2026-11-05", None, (dt.date(2026, 11, 5), dt.date(2026, 11, 22))),
    ],
)
def test_period_defaults_to_the_last_30_days(first, last, expected):
    period = reports.parse_period(first, last, today=dt.date(2026, 11, 22))
    assert (period.first, period.last) == expected


@pytest.mark.parametrize(
    ("first", "last"),
    [
        ("2026-11-31", None),
        ("yesterday", None),
        ("2026-W48-1", None),
        ("20261101", None),
        ("2026-11-01' OR '1'='1", None),
        ("2026-11-20", "2026-11-01"),
        ("2020-01-01", "2026-11-01"),
    ],
)
def test_period_rejects_anything_but_plain_dates(first, last):
    with pytest.raises(Invalid):
        reports.parse_period(first, last, today=dt.date(2026, 11, 22))


# --- the page ------------------------------------------------------------------------------


def test_the_page_is_for_agents_only(client):
    response = client.get("/agent/reports/self-service")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_the_page_shows_numbers_and_server_drawn_charts(client, agent, login, story):
    login(agent)
    response = client.get("/agent/reports/self-service?from=2026-11-01&to=2026-11-30")
    assert response.status_code == 200
    page = response.text
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))
    assert "Sessions 6" in text
    assert "Searches 5" in text
    assert "Searches with no result 3" in text
    assert "Suggestion click-through 67%" in text
    assert "Deflection rate 40%" in text
    assert "chargeback 2" in text
    assert "Update your payment card 3 2 67%" in text
    # Charts: inline SVG, no scripts, nothing from elsewhere.
    assert page.count("<svg") >= 2
    assert "<script" not in page.split("<main", 1)[1]
    assert "cdn" not in page.lower()
    assert 'href="/agent/reports/self-service"' in page  # the nav link
    assert 'aria-current="page">Reports' in page


def test_bad_periods_get_a_clear_400(client, agent, login):
    login(agent)
    for query in (
        "from=2026-13-01",
        "from=2026-11-20&to=2026-11-01",
        "from=1900-01-01&to=2026-01-01",
        "to=%27%20OR%201=1",
    ):
        response = client.get(f"/agent/reports/self-service?{query}")
        assert response.status_code == 400, query
    assert "Use dates like 2026-11-01." in client.get("/agent/reports/self-service?from=soon").text


def test_default_period_renders(client, agent, login):
    login(agent)
    response = client.get("/agent/reports/self-service?sort=customer__password_hash")
    assert response.status_code == 200
    assert "Self-service report" in response.text
    assert "30 days" in response.text


@pytest.mark.only_database("sqlite")
def test_report_reads_the_event_index(db_session, story):
    """The period filter goes through the (kind, created_at) index, not a table scan."""
    from web.extensions import db

    stmt = sa.select(sa.func.count()).where(reports._in_period(PERIOD, K.SEARCH))
    compiled = stmt.compile(db.engine, compile_kwargs={"render_postcompile": True})
    params = tuple(compiled.params[name] for name in compiled.positiontup)
    plan = db_session.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", params).all()
    assert any("ix_journey_events_kind_created_at" in str(row) for row in plan), plan
