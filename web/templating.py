"""Jinja filters shared by every template."""

from __future__ import annotations

import datetime as dt

from flask import Flask

from ticketing.db import utcnow


def ago(value: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """A relative time such as "3 h ago"; the exact time goes in the element's title."""
    if value is None:
        return ""
    seconds = int(((now or utcnow()) - value).total_seconds())
    if seconds < 60:
        return "just now"
    for size, unit in ((86400 * 365, "y"), (86400 * 30, "mo"), (86400, "d"), (3600, "h")):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds // 60} min ago"


def filesize(size: int) -> str:
    step = 1024.0
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < step or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= step
    return f"{size} B"


def init_app(app: Flask) -> None:
    app.jinja_env.filters["ago"] = ago
    app.jinja_env.filters["filesize"] = filesize
