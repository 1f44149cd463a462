"""Saved replies: canned answers with placeholders, kept by admins, inserted by agents.

Place in the flow: the admin pages create, update and delete them (`create_saved_reply` …);
the ticket composer renders one for a ticket (`render_saved_reply`) and puts the text in the
Message field, where the agent edits it before sending through `conversation`/`mail`.

A saved reply is a Jinja2 template, so it is rendered the way email templates are
(`ticketing.emails`): in a `SandboxedEnvironment` with `StrictUndefined`, over plain dicts of
strings (never model objects, so no attribute walks from `customer` to anything else). The
output is plain text, so autoescape is off. Customer text is only ever a context value, never
template source: a customer named ``{{7*7}}`` renders as ``{{7*7}}`` (security.md case 22).
"""

from __future__ import annotations

import datetime as dt
import operator
from typing import Any

import sqlalchemy as sa
from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment, SecurityError
from sqlalchemy.orm import Session

from ticketing.errors import Invalid, NotFound
from ticketing.models import Agent, SavedReply, Ticket

MAX_TITLE = 200
MAX_BODY = 100_000
# Bounds on what arithmetic in a template may build (`{{ "x" * 10**9 }}` must not eat memory).
MAX_REPEAT = 10_000
MAX_EXPONENT = 64

PLACEHOLDERS = (
    "{{ customer.name }}",
    "{{ customer.email }}",
    "{{ ticket.number }}",
    "{{ ticket.subject }}",
    "{{ agent.name }}",
)


class _Sandbox(SandboxedEnvironment):
    """The Jinja sandbox, with `*` and `**` bounded as well."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "**":
            if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
                raise SecurityError("exponent too large")
            return operator.pow(left, right)
        if operator_name == "*":
            for seq, count in ((left, right), (right, left)):
                is_repeat = isinstance(seq, str | list | tuple) and isinstance(count, int)
                if is_repeat and len(seq) * count > MAX_REPEAT:
                    raise SecurityError("repetition too large")
            return operator.mul(left, right)
        return super().call_binop(context, operator_name, left, right)


_ENV = _Sandbox(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True)


def list_saved_replies(session: Session) -> list[SavedReply]:
    """Every saved reply, by title."""
    return list(session.scalars(sa.select(SavedReply).order_by(SavedReply.title)))


def get_saved_reply(session: Session, saved_reply_id: int) -> SavedReply:
    """The saved reply with this id, or NotFound."""
    found = session.get(SavedReply, saved_reply_id)
    if found is None:
        raise NotFound(f"saved reply {saved_reply_id}")
    return found


def create_saved_reply(
    session: Session, *, title: str, body: str, actor: Agent, now: dt.datetime
) -> SavedReply:
    """A new saved reply. Invalid when the title is empty or taken, or the body is not a
    template that renders with the known placeholders (see `PLACEHOLDERS`)."""
    title = _clean_title(title)
    _check_body(body)
    _require_free_title(session, title)
    saved = SavedReply(
        title=title, body=body, created_by_id=actor.id, created_at=now, updated_at=now
    )
    session.add(saved)
    session.flush()
    return saved


def update_saved_reply(
    session: Session, saved: SavedReply, *, title: str, body: str, now: dt.datetime
) -> SavedReply:
    """Change a saved reply's title and body, with the checks of `create_saved_reply`."""
    title = _clean_title(title)
    _check_body(body)
    _require_free_title(session, title, exclude=saved.id)
    saved.title = title
    saved.body = body
    saved.updated_at = now
    session.flush()
    return saved


def delete_saved_reply(session: Session, saved: SavedReply) -> None:
    """Remove a saved reply (replies already sent with it are unaffected)."""
    session.delete(saved)
    session.flush()


def placeholder_context(*, ticket: Ticket, agent: Agent) -> dict[str, dict[str, Any]]:
    """The values a saved reply may use: plain dicts of strings and numbers, nothing else."""
    return {
        "customer": {"name": ticket.customer.display_name, "email": ticket.customer.email},
        "ticket": {"number": ticket.number, "subject": ticket.subject},
        "agent": {"name": agent.name},
    }


def render_saved_reply(saved: SavedReply, *, ticket: Ticket, agent: Agent) -> str:
    """`saved`'s text for `ticket`, written by `agent`. Invalid (with a message an agent can
    act on) when the template uses an unknown placeholder, breaks the sandbox's rules or does
    not parse; its text is never executed outside the sandbox."""
    return render_template_text(saved.body, placeholder_context(ticket=ticket, agent=agent))


def render_template_text(body: str, context: dict[str, dict[str, Any]]) -> str:
    """Render saved-reply source `body` over `context` in the sandbox."""
    try:
        text = _ENV.from_string(body).render(context)
    except SecurityError as exc:
        raise Invalid(
            "This saved reply tries something a template may not do. Only placeholders such as "
            "{{ customer.name }} are allowed."
        ) from exc
    except UndefinedError as exc:
        raise Invalid(
            f"This saved reply uses a placeholder Handoff doesn't know ({exc.message}). "
            f"Use {', '.join(PLACEHOLDERS)}."
        ) from exc
    except TemplateSyntaxError as exc:
        raise Invalid(
            f"This saved reply has a template error on line {exc.lineno}: {exc.message}"
        ) from exc
    except (TemplateError, ArithmeticError, TypeError, ValueError, OverflowError) as exc:
        raise Invalid("This saved reply could not be filled in for this ticket.") from exc
    if len(text) > MAX_BODY:
        raise Invalid("This saved reply is too long once filled in.")
    return text


def _clean_title(title: str) -> str:
    cleaned = " ".join(title.split())
    if not cleaned:
        raise Invalid("Give the saved reply a title.")
    if len(cleaned) > MAX_TITLE:
        raise Invalid(f"Keep the title under {MAX_TITLE} characters.")
    return cleaned


def _check_body(body: str) -> None:
    if not body.strip():
        raise Invalid("Write the saved reply's text.")
    if len(body) > MAX_BODY:
        raise Invalid("That saved reply is too long.")
    sample = {
        "customer": {"name": "Ann Example", "email": "ann@example.com"},
        "ticket": {"number": 1234, "subject": "Example subject"},
        "agent": {"name": "Dana"},
    }
    render_template_text(body, sample)


def _require_free_title(session: Session, title: str, *, exclude: int | None = None) -> None:
    stmt = sa.select(SavedReply.id).where(sa.func.lower(SavedReply.title) == title.lower())
    if exclude is not None:
        stmt = stmt.where(SavedReply.id != exclude)
    if session.scalar(stmt) is not None:
        raise Invalid("A saved reply with this title already exists.")
