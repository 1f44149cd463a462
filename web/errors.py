"""Errors mapped in one place: domain and HTTP errors to plain pages or JSON, never a trace."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from ticketing.errors import Conflict, Invalid, NotFound, PermissionDenied, RateLimited

log = logging.getLogger(__name__)

MESSAGES = {
    400: ("Something was wrong with that request", "Go back, reload the page and try again."),
    403: ("You can't do that", "Your account does not allow this action."),
    404: ("Page not found", "It may have been moved, or the link is wrong."),
    405: ("That didn't work", "This page can't be used that way."),
    409: ("Someone else changed this", "Reload the page to see the latest version."),
    413: ("That upload is too large", "Attach smaller files and try again."),
    429: ("Too many attempts", "Please wait a minute and try again."),
    500: ("Something went wrong on our side", "We have logged it. Please try again."),
}


def _render(status: int, detail: str | None = None) -> tuple[Response | str, int]:
    title, hint = MESSAGES.get(status, MESSAGES[500 if status >= 500 else 400])
    if request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json":
        return jsonify({"error": {"status": status, "message": detail or title}}), status
    return render_template(
        "errors/error.html", status=status, title=title, hint=detail or hint
    ), status


def init_app(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
        detail = exc.description if isinstance(exc, CSRFError) else None
        if isinstance(exc, CSRFError):
            detail = "Your session expired or the form was sent from elsewhere. Reload and retry."
        response, status = _render(exc.code or 500, detail)
        if status == 429 and getattr(exc, "retry_after", None):
            return response, status, {"Retry-After": str(exc.retry_after)}
        return response, status

    @app.errorhandler(NotFound)
    def not_found(_exc: NotFound):  # type: ignore[no-untyped-def]
        return _render(404)

    @app.errorhandler(PermissionDenied)
    def denied(_exc: PermissionDenied):  # type: ignore[no-untyped-def]
        return _render(403)

    @app.errorhandler(Invalid)
    def invalid(exc: Invalid):  # type: ignore[no-untyped-def]
        return _render(400, str(exc))

    @app.errorhandler(Conflict)
    def conflict(exc: Conflict):  # type: ignore[no-untyped-def]
        return _render(409, str(exc))

    @app.errorhandler(RateLimited)
    def limited(exc: RateLimited):  # type: ignore[no-untyped-def]
        response, status = _render(429, str(exc))
        return response, status, {"Retry-After": str(exc.retry_after_seconds)}

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        log.exception("unhandled error on %s %s", request.method, request.path)
        from web.extensions import db

        db.session.rollback()
        return _render(InternalServerError.code)
