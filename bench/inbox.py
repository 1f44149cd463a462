"""Inbox benchmark: page latency of the agent inbox at N tickets, served by gunicorn.

Not a test: it prints figures. Steps, each with the project's real parts:

1. make a fresh database (a SQLite file, or a `handoff_bench_<random>` database on a
   PostgreSQL server) and run `flask db upgrade`;
2. seed it with `flask demo seed --tickets N` (about five entries per ticket, two years of
   history; timed and reported); on PostgreSQL then `VACUUM ANALYZE`, as autovacuum would;
3. create an agent (`flask agents create`), serve the app with gunicorn (2 sync workers) on
   loopback, and sign in through the real login form (CSRF token and session cookie);
4. for each scenario — the default view, a filtered view, page 50 of a view (reached by
   following the keyset cursor 49 times), a ticket page, a search — run C concurrent clients
   making R requests each, after a short warm-up, and print p50/p95/p99 latency,
   requests per second, and the server's CPU time per request (gunicorn workers plus their
   PostgreSQL backends, from /proc): unlike latency, that figure does not move when other
   work shares the machine. Every response must be a 200 carrying the expected content.

Usage (from the project root):

    .venv/bin/python bench/inbox.py --tickets 100000
    .venv/bin/python bench/inbox.py --tickets 100000 --database postgresql \\
        --database-url postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/inbox.py --tickets 20000 --requests 50 --json

Exits non-zero when a step fails or a response is wrong; missing a latency target is
reported, not an error.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchlib import ROOT, BenchError, database
from benchlib import flask as _flask
from benchlib import tail as _tail
from benchlib import venv_bin as _venv_bin

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/test"
AGENT_EMAIL = "bench@handoff.example"
AGENT_PASSWORD = "bench-" + secrets.token_urlsafe(12)
TARGET_VIEW_MS = 50.0
TARGET_SEARCH_MS = 150.0
SEARCHES = [
    "refund",
    "invoice pdf",
    "password reset",
    "webhook signature",
    "Tanaka",
    "card declined",
    "dark mode",
    "carrier depot",
]


@dataclass
class Scenario:
    name: str
    target_ms: float
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    server_cpu_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def p50(self) -> float:
        return _percentile(self.latencies_ms, 50)

    @property
    def p95(self) -> float:
        return _percentile(self.latencies_ms, 95)

    @property
    def p99(self) -> float:
        return _percentile(self.latencies_ms, 99)

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_request(self) -> float:
        """Server CPU (gunicorn workers + their PostgreSQL backends) per request."""
        count = len(self.latencies_ms)
        return self.server_cpu_seconds * 1000 / count if count else 0.0


@dataclass
class Figures:
    tickets: int
    database: str
    clients: int
    requests_per_client: int
    workers: int
    seed_seconds: float = 0.0
    seed_output: str = ""
    vacuum_seconds: float = 0.0
    scenarios: list[Scenario] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1]


# -- subprocesses --------------------------------------------------------------------------


def vacuum(url: str) -> float:
    """VACUUM ANALYZE a PostgreSQL database (sets the visibility map for index-only scans)."""
    import sqlalchemy as sa

    engine = sa.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    started = time.perf_counter()
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    finally:
        engine.dispose()
    return time.perf_counter() - started


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_pids(master: int, database_name: str | None) -> list[int]:
    """The gunicorn workers (children of `master`) and the PostgreSQL backends serving
    `database_name`: the processes whose CPU a request costs."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == master or (
            database_name and "postgres: " in cmdline and database_name in cmdline
        ):
            pids.append(int(entry.name))
    return pids


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by `pids` (those still running)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def gunicorn(env: dict[str, str], workers: int, log_dir: Path) -> Iterator[tuple[int, int]]:
    """The app under gunicorn on a loopback port; yields (port, master pid). Stopped by its
    own pid."""
    port = _free_port()
    log = (log_dir / "gunicorn.log").open("wb")
    proc = subprocess.Popen(
        [
            _venv_bin("gunicorn"),
            "--workers",
            str(workers),
            "--bind",
            f"127.0.0.1:{port}",
            "--access-logfile",
            "-" if os.environ.get("BENCH_ACCESS_LOG") else "/dev/null",
            "wsgi:app",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise BenchError(
                    f"gunicorn exited {proc.returncode}:\n"
                    + _tail((log_dir / "gunicorn.log").read_text(errors="replace"))
                )
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/login")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BenchError("gunicorn did not answer within 30 s")
            time.sleep(0.2)
        yield port, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


# -- HTTP ----------------------------------------------------------------------------------


class Client:
    """A signed-in agent: one cookie jar (the session cookie), one connection per request
    (gunicorn's sync workers close every connection after the response)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}

    def request(
        self, method: str, path: str, body: str | None = None
    ) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            text = response.read().decode("utf-8", "replace")
            for value in response.headers.get_all("Set-Cookie") or []:
                name, _, rest = value.partition("=")
                self.cookies[name.strip()] = rest.split(";", 1)[0]
            return response.status, dict(response.headers), text
        finally:
            conn.close()

    def login(self, email: str, password: str) -> None:
        status, _, html = self.request("GET", "/login")
        match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
        if status != 200 or not match:
            raise BenchError(f"no login form (HTTP {status})")
        form = urllib.parse.urlencode(
            {"csrf_token": match.group(1), "email": email, "password": password}
        )
        status, headers, _ = self.request("POST", "/login", form)
        if status != 302 or "/login" in headers.get("Location", "/login"):
            raise BenchError(f"sign-in failed (HTTP {status})")


def _older_link(html: str) -> str | None:
    match = re.search(r'<p class="more"><a href="([^"]+)"', html)
    return match.group(1).replace("&amp;", "&") if match else None


def run_scenario(
    scenario: Scenario,
    client: Client,
    paths: Callable[[int], str],
    check: Callable[[str], bool],
    clients: int,
    requests: int,
    server_pids: Callable[[], list[int]],
    warmup: int = 20,
) -> None:
    """C threads, R requests each, over the same signed-in session; latencies per request,
    and the server's CPU time over the run."""
    for i in range(warmup):
        client.request("GET", paths(i))
    pids = server_pids()
    cpu_before = _cpu_seconds(pids)
    lock = threading.Lock()

    def worker(offset: int) -> None:
        mine: list[float] = []
        errors: list[str] = []
        for i in range(requests):
            path = paths(offset * requests + i)
            started = time.perf_counter()
            status, _, html = client.request("GET", path)
            mine.append((time.perf_counter() - started) * 1000)
            if status != 200 or not check(html):
                errors.append(f"GET {path} -> {status}")
        with lock:
            scenario.latencies_ms.extend(mine)
            scenario.errors.extend(errors[:3])

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    scenario.seconds = time.perf_counter() - started
    scenario.server_cpu_seconds = _cpu_seconds(pids) - cpu_before


def measure(
    port: int,
    server_pids: Callable[[], list[int]],
    figures: Figures,
    first_number: int,
    last_number: int,
) -> None:
    client = Client(port)
    client.login(AGENT_EMAIL, AGENT_PASSWORD)
    c, r = figures.clients, figures.requests_per_client
    has_rows = re.compile(r"data-ticket-number=").search

    default = Scenario("default view (All open)", TARGET_VIEW_MS)
    run_scenario(
        default, client, lambda i: "/tickets", lambda h: bool(has_rows(h)), c, r, server_pids
    )

    filtered_paths = [
        "/tickets?view=all&priority=high&tag=billing",
        "/tickets?view=solved&channel=web&sort=created",
        "/tickets?view=all&assignee=none&sort=priority",
        "/tickets?view=all&status=closed&tag=vip",
    ]
    filtered = Scenario("filtered view (4 filter/sort mixes)", TARGET_VIEW_MS)
    run_scenario(
        filtered,
        client,
        lambda i: filtered_paths[i % len(filtered_paths)],
        lambda h: bool(has_rows(h)),
        c,
        r,
        server_pids,
    )

    # Page 50 of All tickets: follow the "Older tickets" keyset link 49 times (not timed).
    path = "/tickets?view=all"
    for page in range(2, 51):
        status, _, html = client.request("GET", path)
        link = _older_link(html) if status == 200 else None
        if link is None:
            raise BenchError(f"no link to page {page} (HTTP {status} at {path})")
        path = link
    page50 = Scenario("page 50 of All tickets (keyset)", TARGET_VIEW_MS)
    run_scenario(page50, client, lambda i: path, lambda h: bool(has_rows(h)), c, r, server_pids)

    rng = random.Random(7)
    numbers = [rng.randint(first_number, last_number) for _ in range(c * r + 10)]
    ticket = Scenario("ticket page (random tickets)", TARGET_VIEW_MS)
    run_scenario(
        ticket,
        client,
        lambda i: f"/tickets/{numbers[i % len(numbers)]}",
        lambda h: 'class="entry' in h or "entry-" in h,
        c,
        r,
        server_pids,
    )

    search = Scenario(f"search ({len(SEARCHES)} queries)", TARGET_SEARCH_MS)
    run_scenario(
        search,
        client,
        lambda i: "/tickets?" + urllib.parse.urlencode({"q": SEARCHES[i % len(SEARCHES)]}),
        lambda h: bool(has_rows(h)),
        c,
        r,
        server_pids,
    )
    figures.scenarios = [default, filtered, page50, ticket, search]
    for s in figures.scenarios:
        if s.errors:
            figures.problems.append(f"{s.name}: {len(s.errors)} bad responses, e.g. {s.errors[0]}")


# -- report --------------------------------------------------------------------------------


def report(f: Figures) -> None:
    print(
        f"inbox benchmark: N={f.tickets} tickets, database={f.database}, gunicorn {f.workers} "
        f"workers, {f.clients} clients x {f.requests_per_client} requests per scenario"
    )
    print(f"  demo seed --tickets {f.tickets}: {f.seed_seconds:.1f} s  ({f.seed_output})")
    if f.vacuum_seconds:
        print(f"  VACUUM ANALYZE: {f.vacuum_seconds:.1f} s")
    print(
        f"  {'scenario':38} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'req/s':>7}"
        f" {'CPU ms/req':>10}  target"
    )
    for s in f.scenarios:
        mark = "ok" if s.p95 < s.target_ms else "MISSED"
        print(
            f"  {s.name:38} {s.p50:7.1f} {s.p95:7.1f} {s.p99:7.1f} {s.rate:7.1f}"
            f" {s.cpu_ms_per_request:10.1f}  p95 < {s.target_ms:.0f} ms: {mark}"
        )
    load = os.getloadavg()
    print(
        f"  load average at the end: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}"
        f" on {os.cpu_count()} CPUs (other work on the machine inflates latency, not CPU ms/req)"
    )
    if f.problems:
        print("  PROBLEMS: " + "; ".join(f.problems))


@dataclass
class SeededInstance:
    """A fresh Handoff database seeded by `demo seed`, with a bench agent to sign in as."""

    workdir: Path
    url: str
    env: dict[str, str]
    first_ticket: int
    last_ticket: int
    seed_seconds: float
    seed_output: str
    vacuum_seconds: float | None


@contextlib.contextmanager
def seeded_instance(
    args: argparse.Namespace, *, prefix: str, extra_env: dict[str, str] | None = None
) -> Iterator[SeededInstance]:
    """Create, migrate and seed `args.tickets` tickets on `args.database`; cleaned up after
    (unless `args.keep`). Shared by this benchmark and bench/load.py."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        data_dir = workdir / "data"
        data_dir.mkdir()
        with database(args.database, args.database_url, data_dir, args.keep) as url:
            env = {
                **os.environ,
                "DATABASE_URL": url,
                "HANDOFF_DATA_DIR": str(data_dir),
                "SECRET_KEY": "bench-" + secrets.token_hex(24),
                "HANDOFF_RUN_SCHEDULER": "false",
                **(extra_env or {}),
            }
            _flask("db", "upgrade", env=env)
            print(f"  seeding {args.tickets} tickets ...", flush=True)
            started = time.perf_counter()
            out = _flask(
                "demo", "seed", "--tickets", str(args.tickets), "--seed", str(args.seed), env=env
            )
            seed_seconds = time.perf_counter() - started
            added = re.search(r"Added .*", out)
            seed_output = added.group(0) if added else _tail(out, 3)
            numbers = re.search(r"#(\d+)-#(\d+)", seed_output)
            if not numbers:
                raise BenchError(f"demo seed said: {out}")
            vacuum_seconds = vacuum(url) if args.database == "postgresql" else None
            _flask(
                "agents", "create", AGENT_EMAIL, "--name", "Bench", env=env,
                stdin=AGENT_PASSWORD + "\n",
            )  # fmt: skip
            yield SeededInstance(
                workdir,
                url,
                env,
                int(numbers.group(1)),
                int(numbers.group(2)),
                seed_seconds,
                seed_output,
                vacuum_seconds,
            )
    finally:
        if args.keep:
            print(f"  kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace) -> Figures:
    figures = Figures(
        tickets=args.tickets,
        database=args.database,
        clients=args.clients,
        requests_per_client=args.requests,
        workers=args.workers,
    )
    with seeded_instance(args, prefix="handoff-bench-inbox-") as seeded:
        figures.seed_seconds = seeded.seed_seconds
        figures.seed_output = seeded.seed_output
        if seeded.vacuum_seconds is not None:
            figures.vacuum_seconds = seeded.vacuum_seconds
        database_name = seeded.url.rsplit("/", 1)[1] if args.database == "postgresql" else None
        with gunicorn(seeded.env, args.workers, seeded.workdir) as (port, master):
            measure(
                port,
                lambda: _server_pids(master, database_name),
                figures,
                seeded.first_ticket,
                seeded.last_ticket,
            )
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=100_000, metavar="N")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--database-url",
        default=DEFAULT_SERVER_URL,
        help="PostgreSQL server to create the benchmark database on (default %(default)s)",
    )
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (4)")
    parser.add_argument("--requests", type=int, default=100, help="requests per client (100)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--seed", type=int, default=42, help="demo data seed (42)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (and database)")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args(argv)
    if args.tickets < 5000:
        # Page 50 needs 2,500 tickets in the All view, which holds about half of what the
        # demo seed makes (the rest is solved or closed).
        parser.error("--tickets must be at least 5000 (page 50 needs 2500 tickets in a view)")
    try:
        figures = run(args)
    except BenchError as exc:
        print(f"inbox benchmark failed: {exc}", file=sys.stderr)
        return 2
    report(figures)
    if args.json:
        data = asdict(figures)
        for raw, scenario in zip(data["scenarios"], figures.scenarios, strict=True):
            raw.pop("latencies_ms")
            raw.update(
                p50=scenario.p50,
                p95=scenario.p95,
                p99=scenario.p99,
                rate=scenario.rate,
                cpu_ms_per_request=scenario.cpu_ms_per_request,
            )
        print(json.dumps(data, sort_keys=True))
    return 1 if figures.problems else 0


if __name__ == "__main__":
    sys.exit(main())
