"""Article search (ticketing.kb_search): the ranking interface on SQLite FTS5 and PostgreSQL.

Runs on both engines through the `app` fixture: the same articles, queries and expectations.
"""

from __future__ import annotations

import itertools

import pytest
import sqlalchemy as sa

from ticketing import kb_search

ARTICLES = {
    1: (
        "Reset your password",
        "If you forgot your password, open the sign-in page and choose 'Forgot password'. "
        "We email you a link that is valid for one hour.",
        "Account",
    ),
    2: (
        "Update your payment card",
        "When a card is declined, open Billing, choose Payment methods and add a new card. "
        "Expired cards are the most common reason for a declined payment.",
        "Billing",
    ),
    3: (
        "Export your invoices",
        "Invoices can be downloaded as PDF from Billing. Accountants can be invited "
        "to read invoices without seeing the rest of the account.",
        "Billing",
    ),
    4: (
        "Connecting a printer",
        "Printers connect over Wi-Fi or USB. Choose Settings, then Devices, then Add printer. "
        "Printing a test page checks the connection.",
        "Devices",
    ),
    5: (
        "Two-factor authentication",
        "Protect the account with a second step at sign-in: an authenticator app code. "
        "Recovery codes let you in when the phone is lost.",
        "Account",
    ),
}

# Search-syntax attacks for FTS5 and tsquery, and a sample of the Big List of Naughty Strings.
HOSTILE = [
    "",
    " ",
    "\t\n",
    '"',
    '"unclosed password',
    "'",
    "*",
    "pass*",
    "NEAR(",
    "NEAR(card declined, 2)",
    "card AND NOT declined",
    "card OR",
    "OR AND NOT NEAR",
    "title:password",
    "{title body}: card",
    "^card",
    "-card",
    "(",
    ")",
    "!",
    "&",
    "|",
    "<->",
    "card:*",
    "a & b | !c <-> d",
    "\\",
    "\x00",
    "card\x00declined",
    "' OR '1'='1",
    "'; DROP TABLE kb_search; --",
    "<script>alert(1)</script>",
    "{{7*7}}",
    "%s%s%s%n",
    "ÅÍÎÏ˝ÓÔÒÚÆ☃",
    "田中さんにあげて下さい",
    "사회과학원 어학연구소",
    "ثم نفس سقطت وبالتحديد",
    "Ṱ̺̺̕o͞ ̷i̲̬͇̪͙n̝̗͕v̟̜̘̦͟o̶̙̰̠kè͚̮̺̪̹̱̤",
    "😍 👩🏽 👨‍🦰",
    "\u202etest\u202e",
    "\u200b",
    "\ufeff",
    "\ud800",
    "card declined " * 500,
    "x" * 100_000,
    "word " * 20_000,
]


@pytest.fixture
def articles(db_session):
    for article_id, (title, body, category) in ARTICLES.items():
        kb_search.index_article(
            db_session, article_id=article_id, title=title, body=body, category=category
        )
    db_session.commit()
    return ARTICLES


def ids(hits):
    return [hit.article_id for hit in hits]


def test_a_clear_question_finds_its_article_first(db_session, articles):
    hits = kb_search.suggest(db_session, "My card was declined, how do I update it?")
    assert ids(hits)[0] == 2
    assert hits[0].score > 0
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))

    assert ids(kb_search.suggest(db_session, "how can i reset my password"))[0] == 1
    assert ids(kb_search.search(db_session, "invoices"))[0] == 3


def test_a_ticket_subject_and_description_find_the_article(db_session, articles):
    text = (
        "Cannot print\n\nHello, since Monday the office printer does not print anything. "
        "I tried switching it off and on again. Could you help me please? Thanks, Ann"
    )
    assert ids(kb_search.suggest(db_session, text))[0] == 4


def test_a_title_match_outranks_a_body_match(db_session):
    kb_search.index_article(
        db_session,
        article_id=10,
        title="Working with invoices",
        body="Everything about downloading and sharing them with your accountant.",
    )
    kb_search.index_article(
        db_session,
        article_id=11,
        title="Your plan",
        body="Plans renew monthly; the invoices list shows each renewal.",
    )
    db_session.commit()
    assert ids(kb_search.suggest(db_session, "invoices")) == [10, 11]


def test_words_match_their_stems(db_session, articles):
    # "printing" ~ "Printers", "passwords" ~ "password", "authenticating" ~ "authentication"
    assert ids(kb_search.suggest(db_session, "printing"))[0] == 4
    assert ids(kb_search.suggest(db_session, "passwords"))[0] == 1
    assert 5 in ids(kb_search.suggest(db_session, "authenticating"))


def test_diacritics_and_case_do_not_matter(db_session):
    kb_search.index_article(db_session, article_id=20, title="Café menu", body="Crème brûlée.")
    db_session.commit()
    assert ids(kb_search.suggest(db_session, "CAFE creme brulee")) == [20]


def test_questions_made_only_of_boilerplate_find_nothing(db_session, articles):
    assert kb_search.suggest(db_session, "How do I ... is it possible to?") == []
    assert kb_search.suggest(db_session, "zzyzx qwertyuiop") == []


def test_limit_is_respected(db_session, articles):
    assert len(kb_search.search(db_session, "account card invoices password printer", limit=2)) == 2
    assert kb_search.suggest(db_session, "password", limit=0) == []


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_input_never_raises(db_session, articles, text):
    for hits in (kb_search.suggest(db_session, text), kb_search.search(db_session, text)):
        assert isinstance(hits, list)
        assert all(isinstance(hit, kb_search.ArticleHit) for hit in hits)


def test_hostile_articles_are_indexed_and_found(db_session):
    kb_search.index_article(
        db_session,
        article_id=30,
        title='Quotes " and NEAR( stars * \x00 \ud800',
        body="card\x00declined 'OR' AND NOT <b>bold</b>",
        category="\x00",
    )
    db_session.commit()
    hits = kb_search.suggest(db_session, "declined stars")
    assert ids(hits) == [30]
    assert "\x00" not in hits[0].snippet


def test_reindexing_replaces_and_remove_takes_out(db_session, articles):
    kb_search.index_article(
        db_session, article_id=1, title="Change your email address", body="Open Profile."
    )
    db_session.commit()
    assert 1 not in ids(kb_search.suggest(db_session, "forgot password"))
    assert ids(kb_search.suggest(db_session, "change email address")) == [1]

    kb_search.remove_article(db_session, article_id=1)
    kb_search.remove_article(db_session, article_id=999)  # not indexed: nothing happens
    db_session.commit()
    assert kb_search.suggest(db_session, "change email address") == []
    count = db_session.execute(sa.text("SELECT count(*) FROM kb_search")).scalar_one()
    assert count == len(ARTICLES) - 1


def test_snippets_escape_html_and_mark_the_matched_words(db_session):
    kb_search.index_article(
        db_session,
        article_id=40,
        title="Refunds <b>fast</b> & easy",
        body="Intro text. " * 40
        + "To get a refund, write <script>alert('x')</script> to billing & we refund it. "
        + "Closing words. " * 40,
    )
    db_session.commit()
    [hit] = kb_search.suggest(db_session, "refunds")
    assert str(hit.title_html) == "<mark>Refunds</mark> &lt;b&gt;fast&lt;/b&gt; &amp; easy"
    assert "<script>" not in hit.snippet_html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in hit.snippet_html
    assert "<mark>refund</mark>" in hit.snippet_html
    assert "To get a refund" in hit.snippet
    assert "<mark>" not in hit.snippet
    assert hit.snippet.startswith("… ") and hit.snippet.endswith(" …")
    assert len(hit.snippet.split()) < 45


@pytest.mark.only_database("postgresql")
def test_planner_statistics_give_the_same_ranking(db_session, articles):
    # Once ANALYZE has run, common words' document frequencies come from pg_stats.
    text = "declined card: billing account invoices"
    before = kb_search.suggest(db_session, text)
    db_session.execute(sa.text("ANALYZE kb_search"))
    db_session.commit()
    kb_search._forget()
    after = kb_search.suggest(db_session, text)
    assert ids(after) == ids(before)
    assert [round(h.score, 2) for h in after] == [round(h.score, 2) for h in before]
