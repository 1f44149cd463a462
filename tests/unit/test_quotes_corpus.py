"""Corpus test for `mail.quotes.split_reply` against other projects' reply-stripping tests.

203 messages and 265 assertions from mailgun/talon, crisp-oss/email-reply-parser,
zapier/email-reply-parser and alfonsrv/mail-parser-reply (`../shared/corpora/reply-stripping/`).
Each assertion names what it was about in its source (`target`); we map it onto `ReplySplit`:

- `reply_text`, `first_fragment`, `reply_text_without_signature` → `visible`
- `reply_signature` (a signature block) → must be in `trimmed` (our policy: signatures are trimmed)
- `reply_text_with_signature` → `visible` + `trimmed` (the new text with its signature)
- `quoted_block` `contains`/`equals` → the text is in `trimmed`
- `first_fragment_is_{signature,hidden,quoted}` = False → `visible` is non-empty (and not quoted)

`quoted_block` assertions that test how mail-parser-reply splits one *older* reply into its
headers/body/signature (`not_contains` on `.body`/`.headers`) have no counterpart in `ReplySplit`
and are counted as not applicable, not as passes.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
from collections import Counter
from email.message import EmailMessage
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from mail.quotes import ReplySplit, split_reply

CORPORA = Path(__file__).resolve().parents[2].parent / "shared" / "corpora"
CORPUS = CORPORA / "reply-stripping"

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpora not available")

# Assertions we knowingly fail, as (item id, index of the assertion in the item), with the reason.
# Keep this small: fix real bugs instead of listing them here.
# Policy (module docstring of mail.quotes): `-- ` signatures and device taglines are trimmed; a
# bare name or valediction stays visible; interleaved answers keep the whole message visible.
_SIGNATURE_POLICY = "source keeps the signature in the reply; our policy trims signatures"
_NAME_POLICY = (
    "source counts a bare signed name as a signature; crisp (same messages) keeps it in the "
    "reply, and so do we: a name alone stays visible"
)
KNOWN_FAILURES: dict[tuple[str, int], str] = {
    # Contradictions between sources, decided by policy.
    ("talon/standard_replies/iphone", 0): _SIGNATURE_POLICY
    + " (zapier/mail-parser-reply split it)",
    ("talon/standard_replies/sparrow", 0): _SIGNATURE_POLICY,
    ("mail-parser-reply/email_1_1", 3): _NAME_POLICY,
    ("mail-parser-reply/email_1_3", 3): _NAME_POLICY,
    ("mail-parser-reply/email_swedish_2", 1): _NAME_POLICY + " ('/John')",
    ("mail-parser-reply/email_swedish_2", 2): _NAME_POLICY + " ('/John')",
    ("mail-parser-reply/email_2_1", 0): (
        "source keeps the dash ruler above an Outlook header block in the reply; we trim it "
        "with the history it introduces"
    ),
    ("mail-parser-reply/email_nl_1_2", 0): "as email_2_1 (Dutch copy of the same message)",
    ("crisp/email_2", 0): (
        "interleaved answer below a quote: crisp's first fragment stops at the first quote, "
        "but answers inside a quote must stay visible (design decision)"
    ),
    # Artefacts of talon's own pipeline.
    ("talon/inline/test_gmail_quote_blockquote", 0): (
        "talon special-cases a gmail_quote blockquote wrapping gmail_default as the sender's "
        "text; we trim every gmail_quote"
    ),
    ("talon/inline/test_readable_html_empty", 0): (
        "talon returns the unmodified HTML when its cut leaves no readable text; the text "
        "split is right"
    ),
    ("talon/inline/test_too_many_lines", 0): (
        "talon's test patches MAX_LINES_COUNT so only its splitter regex runs, which drops the "
        "'Hi' line above the separator too"
    ),
    # Real misses, not handled yet.
    ("talon/inline/test_pattern_on_date_polymail", 0): (
        "Polymail attribution spread over five lines with a blank line inside: not recognised"
    ),
    ("talon/inline/test_reply_separated_by_hr", 0): (
        "HTML history after an <hr> with the sender's name glued above the From: block; the "
        "name line stays visible"
    ),
}

# Overall floor actually reached (passes / applicable assertions); raise it when the splitter
# improves, never lower it to make a change pass.
FLOOR = 0.94


class _Text(HTMLParser):
    """Fallback HTML → text for the test when `mail.html.html_to_text` is not available."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "p", "div", "tr", "blockquote", "li", "hr"):
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(html: str) -> str:
    try:
        from mail.html import html_to_text as project_html_to_text
    except ImportError:
        parser = _Text()
        parser.feed(html)
        return "".join(parser.parts)
    return project_html_to_text(html)


def _content(part: EmailMessage) -> str:
    try:
        return part.get_content()
    except (LookupError, ValueError):
        payload = part.get_payload(decode=True) or b""
        return payload.decode("utf-8", errors="replace")


@cache
def body_of(eml: str, body_part: str) -> tuple[str, str | None]:
    """(text, html) of a corpus message as `mail.parse` would hand them over."""
    raw = (CORPUS / eml).read_bytes()
    if body_part.startswith("whole message"):
        return raw.decode("utf-8", errors="replace"), None
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    if body_part.startswith("text/html"):
        html = _content(msg.get_body(("html",)) or msg)
        return html_to_text(html), html
    part = msg.get_body(("plain",))
    if part is None:
        html_part = msg.get_body(("html",))
        html = _content(html_part) if html_part is not None else ""
        return html_to_text(html), html
    return _content(part), None


def _lines(text: str) -> str:
    """Per-line stripped text: the reference parsers strip lines before comparing."""
    return "\n".join(line.strip() for line in text.replace("\r\n", "\n").split("\n")).strip()


def _rstrip_lines(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def subject_of(split: ReplySplit, assertion: dict[str, Any]) -> str | None:
    """The part of `split` an assertion is about, or None when it has no counterpart."""
    target = assertion["target"]
    if target in ("reply_text", "first_fragment", "reply_text_without_signature"):
        return split.visible
    if target == "reply_text_with_signature":
        return split.visible + "\n" + split.trimmed
    if target in ("reply_signature", "quoted_block"):
        expression = assertion.get("expression", "")
        if target == "quoted_block" and assertion["op"] != "contains":
            if assertion["op"] == "equals" and expression.endswith(".body"):
                return split.trimmed  # checked as "contains" below
            return None
        return split.trimmed
    return None


def check(split: ReplySplit, assertion: dict[str, Any]) -> bool | None:
    """True/False for pass/fail; None when the assertion does not apply to `ReplySplit`."""
    target, op, value = assertion["target"], assertion["op"], assertion.get("value")
    if target.startswith("first_fragment_is_"):
        if value is not False:
            return None
        if target == "first_fragment_is_quoted":
            return bool(split.visible.strip()) and not split.visible.lstrip().startswith(">")
        return bool(split.visible.strip())
    if target == "reply_signature" and op == "equals":
        if value == "":
            return not split.has_trimmed  # "there is no signature": nothing to trim here
        return _lines(value) in _lines(split.trimmed) and _lines(value) not in _lines(split.visible)
    subject = subject_of(split, assertion)
    if subject is None:
        return None
    if target == "quoted_block" and op == "equals":
        op = "contains"
    if op == "equals":
        # Exact in the sources, but trailing spaces and blank lines at the ends are artefacts of
        # how each library joins its fragments; `visible` is display text without them.
        return _rstrip_lines(subject) == _rstrip_lines(value)
    if op == "equals_stripped":
        return subject.strip() == value.strip()
    if op == "equals_ignoring_whitespace":
        return _squash(subject) == _squash(value)
    if op == "contains":
        return _lines(value) in _lines(subject)
    if op == "not_contains":
        return _lines(value) not in _lines(subject)
    if op == "matches_regex":
        return re.search(value, subject) is not None
    if op == "not_matches_regex":
        return re.search(value, subject) is None
    if op == "non_empty":
        return bool(subject.strip())
    raise AssertionError(f"unknown op {op!r}")


@cache
def items() -> list[dict[str, Any]]:
    return json.loads((CORPUS / "expected.json").read_text())["items"]


@cache
def outcomes() -> dict[tuple[str, int], bool | None]:
    out: dict[tuple[str, int], bool | None] = {}
    for item in items():
        text, html = body_of(item["eml"], item["body_part"])
        split = split_reply(text, html=html)
        for index, assertion in enumerate(item["assertions"]):
            out[item["id"], index] = check(split, assertion)
    return out


def test_print_score() -> None:
    counts = Counter(
        "n/a" if ok is None else "pass" if ok else "fail" for ok in outcomes().values()
    )
    applicable = counts["pass"] + counts["fail"]
    print(
        f"\nreply-stripping: {counts['pass']}/{applicable} applicable assertions pass "
        f"({counts['pass'] / applicable:.1%}); {counts['n/a']} not applicable; "
        f"{len(KNOWN_FAILURES)} known failures"
    )
    assert counts["pass"] / applicable >= FLOOR


@pytest.mark.parametrize("item", items(), ids=lambda item: item["id"])
def test_reply_stripping_item(item: dict[str, Any]) -> None:
    text, html = body_of(item["eml"], item["body_part"])
    split = split_reply(text, html=html)
    failures = []
    for index, assertion in enumerate(item["assertions"]):
        ok = check(split, assertion)
        known = (item["id"], index) in KNOWN_FAILURES
        if ok is False and not known:
            failures.append((index, assertion["target"], assertion["op"], assertion.get("value")))
        if ok is True and known:
            failures.append((index, "listed in KNOWN_FAILURES but passes: remove it", "", ""))
    assert not failures, f"visible={split.visible!r}\ntrimmed={split.trimmed!r}\n{failures}"


def test_every_split_is_reversible() -> None:
    # Nothing deleted, nothing added: the same non-blank characters, however lines were cut.
    for item in items():
        text, html = body_of(item["eml"], item["body_part"])
        if html is not None:
            continue  # HTML splits are re-rendered text; reversibility is about the text body
        split = split_reply(text)
        assert Counter(_squash(split.visible + split.trimmed)) == Counter(_squash(text)), item["id"]
