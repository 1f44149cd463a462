"""Admin routes: mailbox health and the dead-letter list of mail that could not be processed.

Agents without the admin role get a 404, like for anything out of reach."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from mail.inbound import retry
from ticketing.db import utcnow
from ticketing.models import Receipt, ReceiptStatus
from ticketing.services.mailboxes import list_mailboxes
from web.agent.forms import EmptyForm
from web.downloads import attachment_response
from web.extensions import db
from web.mail_runtime import blobs, inbound_settings

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
@login_required
def _require_admin() -> None:
    if not current_user.agent.is_admin:
        abort(404)


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
