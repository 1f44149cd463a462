"""`GET /metrics`: Prometheus text format, for whoever runs Handoff in production.

Two kinds of numbers, each right however many processes there are:

- What lives in the database (emails ingested, outbox queued/sent/failed, notices sent,
  poll lag per mailbox) is counted at scrape time by `DatabaseCollector` — a few COUNT
  queries on indexed columns — so any web process gives the same
  answer, whichever worker did the work.
- The HTTP latency histogram is per process. Under gunicorn set `PROMETHEUS_MULTIPROC_DIR`
  to an empty directory (before the processes start): every process then writes its samples
  there and a scrape of any one of them sums all of them (prometheus-client's multiprocess
  mode; the README shows the gunicorn hook that tidies up after a dead process).

Access: from loopback (without proxy headers), or with `Authorization: Bearer
<HANDOFF_METRICS_TOKEN>`; anyone else gets the ordinary 404 page, as if there were nothing.
"""

from __future__ import annotations

import datetime as dt
import hmac
import ipaddress
import os
import time
from collections.abc import Iterator

import sqlalchemy as sa
from flask import Blueprint, Flask, Response, abort, current_app, g, request
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session

from ticketing.db import utcnow
from ticketing.models import (
    Mailbox,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Receipt,
    ReceiptStatus,
)
from web.extensions import db

bp = Blueprint("metrics", __name__)

PROXY_HEADERS = ("X-Forwarded-For", "X-Real-IP", "Forwarded")

HTTP_LATENCY = Histogram(
    "handoff_http_request_duration_seconds",
    "Time to answer an HTTP request, by endpoint, method and status class.",
    ["endpoint", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=None,  # registered per scrape (or read from the multiprocess files)
)


class DatabaseCollector(Collector):
    """The numbers kept in the database, counted at scrape time."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def collect(self) -> Iterator[Metric]:
        yield from database_metrics(self.session, now=utcnow())


def database_metrics(session: Session, *, now: dt.datetime) -> list[Metric]:
    """One metric family per database-kept number; a handful of indexed COUNT queries."""
    receipts = CounterMetricFamily(
        "handoff_emails_ingested",
        "Inbound emails recorded, by outcome (processed, duplicate, loop, parked).",
        labels=["status"],
    )
    by_status = dict(
        session.execute(
            sa.select(Receipt.status, sa.func.count(Receipt.id)).group_by(Receipt.status)
        ).all()
    )
    for status in ReceiptStatus:
        receipts.add_metric([status.value], by_status.get(status, 0))

    warnings = GaugeMetricFamily(
        "handoff_parse_warnings",
        "Inbound emails that need a look: parked (processing failed) or recorded from their "
        "headers only (too large).",
        labels=["kind"],
    )
    warnings.add_metric(["parked"], by_status.get(ReceiptStatus.PARKED, 0))
    truncated = session.scalar(
        sa.select(sa.func.count(Receipt.id)).where(Receipt.is_truncated.is_(True))
    )
    warnings.add_metric(["truncated"], truncated or 0)

    outbox = GaugeMetricFamily(
        "handoff_outbox_messages",
        "Outbox rows by status (queued, sent, failed, bounced, suppressed) and kind.",
        labels=["status", "kind"],
    )
    rows = {
        (status, kind): count
        for status, kind, count in session.execute(
            sa.select(OutboxMessage.status, OutboxMessage.kind, sa.func.count(OutboxMessage.id))
            .group_by(OutboxMessage.status, OutboxMessage.kind)
            .order_by(OutboxMessage.status, OutboxMessage.kind)
        )
    }
    for status in OutboxStatus:
        for kind in OutboxKind:
            outbox.add_metric([status.value, kind.value], rows.get((status, kind), 0))

    notices = CounterMetricFamily(
        "handoff_notices_sent", "Notices (proactive messages) delivered to customers."
    )
    notices.add_metric([], rows.get((OutboxStatus.SENT, OutboxKind.NOTICE), 0))

    lag = GaugeMetricFamily(
        "handoff_mailbox_poll_lag_seconds",
        "Seconds since the mailbox's last successful poll (+Inf while polling fails or before "
        "the first poll).",
        labels=["mailbox"],
    )
    failures = GaugeMetricFamily(
        "handoff_mailbox_poll_failures",
        "Consecutive failed polls of the mailbox (0 when the last one worked).",
        labels=["mailbox"],
    )
    for name, polled_at, failed in session.execute(
        sa.select(Mailbox.name, Mailbox.last_polled_at, Mailbox.poll_failures)
        .where(Mailbox.is_active.is_(True))
        .order_by(Mailbox.name)
    ):
        seconds = (
            max((now - polled_at).total_seconds(), 0.0)
            if polled_at is not None and not failed
            else float("inf")
        )
        lag.add_metric([name], seconds)
        failures.add_metric([name], failed)
    session.rollback()
    return [receipts, warnings, outbox, notices, lag, failures]


def is_multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def render(session: Session) -> bytes:
    """The whole exposition: database numbers plus the HTTP histogram (all processes')."""
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(session))
    if is_multiprocess():
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(HTTP_LATENCY)
    return generate_latest(registry)


def is_allowed() -> bool:
    """Loopback without proxy headers (a reverse proxy on the same host is not "local"), or
    the metrics token, compared in constant time."""
    token = current_app.config.get("HANDOFF_METRICS_TOKEN") or ""
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header[7:].strip().encode(), token.encode())
    try:
        local = ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        local = False
    return local and not any(name in request.headers for name in PROXY_HEADERS)


@bp.get("/metrics")
def metrics() -> Response:
    if not is_allowed():
        abort(404)
    body = render(db.session)
    return Response(
        body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4, "Cache-Control": "no-store"}
    )


def _start_timer() -> None:
    g.handoff_request_started = time.perf_counter()


def _observe(response: Response) -> Response:
    started = g.pop("handoff_request_started", None)
    if started is not None:
        endpoint = request.endpoint or "unmatched"  # 404s: never the raw path (unbounded)
        HTTP_LATENCY.labels(endpoint, request.method, f"{response.status_code // 100}xx").observe(
            time.perf_counter() - started
        )
    return response


def init_app(app: Flask) -> None:
    app.before_request(_start_timer)
    app.after_request(_observe)
    app.register_blueprint(bp)
