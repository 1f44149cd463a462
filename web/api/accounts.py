"""`POST /api/v1/accounts`: batch upsert of billing accounts (the CSV import's fields as JSON).

Body: ``{"accounts": [{"external_id": "cus_1", "email": "…", "name": "…", "plan": "…",
"status": "…", "card_brand": "visa", "card_last4": "4242", "card_exp_month": 12,
"card_exp_year": 2030}, …]}`` (at most 1000 items). Each item is checked on its own: the
good ones are saved, the bad ones come back in ``errors`` with their index and the reason;
an item holding anything like a card number is refused and never stored or echoed.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from ticketing.db import utcnow
from ticketing.services import accounts as account_service
from web.api.routes import _bad, _json_body, bp
from web.extensions import db

MAX_ITEMS = 1000


def _fields(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        return {"__width__": "an item is not an object"}
    # JSON numbers for month/year/last4 are accepted as their text.
    return {
        str(k): (str(v) if isinstance(v, int) and not isinstance(v, bool) else v)
        for k, v in item.items()
    }


@bp.post("/accounts")
def upsert_accounts() -> tuple[Response, int]:
    data = _json_body(("accounts",))
    items = data.get("accounts")
    if not isinstance(items, list) or not items:
        raise _bad("accounts must be a non-empty list of account objects.")
    if len(items) > MAX_ITEMS:
        raise _bad(f"At most {MAX_ITEMS} accounts per request.")
    result = account_service.upsert_records(
        db.session, ((index, _fields(item)) for index, item in enumerate(items)), now=utcnow()
    )
    db.session.commit()
    return jsonify(
        {
            "received": result.rows,
            "created": result.created,
            "updated": result.updated,
            "cards_changed": result.cards_changed,
            "errors": [{"index": e.line, "message": e.reason} for e in result.errors],
        }
    ), 200
