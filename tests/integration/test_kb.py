"""The knowledge base: articles, revisions, publishing and the search index, import/export."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
import sqlalchemy as sa

from ticketing import kb_search
from ticketing.errors import Invalid, NotFound
from ticketing.models import Article, ArticleRevision, ArticleStatus, Category
from ticketing.services import kb

NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


def _found(db_session, text: str) -> list[int]:
    return [hit.article_id for hit in kb_search.search(db_session, text)]


def test_every_save_keeps_a_revision_and_drafts_stay_out_of_search(db_session, agent):
    billing = kb.create_category(db_session, name="Billing")
    article = kb.create_article(
        db_session,
        title="Update your payment card",
        body="Open **Billing** and choose *Replace card*.",
        category=billing,
        actor=agent,
        now=NOW,
    )
    db_session.commit()
    assert article.status is ArticleStatus.DRAFT
    assert article.slug == "update-your-payment-card"
    assert article.external_id.startswith("kb-")
    assert _found(db_session, "payment card") == []

    kb.update_article(
        db_session,
        article,
        title="Update your payment card",
        body="Open **Billing**, then *Replace card*, and save.",
        category=billing,
        actor=agent,
        now=NOW + dt.timedelta(minutes=5),
    )
    # Saving without a change makes no empty revision.
    kb.update_article(
        db_session,
        article,
        title="Update your payment card",
        body="Open **Billing**, then *Replace card*, and save.",
        category=billing,
        actor=agent,
        now=NOW + dt.timedelta(minutes=6),
    )
    db_session.commit()
    history = kb.revisions(db_session, article)
    assert [r.number for r in history] == [2, 1]
    assert history[0].body.endswith("and save.") and history[0].author.email == agent.email
    assert history[1].body == "Open **Billing** and choose *Replace card*."

    kb.publish_article(db_session, article, now=NOW + dt.timedelta(hours=1))
    db_session.commit()
    assert _found(db_session, "payment card") == [article.id]
    assert kb.get_published_article(db_session, article.id).published_at is not None

    # Editing a published article re-indexes it.
    kb.update_article(
        db_session,
        article,
        title="Replace an expired credit card",
        body="Choose Billing, then Replace card.",
        category=billing,
        actor=agent,
        now=NOW + dt.timedelta(hours=2),
    )
    db_session.commit()
    assert _found(db_session, "expired credit") == [article.id]
    assert article.slug == "replace-an-expired-credit-card"

    kb.unpublish_article(db_session, article, now=NOW + dt.timedelta(hours=3))
    db_session.commit()
    assert _found(db_session, "expired credit") == []
    with pytest.raises(NotFound):
        kb.get_published_article(db_session, article.id)

    kb.publish_article(db_session, article, now=NOW + dt.timedelta(hours=4))
    kb.delete_article(db_session, article)
    db_session.commit()
    assert _found(db_session, "expired credit") == []
    assert db_session.scalar(sa.select(sa.func.count()).select_from(ArticleRevision)) == 0


def test_article_input_is_checked(db_session, agent):
    with pytest.raises(Invalid):
        kb.create_article(db_session, title="  ", body="x", actor=agent, now=NOW)
    with pytest.raises(Invalid):
        kb.create_article(db_session, title="NUL", body="a\x00b", actor=agent, now=NOW)
    kb.create_category(db_session, name="Billing")
    with pytest.raises(Invalid):
        kb.create_category(db_session, name="billing")


def test_category_rename_reindexes_and_delete_keeps_articles(db_session, agent):
    category = kb.create_category(db_session, name="Billing")
    article = kb.create_article(
        db_session,
        title="Invoices",
        body="Download invoices as PDF.",
        category=category,
        actor=agent,
        now=NOW,
        publish=True,
    )
    kb.update_category(db_session, category, name="Payments", description="", position=1)
    db_session.commit()
    assert category.slug == "payments"
    kb.delete_category(db_session, category)
    db_session.commit()
    db_session.refresh(article)
    assert article.category is None and article.is_published
    assert _found(db_session, "invoices") == [article.id]


def test_votes_and_views_are_counted(db_session, agent):
    article = kb.create_article(
        db_session, title="Reset password", body="Use the link.", actor=agent, now=NOW, publish=True
    )
    kb.record_vote(db_session, article, helpful=True)
    kb.record_vote(db_session, article, helpful=True)
    kb.record_vote(db_session, article, helpful=False)
    kb.record_view(db_session, article.id)
    db_session.commit()
    db_session.refresh(article)
    assert (article.helpful_yes, article.helpful_no, article.view_count) == (2, 1, 1)


# -- import / export ------------------------------------------------------------------------------


def _lines(*records) -> list[str]:
    return [r if isinstance(r, str) else json.dumps(r) for r in records]


def test_import_upserts_by_id_reports_bad_lines_and_keeps_good_ones(db_session):
    first = kb.import_articles(
        db_session,
        _lines(
            {"id": "tv-001", "title": "Pair the remote", "body": "Hold **Back** and Play."},
            {"id": "tv-002", "title": "Use Smart Hub", "body": "Press Home.", "category": "TV"},
            "",
            "{not json",
            {"id": "tv-003", "body": "no title"},
            {"id": "", "title": "no id", "body": ""},
            ["a list"],
            {"id": "tv-001", "title": "Twice", "body": "again"},
            {"id": "tv-004", "title": "Draft one", "body": "x", "status": "draft"},
        ),
        now=NOW,
    )
    db_session.commit()
    assert (first.created, first.updated, first.unchanged) == (3, 0, 0)
    assert [(p.line, p.message.split()[0]) for p in first.errors] == [
        (4, "not"),
        (5, '"title"'),
        (6, '"id"'),
        (7, "each"),
        (8, "id"),
    ]
    articles = {a.external_id: a for a in db_session.scalars(sa.select(Article))}
    assert set(articles) == {"tv-001", "tv-002", "tv-004"}
    assert articles["tv-002"].category.name == "TV"
    assert articles["tv-001"].is_published and not articles["tv-004"].is_published
    assert _found(db_session, "remote") == [articles["tv-001"].id]
    assert _found(db_session, "draft") == []

    second = kb.import_articles(
        db_session,
        _lines(
            {"id": "tv-001", "title": "Pair the remote", "body": "Hold **Back** and Play."},
            {
                "id": "tv-002",
                "title": "Use Smart Hub",
                "body": "Press Home twice.",
                "category": "tv",
            },
            {"id": "tv-005", "title": "Picture mode", "body": "Choose Movie."},
        ),
        now=NOW + dt.timedelta(days=1),
    )
    db_session.commit()
    assert (second.created, second.updated, second.unchanged, second.errors) == (1, 1, 1, [])
    hub = db_session.scalar(sa.select(Article).where(Article.external_id == "tv-002"))
    assert [r.number for r in kb.revisions(db_session, hub)] == [2, 1]
    assert _found(db_session, "twice") == [hub.id]
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Category)) == 1


def test_export_round_trips_through_import(db_session, agent):
    kb.import_articles(
        db_session,
        _lines(
            {"id": "a-1", "title": "Ünïcode ✓", "body": "Line one\n\n- item", "category": "Misc"},
            {"id": "a-2", "title": "No category", "body": ""},
            {"id": "a-3", "title": "Draft", "body": "draft body", "status": "draft"},
        ),
        now=NOW,
    )
    db_session.commit()
    exported = list(kb.export_articles(db_session))
    assert exported[0] == {
        "id": "a-1",
        "title": "Ünïcode ✓",
        "body": "Line one\n\n- item",
        "category": "Misc",
        "status": "published",
    }
    assert [r["status"] for r in exported] == ["published", "published", "draft"]
    again = kb.import_articles(db_session, _lines(*exported), now=NOW)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)


def test_import_of_thousands_of_articles_takes_seconds(db_session):
    records = [
        {
            "id": f"bulk-{n:05d}",
            "title": f"Article number {n} about topic {n % 50}",
            "body": f"Body text {n} with **Markdown** and several words about topic {n % 50}. " * 5,
            "category": f"Category {n % 10}",
        }
        for n in range(3000)
    ]
    started = time.monotonic()
    report = kb.import_articles(db_session, _lines(*records), now=NOW)
    db_session.commit()
    elapsed = time.monotonic() - started
    assert report.created == 3000 and not report.errors
    # A few seconds on an idle machine; the bound leaves room for a loaded CI runner.
    assert elapsed < 60, f"import of 3000 articles took {elapsed:.1f} s"
    assert db_session.scalar(sa.select(sa.func.count()).select_from(ArticleRevision)) == 3000
    assert len(_found(db_session, "article number 1234")) >= 1


# -- CLI ------------------------------------------------------------------------------------------


def test_cli_import_and_export(runner, db_session, tmp_path):
    source = tmp_path / "articles.jsonl"
    source.write_text(
        "\n".join(
            _lines(
                {
                    "id": "faq-1",
                    "title": "Refunds",
                    "body": "Refunds take 5 days.",
                    "category": "Billing",
                },
                {"id": "faq-2", "title": "Shipping", "body": "We ship worldwide."},
            )
        )
        + "\n",
        encoding="utf-8",
    )
    result = runner.invoke(args=["kb", "import", str(source)])
    assert result.exit_code == 0, result.output
    assert "2 created, 0 updated, 0 unchanged, 0 errors" in result.stdout

    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"id": "faq-3", "title": "Returns", "body": "30 days."}) + "\n{oops\n",
        encoding="utf-8",
    )
    result = runner.invoke(args=["kb", "import", str(bad)])
    assert result.exit_code == 1
    assert "line 2: not valid JSON" in result.stderr
    assert "1 created" in result.stdout
    db_session.rollback()
    assert db_session.scalar(sa.select(Article).where(Article.external_id == "faq-3"))

    result = runner.invoke(args=["kb", "export"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in records] == ["faq-1", "faq-2", "faq-3"]
    assert records[0]["category"] == "Billing" and records[1]["category"] is None

    target = tmp_path / "out.jsonl"
    result = runner.invoke(args=["kb", "export", str(target)])
    assert result.exit_code == 0
    assert target.read_text(encoding="utf-8").count("\n") == 3
    assert "Exported 3 articles" in result.stderr
