"""Agent reports (`/agent/reports/...`): the self-service deflection report.

Thin: parse and validate the period (whitelisted `YYYY-MM-DD` dates, default the last 30
days), ask `ticketing.services.reports`, render. Charts are inline SVG drawn by the
template: no JavaScript, nothing from another origin. Every route needs a signed-in agent.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, render_template, request
from flask_login import login_required

from ticketing.db import utcnow
from ticketing.services import reports
from web.extensions import db

bp = Blueprint("reports", __name__, url_prefix="/agent/reports")

PRESETS = (7, 30, 90)


@bp.before_request
@login_required
def _require_agent() -> None:
    """Every route here is for signed-in agents."""


@bp.get("/self-service")
def self_service() -> str:
    today = utcnow().date()
    period = reports.parse_period(request.args.get("from"), request.args.get("to"), today=today)
    return render_template(
        "agent/reports_self_service.html",
        report=reports.self_service(db.session, period),
        today=today,
        presets=[(n, today - dt.timedelta(days=n - 1)) for n in PRESETS],
    )
