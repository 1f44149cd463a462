"""Help-article Markdown, rendered safely for the public help center, and as plain text.

Articles are written by agents or imported from files nobody here reviewed, and they are shown
to everyone, so the Markdown is treated as hostile (security.md cases 22 and 26):

1. markdown-it-py (CommonMark, plus tables and strikethrough) parses with raw HTML disabled:
   `<script>` in the source is text, shown escaped.
2. Links keep only `http:`, `https:` and `mailto:` targets; any other link (`javascript:`,
   `data:`, `vbscript:`, protocol-relative `//host`, relative paths) is not a link at all and
   its source stays visible as plain text. Images keep only `http(s):` sources; any other image
   becomes its alt text. Every link gets `rel="noopener noreferrer"`.
3. Headings move one level down (an article's `# Title` becomes an `<h2>`): the page's own
   title is its only `<h1>`.
4. nh3 (Ammonia) cleans the result against a small allow-list as a second fence, so a bug in
   steps 1-3 still cannot produce a script, an event handler or a dangerous URL.

`plain_text` gives the words a reader sees (no Markdown syntax, no URLs) for the search index
and for snippets.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup

LINK_SCHEMES = frozenset({"http", "https", "mailto"})
IMAGE_SCHEMES = frozenset({"http", "https"})

ALLOWED_TAGS = frozenset(
    {
        "p", "br", "hr", "h2", "h3", "h4", "h5", "h6", "strong", "em", "s", "del", "code",
        "pre", "blockquote", "ul", "ol", "li", "a", "img", "table", "thead", "tbody", "tr",
        "th", "td",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "ol": {"start"},
}
_CONTROL = re.compile(r"[\x00-\x20\x7f]+")


def _scheme(url: str) -> str | None:
    """The URL's scheme in lower case, or None for relative and protocol-relative URLs.

    Browsers ignore tabs, newlines and leading control characters in a URL (`jav&#x09;ascript:`),
    so those are dropped before looking.
    """
    cleaned = _CONTROL.sub("", url)
    if cleaned.startswith(("//", "\\\\", "/\\", "\\/")):
        return None
    try:
        scheme = urlsplit(cleaned).scheme.lower()
    except ValueError:
        return None
    return scheme or None


def is_safe_link(url: str) -> bool:
    """Whether a link target may be rendered as a link: absolute http(s) or mailto only."""
    scheme = _scheme(url)
    if scheme not in LINK_SCHEMES:
        return False
    return scheme == "mailto" or bool(urlsplit(_CONTROL.sub("", url)).netloc)


def is_safe_image(url: str) -> bool:
    """Whether an image source may be rendered: absolute http(s) only (never data:)."""
    scheme = _scheme(url)
    return scheme in IMAGE_SCHEMES and bool(urlsplit(_CONTROL.sub("", url)).netloc)


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    # markdown-it asks this for every link and image destination; refusing one leaves the
    # source text as it was written. Images are checked more strictly after parsing.
    md.validateLink = is_safe_link
    return md


_MD = _parser()


def _image_alt(token: Token) -> str:
    return "".join(child.content for child in token.children or [])


def _harden(tokens: list[Token]) -> None:
    """Demote headings, drop unsafe images (keeping their alt text) — in place."""
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            level = min(int(token.tag[1]) + 1, 6)
            token.tag = f"h{level}"
        for index, child in enumerate(token.children or []):
            if child.type == "image" and not is_safe_image(str(child.attrGet("src") or "")):
                text = Token("text", "", 0)
                text.content = _image_alt(child)
                token.children[index] = text  # type: ignore[index]


def _sanitize(html: str) -> str:
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        clean_content_tags={"script", "style"},
        attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
        attribute_filter=_filter_attribute,
        url_schemes=set(LINK_SCHEMES),
        url_relative="deny",
        link_rel="noopener noreferrer",
        strip_comments=True,
    )


def _filter_attribute(tag: str, attribute: str, value: str) -> str | None:
    if tag == "a" and attribute == "href":
        return value if is_safe_link(value) else None
    if tag == "img" and attribute == "src":
        return value if is_safe_image(value) else None
    return value


def render(source: str) -> Markup:
    """The article's Markdown as safe HTML, ready to put in a page."""
    tokens = _MD.parse(source or "")
    _harden(tokens)
    html = _MD.renderer.render(tokens, _MD.options, {})
    return Markup(_sanitize(html))  # noqa: S704 — sanitized just above


_BLOCK_ENDS = frozenset(
    {"paragraph_close", "heading_close", "list_item_close", "tr_close", "blockquote_close"}
)


def plain_text(source: str) -> str:
    """The words of an article as a reader sees them: no syntax, no URLs, one block a line."""
    parts: list[str] = []
    for token in _MD.parse(source or ""):
        if token.type == "inline":
            for child in token.children or []:
                if child.type in ("text", "code_inline"):
                    parts.append(child.content)
                elif child.type in ("softbreak", "hardbreak"):
                    parts.append(" ")
                elif child.type == "image":
                    parts.append(_image_alt(child))
        elif token.type in ("code_block", "fence"):
            parts.append(token.content.rstrip("\n") + "\n")
        elif token.type in ("th_close", "td_close"):
            parts.append(" ")
        if token.type in _BLOCK_ENDS:
            parts.append("\n")
    lines = (" ".join(line.split()) for line in "".join(parts).splitlines())
    return "\n".join(line for line in lines if line)


def excerpt(source: str, length: int = 160) -> str:
    """The first `length` characters or so of the article's plain text, cut at a word."""
    text = " ".join(plain_text(source).split())
    if len(text) <= length:
        return text
    cut = text[:length].rsplit(" ", 1)[0]
    return cut.rstrip(",.;:") + "…"
