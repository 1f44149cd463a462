"""Admin routes: agents, mailboxes, saved replies, and the dead-letter list of failed mail.

Thin, like every route: parse a form, load through one helper that 404s, call one service,
commit, render or redirect. Agents without the admin role get a 404 on every route here
(checked once, server-side, before any of them runs), like for anything out of reach.
"""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask_login import current_user, login_required, logout_user
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response

from mail.imap import ImapError, ImapSettings, check_mailbox
from mail.inbound import retry
from ticketing.db import utcnow
from ticketing.errors import Invalid, NotFound
from ticketing.models import Agent, AgentRole, Mailbox, Receipt, ReceiptStatus
from ticketing.services import agents as agent_service
from ticketing.services import mailboxes as mailbox_service
from ticketing.services import saved_replies as reply_service
from ticketing.services.mailboxes import list_mailboxes
from web.admin.forms import (
    InviteForm,
    MailboxForm,
    MailboxPasswordForm,
    RoleForm,
    SavedReplyForm,
)
from web.agent.forms import EmptyForm
from web.downloads import attachment_response
from web.extensions import db
from web.mail_runtime import blobs, inbound_settings

bp = Blueprint("admin", __name__, url_prefix="/admin")

# Seconds "Test connection" waits for the IMAP server; the page waits with it.
TEST_TIMEOUT = 15.0

# What each saved-reply placeholder stands for, in the hint next to the text.
_PLACEHOLDER_MEANINGS = {
    "{{ customer.name }}": "the customer's name (or their email address)",
    "{{ customer.email }}": "the customer's email address",
    "{{ ticket.number }}": "the ticket number, such as 1234",
    "{{ ticket.subject }}": "the ticket's subject",
    "{{ agent.name }}": "the name of the agent sending the reply",
}
PLACEHOLDERS = [(code, _PLACEHOLDER_MEANINGS.get(code, "")) for code in reply_service.PLACEHOLDERS]


@bp.before_request
@login_required
def _require_admin() -> None:
    if not current_user.agent.is_admin:
        abort(404)


def _me() -> Agent:
    return current_user.agent  # type: ignore[no-any-return]


def _secret_key() -> str:
    return str(current_app.config["SECRET_KEY"])


def _require_button(form: FlaskForm) -> None:
    """One-button actions: a bad or missing CSRF token is a 400 (CSRFProtect also checks)."""
    if not form.validate_on_submit():
        abort(400)


@bp.get("")
def index() -> str:
    return render_template("admin/index.html")


# -- agents ----------------------------------------------------------------------------


def _agent(agent_id: int) -> Agent:
    agent = db.session.get(Agent, agent_id)
    if agent is None:
        abort(404)
    return agent


def _agents_page(invite: InviteForm | None = None, status: int = 200) -> tuple[str, int]:
    agents = agent_service.list_agents(db.session)
    role_forms = {
        a.id: RoleForm(prefix=f"agent-{a.id}", formdata=None, role=a.role.value) for a in agents
    }
    return render_template(
        "admin/agents.html",
        agents=agents,
        me=_me(),
        role_forms=role_forms,
        invite=invite or InviteForm(formdata=None),
        button=EmptyForm(formdata=None),
    ), status


@bp.get("/agents")
def agents() -> tuple[str, int]:
    return _agents_page()


@bp.post("/agents")
def invite_agent() -> tuple[str, int]:
    form = InviteForm()
    if form.validate_on_submit():
        try:
            agent, password = agent_service.invite_agent(
                db.session,
                email=form.email.data,
                name=form.name.data,
                role=AgentRole(form.role.data),
            )
        except Invalid as exc:
            db.session.rollback()
            form.email.errors.append(str(exc))
        else:
            db.session.commit()
            return _temporary_password(agent, password, reason="invited")
    return _agents_page(invite=form, status=400)


def _temporary_password(agent: Agent, password: str, *, reason: str) -> tuple[str, int]:
    """The one page that shows a temporary password. It is never stored or logged, and
    HTML pages are sent with `Cache-Control: no-store`, so Back does not show it again."""
    return render_template(
        "admin/temporary_password.html", agent=agent, password=password, reason=reason
    ), 200


@bp.post("/agents/<int:agent_id>/role")
def change_role(agent_id: int) -> Response:
    agent = _agent(agent_id)
    form = RoleForm(prefix=f"agent-{agent.id}")
    if not form.validate_on_submit():
        abort(400)
    try:
        agent_service.change_role(db.session, agent, role=AgentRole(form.role.data))
    except Invalid as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("admin.agents"))
    db.session.commit()
    if agent.id == _me().id and not agent.is_admin:
        flash("You are now an agent: the admin pages are no longer open to you.", "info")
        return redirect(url_for("agent.inbox"))
    flash(f"{agent.name} is now {'an admin' if agent.is_admin else 'an agent'}.", "info")
    return redirect(url_for("admin.agents"))


@bp.post("/agents/<int:agent_id>/deactivate")
def deactivate_agent(agent_id: int) -> Response:
    agent = _agent(agent_id)
    _require_button(EmptyForm())
    try:
        agent_service.deactivate_agent(db.session, agent)
    except Invalid as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("admin.agents"))
    db.session.commit()
    if agent.id == _me().id:
        logout_user()
        flash("You deactivated your own account and are signed out.", "info")
        return redirect(url_for("auth.login"))
    flash(f"{agent.name} is deactivated and signed out everywhere.", "info")
    return redirect(url_for("admin.agents"))


@bp.post("/agents/<int:agent_id>/reactivate")
def reactivate_agent(agent_id: int) -> tuple[str, int] | Response:
    agent = _agent(agent_id)
    _require_button(EmptyForm())
    try:
        agent, password = agent_service.reactivate_agent(db.session, agent)
    except Invalid as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("admin.agents"))
    db.session.commit()
    return _temporary_password(agent, password, reason="reactivated")


@bp.post("/agents/<int:agent_id>/reset-password")
def reset_password(agent_id: int) -> tuple[str, int] | Response:
    agent = _agent(agent_id)
    _require_button(EmptyForm())
    if not agent.is_active:
        flash(f"{agent.name} is deactivated: reactivate them instead.", "error")
        return redirect(url_for("admin.agents"))
    password = agent_service.reset_password(db.session, agent)
    db.session.commit()
    if agent.id == _me().id:
        logout_user()  # the session's fingerprint of the old hash no longer matches
    return _temporary_password(agent, password, reason="reset")


# -- mailboxes -------------------------------------------------------------------------


def _mailbox(mailbox_id: int) -> Mailbox:
    mailbox = db.session.get(Mailbox, mailbox_id)
    if mailbox is None or not mailbox.is_active:
        abort(404)
    return mailbox


def _mailboxes_page(
    *,
    add: MailboxForm | None = None,
    password_forms: dict[int, MailboxPasswordForm] | None = None,
    results: dict[int, tuple[bool, list[str]]] | None = None,
    status: int = 200,
) -> tuple[str, int]:
    mailboxes = list_mailboxes(db.session)
    forms = {m.id: MailboxPasswordForm(prefix=f"mailbox-{m.id}", formdata=None) for m in mailboxes}
    forms.update(password_forms or {})
    return render_template(
        "admin/mailboxes.html",
        mailboxes=mailboxes,
        add=add or MailboxForm(formdata=None),
        password_forms=forms,
        results=results or {},
        button=EmptyForm(formdata=None),
    ), status


@bp.get("/mailboxes")
def mailboxes() -> tuple[str, int]:
    return _mailboxes_page()


# Which field a service error belongs next to, by its wording (first match wins).
_MAILBOX_ERROR_FIELDS = (
    ("mailbox name", "name"),
    ("A mailbox named", "name"),
    ("removed mailbox", "name"),
    ("not an email address", "address"),
    ("Plain IMAP", "security"),
    ("IMAP security", "security"),
    ("host name", "imap_host"),
    ("port", "imap_port"),
    ("user name", "imap_user"),
    ("password", "imap_password"),
    ("move-to folder", "move_to"),
    ("folder", "folder"),
)


@bp.post("/mailboxes")
def add_mailbox() -> tuple[str, int] | Response:
    form = MailboxForm()
    if form.validate_on_submit():
        try:
            mailbox = mailbox_service.add_mailbox(
                db.session,
                name=form.name.data,
                address=form.address.data,
                imap_host=form.imap_host.data,
                imap_port=form.imap_port.data,
                imap_user=form.imap_user.data,
                imap_password=form.imap_password.data,
                imap_security=form.security.data,
                folder=form.folder.data,
                move_to_folder=form.move_to.data or None,
                secret_key=_secret_key(),
            )
        except Invalid as exc:
            db.session.rollback()
            message = str(exc)
            field = next((f for key, f in _MAILBOX_ERROR_FIELDS if key in message), "name")
            form[field].errors.append(message)
        else:
            db.session.commit()
            flash(
                f"Added mailbox {mailbox.name}. Use “Test connection” to check it can sign in.",
                "info",
            )
            return redirect(url_for("admin.mailboxes"))
    return _mailboxes_page(add=form, status=400)


@bp.post("/mailboxes/<int:mailbox_id>/test")
def test_mailbox(mailbox_id: int) -> tuple[str, int]:
    """Log in and look at the folder, like `flask mailboxes test`; changes nothing."""
    mailbox = _mailbox(mailbox_id)
    _require_button(EmptyForm())
    password = ""
    try:
        password = mailbox_service.imap_password(mailbox, secret_key=_secret_key())
        settings = ImapSettings.for_mailbox(mailbox, password=password, timeout=TEST_TIMEOUT)
        found = check_mailbox(settings)
    except (Invalid, ImapError) as exc:
        message = str(exc)
        if password:  # ImapError never contains it; belt and braces for the page
            message = message.replace(password, "•••")
        result = (False, [f"The test failed: {message}"])
    else:
        result = (
            True,
            [
                f"Signed in to {settings.where} as {mailbox.imap_user}"
                f" ({mailbox.imap_security.value}).",
                f"Folder {found.folder}: {found.exists} messages, {found.unseen} unread.",
            ],
        )
    return _mailboxes_page(results={mailbox.id: result})


@bp.post("/mailboxes/<int:mailbox_id>/password")
def set_mailbox_password(mailbox_id: int) -> tuple[str, int] | Response:
    mailbox = _mailbox(mailbox_id)
    form = MailboxPasswordForm(prefix=f"mailbox-{mailbox.id}")
    if not form.validate_on_submit():
        return _mailboxes_page(password_forms={mailbox.id: form}, status=400)
    mailbox_service.set_imap_password(
        mailbox, password=form.imap_password.data, secret_key=_secret_key()
    )
    db.session.commit()
    flash(f"Stored a new IMAP password for {mailbox.name}.", "info")
    return redirect(url_for("admin.mailboxes"))


@bp.post("/mailboxes/<int:mailbox_id>/remove")
def remove_mailbox(mailbox_id: int) -> Response:
    mailbox = _mailbox(mailbox_id)
    _require_button(EmptyForm())
    name = mailbox.name
    try:
        outcome = mailbox_service.remove_mailbox(db.session, name)
    except NotFound:
        abort(404)
    db.session.commit()
    if outcome is mailbox_service.MailboxRemoval.DELETED:
        flash(f"Removed mailbox {name}.", "info")
    else:
        flash(
            f"Mailbox {name} is no longer polled and its password was deleted. Tickets refer"
            " to it, so it is kept for their history.",
            "info",
        )
    return redirect(url_for("admin.mailboxes"))


# -- saved replies ---------------------------------------------------------------------


def _saved_reply_error(form: SavedReplyForm, exc: Invalid) -> None:
    """Put a service error next to the field it is about: the title, or else the text (an
    unknown placeholder, a template that does not parse)."""
    message = str(exc)
    (form.title if "title" in message else form.body).errors.append(message)


def _saved_replies_page(form: SavedReplyForm | None = None, status: int = 200) -> tuple[str, int]:
    return render_template(
        "admin/saved_replies.html",
        replies=reply_service.list_saved_replies(db.session),
        form=form or SavedReplyForm(formdata=None),
        placeholders=PLACEHOLDERS,
        button=EmptyForm(formdata=None),
    ), status


@bp.get("/saved-replies")
def saved_replies() -> tuple[str, int]:
    return _saved_replies_page()


@bp.post("/saved-replies")
def create_saved_reply() -> tuple[str, int] | Response:
    form = SavedReplyForm()
    if form.validate_on_submit():
        try:
            reply = reply_service.create_saved_reply(
                db.session,
                title=form.title.data,
                body=form.body.data,
                actor=_me(),
                now=utcnow(),
            )
        except Invalid as exc:
            db.session.rollback()
            _saved_reply_error(form, exc)
        else:
            db.session.commit()
            flash(f"Saved reply “{reply.title}” created.", "info")
            return redirect(url_for("admin.saved_replies"))
    return _saved_replies_page(form, status=400)


@bp.route("/saved-replies/<int:reply_id>", methods=["GET", "POST"])
def edit_saved_reply(reply_id: int) -> tuple[str, int] | Response:
    reply = reply_service.get_saved_reply(db.session, reply_id)
    form = SavedReplyForm(obj=reply)
    status = 200
    if form.validate_on_submit():
        try:
            reply_service.update_saved_reply(
                db.session, reply, title=form.title.data, body=form.body.data, now=utcnow()
            )
        except Invalid as exc:
            db.session.rollback()
            _saved_reply_error(form, exc)
        else:
            db.session.commit()
            flash(f"Saved reply “{reply.title}” updated.", "info")
            return redirect(url_for("admin.saved_replies"))
    if form.is_submitted():
        status = 400
    return render_template(
        "admin/saved_reply_edit.html",
        reply=reply,
        form=form,
        placeholders=PLACEHOLDERS,
        button=EmptyForm(formdata=None),
    ), status


@bp.post("/saved-replies/<int:reply_id>/delete")
def delete_saved_reply(reply_id: int) -> Response:
    reply = reply_service.get_saved_reply(db.session, reply_id)
    _require_button(EmptyForm())
    title = reply.title
    reply_service.delete_saved_reply(db.session, reply)
    db.session.commit()
    flash(f"Saved reply “{title}” deleted.", "info")
    return redirect(url_for("admin.saved_replies"))


# -- failed mail -----------------------------------------------------------------------


@bp.get("/mail/failed")
def failed_mail() -> str:
    parked = db.session.scalars(
        sa.select(Receipt).where(Receipt.status == ReceiptStatus.PARKED).order_by(Receipt.id)
    ).all()
    return render_template(
        "admin/failed_mail.html",
        mailboxes=list_mailboxes(db.session),
        parked=parked,
        form=EmptyForm(),
    )


def _parked(receipt_id: int) -> Receipt:
    receipt = db.session.get(Receipt, receipt_id)
    if receipt is None or receipt.status != ReceiptStatus.PARKED:
        abort(404)
    return receipt


@bp.post("/mail/failed/<int:receipt_id>/retry")
def retry_mail(receipt_id: int) -> Response:
    if not EmptyForm().validate_on_submit():
        abort(400)
    receipt = _parked(receipt_id)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        retry(db.session, receipt, settings=inbound_settings(app), blobs=blobs(app), now=utcnow())
        db.session.commit()
        flash("The message was processed.", "info")
    except Exception as exc:  # boundary: show the reason, keep the message parked
        db.session.rollback()
        receipt = _parked(receipt_id)
        receipt.attempts += 1
        receipt.error = f"{type(exc).__name__}: {exc}"[:2000]
        db.session.commit()
        flash(f"Still failing: {receipt.error}", "error")
    return redirect(url_for("admin.failed_mail"))


@bp.get("/mail/receipts/<int:receipt_id>/raw")
def raw_mail(receipt_id: int) -> Response:
    receipt = db.session.get(Receipt, receipt_id)
    if receipt is None:
        abort(404)
    data = blobs(current_app._get_current_object()).get(receipt.raw_sha256)  # type: ignore[attr-defined]
    return attachment_response(
        data, filename=f"message-{receipt.id}.eml", content_type="message/rfc822"
    )
