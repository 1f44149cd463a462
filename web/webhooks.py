"""`POST /webhooks/stripe`: Stripe-compatible billing events keep account data current.

CSRF-exempt (Stripe's servers sign the raw body instead): the `Stripe-Signature` header is
checked against HANDOFF_STRIPE_WEBHOOK_SECRET over the exact bytes received, before the body
is even parsed. Answers: 200 for applied, replayed and ignored events (Stripe then stops
retrying); 400 for a bad signature or a malformed event (nothing changes); 503 when no secret
is configured. A failed payment's notice is queued in the same transaction as the event.
"""

from __future__ import annotations

import json
import logging
import time

from flask import Blueprint, Response, current_app, jsonify, request

from mail.notices import send as send_notice
from ticketing.db import utcnow
from ticketing.errors import Invalid
from ticketing.services import stripe_events
from web.extensions import csrf, db
from web.notices_runtime import notice_context

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
MAX_BODY_BYTES = 512 * 1024


def _answer(status: int, **body: str) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response


@bp.post("/stripe")
@csrf.exempt
def stripe() -> Response:
    secret = current_app.config.get("HANDOFF_STRIPE_WEBHOOK_SECRET") or ""
    if not secret:
        return _answer(503, error="HANDOFF_STRIPE_WEBHOOK_SECRET is not set; events are refused.")
    request.max_content_length = MAX_BODY_BYTES
    payload = request.get_data(cache=False)
    try:
        stripe_events.verify_signature(
            payload,
            request.headers.get("Stripe-Signature", ""),
            secret=secret,
            now=int(time.time()),
        )
    except stripe_events.BadSignature as exc:
        log.warning("Stripe webhook refused: %s", exc)
        return _answer(400, error=str(exc))
    try:
        event = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return _answer(400, error="The body is not valid JSON.")
    now = utcnow()
    try:
        outcome = stripe_events.apply(db.session, event, now=now)
        if outcome.notify is not None:
            send_notice(
                db.session,
                outcome.notify,
                now=now,
                today=now.date(),
                ctx=notice_context(current_app._get_current_object()),  # type: ignore[attr-defined]
            )
    except Invalid as exc:
        db.session.rollback()
        return _answer(400, error=str(exc))
    db.session.commit()
    return _answer(200, result=outcome.result, detail=outcome.detail)
