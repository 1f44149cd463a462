"""In a real browser: an agent writes and publishes an article; a customer finds it in /help."""

import re

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from tests.conftest import TEST_PASSWORD
from tests.e2e.test_agent_browser import sign_in
from ticketing.models import Article, ArticleRevision
from ticketing.services import kb

pytestmark = pytest.mark.e2e


def test_agent_publishes_an_article_and_a_visitor_finds_it_highlighted(
    page: Page, browser, live_server, agent, db_session
):
    kb.create_category(db_session, name="Billing")
    db_session.commit()

    sign_in(page, live_server, agent.email, TEST_PASSWORD)
    page.get_by_role("link", name="Knowledge base").click()
    expect(page).to_have_title(re.compile("Knowledge base"))
    page.get_by_role("link", name="Write a new article").click()

    page.get_by_label("Title").fill("Update your payment card")
    page.get_by_label("Category").select_option(label="Billing")
    page.get_by_label("Article (Markdown)").fill(
        "If your **card was declined**, open *Billing* and choose **Replace card**.\n\n"
        "<script>window.__pwned = 1</script>\n\n[Sneaky](javascript:window.__pwned=1)"
    )
    # The preview follows the typing (htmx), before anything is saved...
    preview = page.locator(".kb-preview")
    expect(preview.locator("strong").first).to_have_text("card was declined")
    expect(preview).to_contain_text("<script>window.__pwned = 1</script>")
    # ...and the Preview button (the way without JavaScript) shows the same.
    page.get_by_role("button", name="Preview").click()
    expect(preview.locator("strong").first).to_have_text("card was declined")
    assert page.evaluate("typeof window.__pwned") == "undefined"

    page.get_by_role("button", name="Save and publish").click()
    expect(page.get_by_role("status")).to_contain_text("is published")
    expect(page.get_by_role("link", name="View in the help center")).to_be_visible()

    db_session.rollback()
    article = db_session.scalar(sa.select(Article))
    assert article.is_published and article.category.name == "Billing"
    assert db_session.scalar(sa.select(sa.func.count()).select_from(ArticleRevision)) == 1

    # A customer, in a browser that never signed in.
    visitor_context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        visitor = visitor_context.new_page()
        visitor.goto(f"{live_server}/help")
        expect(visitor.get_by_role("heading", name="How can we help?")).to_be_visible()
        visitor.get_by_label("Search the help center").fill("card declined")
        visitor.get_by_role("button", name="Search").click()

        result = visitor.locator(".help-results li").first
        expect(result.get_by_role("link")).to_have_text("Update your payment card")
        expect(result.locator("mark").first).to_be_visible()
        marked = {text.lower() for text in result.locator("mark").all_inner_texts()}
        assert {"card", "declined"} <= marked

        result.get_by_role("link").click()
        expect(visitor.get_by_role("heading", level=1)).to_have_text("Update your payment card")
        expect(visitor.get_by_text("<script>window.__pwned = 1</script>")).to_be_visible()
        assert visitor.evaluate("typeof window.__pwned") == "undefined"
        expect(visitor.get_by_role("link", name="Sneaky")).to_have_count(0)

        visitor.get_by_role("button", name="Yes").click()
        expect(visitor.get_by_role("status")).to_contain_text("Glad it helped")
        contact = visitor.get_by_role("link", name="Contact us").last
        expect(contact).to_have_attribute("href", "/contact?q=card+declined")
    finally:
        visitor_context.close()

    db_session.rollback()
    article = db_session.get(Article, article.id)
    assert article.helpful_yes == 1 and article.view_count >= 1
