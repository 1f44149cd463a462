"""Help-article Markdown is hostile input: what reaches the page is safe (security.md 22, 26)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from ticketing.kb_markdown import excerpt, is_safe_image, is_safe_link, plain_text, render

SAFE_TAGS = {
    "p", "br", "hr", "h2", "h3", "h4", "h5", "h6", "strong", "em", "s", "del", "code", "pre",
    "blockquote", "ul", "ol", "li", "a", "img", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
SAFE_ATTRIBUTES = {"href", "src", "alt", "title", "rel", "start"}


class _Elements(HTMLParser):
    """Every element and attribute of a fragment, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {name: value or "" for name, value in attrs}))


def _elements(html: str) -> list[tuple[str, dict[str, str]]]:
    parser = _Elements()
    parser.feed(html)
    parser.close()
    return parser.elements


def _assert_inert(html: str) -> None:
    """Only allow-listed tags and attributes; links http(s)/mailto, images http(s) only."""
    for tag, attrs in _elements(html):
        assert tag in SAFE_TAGS, (tag, html)
        assert set(attrs) <= SAFE_ATTRIBUTES, (attrs, html)
        if "href" in attrs:
            assert re.match(r"(https?://[^/]|mailto:)", attrs["href"]), html
            assert attrs.get("rel") == "noopener noreferrer", html
        if "src" in attrs:
            assert re.match(r"https?://[^/]", attrs["src"]), html


@pytest.mark.parametrize(
    "source",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "<svg><script>alert(1)</script></svg>",
        '<a href="jav&#x09;ascript:alert(1)">x</a>',
        '<a href="  JaVaScRiPt:alert(1)">x</a>',
        "<iframe srcdoc='<script>alert(1)</script>'></iframe>",
        '<form action="https://evil.example"><button>Go</button></form>',
        '<meta http-equiv="refresh" content="0;url=https://evil.example">',
        '<base href="https://evil.example/">',
        '<div style="position:fixed;inset:0;z-index:99999">Session expired</div>',
        "[x](javascript:alert(1))",
        "[x](JAVASCRIPT:alert(1))",
        "[x](jav\tascript:alert(1))",
        "[x](jav&#x09;ascript:alert(1))",
        "[x](&#106;avascript:alert(1))",
        "[x](data:text/html,<script>alert(1)</script>)",
        "[x](vbscript:msgbox(1))",
        "[x](file:///etc/passwd)",
        "[x](//evil.example)",
        "[x](/\\evil.example)",
        "<javascript:alert(1)>",
        "<data:text/html,x>",
        "![x](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
        "![x](javascript:alert(1))",
        "![x](mailto:a@b.example)",
        '[x](https://ok.example "title\\" onmouseover=\\"alert(1)")',
        "[x]: javascript:alert(1)\n\n[x]",
        "`<script>` and ```\n<script>alert(1)</script>\n```",
        "> <img src=x onerror=alert(1)>",
        "| a | b |\n|---|---|\n| <script>x</script> | [y](javascript:1) |",
    ],
)
def test_hostile_markdown_renders_inert(source):
    _assert_inert(str(render(source)))


def test_dangerous_links_stay_visible_as_plain_text():
    html = str(render("Click [here](javascript:alert(1)) or [there](//evil.example)."))
    assert "<a" not in html
    assert "[here](javascript:alert(1))" in html
    assert "[there](//evil.example)" in html


def test_safe_links_get_rel_noopener_noreferrer():
    html = str(render("[Docs](https://docs.example/a?b=1&c=2) and <mailto:help@example.com>"))
    assert '<a href="https://docs.example/a?b=1&amp;c=2" rel="noopener noreferrer">Docs</a>' in html
    assert '<a href="mailto:help@example.com" rel="noopener noreferrer">' in html


def test_raw_html_is_shown_as_text():
    html = str(render("Press <kbd>Ctrl</kbd> then <b>Enter</b>"))
    assert "&lt;kbd&gt;Ctrl&lt;/kbd&gt;" in html and "<b>" not in html


def test_images_only_from_https_or_http():
    html = str(render("![Remote](https://img.example/a.png) ![Inline](data:image/png;base64,AAAA)"))
    assert [a["src"] for _, a in _elements(html) if "src" in a] == ["https://img.example/a.png"]
    assert 'alt="Remote"' in html


def test_headings_move_down_one_level_under_the_page_title():
    html = str(render("# Top\n\n## Second\n\n###### Sixth"))
    assert "<h2>Top</h2>" in html and "<h3>Second</h3>" in html and "<h6>Sixth</h6>" in html
    assert "<h1" not in html


def test_common_markdown_renders():
    html = str(render("**b** *i* ~~s~~ `code`\n\n- one\n- two\n\n1. first\n\n| a |\n|---|\n| 1 |"))
    for part in (
        "<strong>b</strong>",
        "<em>i</em>",
        "<s>s</s>",
        "<code>code</code>",
        "<ul>",
        "<ol>",
        "<table>",
        "<td>1</td>",
    ):
        assert part in html, part


def test_plain_text_has_the_words_without_syntax_or_urls():
    source = "# Reset\n\nClick **Forgot password** on [the login page](https://x.example/login).\n\n- One\n- Two"
    assert plain_text(source) == "Reset\nClick Forgot password on the login page.\nOne\nTwo"
    assert excerpt("word " * 100, 30).endswith("…") and len(excerpt("word " * 100, 30)) <= 31


@pytest.mark.parametrize(
    ("url", "link", "image"),
    [
        ("https://a.example/x", True, True),
        ("http://a.example", True, True),
        ("mailto:a@b.example", True, False),
        ("MAILTO:a@b.example", True, False),
        ("javascript:alert(1)", False, False),
        (" \x01javascript:alert(1)", False, False),
        ("java\nscript:alert(1)", False, False),
        ("//evil.example", False, False),
        ("/relative/path", False, False),
        ("https:evil", False, False),
        ("data:image/png;base64,AA", False, False),
        ("http://[::1", False, False),
    ],
)
def test_url_rules(url, link, image):
    assert is_safe_link(url) is link
    assert is_safe_image(url) is image


# A sample of the Big List of Naughty Strings (minimaxir/big-list-of-naughty-strings), one of
# each family: script injection, SQL, template syntax, Unicode oddities, control characters.
NAUGHTY = [
    "undefined",
    "\\",
    "1;DROP TABLE users",
    "' OR 1=1 -- 1",
    "<script>alert(123)</script>",
    "&lt;script&gt;alert(&#39;123&#39;);&lt;/script&gt;",
    "<img src=x onerror=alert(123) />",
    "<svg><script>123<1>alert(123)</script>",
    '"><script>alert(123)</script>',
    "<IMG SRC=\"jav&#x0D;ascript:alert('XSS');\">",
    '<a href="\\x0Bjavascript:javascript:alert(1)" id="fuzzelement1">test</a>',
    'ABC<div style="x:\\xE2\\x80\\x89expression(javascript:alert(1)">DEF',
    "{{7*7}}",
    "${7*7}",
    "%s%s%s%s%s",
    "\u202egnp.exe",
    "\u200b\u200c\u200d\ufeff",
    "\u03a9\u2248\u00e7\u221a\u222b\u02dc\u00b5\u2264\u2265\u00f7",
    "\u0bb8\u0bcd\u0bb1\u0bc0",
    "\U0001f469\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",
    "\ufdfa" * 50,
    "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319",
    "\x01\x02\x7f",
    "[x](javascript:alert(1))" * 200,
    "*" * 5000,
    "[" * 1000 + "](" * 1000,
    "> " * 1000 + "deep",
]


def test_big_list_of_naughty_strings_never_raise_and_stay_inert():
    for text in NAUGHTY:
        for source in (text, f"[{text}](https://a.example)", f"[x]({text})", f"![{text}]({text})"):
            html = str(render(source))
            _assert_inert(html)
            plain_text(source)
    assert "{{7*7}}" in str(render("{{7*7}}"))
