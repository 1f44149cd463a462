"""Email-ingest benchmark: how fast `flask mail poll --once` drains a backlog, in how much memory.

Not a test: it prints figures. Steps, each with the project's real parts:

1. generate N realistic messages with the shared corpus generator
   (`../shared/bench/gen_corpus.py`, seed 42, `[#1001]`-style subject tags);
2. start a private Dovecot (`tests.support.dovecot.run_dovecot`) and APPEND them to
   support@example.com's INBOX over one IMAP connection (not timed);
3. make a fresh database (a SQLite file, or a `handoff_bench_<random>` database on a
   PostgreSQL server), run `flask db upgrade` and `flask mailboxes add` as subprocesses;
4. time `flask mail poll --once` end to end as a subprocess and read its peak RSS from
   `os.wait4` (the child's own rusage);
5. check the result in the database: one entry per message, every message on the ticket the
   corpus expects, nothing parked (`flask mail failed`).

Usage (from the project root):

    .venv/bin/python bench/ingest.py --messages 2000
    .venv/bin/python bench/ingest.py --messages 2000 --database postgresql \
        --database-url postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/ingest.py --messages 10000 --json

Exits non-zero when the poller fails or the correctness checks do not hold; missing a
performance target is reported, not an error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchlib import ROOT, SHARED, BenchError, database
from benchlib import flask as _flask
from benchlib import flask_command as _flask_command
from benchlib import run as _run
from benchlib import tail as _tail

GEN_CORPUS = SHARED / "bench" / "gen_corpus.py"

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/test"
MAILBOX_USER = "support@example.com"
# Handoff's ticket numbers start at 1001; the corpus predicts them to write `[#n]` tags.
FIRST_TICKET_NUMBER = 1001
TARGET_RATE = 300.0  # messages/s at N=2000
TARGET_RSS_MB = 250.0  # at N=10000


@dataclass
class Figures:
    messages: int
    seed: int
    database: str
    corpus_bytes: int = 0
    corpus_replies: int = 0
    corpus_attachments: int = 0
    corpus_seconds: float = 0.0
    append_seconds: float = 0.0
    poll_seconds: float = 0.0
    messages_per_second: float = 0.0
    peak_rss_mb: float = 0.0
    poll_user_cpu_seconds: float = 0.0
    poll_sys_cpu_seconds: float = 0.0
    helper_cpu_seconds: float = 0.0  # the poller's helper processes (HANDOFF_INGEST_PROCESSES)
    helper_peak_rss_mb: float = 0.0
    poll_exit_code: int = 0
    poll_summary: str = ""
    idle_poll_seconds: float = 0.0
    idle_peak_rss_mb: float = 0.0
    steady_messages_per_second: float = 0.0
    tickets: int = 0
    entries: int = 0
    threaded: int = 0
    receipts: dict[str, int] = field(default_factory=dict)
    attachments: int = 0
    parked: int = 0
    misthreaded: int = 0
    missing: int = 0
    rate_limited: int = 0
    threaded_by: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


# -- subprocesses --------------------------------------------------------------------------


# -- the steps -----------------------------------------------------------------------------


def generate_corpus(count: int, outdir: Path, seed: int) -> dict[str, Any]:
    """Run the shared generator; returns its manifest (with the per-message list)."""
    if not GEN_CORPUS.exists():
        raise BenchError(f"corpus generator not found at {GEN_CORPUS}")
    _run(
        [
            sys.executable,
            str(GEN_CORPUS),
            str(count),
            str(outdir),
            "--seed",
            str(seed),
            "--tag-format",
            "[#{id}]",
            "--first-ticket-id",
            str(FIRST_TICKET_NUMBER),
        ],
        env=dict(os.environ),
        what="gen_corpus.py",
    )
    return json.loads((outdir / "manifest.json").read_text())  # type: ignore[no-any-return]


def append_corpus(imap_server: Any, corpus: Path, manifest: dict[str, Any]) -> float:
    """APPEND every message, in order, over one connection; returns the seconds it took."""
    started = time.perf_counter()
    with imap_server.connect(MAILBOX_USER) as client:
        for message in manifest["messages"]:
            client.append("INBOX", (corpus / message["file"]).read_bytes())
        client.select_folder("INBOX", readonly=True)
        stored = len(client.search("ALL"))
    if stored != manifest["n"]:
        raise BenchError(f"Dovecot holds {stored} messages after appending {manifest['n']}")
    return time.perf_counter() - started


def timed_poll(
    env: dict[str, str], log_dir: Path, profile: Path | None = None, name: str = "poll"
) -> tuple[float, Any, int, str]:
    """Run `mail poll --once`; returns (wall seconds, rusage, exit code, stdout)."""
    command = _flask_command()
    if profile is not None:
        profiler = [sys.executable, "-m", "cProfile", "-o", str(profile)]
        command = [*profiler, "-m", "flask", "--app", "wsgi"]
    if os.environ.get("BENCH_PYSPY"):  # a sampling profile (see README: py-spy is optional)
        spy = [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            *(["-i"] if os.environ.get("BENCH_PYSPY_IDLE") else []),
            "-r",
            "200",
            "-f",
            "raw",
            "-o",
            os.environ["BENCH_PYSPY"] + name,
            "--",
        ]
        command = [*spy, *command]
    out_path, err_path = log_dir / f"{name}.out", log_dir / f"{name}.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [*command, "mail", "poll", "--once"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
        # wait4 gives this child's own rusage (peak RSS in KiB on Linux), unlike
        # RUSAGE_CHILDREN, whose ru_maxrss is the largest of every child ever reaped.
        try:
            _pid, status, rusage = os.wait4(proc.pid, 0)
        except BaseException:  # Ctrl-C: leave no poller behind
            proc.kill()
            proc.wait()
            raise
        elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout = out_path.read_text(errors="replace")
    if proc.returncode != 0:
        stderr = err_path.read_text(errors="replace")
        print(f"  mail poll --once exited {proc.returncode}:\n{_tail(stdout)}\n{_tail(stderr)}")
    return elapsed, rusage, proc.returncode, stdout


def helper_figures(log_dir: Path, name: str = "poll") -> tuple[float, float]:
    """(CPU seconds, peak RSS in MB) of the poller's helper processes, from its log.

    The helpers are started by a fork server, so their usage is not in the poller's wait4.
    """
    text = (log_dir / f"{name}.err").read_text(errors="replace")
    found = re.search(r"prepared \d+ messages using ([\d.]+) s of CPU \(peak RSS (\d+) MB\)", text)
    return (float(found.group(1)), float(found.group(2))) if found else (0.0, 0.0)


def verify(url: str, manifest: dict[str, Any], figures: Figures) -> None:
    """Count what landed in the database and compare it with the corpus's expectations."""
    import sqlalchemy as sa

    from ticketing.models import Attachment, Entry, EntryKind, Receipt, Ticket

    if url.startswith("postgresql://"):
        url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            figures.tickets = conn.scalar(sa.select(sa.func.count(Ticket.id))) or 0
            customer = Entry.kind == EntryKind.CUSTOMER_EMAIL
            figures.entries = conn.scalar(sa.select(sa.func.count(Entry.id)).where(customer)) or 0
            figures.receipts = {
                str(status): n
                for status, n in conn.execute(
                    sa.select(Receipt.status, sa.func.count(Receipt.id)).group_by(Receipt.status)
                )
            }
            figures.attachments = conn.scalar(sa.select(sa.func.count(Attachment.id))) or 0
            # Where each message landed, by Message-ID (stored without angle brackets).
            landed: dict[str, list[int]] = {}
            reasons: Counter[str] = Counter()
            rate_limited = 0
            rows = conn.execute(
                sa.select(Entry.message_id, Ticket.number, Entry.threaded_by, Entry.flags)
                .join(Ticket, Ticket.id == Entry.ticket_id)
                .where(customer)
            )
            for message_id, number, threaded_by, flags in rows:
                landed.setdefault(message_id or "", []).append(number)
                # Reasons name ticket numbers and Message-IDs; count them by kind.
                reasons[_generic_reason(threaded_by or "")] += 1
                rate_limited += "rate_limited" in (flags or [])
    finally:
        engine.dispose()

    figures.threaded = figures.entries - figures.tickets
    figures.threaded_by = dict(reasons.most_common())
    figures.rate_limited = rate_limited
    for message in manifest["messages"]:
        numbers = landed.get(message["message_id"].strip("<>"), [])
        if not numbers:
            figures.missing += 1
        elif numbers != [message["ticket_id"]]:
            figures.misthreaded += 1

    n = manifest["n"]
    if figures.entries != n:
        figures.problems.append(f"{figures.entries} customer entries for {n} messages")
    if sum(figures.receipts.values()) != n:
        figures.problems.append(f"{sum(figures.receipts.values())} receipts for {n} messages")
    if figures.tickets != manifest["new"]:
        figures.problems.append(
            f"{figures.tickets} tickets, the corpus has {manifest['new']} threads"
        )
    if figures.missing:
        figures.problems.append(f"{figures.missing} messages have no entry")
    if figures.misthreaded:
        figures.problems.append(f"{figures.misthreaded} messages on another ticket than expected")
    if figures.attachments < manifest["attachments"]:
        figures.problems.append(
            f"{figures.attachments} attachments stored, the corpus has {manifest['attachments']}"
        )


def _generic_reason(reason: str) -> str:
    """The kind of a threading reason: Message-IDs become `<…>`, ticket numbers `#n`."""
    return re.sub(r"#\d+", "#n", re.sub(r"<[^<>]*>", "<…>", reason))


def count_parked(env: dict[str, str]) -> int:
    """Parked messages as `flask mail failed` lists them (one "id<TAB>…" line each)."""
    out = _flask("mail", "failed", env=env)
    # An error text may span lines; only a record's first line starts with "<id><TAB>".
    return sum(1 for line in out.splitlines() if line.split("\t", 1)[0].isdigit())


# -- report --------------------------------------------------------------------------------


def report(f: Figures) -> None:
    mb = f.corpus_bytes / 1e6
    cpu = f.poll_user_cpu_seconds + f.poll_sys_cpu_seconds + f.helper_cpu_seconds
    per_message_ms = 1000 * cpu / max(f.messages, 1)
    rate_mark = "ok" if f.messages_per_second >= TARGET_RATE else "BELOW TARGET"
    rss_mark = "ok" if max(f.peak_rss_mb, f.helper_peak_rss_mb) < TARGET_RSS_MB else "OVER TARGET"
    if f.poll_exit_code != 0 or f.entries != f.messages:
        # A poll that failed or skipped messages is fast for the wrong reason.
        rate_mark = rss_mark = "not comparable: the poll did not ingest every message"
    print(
        f"ingest benchmark: N={f.messages} messages (corpus seed {f.seed}, {mb:.1f} MB, "
        f"{f.corpus_replies} follow-ups, {f.corpus_attachments} with attachments), "
        f"database={f.database}"
    )
    print(f"  append to Dovecot: {f.append_seconds:.1f} s (not timed)")
    print(
        f"  mail poll --once:  {f.poll_seconds:.2f} s  ->  {f.messages_per_second:.0f} messages/s"
        f"  [target >= {TARGET_RATE:.0f} at N=2000: {rate_mark}]"
    )
    print(
        f"  poller CPU:        user {f.poll_user_cpu_seconds:.2f} s,"
        f" sys {f.poll_sys_cpu_seconds:.2f} s; helper process: {f.helper_cpu_seconds:.2f} s"
        f"  ->  {per_message_ms:.1f} ms CPU per message in all"
    )
    print(
        f"  peak RSS (poller): {f.peak_rss_mb:.0f} MB, helper {f.helper_peak_rss_mb:.0f} MB"
        f"  [target < {TARGET_RSS_MB:.0f} at N=10000: {rss_mark}]"
    )
    print(
        f"  idle poll again:   {f.idle_poll_seconds:.2f} s, peak RSS {f.idle_peak_rss_mb:.0f} MB"
        f" (start-up and IMAP login, nothing new)"
        f"  ->  {f.steady_messages_per_second:.0f} messages/s without it"
    )
    print(f"  poller said:       {f.poll_summary or '(nothing)'}")
    print(
        f"  tickets: {f.tickets} new, entries: {f.entries} ({f.threaded} threaded into existing"
        f" tickets), attachments: {f.attachments}, parked: {f.parked}"
    )
    receipts = ", ".join(f"{n} {status}" for status, n in sorted(f.receipts.items()))
    print(f"  receipts: {receipts or 'none'}; rate-limited flags: {f.rate_limited}")
    print(f"  threaded by: {', '.join(f'{n} {why!r}' for why, n in f.threaded_by.items())}")
    if f.problems:
        print("  CORRECTNESS PROBLEMS: " + "; ".join(f.problems))
    else:
        print("  correctness: every message ingested exactly once, on the expected ticket")


# -- main ----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> Figures:
    from tests.support.dovecot import DOVECOT_BIN, run_dovecot

    if not os.access(DOVECOT_BIN, os.X_OK):
        raise BenchError(f"{DOVECOT_BIN} not found (apt-get install dovecot-imapd)")
    figures = Figures(messages=args.messages, seed=args.seed, database=args.database)
    workdir = Path(tempfile.mkdtemp(prefix="handoff-bench-"))
    try:
        corpus, data_dir = workdir / "corpus", workdir / "data"
        data_dir.mkdir()
        started = time.perf_counter()
        manifest = generate_corpus(args.messages, corpus, args.seed)
        figures.corpus_seconds = time.perf_counter() - started
        figures.corpus_bytes = manifest["bytes"]
        figures.corpus_replies = manifest["replies"]
        figures.corpus_attachments = manifest["attachments"]

        with (
            database(args.database, args.database_url, data_dir, args.keep) as url,
            run_dovecot(tls=False) as imap_server,
        ):
            env = {
                **os.environ,
                "DATABASE_URL": url,
                "HANDOFF_DATA_DIR": str(data_dir),
                "SECRET_KEY": "bench-" + secrets.token_hex(24),
            }
            _flask("db", "upgrade", env=env)
            figures.append_seconds = append_corpus(imap_server, corpus, manifest)
            _flask(
                "mailboxes",
                "add",
                "support",
                "--address",
                MAILBOX_USER,
                "--imap-host",
                imap_server.host,
                "--imap-port",
                str(imap_server.port),
                "--imap-user",
                MAILBOX_USER,
                "--imap-password-stdin",
                "--plain",
                env=env,
                stdin=imap_server.users[MAILBOX_USER] + "\n",
            )

            elapsed, rusage, code, stdout = timed_poll(env, workdir, args.profile)
            figures.poll_seconds = elapsed
            figures.messages_per_second = args.messages / elapsed
            figures.peak_rss_mb = rusage.ru_maxrss / 1024  # KiB on Linux
            figures.poll_user_cpu_seconds = rusage.ru_utime
            figures.poll_sys_cpu_seconds = rusage.ru_stime
            figures.helper_cpu_seconds, figures.helper_peak_rss_mb = helper_figures(workdir)
            figures.poll_exit_code = code
            figures.poll_summary = " | ".join(stdout.strip().splitlines())
            if code != 0:
                figures.problems.append(f"mail poll --once exited {code}")

            verify(url, manifest, figures)
            figures.parked = count_parked(env)

            # A second poll finds nothing new: its time is the fixed cost (interpreter, app,
            # IMAP login, SELECT, SEARCH) that the first poll paid once.
            idle, idle_rusage, code, stdout = timed_poll(env, workdir, name="idle-poll")
            figures.idle_poll_seconds = idle
            figures.idle_peak_rss_mb = idle_rusage.ru_maxrss / 1024
            if figures.poll_seconds > idle:
                figures.steady_messages_per_second = args.messages / (figures.poll_seconds - idle)
            if code != 0 or not re.search(r"\b0 fetched\b", stdout):
                figures.problems.append(f"second poll was not idle: {stdout.strip()!r}")
    finally:
        if args.keep:
            print(f"  kept {workdir} (corpus/, data/, poll.out, poll.err, idle-poll.*)")
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
    parser.add_argument("--seed", type=int, default=42, help="corpus seed (default 42)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (and database)")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="run the poller under cProfile and write its stats to FILE (slows it down)",
    )
    args = parser.parse_args(argv)
    if args.messages < 1:
        parser.error("--messages must be at least 1")
    try:
        figures = run(args)
    except BenchError as exc:
        print(f"ingest benchmark failed: {exc}", file=sys.stderr)
        return 2
    report(figures)
    if args.json:
        print(json.dumps(asdict(figures), sort_keys=True))
    return 1 if figures.problems else 0


if __name__ == "__main__":
    sys.exit(main())
