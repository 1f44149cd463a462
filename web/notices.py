"""`/notices/unsubscribe/<token>`: the List-Unsubscribe target of every notice (RFC 8058).

GET shows a page with a confirm button; POST unsubscribes. The POST needs no CSRF token, by
the RFC's design: mail providers send ``List-Unsubscribe=One-Click`` from their servers,
without cookies, and the signed per-customer token in the URL is the only credential (an
HMAC, checked in constant time). An unknown or forged token is 404.
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template

from mail.notices import customer_from_unsubscribe_token
from ticketing.db import utcnow
from ticketing.models import Customer
from ticketing.services import notices as notice_service
from web.extensions import csrf, db
from web.limits import limiter
from web.logs import redact_request_paths

bp = Blueprint("notices", __name__, url_prefix="/notices")


@bp.record_once
def _redact_request_logs(_state: object) -> None:
    # The one-click unsubscribe token is in the path, and request logs print paths.
    redact_request_paths("/notices/unsubscribe/")


def _customer(token: str) -> Customer:
    customer_id = customer_from_unsubscribe_token(
        token, secret_key=current_app.config["SECRET_KEY"]
    )
    customer = db.session.get(Customer, customer_id) if customer_id is not None else None
    if customer is None:
        abort(404)
    return customer


@bp.get("/unsubscribe/<token>")
@limiter.limit("30 per minute")
def unsubscribe_page(token: str) -> str:
    customer = _customer(token)
    return render_template("notices/unsubscribe.html", token=token, done=False, customer=customer)


@bp.post("/unsubscribe/<token>")
@csrf.exempt
@limiter.limit("30 per minute")
def unsubscribe(token: str) -> str:
    customer = _customer(token)
    notice_service.opt_out(db.session, customer, now=utcnow())
    db.session.commit()
    return render_template("notices/unsubscribe.html", token=token, done=True, customer=customer)
