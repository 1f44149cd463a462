"""Web security in one place: response headers, the signed-in agent, safe redirects, throttles."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import Flask, Response, g, request
from flask_login import UserMixin

from ticketing.models import Agent
from web.extensions import db, login_manager, sqlite_read_only

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def init_app(app: Flask) -> None:
    app.before_request(_mark_read_only)
    app.teardown_request(_unmark_read_only)
    app.after_request(_security_headers)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Sign in to continue."
    login_manager.session_protection = "basic"
    login_manager.user_loader(_load_user)


def _mark_read_only() -> None:
    """GET and HEAD never change state (CSRF rules rely on it too), so their SQLite
    transactions may start deferred; see `web.extensions.configure_sqlite`."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        g.sqlite_read_only_token = sqlite_read_only.set(True)


def _unmark_read_only(_exc: BaseException | None = None) -> None:
    token = g.pop("sqlite_read_only_token", None)
    if token is not None:
        sqlite_read_only.reset(token)


def _security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if response.mimetype == "text/html":
        headers.setdefault("Cache-Control", "no-store")
    return response


@dataclass
class SessionAgent(UserMixin):
    """The signed-in agent as Flask-Login sees it; the domain model stays Flask-free.

    The session id embeds a fragment of the password hash, so changing a password ends every
    other session of that agent.
    """

    agent: Agent

    def get_id(self) -> str:
        return f"{self.agent.id}:{self.agent.password_hash[-12:]}"

    @property
    def is_active(self) -> bool:
        return self.agent.is_active


def _load_user(user_id: str) -> SessionAgent | None:
    agent_id, _, fingerprint = user_id.partition(":")
    if not (agent_id.isascii() and agent_id.isdigit()):
        return None
    agent = db.session.get(Agent, int(agent_id))
    if agent is None or not agent.is_active or agent.password_hash[-12:] != fingerprint:
        return None
    return SessionAgent(agent)


def safe_next(target: str | None, default: str) -> str:
    """`target` if it is a same-origin relative path, else `default` (no open redirects)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return default
    if "\\" in target or any(ord(c) < 32 for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


class SlidingWindowLimiter:
    """At most `limit` events per `window` seconds per key, in this process.

    A cheap first line against password guessing from one address; the durable control is
    the per-account lockout in `ticketing.services.agents`.
    """

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> bool:
        """Record an event; False when the key is over its limit."""
        now = time.monotonic()
        with self._lock:
            events = self._events.setdefault(key, deque())
            while events and events[0] <= now - self.window:
                events.popleft()
            if len(events) >= self.limit:
                return False
            events.append(now)
            if len(self._events) > 10_000:
                self._events = {k: v for k, v in self._events.items() if v}
            return True

    def is_limited(self, key: str) -> bool:
        """Whether the key is at its limit now, without recording an event."""
        now = time.monotonic()
        with self._lock:
            events = self._events.get(key)
            return bool(events) and sum(1 for t in events if t > now - self.window) >= self.limit

    def reset(self) -> None:
        with self._lock:
            self._events.clear()
