"""Agent ticket actions: priority, tags, merge, detach, bulk assign/status, saved replies in
the composer, and the reply collision check ("Dana replied after you opened this ticket").

Routes join the `agent` blueprint (imported at the bottom of `web.agent.routes`) and are thin
(design.md §4): parse a form, load through one helper, call one service in
`ticketing.services.actions`/`tags`/`saved_replies`, commit, redirect. Domain errors
(`Invalid`) become plain 400 pages with their message (web.errors); every POST is
CSRF-protected by the app-wide CSRFProtect and by its FlaskForm.

`page_context` and `reply_collision` are the two seams the ticket page and the composer's
POST in `web.agent.routes` call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import flash, redirect, request, url_for
from werkzeug.wrappers import Response

from ticketing.db import utcnow
from ticketing.errors import Invalid, NotFound
from ticketing.models import Entry, Priority, Ticket
from ticketing.services import actions, presence
from ticketing.services import inbox as queries
from ticketing.services import saved_replies as saved_reply_service
from ticketing.services import tags as tag_service
from web.agent.forms import (
    BulkForm,
    ComposerForm,
    EmptyForm,
    MergeForm,
    PriorityForm,
    ReplyGuardForm,
    SavedReplyPickForm,
    TagsForm,
)
from web.agent.routes import _me, bp
from web.extensions import db
from web.forms import options
from web.security import safe_next
from web.templating import ago


def _first_error(form: Any, default: str) -> str:
    for errors in form.errors.values():
        for error in errors:
            return str(error)
    return default


@bp.post("/tickets/<int:number>/priority")
def change_priority(number: int) -> Response:
    t = queries.get_ticket(db.session, number)
    form = PriorityForm(prefix="priority")
    if not form.validate_on_submit():
        raise Invalid(_first_error(form, "Choose a valid priority."))
    actions.set_priority(t, Priority(form.priority.data), actor=_me(), now=utcnow())
    db.session.commit()
    flash(f"Priority set to {form.priority.data}.", "info")
    return redirect(url_for("agent.ticket", number=number))


@bp.post("/tickets/<int:number>/tags")
def change_tags(number: int) -> Response:
    t = queries.get_ticket(db.session, number)
    form = TagsForm(prefix="tags")
    if not form.validate_on_submit():
        raise Invalid(_first_error(form, "Enter tags separated by commas."))
    names = tag_service.parse_tags(form.tags.data or "")
    tag_service.set_tags(db.session, t, names, actor=_me(), now=utcnow())
    db.session.commit()
    flash("Tags updated.", "info")
    return redirect(url_for("agent.ticket", number=number))


@bp.post("/tickets/<int:number>/merge")
def merge(number: int) -> Response:
    t = queries.get_ticket(db.session, number)
    form = MergeForm(prefix="merge")
    if not form.validate_on_submit():
        raise Invalid(_first_error(form, "Enter a ticket number."))
    target = actions.merge(db.session, t, into=form.into.data, actor=_me(), now=utcnow())
    db.session.commit()
    flash(f"Merged #{number} into #{target.number}.", "info")
    return redirect(url_for("agent.ticket", number=target.number))


@bp.post("/tickets/<int:number>/entries/<int:entry_id>/detach")
def detach_entry(number: int, entry_id: int) -> Response:
    t = queries.get_ticket(db.session, number)
    entry = db.session.get(Entry, entry_id)
    if entry is None or entry.ticket_id != t.id:
        raise NotFound(f"entry {entry_id}")
    if not EmptyForm().validate_on_submit():
        raise Invalid("Reload the page and try again.")
    new = actions.detach_entry(db.session, entry, actor=_me(), now=utcnow())
    db.session.commit()
    flash(f"Moved the message from #{number} to new ticket #{new.number}.", "info")
    return redirect(url_for("agent.ticket", number=new.number))


@bp.post("/tickets/bulk")
def bulk() -> Response:
    form = BulkForm()
    if not form.validate_on_submit():
        raise Invalid(_first_error(form, "Choose tickets and an action."))
    done = actions.bulk_update(
        db.session, numbers=form.numbers.data, action=form.action.data, actor=_me(), now=utcnow()
    )
    db.session.commit()
    flash(f"Updated {len(done)} ticket{'' if len(done) == 1 else 's'}.", "info")
    return redirect(safe_next(form.next.data, url_for("agent.inbox")))


@dataclass(frozen=True, slots=True)
class BulkBar:
    """The inbox list's bulk bar: its form (CSRF token, return path) and its actions."""

    form: BulkForm
    choices: list[tuple[str, str]]


def bulk_bar() -> BulkBar:
    """Built when a template asks for it (`{% set bulk = bulk_bar() %}`), so pages without a
    list pay nothing. The choices are exactly what `actions.parse_bulk_action` accepts."""
    me = _me()
    agents = queries.active_agents(db.session)
    choices = [
        ("assign_me", "Assign to me"),
        ("unassign", "Unassign"),
        *((f"assign:{a.id}", f"Assign to {a.name}") for a in agents if a.id != me.id),
        *((f"status:{s}", f"Set status: {s}") for s in ("open", "pending", "solved", "closed")),
    ]
    return BulkBar(BulkForm(formdata=None, next=request.full_path.rstrip("?")), choices)


@bp.context_processor
def _bulk_bar() -> dict[str, Any]:
    return {"bulk_bar": bulk_bar}


# -- the ticket page and its composer ----------------------------------------------------------


def page_context(
    t: Ticket,
    history: list[Entry],
    composer: ComposerForm,
    *,
    collision: str | None = None,
) -> dict[str, Any]:
    """Everything the ticket page needs for these actions.

    On a plain load (GET) the composer guard records the newest entry the agent is shown,
    and `?saved_reply=<id>` fills the Message field with that saved reply rendered for this
    ticket (an error is shown beside the picker, never raised). After a collision the
    guard keeps what the agent had seen and records what they are now shown, so "Send
    anyway" confirms exactly these messages and no later one.
    """
    newest = max((e.id for e in history), default=0)
    guard = ReplyGuardForm(prefix="composer")
    if collision is None:
        guard = ReplyGuardForm(prefix="composer", formdata=None)
        guard.seen_entry_id.data = newest
    else:
        guard.reviewed_entry_id.data = newest
        guard.reviewed_entry_id.raw_data = None
        guard.send_anyway.data = False
        guard.send_anyway.raw_data = None

    picker = SavedReplyPickForm(formdata=None)
    picker.saved_reply.choices = options(
        [("", "Choose a saved reply")]
        + [(str(r.id), r.title) for r in saved_reply_service.list_saved_replies(db.session)]
    )
    saved_reply_error = None
    wanted = request.args.get("saved_reply", "") if request.method == "GET" else ""
    if wanted:
        picker.saved_reply.data = wanted
        try:
            if not (wanted.isascii() and wanted.isdigit() and len(wanted) < 12):
                raise NotFound(wanted)
            saved = saved_reply_service.get_saved_reply(db.session, int(wanted))
            composer.body.data = saved_reply_service.render_saved_reply(
                saved, ticket=t, agent=_me()
            )
            composer.mode.data = "reply"
        except NotFound:
            saved_reply_error = "That saved reply doesn't exist any more. Choose another."
        except Invalid as exc:
            saved_reply_error = str(exc)

    merged_into = db.session.get(Ticket, t.merged_into_id) if t.merged_into_id else None
    return {
        "priority_form": PriorityForm(prefix="priority", formdata=None, priority=t.priority.value),
        "tags_form": TagsForm(
            prefix="tags", formdata=None, tags=", ".join(tag.name for tag in t.tags)
        ),
        "merge_form": MergeForm(prefix="merge", formdata=None),
        "detach_form": EmptyForm(formdata=None),
        "guard": guard,
        "saved_reply_picker": picker,
        "saved_reply_error": saved_reply_error,
        "merged_into": merged_into,
        "collision": collision,
        "present": presence.others(db.session, t, agent=_me(), now=utcnow()),
    }


def reply_collision(t: Ticket) -> str | None:
    """The warning to show instead of sending a reply, or None when it may go out.

    A reply is held when a public message (another agent's reply, the customer's message)
    arrived after the newest entry the composer was loaded with, or when another agent is
    writing a reply right now (their presence heartbeat says so and has not expired).
    "Send anyway" lets it go over exactly the messages shown with the warning, and over
    whoever is replying. A post without the guard (an older page, a script) is not checked.
    """
    guard = ReplyGuardForm(prefix="composer")
    if not guard.validate():
        raise Invalid("Reload the page and try again.")
    seen = guard.seen_entry_id.data
    if seen is None:
        return None
    if guard.send_anyway.data and guard.reviewed_entry_id.data is not None:
        seen = max(seen, guard.reviewed_entry_id.data)
    unseen = actions.unseen_replies(db.session, t, seen_entry_id=seen, actor=_me())
    if not unseen:
        if guard.send_anyway.data:
            return None
        busy = presence.replying(db.session, t, agent=_me(), now=utcnow())
        if not busy:
            return None
        who = _names([a.name for a in busy])
        verb = "is" if len(busy) == 1 else "are"
        return (
            f"{who} {verb} writing a reply to this ticket right now. Wait for it and review "
            "it, or tick Send anyway."
        )
    who = _names([e.author_name or e.author_email or "Someone" for e in unseen])
    return (
        f"{who} replied {ago(unseen[-1].created_at)}, after you opened this ticket. "
        "Review it, then send again."
    )


def _names(people: list[str]) -> str:
    """'Sam', 'Sam and Dana', 'Sam, Dana and 2 more' (each name once, first seen first)."""
    names = list(dict.fromkeys(people))
    if len(names) == 1:
        return names[0]
    if len(names) == 2:
        return f"{names[0]} and {names[1]}"
    return f"{names[0]}, {names[1]} and {len(names) - 2} more"
