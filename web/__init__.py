"""The web layer and composition root: config, database session, CLI, jobs and blueprints.

`create_app` does no I/O beyond reading configuration: no migrations, no network, no
scheduler. `wsgi.py` builds the app; `flask --app wsgi serve` also starts the scheduler.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, abort
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from ticketing.storage import BlobStore
from web.config import load_config
from web.extensions import configure_sqlite, csrf, db, login_manager, migrate


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build a Handoff app. `config` overrides the environment (tests pass their own)."""
    app = Flask(__name__)
    app.config.update(load_config(config))
    if proxies := app.config["HANDOFF_TRUSTED_PROXIES"]:
        # Behind N reverse proxies the client is the Nth address from the right of
        # X-Forwarded-For; rate limits, lockouts and /metrics need it. The Host header is
        # never trusted (links are built from HANDOFF_BASE_URL), so x_host stays off.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)  # type: ignore[method-assign]
    _configure_logging(app)

    # Route numbers beyond the tables' 32-bit integer keys are nobody's: 404, not a database
    # error (PostgreSQL refuses to bind them to an INTEGER column; SQLite overflows at 64 bits).
    app.url_map.converters["int"] = BoundedIntConverter
    app.url_value_preprocessor(_numbers_in_range)
    db.init_app(app)
    migrate.init_app(app, db, directory=_migrations_dir())
    csrf.init_app(app)
    login_manager.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            configure_sqlite(db.engine)
    app.extensions["handoff_blobs"] = BlobStore(Path(app.config["HANDOFF_DATA_DIR"]) / "blobs")

    from web import auth, cli, errors, health, limits, metrics, security, templating
    from web.admin import routes as admin_routes
    from web.agent import email_view
    from web.agent import kb as kb_editor
    from web.agent import reports as agent_reports
    from web.agent import routes as agent_routes
    from web.api import bp as api_bp
    from web.contact import routes as contact_routes
    from web.help import routes as help_routes
    from web.portal import bp as portal_bp
    from web.proxy import bp as proxy_bp

    security.init_app(app)
    limits.init_app(app)
    templating.init_app(app)
    errors.init_app(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(agent_routes.bp)
    app.register_blueprint(email_view.bp)
    app.register_blueprint(proxy_bp)
    app.register_blueprint(admin_routes.bp)
    app.register_blueprint(health.bp)
    metrics.init_app(app)
    app.register_blueprint(api_bp)
    app.register_blueprint(kb_editor.bp)
    app.register_blueprint(agent_reports.bp)
    app.register_blueprint(help_routes.bp)
    app.register_blueprint(contact_routes.bp)
    app.register_blueprint(portal_bp)
    from web import notices, webhooks

    app.register_blueprint(notices.bp)
    app.register_blueprint(webhooks.bp)
    cli.init_app(app)
    return app


class BoundedIntConverter(IntegerConverter):
    """`<int:…>` in every route: at most 18 digits, so any number fits the 64-bit integers
    the databases bind (SQLite's driver overflows beyond; the lookup then finds nothing, a
    404). Bounded by the pattern rather than `max=`: with a failing `max` Werkzeug answers
    405 instead of 404 for some methods."""

    regex = r"\d{1,18}"


MAX_ROUTE_NUMBER = 2**31 - 1


def _numbers_in_range(_endpoint: str | None, values: dict[str, Any] | None) -> None:
    # After routing, for every method alike (a `max=` on the converter makes Werkzeug answer
    # 405 for some methods instead of 404).
    if values and any(isinstance(v, int) and v > MAX_ROUTE_NUMBER for v in values.values()):
        abort(404)


def _migrations_dir() -> str:
    return str(Path(__file__).resolve().parent.parent / "migrations")


def _configure_logging(app: Flask) -> None:
    from web.logs import configure_logging

    configure_logging(app.config["HANDOFF_LOG_FORMAT"])  # text or json; secrets redacted
    app.logger.setLevel(logging.INFO)
    # One line per job run every few seconds drowns everything else; failures still log.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
