"""Rate limits for the public endpoints (contact form, article suggestions, magic links).

One Flask-Limiter instance for the app. Its storage is configurable
(`HANDOFF_RATELIMIT_STORAGE_URL`: `memory://` for the embedded default, `redis://…` so that
several web processes share their counters). Limits are declared on the routes that need
them (`@limiter.limit(...)`); nothing is limited by default, so agents are never throttled
by accident. A refusal is a 429 rendered by web/errors.py, with `Retry-After`.
"""

from __future__ import annotations

from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

limiter = Limiter(key_func=get_remote_address, default_limits=[], headers_enabled=True)


def init_app(app: Flask) -> None:
    """Bind the limiter to the app with the configured storage."""
    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config["HANDOFF_RATELIMIT_STORAGE_URL"])
    app.config.setdefault("RATELIMIT_ENABLED", app.config["HANDOFF_RATELIMIT_ENABLED"])
    limiter.init_app(app)
