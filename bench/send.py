"""Outbox-delivery benchmark: how fast `flask outbox send --once` drains a queue to an SMTP server.

Not a test: it prints figures. Steps, each with the project's real parts:

1. start an aiosmtpd `Controller` on a free loopback port, with a handler that counts
   messages, bytes and connections and keeps only each message's size and Message-ID (so its
   memory stays flat);
2. make a fresh database (a SQLite file, or a `handoff_bench_<random>` database on a
   PostgreSQL server) and run `flask db upgrade` as a subprocess;
3. fill the outbox (not timed), in-process with the services: a mailbox, a few agents, a few
   hundred email tickets with customer messages, and N agent replies enqueued with
   `mail.outbound.reply` (1-4 KB of text each, threaded on the customer's messages);
4. time `flask outbox send --once` end to end as a subprocess (it loops over batches until
   nothing is due) and read its peak RSS from `os.wait4`; run it once more on the empty
   outbox to measure its fixed start-up cost;
5. check: every outbox row `sent`, N messages received, no Message-ID twice, and exactly the
   Message-IDs of the outbox rows.

Usage (from the project root):

    .venv/bin/python bench/send.py --messages 2000
    .venv/bin/python bench/send.py --messages 2000 --database postgresql \
        --database-url postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/send.py --messages 2000 --json

Exits non-zero when the sender fails or the correctness checks do not hold; missing the
performance target is reported, not an error.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import random
import re
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchlib import ROOT, BenchError, database
from benchlib import flask as _flask
from benchlib import flask_command as _flask_command
from benchlib import tail as _tail

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/test"
MAILBOX_ADDRESS = "support@example.com"
TARGET_RATE = 200.0  # messages/s at N=2000
BATCH_SIZE = 100  # mail.outbound.deliver_due's default: one SMTP connection per batch
REPLIES_PER_TICKET = (2, 8)  # agent replies per ticket, inclusive range (mean 5)
CHUNK_TICKETS = 25  # tickets per commit while filling the outbox


@dataclass
class Figures:
    messages: int
    seed: int
    database: str
    tickets: int = 0
    queued_bytes: int = 0
    enqueue_seconds: float = 0.0
    send_seconds: float = 0.0
    messages_per_second: float = 0.0
    peak_rss_mb: float = 0.0
    send_user_cpu_seconds: float = 0.0
    send_sys_cpu_seconds: float = 0.0
    server_cpu_seconds: float = 0.0
    send_exit_code: int = 0
    send_batches: int = 0
    send_summary: str = ""
    idle_send_seconds: float = 0.0
    idle_peak_rss_mb: float = 0.0
    steady_messages_per_second: float = 0.0
    received: int = 0
    received_bytes: int = 0
    distinct_message_ids: int = 0
    connections: int = 0
    ehlo: int = 0
    outbox: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


# -- the SMTP server -----------------------------------------------------------------------


_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*<?([^>\r\n]+)>?", re.IGNORECASE | re.MULTILINE)
_FOLD = re.compile(rb"\r?\n(?=[ \t])")


class CountingHandler:
    """aiosmtpd handler: accepts everything, keeps counts, sizes and Message-IDs only."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connections = 0
        self.ehlo = 0
        self.sizes: list[int] = []
        self.message_ids: Counter[str] = Counter()

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        with self.lock:
            self.ehlo += 1
        return responses

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        header = _FOLD.sub(b"", content.split(b"\r\n\r\n", 1)[0])
        match = _MESSAGE_ID.search(header)
        message_id = match.group(1).strip().decode("ascii", "replace") if match else ""
        with self.lock:
            self.sizes.append(len(content))
            self.message_ids[message_id] += 1
        return "250 Message accepted for delivery"

    def reset(self) -> None:
        with self.lock:
            self.connections = self.ehlo = 0
            self.sizes.clear()
            self.message_ids.clear()


@contextlib.contextmanager
def smtp_server() -> Iterator[tuple[str, int, CountingHandler]]:
    """An aiosmtpd server on a free loopback port; yields (host, port, handler)."""
    from aiosmtpd.controller import Controller

    from tests.support.services import free_port

    class CountingController(Controller):
        # The controller calls factory() once per accepted connection.
        def factory(self) -> Any:
            with handler.lock:
                handler.connections += 1
            return super().factory()

    # aiosmtpd logs every command at INFO on "mail.log", and create_app() (used to fill the
    # outbox) configures INFO logging for this process: keep the server's thread quiet, or
    # its logging competes with the sender for the CPU.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    host = "127.0.0.1"
    port = free_port(host)
    handler = CountingHandler()
    controller = CountingController(
        handler,
        hostname=host,
        port=port,
        server_hostname="smtp.bench",
        ready_timeout=5.0,
        decode_data=False,
        enable_SMTPUTF8=True,
    )
    controller.start()
    try:
        handler.reset()  # start() opens a probe connection to check the server is up
        yield host, port, handler
    finally:
        controller.stop()


# -- subprocesses --------------------------------------------------------------------------


# -- filling the outbox (not timed) --------------------------------------------------------

FIRST = ["Alice", "Bob", "Carla", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas"]
FIRST += ["Kavya", "Liam", "Maria", "Noah", "Olga", "Pedro", "Quinn", "Rosa", "Sven", "Zoe"]
LAST = ["Andersen", "Brown", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Hughes"]
LAST += ["Jensen", "Kowalski", "Lopez", "Moreau", "Nakamura", "Patel", "Rossi", "Schmidt"]
DOMAINS = ["example.org", "acme-corp.example", "globex.example", "initech.example"]
DOMAINS += ["umbrella.example", "mail.example.net", "contoso.example", "fabrikam.example"]
AGENTS = [("Priya Raman", "priya"), ("Tom Becker", "tom"), ("Lena Vogel", "lena")]

SUBJECTS = [
    "Can't log in to my account",
    "Question about invoice INV-{n}",
    "Order #{n} not delivered yet",
    "Error when exporting report",
    "Please cancel our subscription",
    "Add three more seats to our plan",
    "Password reset e-mail never arrives",
    "API returns 502 since this morning",
]
CUSTOMER_LINES = [
    "Since this morning I cannot log in to the customer portal.",
    "We received invoice INV-{n} but the amount does not match our purchase order.",
    "The tracking link shows no updates for five days.",
    "Exporting the monthly report to CSV fails with 'internal error {n}'.",
    "Could you please give me an update on this? It has been a few days.",
    "Unfortunately the problem still occurs after following your instructions.",
    "Here is the additional information you asked for: reference REF-{n}.",
    "The workaround helped, but we would still like a permanent fix.",
]
AGENT_OPENINGS = [
    "Hello {first},\n\nthank you for getting in touch, and sorry for the trouble.",
    "Hi {first},\n\nthanks for the details, that helps a lot.",
    "Dear {first},\n\nI have looked into this for you.",
    "Hello {first},\n\nthank you for your patience while we investigated.",
]
AGENT_LINES = [
    "I checked your account and can see that the last successful login was on Monday.",
    "Our billing team corrected the VAT on line {n}; a new invoice is on its way to you.",
    "The carrier confirmed that the parcel was held at their depot; it will arrive tomorrow.",
    "This is a known problem in version 4.{n} that our developers fixed this week.",
    "Please clear your browser's cache and cookies, then sign in again from a private window.",
    "I have reset the two-factor settings on your account, so you can enrol a new device.",
    "The export works again after we re-indexed your data; older reports are not affected.",
    "If the problem comes back, please send us the exact time and the error text you see.",
    "I have added the three seats to your plan; the change shows on your next invoice.",
    "Our status page has the details of this morning's incident and the steps we took.",
    "You can find the setting under Administration > Security > Sessions in the portal.",
    "I have escalated this to our second-level team, who will get back to you by Thursday.",
    "Could you tell us which browser and operating system your colleagues are using?",
    "The credit of {n} EUR has been applied and will be visible within two business days.",
]
AGENT_CLOSINGS = [
    "Let me know if there is anything else I can do.",
    "I will keep this ticket open until you confirm that everything works.",
    "If you have any further questions, just reply to this email.",
    "Have a good day.",
]


def _paragraph(rng: random.Random, lines: list[str], count: int) -> str:
    picked = rng.sample(lines, min(count, len(lines)))
    return " ".join(line.format(n=rng.randint(10, 9999)) for line in picked)


def agent_body(rng: random.Random, first: str) -> str:
    """A realistic agent reply of 1-4 KB of plain text."""
    target = rng.randint(1024, 4096)
    parts = [rng.choice(AGENT_OPENINGS).format(first=first)]
    size = len(parts[0])
    while size < target - 120:
        text = _paragraph(rng, AGENT_LINES, rng.randint(2, 4))
        parts.append(text)
        size += len(text) + 2
    parts.append(rng.choice(AGENT_CLOSINGS) + "\n\nBest regards,")
    return "\n\n".join(parts)[:target]


def customer_body(rng: random.Random, name: str) -> str:
    count = rng.randint(1, 3)
    paragraphs = [_paragraph(rng, CUSTOMER_LINES, rng.randint(2, 4)) for _ in range(count)]
    return "Hello support team,\n\n" + "\n\n".join(paragraphs) + f"\n\nKind regards,\n{name}"


def fill_outbox(url: str, data_dir: Path, secret_key: str, count: int, seed: int) -> int:
    """Enqueue `count` agent replies with the real services; returns the number of tickets."""
    from mail.outbound import reply
    from ticketing.db import utcnow
    from ticketing.models import Channel, EntryKind
    from ticketing.services import agents, conversation, customers, mailboxes
    from web import create_app
    from web.extensions import db
    from web.mail_runtime import outbound_context

    rng = random.Random(seed)
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": "",
            "DATABASE_URL": url,
            "HANDOFF_DATA_DIR": str(data_dir),
            "SECRET_KEY": secret_key,
        }
    )
    # Everything happened over the last day, so every reply is due when the sender runs.
    clock = utcnow() - dt.timedelta(days=1)
    step = dt.timedelta(days=1) / (count * 2 + 10)

    def tick() -> dt.datetime:
        nonlocal clock
        clock += step
        return clock

    tickets = 0
    with app.app_context():
        session = db.session
        ctx = outbound_context(app)
        mailbox = mailboxes.add_mailbox(
            session,
            name="support",
            address=MAILBOX_ADDRESS,
            imap_host="127.0.0.1",
            imap_port=143,
            imap_user=MAILBOX_ADDRESS,
            imap_password="bench-unused",
            imap_security="plain",
            secret_key=secret_key,
        )
        staff = [
            agents.create_agent(
                session,
                email=f"{login}@example.com",
                name=name,
                password="bench-" + secrets.token_hex(8),
            )
            for name, login in AGENTS
        ]
        session.commit()
        mailbox_id = mailbox.id

        left = count
        while left:
            replies = min(left, rng.randint(*REPLIES_PER_TICKET))
            left -= replies
            tickets += 1
            first, last = rng.choice(FIRST), rng.choice(LAST)
            name = f"{first} {last}"
            email = f"{first}.{last}.{tickets}@{rng.choice(DOMAINS)}".lower().replace("'", "")
            customer = customers.find_or_create(session, email=email, name=name)
            subject = rng.choice(SUBJECTS).format(n=rng.randint(1000, 99999))
            ticket = conversation.open_ticket(
                session,
                customer=customer,
                subject=subject,
                channel=Channel.EMAIL,
                now=tick(),
                mailbox_id=mailbox_id,
            )
            agent = rng.choice(staff)
            for number in range(replies):
                if number == 0 or rng.random() < 0.6:
                    # The customer wrote (first message or a follow-up): the reply threads on it.
                    conversation.add_customer_message(
                        ticket,
                        author=customer,
                        kind=EntryKind.CUSTOMER_EMAIL,
                        body_text=customer_body(rng, name),
                        now=tick(),
                        subject=subject if number == 0 else f"Re: {subject}",
                        message_id=f"{secrets.token_hex(12)}@{email.rpartition('@')[2]}",
                    )
                    session.flush()
                reply(
                    session,
                    ticket,
                    actor=agent,
                    body_text=agent_body(rng, first),
                    now=tick(),
                    ctx=ctx,
                )
            if tickets % CHUNK_TICKETS == 0:
                session.commit()
        session.commit()
        session.remove()
        db.engine.dispose()
    return tickets


# -- the timed run -------------------------------------------------------------------------


def timed_send(
    env: dict[str, str],
    log_dir: Path,
    profile: Path | None = None,
    name: str = "send",
    timeout: float = 600.0,
) -> tuple[float, Any, int, str]:
    """Run `outbox send --once`; returns (wall seconds, rusage, exit code, stdout).

    `--once` loops until a batch claims nothing, so rows that are released without being
    rescheduled would keep it busy forever: after `timeout` seconds it is killed (exit -9).
    """
    command = _flask_command()
    if profile is not None:
        profiler = [sys.executable, "-m", "cProfile", "-o", str(profile)]
        command = [*profiler, "-m", "flask", "--app", "wsgi"]
    out_path, err_path = log_dir / f"{name}.out", log_dir / f"{name}.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [*command, "outbox", "send", "--once"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
        watchdog = threading.Timer(timeout, proc.kill)
        watchdog.start()
        # wait4 gives this child's own rusage (peak RSS in KiB on Linux).
        try:
            _pid, status, rusage = os.wait4(proc.pid, 0)
        except BaseException:  # Ctrl-C: leave no sender behind
            proc.kill()
            proc.wait()
            raise
        finally:
            watchdog.cancel()
        elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout = out_path.read_text(errors="replace")
    if proc.returncode != 0:
        stderr = err_path.read_text(errors="replace")
        if elapsed >= timeout:
            print(f"  outbox send --once still running after {timeout:g} s: killed")
        print(f"  outbox send --once exited {proc.returncode}:\n{_tail(stdout)}\n{_tail(stderr)}")
    return elapsed, rusage, proc.returncode, stdout


def verify(url: str, handler: CountingHandler, figures: Figures) -> None:
    """Compare the outbox rows with what the SMTP server received."""
    import sqlalchemy as sa

    from ticketing.models import OutboxMessage

    if url.startswith("postgresql://"):
        url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            figures.outbox = {
                str(getattr(status, "value", status)): n
                for status, n in conn.execute(
                    sa.select(OutboxMessage.status, sa.func.count(OutboxMessage.id)).group_by(
                        OutboxMessage.status
                    )
                )
            }
            expected = set(conn.scalars(sa.select(OutboxMessage.message_id)))
            figures.queued_bytes = conn.scalar(sa.select(sa.func.sum(OutboxMessage.size))) or 0
    finally:
        engine.dispose()

    with handler.lock:
        received = Counter(handler.message_ids)
        figures.received = len(handler.sizes)
        figures.received_bytes = sum(handler.sizes)
        figures.connections = handler.connections
        figures.ehlo = handler.ehlo
    figures.distinct_message_ids = len(received)

    n = figures.messages
    if sum(figures.outbox.values()) != n:
        figures.problems.append(f"{sum(figures.outbox.values())} outbox rows for {n} replies")
    if figures.outbox.get("sent", 0) != n:
        figures.problems.append(f"{figures.outbox.get('sent', 0)} of {n} outbox rows sent")
    if figures.received != n:
        figures.problems.append(f"the SMTP server received {figures.received} of {n} messages")
    doubled = sum(1 for count in received.values() if count > 1)
    if doubled:
        figures.problems.append(f"{doubled} Message-IDs received more than once")
    if "" in received:
        figures.problems.append(f"{received['']} messages without a Message-ID")
    if set(received) - {""} != expected:
        missing, unknown = expected - set(received), set(received) - expected - {""}
        figures.problems.append(
            f"{len(missing)} outbox Message-IDs never arrived, {len(unknown)} unknown arrived"
        )


# -- report --------------------------------------------------------------------------------


def report(f: Figures) -> None:
    rate_mark = "ok" if f.messages_per_second >= TARGET_RATE else "BELOW TARGET"
    if f.send_exit_code != 0 or f.received != f.messages:
        rate_mark = "not comparable: the sender did not deliver every message"
    per_connection = f.received / f.connections if f.connections else 0.0
    print(
        f"send benchmark: N={f.messages} replies on {f.tickets} tickets (seed {f.seed},"
        f" {f.queued_bytes / 1e6:.1f} MB composed), database={f.database}"
    )
    print(f"  fill the outbox:    {f.enqueue_seconds:.1f} s (not timed)")
    print(
        f"  outbox send --once: {f.send_seconds:.2f} s  ->  {f.messages_per_second:.0f} messages/s"
        f"  [target >= {TARGET_RATE:.0f} at N=2000: {rate_mark}]"
    )
    print(
        f"  sender CPU:         user {f.send_user_cpu_seconds:.2f} s,"
        f" sys {f.send_sys_cpu_seconds:.2f} s"
    )
    print(
        f"  SMTP server CPU:    {f.server_cpu_seconds:.2f} s (aiosmtpd in this process; the"
        " sender waits for it on every command)"
    )
    print(f"  peak RSS (sender):  {f.peak_rss_mb:.0f} MB")
    print(
        f"  idle send again:    {f.idle_send_seconds:.2f} s, peak RSS {f.idle_peak_rss_mb:.0f} MB"
        f" (start-up, nothing due)  ->  {f.steady_messages_per_second:.0f} messages/s without it"
    )
    print(
        f"  SMTP connections:   {f.connections} ({f.ehlo} EHLO) for {f.received} messages,"
        f" {per_connection:.0f} per connection (batch size {BATCH_SIZE})"
    )
    print(f"  sender said:        {f.send_batches} batches; {f.send_summary or '(nothing)'}")
    outbox = ", ".join(f"{n} {status}" for status, n in sorted(f.outbox.items()))
    print(
        f"  outbox: {outbox or 'empty'}; received {f.received} messages"
        f" ({f.received_bytes / 1e6:.1f} MB), {f.distinct_message_ids} distinct Message-IDs"
    )
    if f.problems:
        print("  CORRECTNESS PROBLEMS: " + "; ".join(f.problems))
    else:
        print("  correctness: every outbox row sent, each message received exactly once")


# -- main ----------------------------------------------------------------------------------


def _sum_summaries(stdout: str) -> tuple[int, str]:
    """(batches, totals) from the sender's "<n> due, <n> sent, <n> to retry, <n> failed" lines."""
    totals: Counter[str] = Counter()
    batches = 0
    for line in stdout.splitlines():
        numbers = re.findall(r"(\d+) (due|sent|to retry|failed)", line)
        for value, what in numbers:
            totals[what] += int(value)
        if numbers and int(numbers[0][0]) > 0:
            batches += 1
    summary = ", ".join(f"{totals[w]} {w}" for w in ("due", "sent", "to retry", "failed"))
    return batches, summary


def run(args: argparse.Namespace) -> Figures:
    figures = Figures(messages=args.messages, seed=args.seed, database=args.database)
    workdir = Path(tempfile.mkdtemp(prefix="handoff-bench-send-"))
    try:
        data_dir = workdir / "data"
        data_dir.mkdir()
        with (
            database(args.database, args.database_url, data_dir, args.keep) as url,
            smtp_server() as (host, port, handler),
        ):
            secret_key = "bench-" + secrets.token_hex(24)
            env = {
                **os.environ,
                "DATABASE_URL": url,
                "HANDOFF_DATA_DIR": str(data_dir),
                "SECRET_KEY": secret_key,
                "HANDOFF_SMTP_URL": f"smtp://{host}:{port}",
            }
            _flask("db", "upgrade", env=env)

            started = time.perf_counter()
            figures.tickets = fill_outbox(url, data_dir, secret_key, args.messages, args.seed)
            figures.enqueue_seconds = time.perf_counter() - started
            handler.reset()

            # While the sender runs, this process only runs the SMTP server's thread: its CPU
            # time is the server's (the two take turns on every SMTP command).
            before = resource.getrusage(resource.RUSAGE_SELF)
            elapsed, rusage, code, stdout = timed_send(
                env, workdir, args.profile, timeout=args.timeout
            )
            after = resource.getrusage(resource.RUSAGE_SELF)
            figures.server_cpu_seconds = (after.ru_utime + after.ru_stime) - (
                before.ru_utime + before.ru_stime
            )
            figures.send_seconds = elapsed
            figures.messages_per_second = args.messages / elapsed
            figures.peak_rss_mb = rusage.ru_maxrss / 1024  # KiB on Linux
            figures.send_user_cpu_seconds = rusage.ru_utime
            figures.send_sys_cpu_seconds = rusage.ru_stime
            figures.send_exit_code = code
            figures.send_batches, figures.send_summary = _sum_summaries(stdout)
            if code != 0:
                figures.problems.append(f"outbox send --once exited {code}")

            verify(url, handler, figures)

            # A second run finds nothing due: its time is the fixed cost (interpreter, app,
            # one claim query) that the first run paid once.
            idle, idle_rusage, code, stdout = timed_send(
                env, workdir, name="idle-send", timeout=args.timeout
            )
            figures.idle_send_seconds = idle
            figures.idle_peak_rss_mb = idle_rusage.ru_maxrss / 1024
            if figures.send_seconds > idle:
                figures.steady_messages_per_second = args.messages / (figures.send_seconds - idle)
            if code != 0 or not re.search(r"\b0 due\b", stdout):
                figures.problems.append(f"second send was not idle: {_tail(stdout, 3)!r}")
            if handler.connections != figures.connections:
                figures.problems.append("the idle send opened an SMTP connection")
    finally:
        if args.keep:
            print(f"  kept {workdir} (data/, send.out, send.err, idle-send.*)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000, metavar="N", help="default 2000")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--database-url",
        default=DEFAULT_SERVER_URL,
        help="PostgreSQL server to create the benchmark database on (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=42, help="text seed (default 42)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (and database)")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="kill a sender still running after this long (default %(default)g)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="run the sender under cProfile and write its stats to FILE (slows it down)",
    )
    args = parser.parse_args(argv)
    if args.messages < 1:
        parser.error("--messages must be at least 1")
    try:
        figures = run(args)
    except BenchError as exc:
        print(f"send benchmark failed: {exc}", file=sys.stderr)
        return 2
    report(figures)
    if args.json:
        print(json.dumps(asdict(figures), sort_keys=True))
    return 1 if figures.problems else 0


if __name__ == "__main__":
    sys.exit(main())
