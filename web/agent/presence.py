"""The ticket page's presence heartbeat: "I have this ticket open" / "I am writing a reply".

`web/static/presence.js` posts here every 20 seconds and when the composer's state changes
(CSRF token in the `X-CSRFToken` header, checked by the app-wide CSRFProtect); the answer is
the presence line (`agent/_presence.html`: "Dana is replying…") for the page to show. The
rows themselves live in `ticketing.services.presence`; the reply collision check reads them.
"""

from __future__ import annotations

from flask import render_template, request
from flask_limiter.util import get_remote_address
from flask_login import current_user

from ticketing.db import utcnow
from ticketing.errors import Invalid
from ticketing.models import Activity
from ticketing.services import inbox as queries
from ticketing.services import presence
from web.agent.routes import _me, bp
from web.extensions import db
from web.limits import limiter


def _per_agent() -> str:
    # Limits run before the sign-in check, so an anonymous caller is keyed by address.
    agent = getattr(current_user, "agent", None)
    return f"presence:{agent.id}" if agent is not None else get_remote_address()


@bp.post("/tickets/<int:number>/presence")
@limiter.limit("60 per minute", key_func=_per_agent)
def heartbeat(number: int) -> str:
    t = queries.get_ticket(db.session, number)
    try:
        activity = Activity(request.form.get("activity", ""))
    except ValueError:
        raise Invalid("activity must be viewing or replying.") from None
    now = utcnow()
    presence.touch(db.session, t, agent=_me(), activity=activity, now=now)
    db.session.commit()
    return render_template(
        "agent/_presence.html", others=presence.others(db.session, t, agent=_me(), now=now)
    )
