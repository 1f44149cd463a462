"""Log output: text for people (the default) or one JSON object per line for log pipelines.

`HANDOFF_LOG_FORMAT=json` writes `{"time", "level", "logger", "message", ...}` per line, plus
whatever context the call passed with `extra=` (`ticket_id`, `message_id`, `mailbox_id`,
`outbox_id`, ...), and the traceback as `exc_info` on failures.

Either way every record first goes through `RedactingFilter`: passwords in URLs
(`smtp://user:***@host`), `password=`/`token=`-style pairs, bearer tokens and SMTP AUTH
payloads are masked, and `extra=` keys that name a secret or a message body are replaced, so
a careless log call cannot leak credentials or what customers wrote.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "***"

_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@")
_PAIR = re.compile(
    r"(?i)\b(password|passwd|pwd|secret(?:_key)?|token|api[_-]?key|authorization|cookie)"
    r"(\s*[:=]\s*[\"']?)(?!\*\*\*)([^\s\"'&,;]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_AUTH = re.compile(r"(?i)\b(AUTH\s+(?:PLAIN|LOGIN|CRAM-MD5|XOAUTH2))\s+\S+")

_SECRET_KEY_PARTS = ("password", "passwd", "secret", "token", "authorization", "cookie", "api_key")
_BODY_KEYS = frozenset({"body", "body_text", "body_html", "html", "text", "raw", "content"})

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


# Every pattern above needs one of these: text without any (nearly every log line) is left
# as it is after one search instead of four substitutions.
_SUSPECT = re.compile(r"(?i)://|bearer|basic|auth|passw|pwd|secret|token|api[_-]?key|cookie")


def redact(text: str) -> str:
    """`text` with credentials masked (URL passwords, secret pairs, bearer and AUTH data)."""
    if not _SUSPECT.search(text):
        return text
    text = _URL_PASSWORD.sub(rf"\1{REDACTED}@", text)
    text = _BEARER.sub(rf"\1 {REDACTED}", text)
    text = _AUTH.sub(rf"\1 {REDACTED}", text)
    return _PAIR.sub(rf"\1\2{REDACTED}", text)


def _clean_extra(key: str, value: Any) -> Any:
    lowered = key.lower()
    if any(part in lowered for part in _SECRET_KEY_PARTS):
        return REDACTED
    if lowered in _BODY_KEYS:
        return "[omitted]"
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


class RedactingFilter(logging.Filter):
    """Masks secrets in the message and the `extra=` context of every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_handoff_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep what there is, still redacted
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        for key in [k for k in vars(record) if k not in _STANDARD]:
            setattr(record, key, _clean_extra(key, getattr(record, key)))
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        record._handoff_redacted = True
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, context."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = _clean_extra(key, value)
        if record.exc_info:
            entry["exc_info"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(log_format: str) -> None:
    """Give the root logger a handler in the chosen format (unless the host process, e.g.
    pytest, already set one up) and make every root handler redact secrets."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        is_json = log_format.strip().lower() == "json"
        handler.setFormatter(JsonFormatter() if is_json else logging.Formatter(TEXT_FORMAT))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


class RedactTokenPath(logging.Filter):
    """Request log lines (werkzeug's, gunicorn's access log) carry the path, and some paths
    hold a secret (a magic link's, a "this solved it" link's token): replace it before the
    line is written anywhere."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix
        self._token = re.compile(rf"({re.escape(prefix)})[^\s\"?#]+")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.prefix in message:
            record.msg = self._token.sub(r"\1[redacted]", message)
            record.args = ()
        return True


REQUEST_LOGGERS = ("werkzeug", "gunicorn.access")


def redact_request_paths(prefix: str) -> None:
    """Mask whatever follows `prefix` in the request loggers' lines (idempotent)."""
    for name in REQUEST_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokenPath) and f.prefix == prefix for f in logger.filters):
            logger.addFilter(RedactTokenPath(prefix))
