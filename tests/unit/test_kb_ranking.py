"""The article ranker's pure parts: query analysis, stemming, snippets and highlighting."""

from __future__ import annotations

from markupsafe import Markup

from ticketing import kb_search
from ticketing.kb_search_text import stem_text, synonyms


def test_questions_lose_their_boilerplate_and_keep_their_subject():
    assert kb_search.query_terms("How do I reset my password?") == ["reset", "password"]
    assert kb_search.query_terms("Is it possible to export invoices?") == ["export", "invoic"]
    assert kb_search.query_terms("Hi, I'd like to know: can anyone help please? Thanks") == []


def test_query_words_are_stemmed_like_the_index():
    # The stems come from SQLite FTS5's own porter tokenizer, on either database.
    assert kb_search.query_terms("Printing printers connected") == ["print", "printer", "connect"]
    assert stem_text("Connecting, connected; CONNECTS") == "connect connect connect"
    assert stem_text("Crème brûlée") == "creme brule"


def test_repeated_words_are_kept_and_length_is_bounded():
    assert kb_search.query_terms("card card declined") == ["card", "card", "declin"]
    assert len(kb_search.query_terms("word " * 10_000)) <= 4 * kb_search.MAX_QUERY_TERMS
    assert kb_search.query_terms(None) == []  # type: ignore[arg-type]


def test_synonyms_are_symmetric_generic_and_stemmed():
    assert "remov" in synonyms("delet")
    assert "delet" in synonyms("remov")
    assert "color" in synonyms("colour")
    assert synonyms("invoic") == ("bill",)
    assert synonyms("zebra") == ()


def test_highlight_escapes_everything_and_marks_matched_words():
    html = kb_search._highlight("<b>Reset</b> passwords & more", {"password"})
    assert isinstance(html, Markup)
    assert str(html) == "&lt;b&gt;Reset&lt;/b&gt; <mark>passwords</mark> &amp; more"


def test_the_snippet_is_the_window_around_the_matches():
    body = (
        "Filler words here. " * 50 + "Declined cards: add a new card in Billing. " + "Tail. " * 50
    )
    snippet, html = kb_search._snippet(body, {"card", "declin"})
    assert "Declined cards: add a new card in Billing." in snippet
    assert snippet.startswith("… ") and snippet.endswith(" …")
    assert "<mark>Declined</mark> <mark>cards</mark>" in html
    assert "<mark>card</mark> in Billing" in html


def test_a_short_body_is_its_own_snippet():
    snippet, html = kb_search._snippet("Open <Billing> & pay.", {"bill"})
    assert snippet == "Open <Billing> & pay."
    assert str(html) == "Open &lt;<mark>Billing</mark>&gt; &amp; pay."
    assert kb_search._snippet("", {"bill"}) == ("", Markup(""))
