"""Customer portal routes: ask for a link, follow it, see your tickets, reply, log out.

Thin, like every blueprint: parse, load through one helper that 404s, call one service,
commit, render or redirect. Rules that matter here (security.md G 46, 49, 50, 51):
- asking for a link answers the same page and status for any address, and makes the link
  only after that answer has gone out (same timing too); it is rate-limited per client
  address and per email address; the link is built from HANDOFF_BASE_URL only;
- a link's GET only shows a "Continue" button (mail scanners prefetch links); the POST signs
  in once; every bad link gets one neutral page;
- pages send `Referrer-Policy: no-referrer` and the request log never shows a token;
- tickets are looked up within the signed-in customer's own (404 otherwise), and only the
  public part of a conversation is shown.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from mail.portal_links import request_link
from ticketing.db import utcnow
from ticketing.errors import Invalid, NotFound
from ticketing.models import Customer, Ticket
from ticketing.models.people import normalize_email
from ticketing.services import portal
from web.downloads import attachment_response
from web.errors import MESSAGES
from web.extensions import db
from web.limits import limiter
from web.logs import redact_request_paths
from web.mail_runtime import outbound_context
from web.portal import session as portal_session
from web.portal.forms import ContinueForm, EmptyForm, LinkRequestForm, ReplyForm

bp = Blueprint("portal", __name__, url_prefix="/portal")

log = logging.getLogger(__name__)

LOGIN_PATH = "/portal/login/"
F = TypeVar("F", bound=Callable[..., Any])


@bp.record_once
def _redact_request_logs(_state: object) -> None:
    redact_request_paths(LOGIN_PATH)


@bp.after_request
def _no_referrer(response: Response) -> Response:
    # A page reached through a magic link must not hand its URL to anyone it links to.
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(HTTPException)
def _error_page(exc: HTTPException) -> HTTPException | tuple[str, int, dict[str, str]]:
    """Errors on portal pages in the portal's frame (not the agents' "back to the inbox")."""
    status = exc.code or 500
    if status < 400:
        return exc  # routing redirects
    title, hint = MESSAGES.get(status, MESSAGES[400])
    if isinstance(exc, CSRFError):
        hint = "Your session expired or the form was sent from elsewhere. Reload and retry."
    headers = {"Retry-After": str(exc.retry_after)} if getattr(exc, "retry_after", None) else {}
    page = render_template("portal/error.html", status=status, title=title, hint=hint)
    return page, status, headers


def _customer_required(view: F) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        customer = portal_session.current_customer()
        if customer is None:
            flash("Enter your email address and we will send you a link to your tickets.", "info")
            return redirect(url_for("portal.start"))
        return view(customer, *args, **kwargs)

    return cast(F, wrapper)


def _link_limit() -> str:
    return str(current_app.config["HANDOFF_PORTAL_LINK_LIMIT"])


def _email_limit() -> str:
    return str(current_app.config["HANDOFF_PORTAL_LINK_EMAIL_LIMIT"])


def _email_key() -> str:
    return "portal-email:" + normalize_email(request.form.get("email", ""))[:320]


@bp.get("")
def start() -> str | Response:
    if portal_session.current_customer() is not None:
        return redirect(url_for("portal.tickets"))
    return render_template("portal/start.html", form=LinkRequestForm())


@bp.post("")
@limiter.limit(_link_limit, methods=["POST"])
@limiter.limit(_email_limit, key_func=_email_key, methods=["POST"])
def ask_for_link() -> Response | tuple[str, int]:
    form = LinkRequestForm()
    if not form.validate_on_submit():
        return render_template("portal/start.html", form=form), 400
    response = make_response(render_template("portal/link_sent.html"))
    # The link is made and queued once the answer has gone out, so how long the answer
    # takes cannot tell a known address from an unknown one (security.md case 50).
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    response.call_on_close(functools.partial(_send_link, app, form.email.data))
    return response


def _send_link(app: Flask, email: str) -> None:
    """Make and queue a sign-in link for `email` (if it has tickets), in its own transaction."""
    with app.app_context():
        base_url = app.config["HANDOFF_BASE_URL"]
        try:
            request_link(
                db.session,
                email=email,
                now=utcnow(),
                ctx=outbound_context(app),
                ttl=dt.timedelta(seconds=int(app.config["HANDOFF_MAGIC_LINK_TTL"])),
                link_for=lambda token: f"{base_url}{LOGIN_PATH}{token}",
            )
            db.session.commit()
        except Exception:  # a boundary: the visitor already has their answer
            db.session.rollback()
            log.exception("could not queue a customer portal link")


@bp.get("/login/<path:token>")
def follow_link(token: str) -> str:
    """The page a link opens. It changes nothing: mail scanners fetch links to check them."""
    return render_template("portal/continue.html", form=ContinueForm(token=token))


@bp.post("/login")
@limiter.limit("30/minute", methods=["POST"])
def sign_in() -> Response | tuple[str, int]:
    form = ContinueForm()
    if not form.validate_on_submit():
        return _bad_link()
    try:
        customer = portal.redeem_link(db.session, token=form.token.data, now=utcnow())
    except NotFound:
        db.session.rollback()
        return _bad_link()
    db.session.commit()
    portal_session.start(customer, now=utcnow())
    return redirect(url_for("portal.tickets"))


def _bad_link() -> tuple[str, int]:
    """One page for every link that does not work: unknown, tampered, expired, used."""
    return render_template("portal/bad_link.html", form=LinkRequestForm()), 400


@bp.get("/tickets")
@_customer_required
def tickets(customer: Customer) -> str:
    return render_template(
        "portal/tickets.html",
        customer=customer,
        tickets=portal.customer_tickets(db.session, customer),
        words=portal.STATUS_WORDS,
        logout_form=EmptyForm(),
    )


def _ticket(customer: Customer, number: int) -> Ticket:
    try:
        return portal.customer_ticket(db.session, customer, number)
    except NotFound:
        abort(404)


@bp.get("/tickets/<int:number>")
@_customer_required
def ticket(customer: Customer, number: int) -> str | Response:
    t = _ticket(customer, number)
    if t.merged_into_id is not None:
        target = db.session.get(Ticket, t.merged_into_id)
        if target is not None and target.customer_id == customer.id:
            return redirect(url_for("portal.ticket", number=target.number))
    return _ticket_page(customer, t, ReplyForm()), 200


def _ticket_page(customer: Customer, t: Ticket, form: ReplyForm) -> str:
    return render_template(
        "portal/ticket.html",
        customer=customer,
        ticket=t,
        entries=portal.public_history(db.session, t),
        words=portal.STATUS_WORDS,
        form=form,
        logout_form=EmptyForm(),
    )


@bp.post("/tickets/<int:number>/reply")
@limiter.limit("30/minute", methods=["POST"])
@_customer_required
def reply(customer: Customer, number: int) -> Response | tuple[str, int]:
    t = _ticket(customer, number)
    form = ReplyForm()
    if not form.validate_on_submit():
        return _ticket_page(customer, t, form), 400
    try:
        entry = portal.reply(
            db.session, t, customer=customer, body_text=form.body.data, now=utcnow()
        )
    except Invalid as exc:
        db.session.rollback()
        form.body.errors = [str(exc)]
        return _ticket_page(customer, t, form), 400
    db.session.commit()
    flash("Thanks, we have your reply.", "info")
    return redirect(url_for("portal.ticket", number=entry.ticket.number, _anchor="latest"))


@bp.get("/tickets/<int:number>/attachments/<int:attachment_id>/<path:filename>")
@_customer_required
def attachment(customer: Customer, number: int, attachment_id: int, filename: str) -> Response:
    t = _ticket(customer, number)
    try:
        att = portal.public_attachment(db.session, t, attachment_id)
        data = current_app.extensions["handoff_blobs"].get(att.sha256)
    except (NotFound, FileNotFoundError):
        abort(404)
    return attachment_response(data, filename=att.filename, content_type=att.content_type)


@bp.post("/logout")
def logout() -> Response:
    if not EmptyForm().validate_on_submit():
        abort(400)
    portal_session.end()
    flash("You are logged out.", "info")
    return redirect(url_for("portal.start"))
