"""`ticketing.emails`: outgoing bodies render, escape customer text, and can be overridden."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import pytest

from ticketing.emails import RenderedEmail, paragraphs, render_email, safe_url

IMG_PAYLOAD = '"><img src=x onerror=window.__pwned=1>'  # security.md case 22
TEMPLATE_PAYLOAD = "{{7*7}}"
SCRIPT_PAYLOAD = "<script>alert(1)</script><b>x</b>"  # security.md case 27


def reply_context(**overrides: Any) -> dict[str, Any]:
    context: dict[str, Any] = {
        "ticket": {"number": 1234, "subject": "Card declined"},
        "customer": {"name": "Ann Customer", "email": "ann@example.com"},
        "agent": {"name": "Dana"},
        "body": "Hi Ann,\n\nYour card works again.\nTry once more.\n\nDana",
        "quoted": "My card was declined.\nWhat now?",
        "ticket_url": "http://127.0.0.1:5000/tickets/1234",
        "reply_hint": True,
    }
    context.update(overrides)
    return context


def ack_context(**overrides: Any) -> dict[str, Any]:
    context: dict[str, Any] = {
        "ticket": {"number": 1234, "subject": "Card declined"},
        "customer": {"name": "Ann Customer", "email": "ann@example.com"},
        "expected_reply": "within one business day",
        "articles": [],
    }
    context.update(overrides)
    return context


# --- agent_reply ------------------------------------------------------------------------------


def test_agent_reply_puts_the_reply_first_then_a_quiet_footer() -> None:
    email = render_email("agent_reply", reply_context())
    assert isinstance(email, RenderedEmail)
    assert email.subject == "Re: Card declined [#1234]"
    assert email.text.startswith("Hi Ann,\n\nYour card works again.\nTry once more.\n")
    assert "> My card was declined.\n> What now?" in email.text
    assert "Reply to this email to answer. Ticket #1234." in email.text
    assert "http://127.0.0.1:5000/tickets/1234" in email.text
    assert email.text.index("Your card works again") < email.text.index("Reply to this email")
    assert "\n-- \n" in email.text  # the signature separator: clients dim and strip the footer
    html = email.html
    assert html.startswith("<!DOCTYPE html>")
    assert '<p style="margin:0 0 1em 0;">Your card works again.<br>\nTry once more.</p>' in html
    assert "<blockquote" in html and "What now?" in html
    assert '<a href="http://127.0.0.1:5000/tickets/1234"' in html
    assert html.index("Your card works again") < html.index("Reply to this email")


def test_agent_reply_html_loads_nothing_from_outside() -> None:
    html = render_email("agent_reply", reply_context()).html
    assert "<img" not in html and "<link" not in html and "<script" not in html
    assert "src=" not in html and "url(" not in html


def test_agent_reply_optional_parts_can_be_left_out() -> None:
    context = reply_context()
    for key in ("quoted", "ticket_url", "reply_hint"):
        del context[key]
    email = render_email("agent_reply", context)
    assert "wrote:" not in email.text and "<blockquote" not in email.html
    assert "View it online" not in email.text and "<a " not in email.html
    assert "Reply to this email to answer. Ticket #1234." in email.text


def test_agent_reply_without_reply_hint_still_names_the_ticket() -> None:
    email = render_email("agent_reply", reply_context(reply_hint=False))
    assert "Reply to this email" not in email.text
    assert "Ticket #1234." in email.text and "Ticket #1234." in email.html


@pytest.mark.parametrize("payload", [IMG_PAYLOAD, TEMPLATE_PAYLOAD, SCRIPT_PAYLOAD])
def test_customer_and_agent_text_is_literal_in_text_and_escaped_in_html(payload: str) -> None:
    context = reply_context(
        ticket={"number": 1234, "subject": f"Card {payload}"},
        customer={"name": f"Ann {payload}", "email": "ann@example.com"},
        body=f"Reply {payload}",
        quoted=f"Quoted {payload}",
    )
    email = render_email("agent_reply", context)
    assert email.subject == f"Re: Card {payload} [#1234]"  # a header: the library encodes it
    for text in (f"Reply {payload}", f"Quoted {payload}", f"Ann {payload} wrote:"):
        assert text in email.text
    assert "49" not in email.text + email.html + email.subject  # {{7*7}} never evaluated
    assert payload not in email.html or payload == TEMPLATE_PAYLOAD
    assert "<img" not in email.html and "<script" not in email.html and "<b>" not in email.html


def test_script_in_the_quoted_customer_message_is_escaped_in_html() -> None:
    html = render_email("agent_reply", reply_context(quoted=SCRIPT_PAYLOAD)).html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;b&gt;x&lt;/b&gt;" in html
    assert "<script" not in html.lower()


def test_a_link_to_anything_but_http_is_left_out() -> None:
    email = render_email("agent_reply", reply_context(ticket_url="javascript:alert(1)"))
    assert "javascript" not in email.text + email.html
    assert safe_url('https://x.example/a"onmouseover=1') == ""
    assert safe_url(" https://help.example.com/a/1 ") == "https://help.example.com/a/1"


def test_paragraphs_escape_before_adding_markup() -> None:
    rendered = paragraphs("a & <b>\r\nline\n\n\n<i>second</i>\n")
    assert str(rendered) == (
        '<p style="margin:0 0 1em 0;">a &amp; &lt;b&gt;<br>\nline</p>\n'
        '<p style="margin:0 0 1em 0;">&lt;i&gt;second&lt;/i&gt;</p>'
    )
    assert paragraphs("  \n ") == ""


# --- acknowledgement -------------------------------------------------------------------------


def test_acknowledgement_says_what_happens_next_without_echoing_the_request() -> None:
    context = ack_context(
        ticket={"number": 1234, "subject": "BUY CHEAP PILLS at http://spam.example"},
        customer={"name": "Visit spam.example now", "email": "victim@example.org"},
    )
    email = render_email("acknowledgement", context)
    assert email.subject == "[#1234] We received your request"
    assert "We received your request and opened ticket #1234." in email.text
    assert "within one business day" in email.text and "within one business day" in email.html
    for rendered in (email.subject, email.text, email.html):
        assert "PILLS" not in rendered and "spam.example" not in rendered
    assert email.text.startswith("Hello,\n")


def test_acknowledgement_echoes_subject_and_name_only_when_asked() -> None:
    email = render_email("acknowledgement", ack_context(include_subject=True))
    assert email.text.startswith("Hello Ann Customer,\n")
    assert 'We received your request "Card declined" and opened ticket #1234.' in email.text
    assert "&ldquo;Card declined&rdquo;" in email.html


def test_acknowledgement_escapes_an_echoed_subject() -> None:
    context = ack_context(
        include_subject=True,
        ticket={"number": 7, "subject": IMG_PAYLOAD + TEMPLATE_PAYLOAD},
        customer={"name": SCRIPT_PAYLOAD, "email": "a@example.com"},
    )
    email = render_email("acknowledgement", context)
    assert IMG_PAYLOAD + TEMPLATE_PAYLOAD in email.text
    assert "<img" not in email.html and "<script" not in email.html
    assert "&#34;&gt;&lt;img src=x onerror=window.__pwned=1&gt;{{7*7}}" in email.html


def test_acknowledgement_lists_at_most_three_articles_with_safe_links() -> None:
    articles = [
        {"title": f"Article {n}", "url": f"https://help.example.com/a/{n}", "snippet": f"S{n}"}
        for n in range(1, 5)
    ]
    articles[1]["url"] = "javascript:alert(1)"
    articles[2]["title"] = IMG_PAYLOAD
    email = render_email("acknowledgement", ack_context(articles=articles))
    assert "Article 1" in email.text and "https://help.example.com/a/1" in email.text
    assert "Article 4" not in email.text and "Article 4" not in email.html
    assert '<a href="https://help.example.com/a/1"' in email.html
    assert "javascript" not in email.text + email.html
    assert "Article 2" in email.html  # shown, just not linked
    assert "<img" not in email.html
    assert "S1" in email.text and "S1" in email.html


def test_acknowledgement_without_articles_has_no_article_list() -> None:
    email = render_email("acknowledgement", ack_context())
    assert "articles" not in email.text and "<ul" not in email.html


# --- environment ------------------------------------------------------------------------------


def test_an_override_template_wins_and_the_rest_fall_back(tmp_path: Path) -> None:
    (tmp_path / "agent_reply.subject.txt").write_text(
        "[#{{ ticket.number }}] Acme answered: {{ ticket.subject }}"
    )
    email = render_email("agent_reply", reply_context(), override_dir=tmp_path)
    assert email.subject == "[#1234] Acme answered: Card declined"
    assert "Reply to this email to answer." in email.text  # packaged .txt still used
    plain = render_email("agent_reply", reply_context())
    assert plain.subject == "Re: Card declined [#1234]"  # no leak between directories


def test_override_templates_are_sandboxed(tmp_path: Path) -> None:
    (tmp_path / "agent_reply.txt").write_text("{{ ticket.__class__.__mro__ }}")
    with pytest.raises(jinja2.exceptions.SecurityError):
        render_email("agent_reply", reply_context(), override_dir=tmp_path)


def test_override_html_is_autoescaped_too(tmp_path: Path) -> None:
    (tmp_path / "agent_reply.html").write_text("<div>{{ body }}</div>")
    html = render_email("agent_reply", reply_context(body=SCRIPT_PAYLOAD), override_dir=tmp_path)
    assert html.html == "<div>&lt;script&gt;alert(1)&lt;/script&gt;&lt;b&gt;x&lt;/b&gt;</div>\n"


@pytest.mark.parametrize("missing", ["ticket", "customer", "agent", "body"])
def test_a_missing_context_key_is_an_error(missing: str) -> None:
    context = reply_context()
    del context[missing]
    with pytest.raises(jinja2.UndefinedError):
        render_email("agent_reply", context)


def test_acknowledgement_without_expected_reply_is_an_error() -> None:
    context = ack_context()
    del context["expected_reply"]
    with pytest.raises(jinja2.UndefinedError):
        render_email("acknowledgement", context)


def test_subject_is_always_one_line() -> None:
    context = reply_context(ticket={"number": 5, "subject": "Help me\nBcc: x@evil.example\r\n"})
    assert render_email("agent_reply", context).subject == "Re: Help me Bcc: x@evil.example [#5]"


def test_template_names_cannot_leave_the_template_directory() -> None:
    with pytest.raises(ValueError):
        render_email("../secret", reply_context())
    with pytest.raises(jinja2.TemplateNotFound):
        render_email("no_such_email", reply_context())


def test_every_packaged_email_has_its_three_templates() -> None:
    from ticketing.emails import TEMPLATE_DIR

    names = {p.name.split(".", 1)[0] for p in TEMPLATE_DIR.iterdir()}
    assert {"agent_reply", "acknowledgement", "portal_link"} <= names
    for name in names:
        for suffix in (".subject.txt", ".txt", ".html"):
            assert (TEMPLATE_DIR / f"{name}{suffix}").is_file()
