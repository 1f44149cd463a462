"""Sign in, sign out. Throttled per client address on top of the per-account lockout."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from werkzeug.wrappers import Response

from ticketing.db import utcnow
from ticketing.errors import RateLimited
from ticketing.services import agents
from web.auth.forms import LoginForm
from web.extensions import db
from web.security import SessionAgent, SlidingWindowLimiter, safe_next

bp = Blueprint("auth", __name__)

# 20 failed attempts per 5 minutes from one address, then 429 until the window slides.
failed_logins_by_ip = SlidingWindowLimiter(limit=20, window=300)


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | Response | tuple[str, int]:
    if current_user.is_authenticated:
        return redirect(url_for("agent.inbox"))
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        client = request.remote_addr or "unknown"
        if failed_logins_by_ip.is_limited(client):
            abort(429)
        try:
            agent = agents.authenticate(
                db.session, email=form.email.data, password=form.password.data, now=utcnow()
            )
        except RateLimited as exc:
            db.session.commit()
            flash(str(exc), "error")
            return render_template("auth/login.html", form=form), 429
        db.session.commit()
        if agent is not None:
            login_user(SessionAgent(agent))
            return redirect(safe_next(request.args.get("next"), url_for("agent.inbox")))
        failed_logins_by_ip.hit(client)
        flash("That email and password don't match an active agent account.", "error")
        status = 401
    elif request.method == "POST":
        status = 400
    return render_template("auth/login.html", form=form), status


@bp.post("/logout")
@login_required
def logout() -> Response:
    logout_user()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))
