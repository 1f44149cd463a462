"""Load benchmark: gunicorn (2 workers) on PostgreSQL with N tickets, under steady load.

Not a test: it prints figures. Steps, each with the project's real parts:

1. make a fresh database (a `handoff_bench_<random>` database on a PostgreSQL server, or a
   SQLite file) and run `flask db upgrade`; seed it with `flask demo seed --tickets N`
   (about five entries per ticket), then `VACUUM ANALYZE` on PostgreSQL;
2. create an agent, serve the app with gunicorn (`--workers 2`, sync workers, as in
   production) on loopback with the rate limiter off (this measures the app, not the
   limiter), and sign in through the real login form;
3. for each endpoint — the inbox view, a ticket page (random tickets), the article suggestion
   API (`/api/v1/articles/suggest?q=…`, skipped with a note when the route is absent) — run
   C concurrent clients for S seconds, each on its own keep-alive connection (reopened when
   the server closes it, as gunicorn's sync workers do), and print requests/s, p50/p95/p99
   latency and the number of errors (any answer but a 200 with the expected content).

The load generator runs in this process (threads, stdlib `http.client`): on a small machine
it shares the CPU with the server, so the figures are a floor. Run it on a quiet machine.

    .venv/bin/python bench/load.py                                  # 100k tickets, 30 s each
    .venv/bin/python bench/load.py --tickets 2000 --seconds 5       # a quick smoke run
    .venv/bin/python bench/load.py --database-url postgresql://postgres@127.0.0.1:5432/test

Exits non-zero when a step fails; missing the targets (zero errors, p99 < 250 ms) is
reported, and makes the exit status 1 only with --strict.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from benchlib import BenchError
from inbox import AGENT_EMAIL, AGENT_PASSWORD, Client, gunicorn, seeded_instance

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/test"
TARGET_P99_MS = 250.0
QUERIES = [
    "refund",
    "invoice pdf",
    "password reset",
    "card declined",
    "change my plan",
    "export data",
    "two factor",
    "delivery late",
]


@dataclass
class Endpoint:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    seconds: float = 0.0
    skipped: str | None = None

    def percentile(self, pct: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0


@dataclass
class Figures:
    tickets: int
    database: str
    workers: int
    concurrency: int
    seconds: float
    endpoints: list[Endpoint] = field(default_factory=list)


class KeepAliveClient:
    """One connection, reused while the server keeps it open (http.client reconnects)."""

    def __init__(self, port: int, cookie: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Cookie": cookie, "Connection": "keep-alive"}

    def get(self, path: str) -> tuple[int, str]:
        for attempt in (1, 2):
            try:
                self.conn.request("GET", path, headers=self.headers)
                response = self.conn.getresponse()
                body = response.read().decode("utf-8", "replace")
                if response.will_close:
                    self.conn.close()
                return response.status, body
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()  # the server closed an idle keep-alive connection
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def drive(
    endpoint: Endpoint,
    port: int,
    cookie: str,
    paths: Callable[[random.Random], str],
    check: Callable[[str], bool],
    *,
    concurrency: int,
    seconds: float,
) -> None:
    """`concurrency` threads, each on its own connection, for `seconds`, as fast as answered."""
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker(n: int) -> None:
        rng = random.Random(n)
        client = KeepAliveClient(port, cookie)
        mine: list[float] = []
        errors: list[str] = []
        try:
            while time.perf_counter() < deadline:
                path = paths(rng)
                started = time.perf_counter()
                try:
                    status, body = client.get(path)
                except OSError as exc:
                    status, body = 0, str(exc)
                mine.append((time.perf_counter() - started) * 1000)
                if status != 200 or not check(body):
                    errors.append(f"GET {path} -> {status}")
        finally:
            client.close()
        with lock:
            endpoint.latencies_ms.extend(mine)
            endpoint.errors += len(errors)
            endpoint.error_samples.extend(errors[: 3 - len(endpoint.error_samples)])

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    endpoint.seconds = time.perf_counter() - started


def measure(port: int, figures: Figures, first: int, last: int) -> None:
    signed_in = Client(port)
    signed_in.login(AGENT_EMAIL, AGENT_PASSWORD)
    cookie = "; ".join(f"{k}={v}" for k, v in signed_in.cookies.items())
    has_rows = re.compile(r"data-ticket-number=").search
    run = {"concurrency": figures.concurrency, "seconds": figures.seconds}

    for _ in range(10):  # warm-up: templates compiled, connections pooled
        signed_in.request("GET", "/tickets")
        signed_in.request("GET", f"/tickets/{first}")

    inbox = Endpoint("inbox view (All open)")
    drive(inbox, port, cookie, lambda rng: "/tickets", lambda h: bool(has_rows(h)), **run)

    ticket = Endpoint("ticket page (random tickets)")
    drive(
        ticket,
        port,
        cookie,
        lambda rng: f"/tickets/{rng.randint(first, last)}",
        lambda h: 'class="entry' in h or "entry-" in h,
        **run,
    )

    suggest = Endpoint("article suggestions (API)")
    status, _, _ = signed_in.request("GET", "/api/v1/articles/suggest?q=refund")
    if status == 404:
        suggest.skipped = "GET /api/v1/articles/suggest answered 404: the route is not there"
    else:
        drive(
            suggest,
            port,
            cookie,
            lambda rng: (
                "/api/v1/articles/suggest?" + urllib.parse.urlencode({"q": rng.choice(QUERIES)})
            ),
            lambda body: body.lstrip().startswith("{"),
            **run,
        )
    figures.endpoints = [inbox, ticket, suggest]


def report(figures: Figures) -> bool:
    """Print the table; True when every endpoint met the targets."""
    print(
        f"load benchmark: N={figures.tickets} tickets, database={figures.database}, gunicorn "
        f"{figures.workers} workers, {figures.concurrency} concurrent clients, "
        f"{figures.seconds:.0f} s per endpoint"
    )
    print(f"  {'endpoint':34} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>7}")
    ok = True
    for e in figures.endpoints:
        if e.skipped:
            print(f"  {e.name:34} skipped: {e.skipped}")
            continue
        p99 = e.percentile(99)
        met = e.errors == 0 and p99 < TARGET_P99_MS
        ok = ok and met
        print(
            f"  {e.name:34} {e.rate:8.1f} {e.percentile(50):8.1f} {e.percentile(95):8.1f} "
            f"{p99:8.1f} {e.errors:7d}  {'ok' if met else 'MISSED'}"
        )
        for sample in e.error_samples:
            print(f"      e.g. {sample}")
    print(f"  targets: zero errors, p99 < {TARGET_P99_MS:.0f} ms")
    return ok


def run(args: argparse.Namespace) -> Figures:
    figures = Figures(
        tickets=args.tickets,
        database=args.database,
        workers=args.workers,
        concurrency=args.concurrency,
        seconds=args.seconds,
    )
    with seeded_instance(
        args, prefix="handoff-bench-load-", extra_env={"HANDOFF_RATELIMIT_ENABLED": "false"}
    ) as seeded:
        print(f"  driving gunicorn for {3 * args.seconds:.0f} s ...", flush=True)
        with gunicorn(seeded.env, args.workers, seeded.workdir) as (port, _master):
            measure(port, figures, seeded.first_ticket, seeded.last_ticket)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=100_000, metavar="N")
    parser.add_argument("--seconds", type=float, default=30.0, help="per endpoint (30)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients (16)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument(
        "--database-url", default=DEFAULT_SERVER_URL, help="the PostgreSQL server to use"
    )
    parser.add_argument("--seed", type=int, default=42, help="demo data seed (42)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and database")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    try:
        figures = run(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ok = report(figures)
    if args.json:
        summary = asdict(figures)
        for endpoint, e in zip(summary["endpoints"], figures.endpoints, strict=True):
            del endpoint["latencies_ms"]
            endpoint.update(
                requests=len(e.latencies_ms),
                rate=round(e.rate, 1),
                p50=round(e.percentile(50), 1),
                p95=round(e.percentile(95), 1),
                p99=round(e.percentile(99), 1),
            )
        print(json.dumps(summary))
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    raise SystemExit(main())
