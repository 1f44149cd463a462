"""Operating Handoff: readiness, metrics, structured logs and once-per-period jobs.

An operator's load balancer asks /readyz before sending traffic; Prometheus scrapes /metrics
(from loopback or with the token, never from the internet); the log pipeline reads one JSON
object per line and must never see a password or what a customer wrote.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from mail.inbound import Delivery
from mail.poller import ingest_one
from tests.support.mailfactory import make_email
from ticketing.models import JobRun, MailboxSecurity
from ticketing.services.job_runs import claim_run, finish_run, period_key
from ticketing.services.mailboxes import add_mailbox
from web.jobs import JobDefinition, run_job
from web.logs import JsonFormatter, RedactingFilter
from web.mail_runtime import blobs, inbound_settings, send_outbox

TOKEN = "metrics-token-" + "m" * 32


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (labels in any order)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        sample, _, value = line.rpartition(" ")
        if sample.split("{")[0] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', sample))
        if found == labels:
            return float(value)
    raise AssertionError(f"no sample {name}{labels} in:\n{text}")


# --- readiness ------------------------------------------------------------------------------


def test_readyz_is_ok_when_the_schema_is_at_the_migrations_head(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["database"] == body["head"] and body["head"]
    assert response.headers["Cache-Control"] == "no-store"


def test_readyz_refuses_traffic_while_the_database_is_behind_the_code(client, db_session):
    head = db_session.scalar(sa.text("SELECT version_num FROM alembic_version"))
    db_session.execute(sa.text("UPDATE alembic_version SET version_num = '0013_presence'"))
    db_session.commit()
    try:
        response = client.get("/readyz")
    finally:
        db_session.rollback()
        db_session.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": head})
        db_session.commit()
    assert response.status_code == 503
    body = response.get_json()
    assert body["reason"] == "migrations not at head"
    assert body["database"] == ["0013_presence"]
    assert body["head"] == [head]
    assert client.get("/readyz").status_code == 200  # upgraded again: back in rotation
    assert client.get("/healthz").status_code == 200  # the process itself was fine all along


@pytest.mark.only_database("sqlite")
def test_readyz_says_503_when_the_database_cannot_be_reached(tmp_path):
    from tests.conftest import make_app

    app = make_app(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'handoff.db'}", tmp_path / "data")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "reason": "database unreachable"}


# --- metrics --------------------------------------------------------------------------------


def test_metrics_count_what_the_database_holds_and_time_each_request(
    app, client, db_session, smtp_server
):
    box = add_mailbox(
        db_session,
        name="support",
        address="support@example.com",
        imap_host="127.0.0.1",
        imap_port=1143,
        imap_user="support@example.com",
        imap_password="secret",
        imap_security=MailboxSecurity.PLAIN,
        secret_key=app.config["SECRET_KEY"],
    )
    box.last_polled_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=90)
    db_session.commit()
    for i in range(3):
        raw = make_email(sender=f"Cus {i} <cus{i}@example.org>", message_id=f"m{i}@example.org")
        status = ingest_one(
            db_session,
            Delivery(raw=raw, source="import"),
            settings=inbound_settings(app),
            blobs=blobs(app),
        )
        assert status == "processed"

    text = client.get("/metrics").get_data(as_text=True)
    assert metric(text, "handoff_emails_ingested_total", status="processed") == 3
    assert metric(text, "handoff_emails_ingested_total", status="parked") == 0
    assert metric(text, "handoff_parse_warnings", kind="parked") == 0
    assert metric(text, "handoff_outbox_messages", status="queued", kind="acknowledgement") == 3
    assert metric(text, "handoff_outbox_messages", status="sent", kind="acknowledgement") == 0
    assert metric(text, "handoff_notices_sent_total") == 0
    assert 90 <= metric(text, "handoff_mailbox_poll_lag_seconds", mailbox="support") < 150
    assert metric(text, "handoff_mailbox_poll_failures", mailbox="support") == 0

    app.config["HANDOFF_SMTP_URL"] = f"smtp://{smtp_server.host}:{smtp_server.port}"
    smtp_server.fail_next(550, "5.1.1 No such user", rcpt="cus2@example.org")
    send_outbox(app)
    db_session.commit()
    assert len(smtp_server.wait_for(2)) == 2

    text = client.get("/metrics").get_data(as_text=True)
    assert metric(text, "handoff_outbox_messages", status="queued", kind="acknowledgement") == 0
    assert metric(text, "handoff_outbox_messages", status="sent", kind="acknowledgement") == 2
    assert metric(text, "handoff_outbox_messages", status="failed", kind="acknowledgement") == 1
    # Every process answers for all of them: the counts live in the database.
    assert "handoff_http_request_duration_seconds_bucket" in text
    assert (
        metric(
            text,
            "handoff_http_request_duration_seconds_count",
            endpoint="metrics.metrics",
            method="GET",
            status="2xx",
        )
        >= 1
    )

    box.poll_failures = 2
    db_session.commit()
    text = client.get("/metrics").get_data(as_text=True)
    assert metric(text, "handoff_mailbox_poll_lag_seconds", mailbox="support") == float("inf")
    assert metric(text, "handoff_mailbox_poll_failures", mailbox="support") == 2


def test_metrics_answer_only_loopback_or_the_token(app, client):
    remote = {"REMOTE_ADDR": "203.0.113.7"}
    assert client.get("/metrics").status_code == 200  # loopback: the test client's address
    assert client.get("/metrics", environ_base=remote).status_code == 404
    # A reverse proxy on the same host makes everyone look local: its headers give it away.
    proxied = client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.7"})
    assert proxied.status_code == 404

    app.config["HANDOFF_METRICS_TOKEN"] = TOKEN
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    allowed = client.get("/metrics", environ_base=remote, headers=bearer)
    assert allowed.status_code == 200
    assert allowed.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    for wrong in (f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", "Bearer ", TOKEN):
        response = client.get("/metrics", environ_base=remote, headers={"Authorization": wrong})
        assert response.status_code == 404, wrong


# --- structured logs ------------------------------------------------------------------------


def _json_lines(emit) -> list[dict]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("handoff.test.operations")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_log_lines_carry_ids_and_never_secrets_or_bodies():
    def emit(logger):
        logger.info(
            "ingested message",
            extra={"ticket_id": 1042, "message_id": "abc@mail.example", "mailbox_id": 3},
        )
        logger.warning(
            "SMTP failed for smtp+starttls://handoff:hunter2@mail.example:587 password=hunter2",
            extra={"smtp_password": "hunter2", "body_text": "my card number is 4111"},
        )
        logger.warning("API call with Authorization: Bearer tok_live_hunter2 refused")
        try:
            raise RuntimeError("login failed: AUTH PLAIN aHVudGVyMg== rejected")
        except RuntimeError:
            logger.exception("delivery of outbox row failed", extra={"outbox_id": 7})

    info, smtp, bearer, failure = _json_lines(emit)
    assert set(info) >= {"time", "level", "logger", "message"}
    assert dt.datetime.fromisoformat(info["time"]).tzinfo is not None
    assert (info["level"], info["logger"]) == ("INFO", "handoff.test.operations")
    assert (info["ticket_id"], info["message_id"], info["mailbox_id"]) == (
        1042,
        "abc@mail.example",
        3,
    )
    assert smtp["message"] == (
        "SMTP failed for smtp+starttls://handoff:***@mail.example:587 password=***"
    )
    assert smtp["smtp_password"] == "***"
    assert smtp["body_text"] == "[omitted]"
    assert "tok_live" not in bearer["message"]
    assert failure["outbox_id"] == 7 and failure["level"] == "ERROR"
    assert "RuntimeError" in failure["exc_info"] and "aHVudGVyMg" not in failure["exc_info"]
    everything = json.dumps([info, smtp, bearer, failure])
    assert "hunter2" not in everything and "4111" not in everything


def test_text_logs_stay_the_default_and_are_redacted_too(app, caplog):
    assert app.config["HANDOFF_LOG_FORMAT"] == "text"
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(RedactingFilter())
    logging.getLogger("mail.transport").warning("connect smtp://u:hunter2@h:25 failed")
    assert "smtp://u:***@h:25" in caplog.text and "hunter2" not in caplog.text


# --- once-per-period jobs -------------------------------------------------------------------


def test_a_period_is_claimed_once_and_a_dead_workers_claim_is_taken_over(db_session):
    now = dt.datetime(2026, 11, 23, 16, 30, tzinfo=dt.UTC)
    day = period_key("day", now)
    assert day == "2026-11-23"
    assert period_key("hour", now) == "2026-11-23T16"
    assert period_key("week", now) == "2026-W48"
    claim = {"job_id": "notices-scan", "period_key": day}
    assert claim_run(db_session, **claim, now=now, owner="a")
    assert not claim_run(db_session, **claim, now=now, owner="b")
    assert claim_run(db_session, job_id="other-job", period_key=day, now=now)
    tomorrow = period_key("day", now + dt.timedelta(days=1))
    assert claim_run(db_session, job_id="notices-scan", period_key=tomorrow, now=now)
    assert db_session.scalar(sa.select(sa.func.count(JobRun.id))) == 3

    # Worker "a" died mid-run: once its claim is stale, "b" takes it over, once.
    hour = dt.timedelta(hours=1)
    later = now + dt.timedelta(minutes=30)
    assert not claim_run(db_session, **claim, now=later, owner="b", stale_after=hour)
    later = now + dt.timedelta(minutes=90)
    assert claim_run(db_session, **claim, now=later, owner="b", stale_after=hour)
    assert not claim_run(db_session, **claim, now=later, owner="c", stale_after=hour)
    finish_run(db_session, **claim, now=later)
    db_session.commit()
    much_later = now + dt.timedelta(hours=20)
    assert not claim_run(db_session, **claim, now=much_later, owner="c", stale_after=hour)
    row = db_session.scalar(
        sa.select(JobRun).where(JobRun.period_key == day, JobRun.job_id == claim["job_id"])
    )
    assert (row.claimed_by, row.finished_at) == ("b", later)


def test_a_daily_job_runs_once_however_often_it_is_scheduled_and_retries_after_a_failure(
    app, db_session
):
    from web.extensions import db

    runs: list[str] = []
    failing = {"next": True}

    def scan(app):
        db.session.rollback()  # a body that manages its own transactions keeps the claim
        runs.append("run")
        if failing["next"]:
            failing["next"] = False
            raise RuntimeError("the scan broke")
        db.session.commit()

    job = JobDefinition("test-daily-scan", scan, "HANDOFF_HOUSEKEEPING_INTERVAL", once_per="day")
    run_job(app, job)  # fails: its claim is given back
    run_job(app, job)  # runs (and the day is done)
    run_job(app, job)  # already done today
    run_job(app, job)
    assert runs == ["run", "run"]
    db_session.rollback()
    [claimed] = db_session.scalars(sa.select(JobRun).where(JobRun.job_id == "test-daily-scan"))
    assert claimed.period_key == dt.datetime.now(dt.UTC).date().isoformat()
    assert claimed.finished_at is not None


# --- who runs the jobs ----------------------------------------------------------------------


def test_serve_runs_the_jobs_on_sqlite_and_on_postgresql_only_when_told(app, database_url):
    from web.worker import hold_jobs_lock, release_jobs_lock
    from web.worker import start_in_process_jobs as start

    if database_url.startswith("sqlite"):
        scheduler, note = start(app)  # the embedded default: jobs in the web process
        try:
            assert scheduler is not None and "run in this process" in note
            assert (
                Path(app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///"))
                .with_name("handoff.db.jobs.lock")
                .exists()
            )
            hold_jobs_lock(app)  # this process already holds it: nothing to do
        finally:
            if scheduler is not None:
                scheduler.shutdown(wait=True)
            release_jobs_lock(app)
        return
    app.config["HANDOFF_RUN_SCHEDULER"] = False  # production: gunicorn and serve run no jobs
    scheduler, note = start(app)
    assert scheduler is None and "flask --app wsgi worker" in note
    app.config["HANDOFF_RUN_SCHEDULER"] = True
    scheduler, note = start(app)
    try:
        assert scheduler is not None and "run in this process" in note
    finally:
        scheduler.shutdown(wait=True)


SCRAPE = """
import sys
from wsgi import app
client = app.test_client()
for _ in range(int(sys.argv[1])):
    assert client.get("/healthz").status_code == 200
if sys.argv[2] == "scrape":
    sys.stdout.write(client.get("/metrics").get_data(as_text=True))
"""


@pytest.mark.only_database("sqlite")
def test_the_http_histogram_sums_every_gunicorn_process_in_multiprocess_mode(
    app, database_url, tmp_path
):
    import os
    import subprocess
    import sys

    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "HANDOFF_DATA_DIR": app.config["HANDOFF_DATA_DIR"],
        "SECRET_KEY": app.config["SECRET_KEY"],
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    root = Path(__file__).resolve().parents[2]

    def process(requests: int, then: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", SCRAPE, str(requests), then],
            env=env,
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    process(3, "exit")  # one worker process answers three requests, then is gone
    text = process(2, "scrape")  # another answers two, then is scraped
    labels = {"endpoint": "health.healthz", "method": "GET", "status": "2xx"}
    assert metric(text, "handoff_http_request_duration_seconds_count", **labels) == 5
    assert metric(text, "handoff_emails_ingested_total", status="processed") == 0


# --- moving the embedded default to PostgreSQL --------------------------------------------------


@pytest.mark.only_database("sqlite")
def test_copy_database_moves_an_embedded_install_to_postgresql(app, db_session, runner):
    import os

    from tests.conftest import _migrate
    from tests.support.services import require_service
    from ticketing.db import Base
    from ticketing.models import Agent, Ticket
    from ticketing.search import ranked_ticket_ids
    from ticketing.services import actions, demo
    from ticketing.services.agents import create_agent
    from ticketing.services.export import iter_ticket_records

    server = os.environ.get("TEST_DATABASE_URL")
    if not server:
        require_service("postgresql", "TEST_DATABASE_URL is unset")
    now = dt.datetime.now(dt.UTC)
    demo.seed(db_session, admin_password="demo-password-123456", now=now)
    demo.seed_scale(db_session, tickets=40, now=now, seed=7)
    db_session.commit()
    # A ticket merged into a later one: a reference forward within the same table.
    first, last = db_session.scalars(sa.select(Ticket).order_by(Ticket.id)).all()[::39][:2]
    admin = db_session.scalars(sa.select(Agent)).first()
    actions.merge(db_session, first, into=last.number, actor=admin, now=now)
    db_session.commit()
    before = list(iter_ticket_records(db_session))
    db_session.rollback()

    admin_url = sa.make_url(server.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"handoff_copy_{os.urandom(4).hex()}"
    admin_engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    target_url = admin_url.set(database=name).render_as_string(hide_password=False)
    try:
        _migrate(target_url, Path(app.config["HANDOFF_DATA_DIR"]) / "migrate")
        result = runner.invoke(args=["copy-database", "--to", target_url])
        assert result.exit_code == 0, result.output
        tickets = db_session.scalar(sa.select(sa.func.count(Ticket.id)))
        assert tickets > 40 and f"tickets\t{tickets}\n" in result.output

        target = sa.create_engine(target_url)
        with sa.orm.Session(target) as session:
            assert list(iter_ticket_records(session)) == before
            # PostgreSQL's search index was built by its triggers as the rows went in.
            assert last.id in ranked_ticket_ids(session, last.subject, limit=50)
            for table in Base.metadata.sorted_tables:
                count = sa.select(sa.func.count()).select_from(table)
                assert session.scalar(count) == db_session.scalar(count), table.name
            # New rows get fresh ids after the copied ones (sequences moved on).
            create_agent(session, email="new@example.com", name="New", password="x" * 16)
            session.commit()
        target.dispose()

        again = runner.invoke(args=["copy-database", "--to", target_url])
        assert again.exit_code == 1
        assert "is not empty" in again.output
    finally:
        with admin_engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin_engine.dispose()
