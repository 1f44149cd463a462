"""Configuration: defaults, then the environment, then an explicit mapping (tests), then checks.

Nothing is read at import time; `load_config()` is called by `create_app`. The only file it
touches is the generated secret key in the data dir, for the embedded default.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULTS: dict[str, Any] = {
    "HANDOFF_DATA_DIR": "instance",
    "HANDOFF_BASE_URL": "http://127.0.0.1:5000",
    "HANDOFF_SMTP_URL": "",
    "HANDOFF_RUN_SCHEDULER": False,
    "HANDOFF_POLL_INTERVAL": 60,
    "HANDOFF_HOUSEKEEPING_INTERVAL": 3600,
    "HANDOFF_MAX_EMAIL_BYTES": 25 * 1024 * 1024,
    "HANDOFF_POLL_LEASE": 120,
    "HANDOFF_INGEST_PROCESSES": 1,
    "HANDOFF_MAIL_FROM": "",
    "HANDOFF_TEAM_NAME": "Support",
    "HANDOFF_OUTBOX_INTERVAL": 5,
    "HANDOFF_OUTBOX_MAX_ATTEMPTS": 8,
    "HANDOFF_OUTBOX_LEASE": 300,
    "HANDOFF_ACK_WINDOW": 3600,
    "HANDOFF_AUTO_MAIL_PER_TICKET": 10,
    "HANDOFF_AUTO_MAIL_PER_RECIPIENT": 30,
    "HANDOFF_AUTO_MAIL_WINDOW": 600,
    "HANDOFF_NEW_TICKETS_PER_SENDER": 20,
    "HANDOFF_NEW_TICKET_WINDOW": 3600,
    "HANDOFF_LOG_FORMAT": "text",
    "HANDOFF_ACCOUNT_URL": "",
    "HANDOFF_NOTICE_HELP_URL": "",
    "HANDOFF_NOTICE_SCAN_INTERVAL": 3600,  # how often to check; it scans once per UTC day
    "HANDOFF_NOTICE_RULES": "expires_30d,expires_7d,expired,payment_failed",
    "HANDOFF_NOTICE_SOON_DAYS": 30,
    "HANDOFF_NOTICE_VERY_SOON_DAYS": 7,
    "HANDOFF_NOTICE_EXPIRED_GRACE_DAYS": 30,
    "HANDOFF_NOTICE_CAP": 3,
    "HANDOFF_NOTICE_CAP_WINDOW": 7 * 86400,
    "HANDOFF_STRIPE_WEBHOOK_SECRET": "",
    "HANDOFF_METRICS_TOKEN": "",
    "HANDOFF_RATELIMIT_STORAGE_URL": "memory://",
    "HANDOFF_RATELIMIT_ENABLED": True,
    "HANDOFF_TRUSTED_PROXIES": 0,
    "HANDOFF_SUGGEST_RATE_LIMIT": "60/minute",
    "HANDOFF_CONTACT_LIMIT": "5/minute;30/hour",  # contact-form posts per client address
    "HANDOFF_WEB_TICKETS_PER_DAY": 500,  # contact-form tickets per 24 h, all visitors together
    "HANDOFF_JOURNEY_LINK_WINDOW": 24 * 3600,  # seconds an email links to a visitor's journey
    "HANDOFF_JOURNEY_RETENTION_DAYS": 180,  # self-service journeys are deleted after this
    "HANDOFF_MAGIC_LINK_TTL": 1800,  # seconds a portal sign-in link works
    "HANDOFF_PORTAL_SESSION_TTL": 4 * 3600,  # seconds a portal sign-in lasts
    "HANDOFF_PORTAL_LINK_LIMIT": "5/minute;30/hour",  # link requests per client address
    "HANDOFF_PORTAL_LINK_EMAIL_LIMIT": "3/15 minutes;10/day",  # link requests per address
    "MAX_CONTENT_LENGTH": 26 * 1024 * 1024,  # 25 MB of attachments plus form fields
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "REMEMBER_COOKIE_HTTPONLY": True,
    "REMEMBER_COOKIE_SAMESITE": "Lax",
    "PERMANENT_SESSION_LIFETIME": 12 * 3600,
    "WTF_CSRF_TIME_LIMIT": None,  # tied to the session instead of a clock
    "SQLALCHEMY_TRACK_MODIFICATIONS": False,
}

# Environment variables read, with the type they are parsed into.
ENVIRONMENT: dict[str, type] = {
    "SECRET_KEY": str,
    "DATABASE_URL": str,
    "HANDOFF_DATA_DIR": str,
    "HANDOFF_BASE_URL": str,
    "HANDOFF_SMTP_URL": str,
    "HANDOFF_RUN_SCHEDULER": bool,
    "HANDOFF_POLL_INTERVAL": int,
    "HANDOFF_MAX_EMAIL_BYTES": int,
    "HANDOFF_POLL_LEASE": int,
    "HANDOFF_INGEST_PROCESSES": int,
    "HANDOFF_MAIL_FROM": str,
    "HANDOFF_TEAM_NAME": str,
    "HANDOFF_OUTBOX_INTERVAL": int,
    "HANDOFF_OUTBOX_MAX_ATTEMPTS": int,
    "HANDOFF_OUTBOX_LEASE": int,
    "HANDOFF_ACK_WINDOW": int,
    "HANDOFF_AUTO_MAIL_PER_TICKET": int,
    "HANDOFF_AUTO_MAIL_PER_RECIPIENT": int,
    "HANDOFF_AUTO_MAIL_WINDOW": int,
    "HANDOFF_NEW_TICKETS_PER_SENDER": int,
    "HANDOFF_NEW_TICKET_WINDOW": int,
    "HANDOFF_LOG_FORMAT": str,
    "HANDOFF_ACCOUNT_URL": str,
    "HANDOFF_NOTICE_HELP_URL": str,
    "HANDOFF_NOTICE_SCAN_INTERVAL": int,
    "HANDOFF_NOTICE_RULES": str,
    "HANDOFF_NOTICE_SOON_DAYS": int,
    "HANDOFF_NOTICE_VERY_SOON_DAYS": int,
    "HANDOFF_NOTICE_EXPIRED_GRACE_DAYS": int,
    "HANDOFF_NOTICE_CAP": int,
    "HANDOFF_NOTICE_CAP_WINDOW": int,
    "HANDOFF_STRIPE_WEBHOOK_SECRET": str,
    "HANDOFF_METRICS_TOKEN": str,
    "HANDOFF_RATELIMIT_STORAGE_URL": str,
    "HANDOFF_RATELIMIT_ENABLED": bool,
    "HANDOFF_TRUSTED_PROXIES": int,
    "HANDOFF_SUGGEST_RATE_LIMIT": str,
    "HANDOFF_CONTACT_LIMIT": str,
    "HANDOFF_WEB_TICKETS_PER_DAY": int,
    "HANDOFF_JOURNEY_LINK_WINDOW": int,
    "HANDOFF_JOURNEY_RETENTION_DAYS": int,
    "HANDOFF_MAGIC_LINK_TTL": int,
    "HANDOFF_PORTAL_SESSION_TTL": int,
    "HANDOFF_PORTAL_LINK_LIMIT": str,
    "HANDOFF_PORTAL_LINK_EMAIL_LIMIT": str,
}


class ConfigError(ValueError):
    """The configuration cannot work; the message says which setting and why."""


def _parse_bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def database_uri(url: str) -> str:
    """Map a user-facing DATABASE_URL to a SQLAlchemy URI (psycopg 3 for PostgreSQL)."""
    scheme, _, rest = url.partition("://")
    if not rest:
        raise ConfigError(f"DATABASE_URL is not a URL: {url!r}")
    if scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}"
    if scheme.startswith("postgresql+") or scheme.startswith("sqlite"):
        return url
    raise ConfigError("DATABASE_URL must be a postgresql:// or sqlite:// URL")


def load_config(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The app's configuration as a dict; raises ConfigError for settings that cannot work."""
    environ = os.environ if environ is None else environ
    config: dict[str, Any] = dict(DEFAULTS)
    for name, kind in ENVIRONMENT.items():
        if name in environ and environ[name] != "":
            raw = environ[name]
            try:
                config[name] = _parse_bool(raw) if kind is bool else kind(raw)
            except ValueError as exc:
                raise ConfigError(f"{name} must be a {kind.__name__}") from exc
    config.update(overrides or {})

    data_dir = Path(config["HANDOFF_DATA_DIR"]).resolve()
    config["HANDOFF_DATA_DIR"] = str(data_dir)
    url = config.pop("DATABASE_URL", None)
    if not config.get("SQLALCHEMY_DATABASE_URI"):
        config["SQLALCHEMY_DATABASE_URI"] = (
            database_uri(url) if url else f"sqlite:///{data_dir / 'handoff.db'}"
        )
    if not config.get("SECRET_KEY"):
        config["SECRET_KEY"] = _stored_secret_key(data_dir)

    base = urlsplit(config["HANDOFF_BASE_URL"])
    if base.scheme not in ("http", "https") or not base.netloc:
        raise ConfigError("HANDOFF_BASE_URL must be an absolute http(s) URL")
    config["HANDOFF_BASE_URL"] = config["HANDOFF_BASE_URL"].rstrip("/")
    secure = base.scheme == "https"
    config.setdefault("SESSION_COOKIE_SECURE", secure)
    config.setdefault("REMEMBER_COOKIE_SECURE", secure)
    if not 0 <= int(config["HANDOFF_TRUSTED_PROXIES"]) <= 5:
        raise ConfigError("HANDOFF_TRUSTED_PROXIES must be between 0 and 5")
    if len(config["SECRET_KEY"]) < 32 and not (config.get("TESTING") or config.get("DEBUG")):
        raise ConfigError("SECRET_KEY must be at least 32 characters")
    return config


def _stored_secret_key(data_dir: Path) -> str:
    """The embedded default's key: generated once, kept in the data dir, readable by us only."""
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key
