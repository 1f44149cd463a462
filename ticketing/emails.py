"""Outgoing email bodies, rendered without Flask: template name + context -> subject, text, HTML.

Place in the flow (design.md §1, §3): a service that enqueues mail (a reply, an
acknowledgement) renders it here and stores the result on the outbox row; `mail.compose`
later turns the row into bytes. Each email is three templates in `templates/email/`:
``<name>.subject.txt``, ``<name>.txt`` and ``<name>.html``. An operator overrides any of them
by putting a file with the same name in ``<data dir>/templates/email/`` (`override_dir`).

Customer text is data, never template source: it only ever arrives as a context value, so
``{{7*7}}`` in a message stays literally ``{{7*7}}`` (Zammad CVE-2018-1000154). The
environment is sandboxed anyway, because override templates are written by operators, not
by us. HTML templates autoescape; plain-text bodies become HTML only through the
`paragraphs` filter, which escapes first (security.md cases 22 and 27).
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, FileSystemLoader, StrictUndefined, Template, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

__all__ = ["TEMPLATE_DIR", "EmailTemplates", "RenderedEmail", "render_email"]

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates" / "email"

_BLANK_LINES = re.compile(r"\n[ \t]*\n\s*")
_SAFE_URL = re.compile(r"https?://[^\s\"'<>\\]+", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    """A rendered email: one-line `subject`, plain-text and HTML bodies."""

    subject: str
    text: str
    html: str


def render_email(
    name: str, context: Mapping[str, Any], *, override_dir: Path | None = None
) -> RenderedEmail:
    """Render email `name` (``agent_reply``, ``acknowledgement``) with `context`.

    Templates are looked up in `override_dir` first, then in the package. A context key a
    template uses but `context` lacks raises `jinja2.UndefinedError` (StrictUndefined), so a
    mistake is an error rather than an email with a hole in it. The subject is flattened to
    one line (a header cannot hold line breaks).
    """
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise ValueError(f"not an email template name: {name!r}")
    env = _environment(override_dir.resolve() if override_dir is not None else None)
    values = dict(context)
    subject = env.get_template(f"{name}.subject.txt").render(values)
    text = env.get_template(f"{name}.txt").render(values)
    body_html = env.get_template(f"{name}.html").render(values)
    return RenderedEmail(
        subject=" ".join(subject.split()),
        text=text.strip("\n") + "\n",
        html=body_html.strip("\n") + "\n",
    )


@functools.lru_cache(maxsize=8)
def _environment(override_dir: Path | None) -> SandboxedEnvironment:
    loaders = [FileSystemLoader(TEMPLATE_DIR)]
    if override_dir is not None:
        loaders.insert(0, FileSystemLoader(override_dir))
    env = SandboxedEnvironment(
        loader=ChoiceLoader(loaders),
        autoescape=select_autoescape(enabled_extensions=("html",), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["paragraphs"] = paragraphs
    env.filters["quote_text"] = quote_text
    env.filters["safe_url"] = safe_url
    return env


class _Html(str):
    """Markup already escaped: Jinja's autoescape leaves objects with `__html__` alone."""

    __slots__ = ()

    def __html__(self) -> str:
        return str(self)


def paragraphs(text: Any) -> _Html:
    """Plain text -> escaped HTML paragraphs: blank lines split paragraphs, newlines become
    ``<br>``. Whatever HTML the text contains is shown as text, never interpreted."""
    normalized = str(text).replace("\r\n", "\n").replace("\r", "\n").strip("\n")
    if not normalized.strip():
        return _Html("")
    blocks = []
    for block in _BLANK_LINES.split(normalized):
        lines = [html.escape(line, quote=True) for line in block.split("\n")]
        blocks.append('<p style="margin:0 0 1em 0;">' + "<br>\n".join(lines) + "</p>")
    return _Html("\n".join(blocks))


def quote_text(text: Any) -> str:
    """Plain text quoted the way mail clients do: each line prefixed with ``> ``."""
    normalized = str(text).replace("\r\n", "\n").replace("\r", "\n").strip("\n")
    return "\n".join(f"> {line}" if line else ">" for line in normalized.split("\n"))


def safe_url(url: Any) -> str:
    """The URL if it is a plain http(s) URL, else ``""`` (templates then show no link)."""
    value = str(url or "").strip()
    return value if _SAFE_URL.fullmatch(value) else ""


class EmailTemplates:
    """One email's three templates, looked up and compiled once, for rendering many emails
    (a notice scan renders thousands): `render_email` without the per-call template lookup
    and its modification-time checks. Same environment, overrides and output."""

    __slots__ = ("_globals", "_html", "_subject", "_text")

    def __init__(self, name: str, *, override_dir: Path | None = None) -> None:
        if not re.fullmatch(r"[a-z0-9_]+", name):
            raise ValueError(f"not an email template name: {name!r}")
        env = _environment(override_dir.resolve() if override_dir is not None else None)
        self._subject = env.get_template(f"{name}.subject.txt")
        self._text = env.get_template(f"{name}.txt")
        self._html = env.get_template(f"{name}.html")
        self._globals = dict(self._text.globals)

    def render(self, context: Mapping[str, Any]) -> RenderedEmail:
        """As `render_email(name, context, override_dir=…)`."""
        # One mapping of globals and values for the three templates (`Template.render` builds
        # one per template); Jinja only reads it (shared=True: what a template sets goes to
        # its own context).
        values = {**self._globals, **context}
        return RenderedEmail(
            subject=" ".join(_render(self._subject, values).split()),
            text=_render(self._text, values).strip("\n") + "\n",
            html=_render(self._html, values).strip("\n") + "\n",
        )


def _render(template: Template, values: dict[str, Any]) -> str:
    # `Template.render` itself, without its copy of `values` into a new mapping.
    env = template.environment
    try:
        return env.concat(template.root_render_func(template.new_context(values, shared=True)))  # type: ignore[attr-defined]
    except Exception:
        return env.handle_exception()  # re-raises with the template's line in the traceback
