"""Email HTML: derive plain text at parse time, sanitize for display at render time.

`html_to_text` runs in `mail.parse` for HTML-only mail, so rules, search and reply stripping
always have text. `sanitize_html` runs when an agent opens a message: the stored HTML stays raw
and the sanitizer can be tightened later without re-ingesting mail. Its output is still served
from its own URL with `Content-Security-Policy: sandbox` (security section C); sanitizing is one
layer, not the only one.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Iterator

import nh3

# Nobody reads more than a few megabytes of one email body as text.
MAX_HTML_TO_TEXT = 2_000_000
# html5ever (inside nh3) slows down quadratically with element nesting depth; real mail stays
# far below this, hostile mail is shown as text instead.
MAX_NESTING = 400

_BLOCK = frozenset(
    {
        "address", "article", "aside", "blockquote", "center", "dd", "div", "dl", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
        "header", "hr", "main", "nav", "ol", "p", "pre", "section", "table", "tbody",
        "thead", "tfoot", "tr", "ul", "caption", "details", "summary",
    }
)  # fmt: skip
_PARAGRAPH = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table", "ul", "ol"})
# Elements whose content is never text for a reader.
_SKIP = frozenset({"script", "style", "head", "title", "template", "noscript", "xml", "svg"})
# Elements without content, and those whose end tag is optional and usually left out; neither
# adds nesting that needs a closing tag.
_NO_DEPTH = frozenset(
    {
        "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
        "source", "track", "wbr", "p", "li", "td", "th", "tr", "dt", "dd", "option", "tbody",
        "thead", "tfoot", "colgroup",
    }
)  # fmt: skip

_TAG_NAME = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:-]{0,40})")


def _tokens(html: str) -> Iterator[tuple[str, str]]:
    """Yield ("text", data) and ("start"/"end", tag name) in one linear pass.

    A deliberately small tokenizer instead of `html.parser`: CPython's parser rescans unterminated
    constructs and takes seconds on a few kilobytes of `<a <a <a` or `<!--`. Here every `find`
    starts where the previous token ended, so the cost stays linear in the input. Attributes are
    skipped, never interpreted.
    """
    lower = html.lower()
    pos, end = 0, len(html)
    while pos < end:
        lt = html.find("<", pos)
        if lt < 0:
            yield "text", html[pos:]
            return
        if lt > pos:
            yield "text", html[pos:lt]
        if html.startswith("<!--", lt):
            close = html.find("-->", lt + 4)
            if close < 0:
                return  # an unterminated comment runs to the end (HTML spec)
            pos = close + 3
            continue
        match = _TAG_NAME.match(html, lt)
        if match is None:
            if html.startswith(("<!", "<?"), lt):  # doctype, CDATA, processing instruction
                close = html.find(">", lt)
                if close < 0:
                    return
                pos = close + 1
            else:
                yield "text", "<"
                pos = lt + 1
            continue
        close = html.find(">", match.end())
        if close < 0:
            return  # an unterminated tag at the end is dropped (HTML spec)
        name = match.group(2).lower()
        if match.group(1):
            yield "end", name
            pos = close + 1
            continue
        yield "start", name
        pos = close + 1
        if name in _SKIP and not html.startswith("/>", close - 1):
            # Raw text elements: skip to the matching end tag without tokenizing the content.
            stop = lower.find("</" + name, pos)
            pos = end if stop < 0 else stop


# Markers while building text: a paragraph break asks for a blank line; a <br> keeps its line
# even when empty (so <br><br> is a blank line), while other block edges never add blank lines.
_PARA = "\x02"
_BR = "\x03"


def html_to_text(html: str) -> str:
    """Readable plain text from an HTML body: blocks become lines, scripts and styles vanish."""
    chunks: list[str] = []
    skip = 0
    pre = 0
    for kind, value in _tokens(html[:MAX_HTML_TO_TEXT]):
        if kind == "text":
            if skip:
                continue
            text = html_lib.unescape(value).replace(_PARA, "").replace(_BR, "")
            chunks.append(text.replace("\n", _BR + "\n") if pre else re.sub(r"\s+", " ", text))
        elif value in _SKIP:
            skip = skip + 1 if kind == "start" else max(0, skip - 1)
        elif value == "br" and kind == "start":
            chunks.append(_BR + "\n")
        elif value == "li" and kind == "start":
            chunks.append("\n- ")
        elif value in ("td", "th") and kind == "start":
            chunks.append(" ")
        elif value in _BLOCK:
            chunks.append(f"\n{_PARA}\n" if value in _PARAGRAPH else "\n")
            if value == "pre":
                pre = pre + 1 if kind == "start" else max(0, pre - 1)
    lines: list[str] = []
    for raw_line in "".join(chunks).replace("\xa0", " ").split("\n"):
        line = re.sub(r"[ \t]+", " ", raw_line).strip(" \t")
        if line in (_PARA, _BR) or (line.endswith(_BR) and not line.strip(_BR + " ")):
            if lines and lines[-1] != "":
                lines.append("")
        elif line:
            lines.append(line.replace(_BR, "").replace(_PARA, "").rstrip())
    return "\n".join(lines).strip()


def nesting_depth(html: str) -> int:
    """Upper estimate of element nesting depth, in linear time."""
    depth = deepest = 0
    for kind, value in _tokens(html):
        if kind == "text" or value in _NO_DEPTH:
            continue
        depth = depth + 1 if kind == "start" else max(0, depth - 1)
        deepest = max(deepest, depth)
    return deepest


# --- sanitizing for display -------------------------------------------------------------------

_TAGS = (set(nh3.ALLOWED_TAGS) | {"font", "center", "u", "s"}) - {"area", "map"}
_GENERIC_ATTRIBUTES = {"style", "dir", "lang", "title", "align", "valign", "bgcolor"}
_ATTRIBUTES: dict[str, set[str]] = {
    "*": _GENERIC_ATTRIBUTES,
    "a": {"href", "hreflang", "name"},
    "img": {"src", "alt", "width", "height", "border", "hspace", "vspace"},
    "font": {"color", "face", "size"},
    "table": {"border", "cellpadding", "cellspacing", "width", "height", "summary"},
    "td": {"colspan", "rowspan", "width", "height", "headers", "nowrap"},
    "th": {"colspan", "rowspan", "width", "height", "headers", "scope", "nowrap"},
    "col": {"span", "width"},
    "colgroup": {"span", "width"},
    "ol": {"start", "type"},
    "ul": {"type"},
    "li": {"value"},
    "hr": {"width", "size", "noshade"},
    "blockquote": {"cite", "type"},
    "q": {"cite"},
    "del": {"cite", "datetime"},
    "ins": {"cite", "datetime"},
    "bdo": {"dir"},
    "time": {"datetime"},
}
# cid: is resolved by the web layer to the message's own attachments (security case 24).
# No data: (an HTML or SVG document in a link), no javascript:, nothing relative.
_URL_SCHEMES = {"http", "https", "mailto", "cid"}
# Properties that cannot move content out of the message box or fetch anything: no position,
# z-index, top/left/inset, transform, background(-image), behavior, content, cursor, filter.
_STYLE_PROPERTIES = {
    "color", "background-color", "font", "font-family", "font-size", "font-style",
    "font-variant", "font-weight", "line-height", "letter-spacing", "word-spacing",
    "text-align", "text-decoration", "text-indent", "text-transform", "white-space",
    "vertical-align", "direction", "unicode-bidi", "word-break", "word-wrap", "overflow-wrap",
    "margin", "margin-top", "margin-right", "margin-bottom", "margin-left",
    "padding", "padding-top", "padding-right", "padding-bottom", "padding-left",
    "border", "border-top", "border-right", "border-bottom", "border-left", "border-color",
    "border-style", "border-width", "border-collapse", "border-spacing", "border-radius",
    "width", "height", "min-width", "max-width", "min-height", "max-height",
    "display", "list-style-type", "table-layout", "empty-cells", "caption-side", "float", "clear",
}  # fmt: skip
_CLEAN_CONTENT_TAGS = {
    "script", "style", "title", "iframe", "object", "embed", "applet", "noscript", "template",
    "svg", "math", "form", "select", "textarea", "button", "frameset", "frame", "noembed",
}  # fmt: skip

_CLEANER = nh3.Cleaner(
    tags=_TAGS,
    clean_content_tags=_CLEAN_CONTENT_TAGS,
    attributes=_ATTRIBUTES,
    url_schemes=_URL_SCHEMES,
    filter_style_properties=_STYLE_PROPERTIES,
    link_rel="noopener noreferrer",
    strip_comments=True,
    # A relative URL in mail resolves against the helpdesk's own origin; `//host/x` would load
    # a remote image past the image block.
    url_relative="deny",
)

# nh3 serializes every attribute as name="value" with `"` escaped, so an attribute value can
# never contain a raw `"` and this pattern matches exactly the attributes of one tag.
_IMG_TAG = re.compile(r'<img((?:\s+[^\s="/>]+(?:="[^"]*")?)*)\s*/?>')
_ATTRIBUTE = re.compile(r'(\s+)([^\s="/>]+)(?:="([^"]*)")?')
_REMOTE = re.compile(r"^\s*https?:", re.IGNORECASE)


def sanitize_html(html: str) -> str:
    """Sanitize email HTML for display in the agent UI.

    Stricter than nh3's defaults: only http/https/mailto/cid URLs, no relative URLs, a CSS
    property allow-list (no position/z-index/background images), no script/style/iframe/object/
    form/meta/base/link, and remote images neutralized: their `src` moves to `data-remote-src`
    so nothing is fetched until an agent asks (through the image proxy).
    """
    if nesting_depth(html) > MAX_NESTING:
        # Too deep to hand to the tree builder in bounded time: show the text instead.
        return "<pre>" + html_lib.escape(html_to_text(html)) + "</pre>"
    cleaned = _CLEANER.clean(html)
    return _IMG_TAG.sub(_block_remote_src, cleaned)


def _block_remote_src(match: re.Match[str]) -> str:
    def rename(attr: re.Match[str]) -> str:
        space, name, value = attr.group(1), attr.group(2), attr.group(3)
        if name.lower() == "src" and value is not None and _REMOTE.match(html_lib.unescape(value)):
            return f'{space}data-remote-src="{value}"'
        return attr.group(0)

    attributes = _ATTRIBUTE.sub(rename, match.group(1))
    return f"<img{attributes}>"
