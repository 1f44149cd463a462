"""Agent routes: thin — parse input, load through one helper, call one service, commit."""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from mail import outbound
from ticketing.db import utcnow
from ticketing.errors import Invalid
from ticketing.models import (
    Agent,
    Attachment,
    Channel,
    Entry,
    OutboxMessage,
    Priority,
    Status,
    Ticket,
)
from ticketing.services import conversation, journeys, presence
from ticketing.services import inbox as queries
from ticketing.services import notices as notice_service
from ticketing.services import outbox as outbox_rules
from web.agent.forms import AssignForm, ComposerForm, EmptyForm, StatusForm
from web.agent.inbox_params import InboxParams
from web.downloads import attachment_response
from web.extensions import db
from web.forms import options
from web.mail_runtime import outbound_context
from web.uploads import store_uploads

bp = Blueprint("agent", __name__)


@bp.before_request
@login_required
def _require_agent() -> None:
    """Every route here is for signed-in agents."""


def _me() -> Agent:
    return current_user.agent  # type: ignore[no-any-return]


@bp.get("/")
def home() -> Response:
    return redirect(url_for("agent.inbox"))


@bp.get("/tickets")
def inbox() -> Response:
    params = InboxParams.parse(request.args)
    if params.q:
        page = queries.search_page(
            db.session, params.q, agent=_me(), filters=params.filters, cursor=params.cursor
        )
    else:
        page = queries.list_tickets(
            db.session,
            view=params.view,
            agent=_me(),
            cursor=params.cursor,
            sort=params.sort,
            filters=params.filters,
        )
    # htmx (filter change, view link, paging) swaps in just the inbox; a history restore or
    # any plain request gets the whole page.
    partial = request.headers.get("HX-Request") == "true" and not request.headers.get(
        "HX-History-Restore-Request"
    )
    html = render_template(
        "agent/_inbox_fragment.html" if partial else "agent/inbox.html",
        params=params,
        view=params.view,
        views=list(queries.View),
        page=page,
        counts=queries.view_counts(db.session, agent=_me()),
        count_cap=queries.COUNT_CAP,
        choices=queries.filter_choices(db.session),
        sorts=list(queries.Sort),
        statuses=list(Status),
        priorities=list(Priority),
        channels=list(Channel),
        page_size=queries.PAGE_SIZE,
    )
    response = make_response(html)
    response.vary.add("HX-Request")
    return response


@bp.get("/tickets/<int:number>")
def ticket(number: int) -> str:
    t = queries.get_ticket(db.session, number)
    return _ticket_page(t, composer=ComposerForm(prefix="composer"))


def _ticket_page(t: Ticket, *, composer: ComposerForm, collision: str | None = None) -> str:
    """The ticket page; after a reply collision, with the agent's text and the warning."""
    assign_form = AssignForm(prefix="assign")
    agents = queries.active_agents(db.session)
    assign_form.assignee.choices = options(
        [("", "Unassigned")] + [(str(a.id), a.name) for a in agents]
    )
    assign_form.assignee.data = str(t.assignee_id or "")
    status_form = StatusForm(prefix="status", status=t.status.value)
    history = queries.history(db.session, t)
    return render_template(
        "agent/ticket.html",
        ticket=t,
        entries=history,
        deliveries=outbox_rules.for_entries(db.session, [e.id for e in history]),
        retry_form=EmptyForm(),
        others=queries.other_tickets(db.session, t),
        participants=queries.participants(db.session, t),
        composer=composer,
        status_form=status_form,
        assign_form=assign_form,
        flag_labels=FLAG_LABELS,
        journey=journeys.summary(db.session, t),
        accounts=notice_service.summaries(db.session, t.customer, today=utcnow().date()),
        **ticket_actions.page_context(t, history, composer, collision=collision),
    )


@bp.post("/tickets/<int:number>/messages")
def post_message(number: int) -> Response | tuple[str, int]:
    t = queries.get_ticket(db.session, number)
    form = ComposerForm(prefix="composer")
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for error in errors:
                flash(str(error), "error")
        return redirect(url_for("agent.ticket", number=number))
    if form.mode.data != "note" and (collision := ticket_actions.reply_collision(t)):
        return _ticket_page(t, composer=form, collision=collision), 409
    now = utcnow()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    files = store_uploads(form.attachments.data, blobs=app.extensions["handoff_blobs"])
    if form.mode.data == "note":
        conversation.add_note(t, actor=_me(), body_text=form.body.data, now=now, attachments=files)
        flash("Note added.", "info")
    else:
        outbound.reply(
            db.session,
            t,
            actor=_me(),
            body_text=form.body.data,
            now=now,
            status=Status(form.status.data),
            ctx=outbound_context(app),
            attachments=files,
        )
        flash("Reply queued for sending.", "info")
    presence.stop_replying(db.session, t, agent=_me())
    db.session.commit()
    return redirect(url_for("agent.ticket", number=number, _anchor="latest"))


@bp.post("/tickets/<int:number>/status")
def change_status(number: int) -> Response:
    t = queries.get_ticket(db.session, number)
    form = StatusForm(prefix="status")
    if not form.validate_on_submit():
        raise Invalid("Choose a valid status.")
    conversation.set_status(t, Status(form.status.data), actor=_me(), now=utcnow())
    db.session.commit()
    flash(f"Status set to {form.status.data}.", "info")
    return redirect(url_for("agent.ticket", number=number))


@bp.post("/tickets/<int:number>/assignee")
def change_assignee(number: int) -> Response:
    t = queries.get_ticket(db.session, number)
    form = AssignForm(prefix="assign")
    agents = {str(a.id): a for a in queries.active_agents(db.session)}
    form.assignee.choices = options([("", "Unassigned")] + [(k, a.name) for k, a in agents.items()])
    if not form.validate_on_submit():
        raise Invalid("Choose an agent.")
    assignee = agents.get(form.assignee.data or "")
    conversation.assign(t, assignee, actor=_me(), now=utcnow())
    db.session.commit()
    flash(f"Assigned to {assignee.name}." if assignee else "Unassigned.", "info")
    return redirect(url_for("agent.ticket", number=number))


FLAG_LABELS = {
    "autoreply": "Automatic reply",
    "feedback_report": "Abuse report",
    "sender_unverified": "Sender unverified",
    "unusable_sender": "No usable sender",
    "message_id_conflict": "Reused Message-ID",
    "rate_limited": "Over the sender rate limit",
    "parts_omitted": "Parts left out (too large)",
    "bounce": "Bounce",
}


@bp.post("/tickets/<int:number>/outbox/<int:outbox_id>/retry")
def retry_delivery(number: int, outbox_id: int) -> Response:
    """Send a failed reply again (same message, same Message-ID)."""
    t = queries.get_ticket(db.session, number)
    if not EmptyForm().validate_on_submit():
        raise Invalid("Reload the page and try again.")
    row = db.session.get(OutboxMessage, outbox_id)
    if row is None or row.ticket_id != t.id:
        abort(404)
    outbox_rules.retry(row, now=utcnow())
    db.session.commit()
    flash("The message is queued again.", "info")
    return redirect(url_for("agent.ticket", number=number))


@bp.get("/entries/<int:entry_id>/raw")
def raw_entry(entry_id: int) -> Response:
    """The original email of an entry, exactly as received, as a download."""
    entry = db.session.get(Entry, entry_id)
    if entry is None or entry.raw_sha256 is None:
        abort(404)
    try:
        data = current_app.extensions["handoff_blobs"].get(entry.raw_sha256)
    except FileNotFoundError:
        abort(404)
    return attachment_response(
        data,
        filename=f"ticket-{entry.ticket.number}-entry-{entry.id}.eml",
        content_type="message/rfc822",
    )


@bp.get("/attachments/<int:attachment_id>/<path:filename>")
def attachment(attachment_id: int, filename: str) -> Response:
    """Download an attachment: always as a download, never rendered or sniffed; with
    `?inline=1` a PNG/JPEG/GIF/WebP is shown inline (email `cid:` images), nothing else."""
    att = db.session.get(Attachment, attachment_id)
    if att is None:
        abort(404)
    blobs = current_app.extensions["handoff_blobs"]
    try:
        data = blobs.get(att.sha256)
    except FileNotFoundError:
        abort(404)
    return attachment_response(
        data,
        filename=att.filename,
        content_type=att.content_type,
        inline=request.args.get("inline") == "1",
    )


# Ticket actions (priority, tags, merge, detach, bulk, saved replies) add their routes to `bp`.
from web.agent import actions as ticket_actions  # noqa: E402
from web.agent import presence as _presence_routes  # noqa: E402, F401  (the heartbeat)
