"""Scale-out, end to end: several `flask --app wsgi worker` processes over one database.

Real processes, a real Dovecot and a real SMTP sink. On PostgreSQL any number of workers share
the work without doing any of it twice — whichever of them is killed; on SQLite a second
worker refuses to start. Every worker logs JSON here, and the stories read those lines back.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.dovecot import PASSWORD
from tests.support.mailfactory import make_email
from ticketing.db import utcnow
from ticketing.models import (
    Entry,
    EntryKind,
    Mailbox,
    MailboxSecurity,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Receipt,
)
from ticketing.services import outbox as outbox_rules
from ticketing.services.mailboxes import add_mailbox
from web.mail_runtime import blobs

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ADDRESSES = ("support@example.com", "sales@example.com", "billing@example.com")


class Worker:
    """One `flask --app wsgi worker` process, its output in a file (never a full pipe)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "wsgi", "worker"],
            env=env,
            cwd=ROOT,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def records(self) -> list[dict]:
        """Every log line as JSON: parsing fails the test if a line is not JSON."""
        return [json.loads(line) for line in self.lines() if line.strip()]

    def started(self) -> bool:
        return any("worker" in line and "started" in line for line in self.lines())

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._out.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._out.close()


def wait_until(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def workers(app, database_url, tmp_path):
    """`start(n, **settings)` starts n workers on the test's database; all are reaped after."""
    started: list[Worker] = []

    def start(count: int, **settings: str) -> list[Worker]:
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "HANDOFF_DATA_DIR": app.config["HANDOFF_DATA_DIR"],
            "SECRET_KEY": app.config["SECRET_KEY"],
            "HANDOFF_BASE_URL": app.config["HANDOFF_BASE_URL"],
            "HANDOFF_LOG_FORMAT": "json",
            "HANDOFF_POLL_INTERVAL": "1",
            "HANDOFF_OUTBOX_INTERVAL": "1",
            **settings,
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        batch = [Worker(env, tmp_path / f"worker-{len(started) + i}.log") for i in range(count)]
        started.extend(batch)
        return batch

    yield start
    for worker in started:
        worker.kill()


def add_mailboxes(app, db_session, imap_mailbox, addresses=ADDRESSES) -> list[Mailbox]:
    boxes = [
        add_mailbox(
            db_session,
            name=address.partition("@")[0],
            address=address,
            imap_host=imap_mailbox.host,
            imap_port=imap_mailbox.port,
            imap_user=address,
            imap_password=PASSWORD,
            imap_security=MailboxSecurity.PLAIN,
            secret_key=app.config["SECRET_KEY"],
        )
        for address in addresses
    ]
    db_session.commit()
    return boxes


def count(db_session, stmt) -> int:
    db_session.rollback()
    return db_session.scalar(stmt) or 0


RECEIPTS = sa.select(sa.func.count(Receipt.id))


def customer_message_ids(db_session) -> list[str]:
    db_session.rollback()
    return list(
        db_session.scalars(
            sa.select(Entry.message_id).where(Entry.kind == EntryKind.CUSTOMER_EMAIL)
        )
    )


def smtp_url(smtp_server) -> str:
    return f"smtp://{smtp_server.host}:{smtp_server.port}"


# --- PostgreSQL: many workers, no double work ------------------------------------------------


@pytest.mark.only_database("postgresql")
def test_three_workers_turn_500_emails_into_500_entries_and_one_acknowledgement_each(
    app, db_session, imap_mailbox, smtp_server, workers
):
    add_mailboxes(app, db_session, imap_mailbox)
    running = workers(3, HANDOFF_SMTP_URL=smtp_url(smtp_server), HANDOFF_POLL_LEASE="10")
    wait_until(lambda: all(w.started() for w in running), timeout=30, what="workers to start")

    total = 500
    expected = {f"scale{i}@mail.example.org" for i in range(total)}
    with contextlib.ExitStack() as stack:
        connections = {a: stack.enter_context(imap_mailbox.connect(a)) for a in ADDRESSES}
        for i in range(total):
            connections[ADDRESSES[i % 3]].append(
                "INBOX",
                make_email(
                    sender=f"Customer {i} <c{i}@example.org>",
                    to=ADDRESSES[i % 3],
                    subject=f"Question number {i}",
                    message_id=f"scale{i}@mail.example.org",
                ),
            )

    smtp_server.wait_for(total, timeout=120)
    time.sleep(1.5)  # anything doubled would arrive now
    assert [w.stop() for w in running] == [0, 0, 0]

    ids = customer_message_ids(db_session)
    assert len(ids) == total and set(ids) == expected
    assert count(db_session, RECEIPTS) == total
    acks = smtp_server.messages
    assert len(acks) == total
    assert sorted(r for m in acks for r in m.rcpt_tos) == sorted(
        f"c{i}@example.org" for i in range(total)
    )
    assert len({m.message["Message-ID"] for m in acks}) == total
    assert all(m.message["Auto-Submitted"] == "auto-replied" for m in acks)
    assert (
        count(
            db_session,
            sa.select(sa.func.count(OutboxMessage.id)).where(OutboxMessage.status == "sent"),
        )
        == total
    )
    for address in ADDRESSES:
        assert not imap_mailbox.uids(address, criteria="UNSEEN")

    # The work was shared, and the JSON logs account for every message exactly once.
    ingested = [
        [r["message_id"] for r in w.records() if r["message"] == "inbound message processed"]
        for w in running
    ]
    assert sorted(mid for per in ingested for mid in per) == sorted(expected)
    assert sum(1 for per in ingested if per) >= 2, [len(per) for per in ingested]
    sent = [r["outbox_id"] for w in running for r in w.records() if "outbox_id" in r]
    assert len(sent) == len(set(sent)) == total
    assert all(w.records()[-1]["message"].endswith("stopped") for w in running)
    assert app.config["SECRET_KEY"] not in "".join(w.log.read_text() for w in running)


@pytest.mark.only_database("postgresql")
def test_a_worker_killed_mid_poll_loses_its_lease_and_nothing_is_lost_or_doubled(
    app, db_session, imap_mailbox, workers
):
    [box] = add_mailboxes(app, db_session, imap_mailbox, addresses=ADDRESSES[:1])
    total = 120
    with imap_mailbox.connect(ADDRESSES[0]) as client:
        for i in range(total):
            client.append(
                "INBOX",
                make_email(sender=f"<k{i}@example.org>", message_id=f"kill{i}@mail.example.org"),
            )
    running = workers(3, HANDOFF_POLL_LEASE="2")  # no SMTP: acknowledgements stay queued
    by_pid = {w.proc.pid: w for w in running}

    def holder() -> Worker | None:
        db_session.rollback()
        owner = db_session.scalar(sa.select(Mailbox.lease_owner).where(Mailbox.id == box.id))
        pid = int(owner.split(":")[1]) if owner else None
        return by_pid.get(pid)  # type: ignore[arg-type]

    wait_until(
        lambda: count(db_session, RECEIPTS) >= 15 and holder() is not None,
        timeout=60,
        what="a worker part-way through the mailbox",
    )
    victim = holder()
    assert victim is not None
    victim.kill()
    at_kill = count(db_session, RECEIPTS)
    assert at_kill < total, "the kill should land mid-run"

    wait_until(lambda: count(db_session, RECEIPTS) == total, timeout=60, what="the rest")
    survivors = [w for w in running if w is not victim]
    assert [w.stop() for w in survivors] == [0, 0]

    ids = customer_message_ids(db_session)
    assert sorted(ids) == sorted(f"kill{i}@mail.example.org" for i in range(total))
    acks = db_session.scalars(
        sa.select(OutboxMessage.recipient).where(OutboxMessage.kind == OutboxKind.ACKNOWLEDGEMENT)
    ).all()
    assert sorted(acks) == sorted(f"k{i}@example.org" for i in range(total))
    assert not imap_mailbox.uids(ADDRESSES[0], criteria="UNSEEN")
    db_session.expire_all()
    assert db_session.get(Mailbox, box.id).lease_owner is None


def _queue(app, db_session, total: int) -> set[str]:
    """`total` replies in the outbox, as agents' replies leave them."""
    store = blobs(app)
    ids = set()
    now = utcnow()
    for i in range(total):
        msg = EmailMessage()
        msg["From"] = "support@example.com"
        msg["To"] = f"r{i}@example.org"
        msg["Subject"] = f"[#{1000 + i}] Your question"
        msg["Message-ID"] = f"<out{i}@example.com>"
        msg.set_content(f"Reply number {i}.")
        data = msg.as_bytes()
        outbox_rules.record(
            db_session,
            kind=OutboxKind.REPLY,
            message_id=f"out{i}@example.com",
            envelope_from="support@example.com",
            recipients=[f"r{i}@example.org"],
            subject=msg["Subject"],
            raw_sha256=store.put(data),
            size=len(data),
            now=now,
        )
        ids.add(f"<out{i}@example.com>")
    db_session.commit()
    return ids


@pytest.mark.only_database("postgresql")
def test_three_senders_with_a_flaky_smtp_server_deliver_each_message_once(
    app, db_session, smtp_server, workers
):
    total, refusals = 150, 12
    expected = _queue(app, db_session, total)
    smtp_server.fail_next(451, "4.3.0 Try again later", times=refusals)
    running = workers(3, HANDOFF_SMTP_URL=smtp_url(smtp_server), HANDOFF_OUTBOX_LEASE="5")

    smtp_server.wait_for(total - refusals, timeout=60)
    retrying = sa.select(sa.func.count(OutboxMessage.id)).where(
        OutboxMessage.status == OutboxStatus.QUEUED, OutboxMessage.attempts == 1
    )
    wait_until(lambda: count(db_session, retrying) == refusals, timeout=30, what="the refusals")
    # Let the backoff (30 s and more) elapse, as the clock eventually would.
    db_session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.status == OutboxStatus.QUEUED)
        .values(next_attempt_at=utcnow())
    )
    db_session.commit()
    smtp_server.wait_for(total, timeout=60)
    time.sleep(1.5)  # anything doubled would arrive now
    assert [w.stop() for w in running] == [0, 0, 0]

    delivered = Counter(m.message["Message-ID"] for m in smtp_server.messages)
    assert set(delivered) == expected
    assert set(delivered.values()) == {1}
    assert len(smtp_server.rejections) == refusals
    db_session.rollback()
    attempts = Counter(
        db_session.execute(sa.select(OutboxMessage.status, OutboxMessage.attempts)).all()
    )
    assert attempts == {("sent", 1): total - refusals, ("sent", 2): refusals}
    senders = [
        {r["outbox_id"] for r in w.records() if r["message"] == "outbox message sent"}
        for w in running
    ]
    assert sum(len(s) for s in senders) == total
    assert sum(1 for s in senders if s) >= 2, [len(s) for s in senders]


# --- SQLite: one worker, and a clean stop -----------------------------------------------------


@pytest.mark.only_database("sqlite")
def test_sqlite_refuses_a_second_worker_and_sigterm_stops_after_the_message_in_hand(
    app, db_session, imap_mailbox, workers
):
    add_mailboxes(app, db_session, imap_mailbox, addresses=ADDRESSES[:1])
    [first] = workers(1)
    wait_until(first.started, timeout=30, what="the first worker")

    [second] = workers(1)
    assert second.proc.wait(timeout=30) == 1
    refusal = second.log.read_text()
    assert "already runs the background jobs on this SQLite database" in refusal
    assert f"pid {first.proc.pid}" in refusal

    total = 300
    with imap_mailbox.connect(ADDRESSES[0]) as client:
        for i in range(total):
            client.append("INBOX", make_email(message_id=f"stop{i}@mail.example.org"))
    wait_until(lambda: count(db_session, RECEIPTS) >= 3, timeout=60, what="ingestion to start")
    assert first.stop(signal.SIGTERM, timeout=20) == 0
    stopped_at = count(db_session, RECEIPTS)
    assert stopped_at < total, "SIGTERM should land mid-run"
    records = first.records()
    assert records[-1]["message"].endswith("stopped")
    # Finished the message in hand: what is recorded is flagged, and nothing else.
    seen = set(imap_mailbox.uids(ADDRESSES[0], criteria="SEEN"))
    db_session.rollback()
    assert set(db_session.scalars(sa.select(Receipt.uid))) == seen
    assert len(customer_message_ids(db_session)) == stopped_at

    # The lock went with the process: a new worker takes over and finishes the folder.
    [third] = workers(1)
    wait_until(lambda: count(db_session, RECEIPTS) == total, timeout=60, what="the rest")
    assert third.stop() == 0
    assert sorted(customer_message_ids(db_session)) == sorted(
        f"stop{i}@mail.example.org" for i in range(total)
    )
