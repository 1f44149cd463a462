"""The public help center, the suggest endpoint, and the agents' KB editor, through HTTP."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa

from tests.conftest import csrf_token
from ticketing.models import Article, ArticleRevision
from ticketing.services import kb
from web.limits import limiter

NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)
XSS = '"><img src=x onerror=window.__pwned=1>{{7*7}}'


@pytest.fixture
def articles(db_session, agent):
    billing = kb.create_category(db_session, name="Billing", description="Cards and invoices")
    card = kb.create_article(
        db_session,
        title="Update your payment card",
        body="When your **card is declined**, open *Billing* and choose Replace card.\n\n"
        "[Our status page](https://status.example.com) · [bad](javascript:alert(1))\n\n"
        "<script>window.__pwned=1</script>",
        category=billing,
        actor=agent,
        now=NOW,
        publish=True,
    )
    draft = kb.create_article(
        db_session,
        title="Secret pricing draft",
        body="Unannounced pricing.",
        category=billing,
        actor=agent,
        now=NOW,
    )
    db_session.commit()
    return {"card": card, "draft": draft, "billing": billing}


def _text(response) -> str:
    return response.get_data(as_text=True)


# -- public pages ---------------------------------------------------------------------------------


def test_home_shows_search_categories_and_popular_articles(client, articles):
    response = client.get("/help")
    assert response.status_code == 200
    html = _text(response)
    assert html.index('role="search"') < html.index("Browse by topic") < html.index("Popular")
    assert "Billing" in html and "Update your payment card" in html
    assert "Secret pricing draft" not in html

    page = _text(client.get("/help/categories/billing"))
    assert "Update your payment card" in page and "Secret pricing draft" not in page
    assert client.get("/help/categories/nope").status_code == 404


def test_article_page_renders_markdown_safely_and_redirects_to_its_canonical_url(client, articles):
    card = articles["card"]
    response = client.get(f"/help/articles/{card.id}")
    assert response.status_code == 301
    assert response.headers["Location"].endswith(
        f"/help/articles/{card.id}-update-your-payment-card"
    )
    response = client.get(f"/help/articles/{card.id}-old-slug?q=card")
    assert response.status_code == 301 and response.headers["Location"].endswith("?q=card")

    html = _text(client.get(f"/help/articles/{card.id}-update-your-payment-card"))
    assert "<strong>card is declined</strong>" in html
    assert (
        '<a href="https://status.example.com" rel="noopener noreferrer">Our status page</a>' in html
    )
    assert "javascript:" not in html.split('class="article-body"')[1].split("</div>")[0].replace(
        "[bad](javascript:alert(1))", ""
    )
    assert "<script>window.__pwned" not in html
    assert "&lt;script&gt;" in html
    assert "Was this helpful?" in html and "Still need help?" in html
    assert 'href="/contact?q=Update+your+payment+card"' in html
    assert "Updated" in html
    # Anonymous: no sign-in needed, no agent navigation.
    assert "Sign out" not in html and "Knowledge base" not in html


def test_draft_and_unknown_articles_are_404(client, articles):
    draft = articles["draft"]
    assert client.get(f"/help/articles/{draft.id}-secret-pricing-draft").status_code == 404
    assert client.get(f"/help/articles/{draft.id}").status_code == 404
    missing = client.get("/help/articles/999999-x")
    assert missing.status_code == 404 and "Back to the help center" in _text(missing)
    assert client.get("/help/articles/99999999999999999999-x").status_code == 404


def test_views_are_counted(client, db_session, articles):
    card = articles["card"]
    for _ in range(3):
        assert client.get(f"/help/articles/{card.id}-{card.slug}").status_code == 200
    db_session.rollback()
    assert db_session.get(Article, card.id).view_count == 3


def test_vote_needs_csrf_and_counts_once_per_visitor(client, db_session, articles):
    card = articles["card"]
    path = f"/help/articles/{card.id}-{card.slug}"
    vote = f"/help/articles/{card.id}/vote"
    assert client.post(vote, data={"helpful": "yes"}).status_code == 400
    assert client.post(vote, data={"helpful": "yes", "csrf_token": "forged"}).status_code == 400
    assert client.get(vote).status_code == 405

    token = csrf_token(client, path)
    response = client.post(vote, data={"helpful": "no", "csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"].endswith("#feedback")
    assert "improve this article" in _text(client.get(path))
    # A second vote from the same browser is not counted again.
    client.post(vote, data={"helpful": "no", "csrf_token": token})
    assert client.post(vote, data={"helpful": "maybe", "csrf_token": token}).status_code == 400
    db_session.rollback()
    found = db_session.get(Article, card.id)
    assert (found.helpful_yes, found.helpful_no) == (0, 1)
    # Votes on drafts are 404 like their pages.
    draft = articles["draft"]
    assert (
        client.post(
            f"/help/articles/{draft.id}/vote", data={"helpful": "yes", "csrf_token": token}
        ).status_code
        == 404
    )


def test_search_highlights_matches_and_offers_contact_when_nothing_matches(client, articles):
    html = _text(client.get("/help/search?q=declined+card"))
    assert "1 result for" in html
    assert re.search(r"Update your payment <mark>card</mark>", html), html
    assert "<mark>declined</mark>" in html
    assert "Secret pricing" not in html

    empty = _text(client.get("/help/search?q=zebra+unicorn"))
    assert "No articles match" in empty
    assert 'href="/contact?q=zebra+unicorn"' in empty

    hostile = client.get("/help/search", query_string={"q": XSS})
    assert hostile.status_code == 200
    assert "<img src=x" not in _text(hostile) and "{{7*7}}" in _text(hostile)
    assert client.get("/help/search?q=" + "x" * 5000).status_code == 200


def test_kb_title_is_escaped_everywhere(client, db_session, agent):
    article = kb.create_article(db_session, title=XSS, body=XSS, actor=agent, now=NOW, publish=True)
    db_session.commit()
    pages = [
        client.get("/help"),
        client.get(f"/help/articles/{article.id}-{article.slug}"),
        client.get("/help/search", query_string={"q": "onerror pwned"}),
    ]
    for response in pages:
        assert response.status_code == 200
        assert "<img src=x" not in _text(response)
    assert "{{7*7}}" in _text(pages[1])


# -- suggest endpoint -----------------------------------------------------------------------------


def test_suggest_endpoint_shape_needs_no_token(client, articles):
    response = client.get("/api/v1/articles/suggest?q=my+card+was+declined&limit=5")
    assert response.status_code == 200, _text(response)
    body = response.get_json()
    [first] = [a for a in body["articles"] if a["title"] == "Update your payment card"]
    card = articles["card"]
    assert first["id"] == card.external_id
    assert first["url"] == f"/help/articles/{card.id}-update-your-payment-card"
    assert isinstance(first["score"], float) and first["score"] > 0
    # Plain text (the page that shows it escapes it): no Markdown syntax, no markup added.
    assert first["snippet"].startswith("When your card is declined")
    assert "**" not in first["snippet"] and "<mark>" not in first["snippet"]
    assert set(first) == {"id", "title", "url", "snippet", "score"}
    assert all(a["title"] != "Secret pricing draft" for a in body["articles"])
    assert response.headers["Cache-Control"] == "no-store"


def test_suggest_clamps_limit_caps_query_and_is_always_json(client, db_session, agent):
    for n in range(12):
        kb.create_article(
            db_session,
            title=f"Router setup {n}",
            body="Configure the router and the wifi.",
            actor=agent,
            now=NOW,
            publish=True,
        )
    db_session.commit()
    assert client.get("/api/v1/articles/suggest").get_json() == {"articles": []}
    assert client.get("/api/v1/articles/suggest?q=%20%20").get_json() == {"articles": []}
    many = client.get("/api/v1/articles/suggest?q=router&limit=50").get_json()["articles"]
    assert len(many) == 10
    one = client.get("/api/v1/articles/suggest?q=router&limit=0").get_json()["articles"]
    assert len(one) == 1
    default = client.get("/api/v1/articles/suggest?q=router").get_json()["articles"]
    assert len(default) == 5
    bad = client.get("/api/v1/articles/suggest?q=router&limit=lots")
    assert bad.status_code == 400 and bad.get_json()["error"]["status"] == 400
    long = client.get("/api/v1/articles/suggest", query_string={"q": "router " * 2000})
    assert long.status_code == 200 and long.get_json()["articles"]
    nul = client.get("/api/v1/articles/suggest", query_string={"q": "router\x00 ' OR 1=1 --"})
    assert nul.status_code == 200


def test_suggest_is_rate_limited_per_address_with_a_json_429(app, client, articles):
    limiter.reset()
    app.config["HANDOFF_SUGGEST_RATE_LIMIT"] = "3/minute"
    try:
        for _ in range(3):
            assert client.get("/api/v1/articles/suggest?q=card").status_code == 200
        refused = client.get("/api/v1/articles/suggest?q=card")
        assert refused.status_code == 429
        assert refused.get_json()["error"]["status"] == 429
        assert refused.headers.get("Retry-After")
        # Another address has its own budget.
        other = client.get(
            "/api/v1/articles/suggest?q=card", environ_base={"REMOTE_ADDR": "10.0.0.2"}
        )
        assert other.status_code == 200
    finally:
        limiter.reset()


def test_openapi_lists_the_public_suggest_route(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    operation = doc["paths"]["/articles/suggest"]["get"]
    assert operation["security"] == []
    assert set(doc["components"]["schemas"]["ArticleSuggestions"]["properties"]) == {"articles"}


# -- agent editor ---------------------------------------------------------------------------------


def test_editor_is_for_signed_in_agents_only(client, articles):
    card = articles["card"]
    for path in ("/agent/kb", "/agent/kb/new", f"/agent/kb/{card.id}", "/agent/kb/categories"):
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"], path
    response = client.post(f"/agent/kb/{card.id}/unpublish")
    assert response.status_code in (302, 400)


def test_agent_writes_previews_publishes_and_unpublishes(client, login, agent, db_session):
    login(agent)
    token = csrf_token(client, "/agent/kb/new")
    # Preview saves nothing.
    preview = client.post(
        "/agent/kb/new",
        data={
            "csrf_token": token,
            "title": "Reset your password",
            "category": "",
            "body": "Click **Forgot password**.",
            "action": "preview",
        },
    )
    assert preview.status_code == 200
    assert "<strong>Forgot password</strong>" in _text(preview)
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Article)) == 0

    live = client.post(
        "/agent/kb/preview",
        data={"csrf_token": token, "title": "T", "body": "# Head\n\n<b>x</b> [a](javascript:1)"},
    )
    assert live.status_code == 200
    assert "<h2>Head</h2>" in _text(live) and "&lt;b&gt;x&lt;/b&gt;" in _text(live)
    assert "<!doctype" not in _text(live).lower()
    assert client.post("/agent/kb/preview", data={"body": "x"}).status_code == 400

    created = client.post(
        "/agent/kb/new",
        data={
            "csrf_token": token,
            "title": "Reset your password",
            "category": "",
            "body": "Click **Forgot password**.",
            "action": "save",
        },
    )
    assert created.status_code == 302
    db_session.rollback()
    article = db_session.scalar(sa.select(Article))
    assert not article.is_published
    assert client.get(f"/help/articles/{article.id}-{article.slug}").status_code == 404

    edit = f"/agent/kb/{article.id}"
    response = client.post(
        edit,
        data={
            "csrf_token": token,
            "title": "Reset your password",
            "category": "",
            "body": "Click **Forgot password** and check your email.",
            "action": "publish",
        },
    )
    assert response.status_code == 302
    assert client.get(f"/help/articles/{article.id}-{article.slug}").status_code == 200
    found = client.get("/api/v1/articles/suggest?q=forgot+password").get_json()["articles"]
    assert [a["title"] for a in found] == ["Reset your password"]

    history = _text(client.get(f"/agent/kb/{article.id}/revisions"))
    assert "#2" in history and "#1" in history and "Dana" in history
    assert "Forgot password" in _text(client.get(f"/agent/kb/{article.id}/revisions/1"))
    assert client.get(f"/agent/kb/{article.id}/revisions/9").status_code == 404

    assert client.post(f"{edit}/unpublish").status_code == 400  # no CSRF token
    assert client.post(f"{edit}/unpublish", data={"csrf_token": token}).status_code == 302
    assert client.get(f"/help/articles/{article.id}-{article.slug}").status_code == 404
    assert client.get("/api/v1/articles/suggest?q=forgot+password").get_json() == {"articles": []}

    listing = _text(client.get("/agent/kb?status=draft"))
    assert "Reset your password" in listing and "Draft" in listing
    assert "Reset your password" in _text(client.get("/agent/kb?q=PASSWORD"))
    for pattern in ("%", "_", "zzz", "' OR 1=1 --"):
        found = _text(client.get("/agent/kb", query_string={"q": pattern}))
        assert "Reset your password" not in found, pattern
    assert client.get("/agent/kb?status=bogus").status_code == 200

    assert client.post(f"{edit}/delete", data={"csrf_token": token}).status_code == 302
    db_session.rollback()
    assert db_session.scalar(sa.select(sa.func.count()).select_from(ArticleRevision)) == 0


def test_agent_manages_categories(client, login, agent, db_session):
    login(agent)
    token = csrf_token(client, "/agent/kb/categories")
    response = client.post(
        "/agent/kb/categories", data={"csrf_token": token, "name": "Shipping", "description": ""}
    )
    assert response.status_code == 302
    duplicate = client.post(
        "/agent/kb/categories", data={"csrf_token": token, "name": "shipping", "description": ""}
    )
    assert duplicate.status_code == 400 and "exists already" in _text(duplicate)
    db_session.rollback()
    category = kb.get_category_by_slug(db_session, "shipping")
    response = client.post(
        f"/agent/kb/categories/{category.id}",
        data={
            "csrf_token": token,
            f"c{category.id}-name": "Delivery",
            f"c{category.id}-description": "Where is my parcel?",
            f"c{category.id}-position": "2",
        },
    )
    assert response.status_code == 302
    db_session.rollback()
    assert kb.get_category_by_slug(db_session, "delivery").description == "Where is my parcel?"
    response = client.post(f"/agent/kb/categories/{category.id}/delete", data={"csrf_token": token})
    assert response.status_code == 302
    assert client.get("/help/categories/delivery").status_code == 404


def test_a_visit_is_recorded_on_the_visitors_journey(client, db_session, articles):
    from ticketing.models.journeys import JourneyEvent, JourneyEventKind, SelfServiceSession

    card = articles["card"]
    client.get("/help/search?q=card+declined")
    client.get("/api/v1/articles/suggest?q=my+card+was+declined")
    path = f"/help/articles/{card.id}-{card.slug}"
    token = csrf_token(client, path)
    client.post(f"/help/articles/{card.id}/vote", data={"helpful": "no", "csrf_token": token})

    db_session.rollback()
    [journey] = db_session.scalars(sa.select(SelfServiceSession)).all()
    events = db_session.scalars(
        sa.select(JourneyEvent)
        .where(JourneyEvent.session_id == journey.id)
        .order_by(JourneyEvent.id)
    ).all()
    kinds = [e.kind for e in events]
    assert kinds[:2] == [JourneyEventKind.SEARCH, JourneyEventKind.SUGGESTIONS_SHOWN]
    assert events[0].query == "card declined" and events[0].result_count == 1
    assert events[1].article_ids == [card.id]
    assert JourneyEventKind.ARTICLE_OPENED in kinds
    [vote] = [e for e in events if e.kind is JourneyEventKind.VOTE]
    assert vote.article_id == card.id and vote.helpful is False


def test_naughty_strings_in_search_suggest_and_the_editor(client, login, agent, db_session):
    from tests.unit.test_kb_markdown import NAUGHTY

    kb.create_article(
        db_session, title="Router", body="Restart it.", actor=agent, now=NOW, publish=True
    )
    db_session.commit()
    limiter.reset()
    login(agent)
    token = csrf_token(client, "/agent/kb/new")
    for text in NAUGHTY[:24]:
        assert client.get("/help/search", query_string={"q": text}).status_code == 200, text
        suggest = client.get("/api/v1/articles/suggest", query_string={"q": text})
        assert suggest.status_code == 200 and "articles" in suggest.get_json(), text
        created = client.post(
            "/agent/kb/new",
            data={"csrf_token": token, "title": f"T {text[:200]}", "body": text, "action": "save"},
        )
        # Saved (302), or refused in words (400: control characters) — never a 500.
        assert created.status_code in (302, 400), text
    db_session.rollback()
    titles = set(db_session.scalars(sa.select(Article.title)))
    assert "T <script>alert(123)</script>" in titles and "T {{7*7}}" in titles
    limiter.reset()
