"""`/contact`: the public contact form, deflection, and the "this solved it" links.

With JavaScript (`static/contact.js`) the form shows live suggestions from
`/api/v1/articles/suggest`, opens an article in place (`/contact/articles/<id>`), and
"This answers my question" posts to `/contact/deflect`. Without it, the first POST shows the
suggestions on a second step, and the ticket is made by the second. Either way a submission
is POST-redirect-GET to `/contact/sent`, and its idempotency token makes one ticket however
often it is posted.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import RequestEntityTooLarge

from mail import outbound
from ticketing import kb_markdown, kb_search
from ticketing.db import utcnow
from ticketing.errors import Invalid
from ticketing.services import deflection, intake, journeys, kb
from ticketing.services.conversation import NewAttachment
from web import selfservice
from web.contact.forms import MAX_BODY, MAX_SUBJECT, ContactForm, SolvedForm, is_valid_email
from web.contact.forms import is_valid_token as _is_valid_token
from web.extensions import db
from web.limits import limiter
from web.logs import redact_request_paths
from web.mail_runtime import blobs, outbound_context
from web.uploads import MAX_FILE_BYTES, MAX_FILES, store_uploads

log = logging.getLogger(__name__)

bp = Blueprint("contact", __name__, url_prefix="/contact")

SUGGESTIONS = 5
_SENT_KEY = "contact_ticket"


SOLVED_PATH = "/contact/solved/"


@bp.record_once
def _redact_request_logs(_state: object) -> None:
    redact_request_paths(SOLVED_PATH)


# A form without files never needs this much; multipart text fields are capped by Flask's
# MAX_FORM_MEMORY_SIZE, and uploads by MAX_CONTENT_LENGTH.
MAX_URLENCODED_BYTES = 1024 * 1024


@bp.before_request
def _refuse_oversized_forms() -> None:
    if (
        request.method == "POST"
        and request.mimetype == "application/x-www-form-urlencoded"
        and (request.content_length or 0) > MAX_URLENCODED_BYTES
    ):
        raise RequestEntityTooLarge()


def _contact_limit() -> str:
    return str(current_app.config["HANDOFF_CONTACT_LIMIT"])


def _signer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="contact-attachments")


def _page(form: ContactForm, stored: list[NewAttachment], status: int = 200) -> tuple[str, int]:
    return render_template(
        "contact/form.html",
        form=form,
        stored=stored,
        max_files=MAX_FILES,
        max_file_mb=MAX_FILE_BYTES // (1024 * 1024),
        max_body=MAX_BODY,
    ), status


@bp.get("")
def form() -> tuple[str, int]:
    selfservice.current_journey()
    form = ContactForm(formdata=None)
    query = " ".join(request.args.get("q", "").replace("\x00", "").split())
    form.subject.data = query[:MAX_SUBJECT]
    form.token.data = secrets.token_urlsafe(24)
    return _page(form, [])


@bp.post("")
@limiter.limit(_contact_limit)
def submit() -> Response | tuple[str, int]:
    journey = selfservice.current_journey(create=False)
    form = ContactForm()
    if form.website.data:
        # A bot filled in the honeypot: it sees a thank-you, nothing is stored or sent.
        log.info("contact form: honeypot filled in; ignored")
        return render_template("contact/sent.html", number=None), 200
    if not _is_valid_token(form.token.data):
        form.token.data = secrets.token_urlsafe(24)
    token = form.token.data
    existing = intake.find_submission(db.session, token=token)
    if existing is not None:
        return _sent(existing.number)

    is_valid = form.validate_on_submit()
    stored = _stored_attachments(form)
    try:
        uploads = [f for f in request.files.getlist("attachments") if f.filename]
        if len(stored) + len(uploads) > MAX_FILES:
            # Kept from the first step plus new ones: the limit is for the whole request.
            raise Invalid(f"Attach at most {MAX_FILES} files.")
        stored += store_uploads(uploads, blobs=blobs(current_app))
    except Invalid as exc:
        form.attachments.errors = [str(exc)]
        is_valid = False
    # Files that passed are kept for the next step, so nobody attaches them twice.
    form.stored.data = _signer().dumps([_attachment_dict(a) for a in stored]) if stored else ""
    if not is_valid:
        return _page(form, stored, 400)

    if form.confirmed.data != "1":
        articles = _suggestions(f"{form.subject.data}\n{form.body.data}")
        if articles:
            selfservice.track_suggestions(form.subject.data, [a["id"] for a in articles])
            db.session.commit()
            return render_template("contact/review.html", form=form, articles=articles), 200

    now = utcnow()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    result = intake.submit_web_request(
        db.session,
        name=form.name.data,
        email=form.email.data,
        subject=form.subject.data,
        body=form.body.data,
        attachments=stored,
        journey=journey,
        idempotency_token=token,
        now=now,
        daily_cap=int(app.config["HANDOFF_WEB_TICKETS_PER_DAY"]),
    )
    if result.entry is not None:
        outbound.acknowledge(
            db.session, result.ticket, result.entry, now=now, ctx=outbound_context(app)
        )
    number = result.ticket.number
    db.session.commit()
    return _sent(number)


def _sent(number: int) -> Response:
    session[_SENT_KEY] = number
    return redirect(url_for("contact.sent"), code=303)


@bp.get("/sent")
def sent() -> Response | tuple[str, int]:
    number = session.get(_SENT_KEY)
    if not isinstance(number, int):
        return redirect(url_for("contact.form"))
    expected = outbound_context(current_app).expected_reply  # type: ignore[arg-type]
    return render_template("contact/sent.html", number=number, expected_reply=expected), 200


@bp.post("/deflect")
@limiter.limit("30/minute")
def deflect() -> Response | tuple[str, int]:
    """End the visit as deflected ("This answers my question"): no ticket is made."""
    journey = selfservice.current_journey()
    article_id = _article_id(request.form.get("article_id"))
    email = " ".join(request.form.get("email", "").split())
    if journey is not None:
        journeys.deflect(
            db.session,
            journey,
            now=utcnow(),
            article_id=article_id,
            email=email if is_valid_email(email) else None,
        )
    db.session.commit()
    if request.accept_mimetypes.best == "application/json":
        return jsonify({"message": "Glad that helped!"})
    return render_template("contact/thanks.html"), 200


@bp.get("/articles/<int:article_id>")
def article(article_id: int) -> tuple[str, int]:
    """An article as a fragment, opened in place beside the form."""
    found = kb.get_published_article(db.session, article_id)
    selfservice.track_article_view(found.id)
    return render_template(
        "contact/_article.html", article=found, body=kb_markdown.render(found.body)
    ), 200


@bp.post("/articles/<int:article_id>/read")
@limiter.limit("60/minute")
def article_read(article_id: int) -> tuple[str, int]:
    """How long an article stayed open (sent by the page when it is closed)."""
    seconds = request.form.get("seconds", type=int)
    if seconds is not None and seconds >= 0 and _article_id(str(article_id)) is not None:
        selfservice.track_article_read_time(article_id, seconds)
        db.session.commit()
    return "", 204


@bp.route("/solved/<token>", methods=["GET", "POST"])
@limiter.limit("20/minute")
def solved(token: str) -> Response:
    """The "this solved it" link of an acknowledgement: GET asks (scanners prefetch links),
    the POST solves the ticket once."""
    form = SolvedForm()
    now = utcnow()
    if request.method == "POST":
        if not form.validate_on_submit():
            raise Invalid("Your session expired. Reload the page and press the button again.")
        view = deflection.use_solved_link(db.session, token=token, now=now)
        done = view.state is deflection.LinkState.VALID
        db.session.commit()
    else:
        view = deflection.inspect_solved_link(db.session, token=token, now=now)
        done = False
    status = {deflection.LinkState.UNKNOWN: 404, deflection.LinkState.EXPIRED: 410}.get(
        view.state, 200
    )
    response = make_response(
        render_template("contact/solved.html", view=view, form=form, done=done), status
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.errorhandler(RequestEntityTooLarge)
def too_large(_exc: RequestEntityTooLarge) -> tuple[str, int]:
    """The contact form's own 413 page: what the limits are, in words."""
    return render_template(
        "contact/too_large.html",
        max_files=MAX_FILES,
        max_file_mb=MAX_FILE_BYTES // (1024 * 1024),
        max_body=MAX_BODY,
    ), 413


def _suggestions(text: str) -> list[dict[str, Any]]:
    try:
        with db.session.begin_nested():
            hits = kb_search.suggest(db.session, text[:2000], limit=SUGGESTIONS)
    except SQLAlchemyError:
        # No suggestions is no reason to lose a request: it goes straight to a person.
        log.exception("contact form: no suggestions for the second step")
        return []
    found = kb.published_by_ids(db.session, (h.article_id for h in hits))
    return [
        {"id": a.id, "title": a.title, "snippet": h.snippet, "slug": a.slug}
        for h in hits
        if (a := found.get(h.article_id)) is not None
    ]


def _article_id(raw: str | None) -> int | None:
    if raw is None or not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        return None
    return int(raw) or None


def _attachment_dict(a: NewAttachment) -> dict[str, Any]:
    return {"s": a.sha256, "n": a.size, "t": a.content_type, "f": a.filename}


def _stored_attachments(form: ContactForm) -> list[NewAttachment]:
    """Files stored on an earlier step, from the signed hidden field (ignored if tampered)."""
    if not form.stored.data:
        return []
    try:
        items = _signer().loads(form.stored.data)
    except BadSignature:
        return []
    return [
        NewAttachment(sha256=i["s"], size=int(i["n"]), content_type=i["t"], filename=i["f"])
        for i in items[:MAX_FILES]
    ]
