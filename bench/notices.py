"""Proactive-notices benchmark: CSV import rate, scan time and peak RSS for N accounts.

Not a test: it prints figures. Steps, each with the project's real parts:

1. write a CSV of N accounts (seed 42): one customer each, a default card whose expiry is
   spread evenly over the 60 months around the scan day (so about 1 in 30 cards is in the
   notice window of a given day), a few plans and statuses;
2. make a fresh database (a SQLite file, or a `handoff_bench_<random>` database on a
   PostgreSQL server) and run `flask db upgrade`;
3. time `flask --app wsgi accounts import FILE.csv` end to end as a subprocess and read its
   peak RSS from `os.wait4` -> rows/s;
4. time `flask --app wsgi notices scan --today D --dry-run`: the selection over all N
   accounts (index range scan, rules, dedupe anti-join, opt-out/suppression/cap checks) that
   prints who would be told what — nothing is written;
5. unless `--no-send`: time the real scan on D (the first one: the whole backlog, about 1 in
   30 accounts, each notice composed, stored and queued in the outbox with its ticket entry,
   a batch of 500 at a time), then run it again (it must queue nothing: idempotent);
6. check: one notice per outbox row, no dedupe key twice, the repeated scan queued 0.

Usage (from the project root):

    .venv/bin/python bench/notices.py --accounts 1000000
    .venv/bin/python bench/notices.py --accounts 100000 --database postgresql \
        --database-url postgresql://postgres@127.0.0.1:5432/test

Missing a target is reported, not an error; failing commands or checks exit non-zero.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import ROOT, BenchError, database, flask, flask_command, tail

from ticketing.services.accounts import FIELDS

SCAN_DAY = dt.date(2026, 11, 10)
PLANS = ("Basic", "Pro", "Team", "Enterprise")
BRANDS = ("visa", "mastercard", "amex", "discover")
TARGET_IMPORT_ROWS_S = 20_000
TARGET_SCAN_S = 20.0
TARGET_RSS_MB = 300
# CPU seconds of each timed command: on a shared machine the wall time also measures others.
CPU_SECONDS: dict[str, float] = {}


def write_csv(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    first = SCAN_DAY.year * 12 + SCAN_DAY.month - 1 - 24  # 24 months back .. 36 ahead
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(FIELDS)  # the documented CSV columns, in their order
        for i in range(n):
            month_index = first + rng.randrange(60)
            out.writerow(
                [
                    f"cus_{i:08d}",
                    f"customer{i}@example.com",
                    f"Customer {i}",
                    rng.choice(PLANS),
                    "active" if rng.random() < 0.95 else "past_due",
                    rng.choice(BRANDS),
                    f"{rng.randrange(10000):04d}",
                    month_index % 12 + 1,
                    month_index // 12,
                ]
            )


def timed(
    args: list[str], env: dict[str, str], log_dir: Path, name: str
) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MB, stdout) of one `flask` command run as a subprocess."""
    out_path, err_path = log_dir / f"{name}.out", log_dir / f"{name}.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [*flask_command(), *args], cwd=ROOT, env=env, stdout=out, stderr=err
        )
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - started
    stdout = out_path.read_text()
    if os.waitstatus_to_exitcode(status) != 0:
        raise BenchError(
            f"flask {' '.join(args)} failed:\n{tail(stdout)}\n{tail(err_path.read_text())}"
        )
    cpu = usage.ru_utime + usage.ru_stime
    CPU_SECONDS[name] = round(cpu, 2)
    print(f"  [{name}: {elapsed:.1f} s wall, {cpu:.1f} s CPU, load {os.getloadavg()[0]:.1f}]")
    return elapsed, usage.ru_maxrss / 1024, stdout


def queued(output: str) -> int:
    match = re.search(r"(\d+) notices queued", output)
    if not match:
        raise BenchError(f"no summary in the scan's output:\n{tail(output)}")
    return int(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep", action="store_true", help="Keep the temp dir (and database).")
    parser.add_argument("--json", action="store_true", help="Also print one JSON line.")
    parser.add_argument(
        "--no-send", action="store_true", help="Skip the timed sending scan (the backlog)."
    )
    options = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="handoff-bench-notices-"))
    data_dir = tmp / "data"
    data_dir.mkdir()
    figures: dict[str, float | int] = {"accounts": options.accounts}
    try:
        csv_path = tmp / "accounts.csv"
        started = time.perf_counter()
        write_csv(csv_path, options.accounts, options.seed)
        print(
            f"CSV: {options.accounts} accounts in {time.perf_counter() - started:.1f} s "
            f"({csv_path.stat().st_size / 1e6:.0f} MB)"
        )
        with database(options.database, options.database_url, data_dir, options.keep) as url:
            env = {
                **os.environ,
                "DATABASE_URL": url,
                "HANDOFF_DATA_DIR": str(data_dir),
                "SECRET_KEY": "bench-secret-key-" + "x" * 32,
                "HANDOFF_MAIL_FROM": "support@example.com",
                "HANDOFF_ACCOUNT_URL": "https://billing.example.com/card/{account_id}",
            }
            flask("db", "upgrade", env=env)

            seconds, rss, out = timed(["accounts", "import", str(csv_path)], env, tmp, "import")
            rate = options.accounts / seconds
            figures |= {
                "import_s": round(seconds, 2),
                "import_rows_s": round(rate),
                "import_rss_mb": round(rss),
            }
            print(
                f"import: {seconds:.1f} s, {rate:,.0f} rows/s, peak RSS {rss:.0f} MB "
                f"(target >= {TARGET_IMPORT_ROWS_S:,} rows/s)"
            )
            print(f"  {out.strip().splitlines()[-1]}")

            day = SCAN_DAY.isoformat()
            s0, rss0, out0 = timed(
                ["notices", "scan", "--today", day, "--dry-run"], env, tmp, "dry"
            )
            would = len([line for line in out0.splitlines() if line.startswith("would notify")])
            print(
                f"dry-run scan ({day}): {s0:.1f} s, would notify {would}, peak RSS {rss0:.0f} MB "
                f"(the selection over all {options.accounts:,} accounts; target < "
                f"{TARGET_SCAN_S:.0f} s, < {TARGET_RSS_MB} MB)"
            )
            figures |= {
                "dry_scan_s": round(s0, 2),
                "dry_scan_notices": would,
                "dry_scan_rss_mb": round(rss0),
            }
            n1 = n2 = 0
            if not options.no_send:
                s1, rss1, out1 = timed(["notices", "scan", "--today", day], env, tmp, "scan1")
                n1 = queued(out1)
                print(
                    f"scan ({day}): {s1:.1f} s, {n1} notices composed and queued "
                    f"({n1 / s1:,.0f}/s), peak RSS {rss1:.0f} MB (target < "
                    f"{TARGET_SCAN_S:.0f} s, < {TARGET_RSS_MB} MB)"
                )
                s2, rss2, out2 = timed(["notices", "scan", "--today", day], env, tmp, "scan2")
                n2 = queued(out2)
                print(f"repeated scan ({day}): {s2:.1f} s, {n2} queued, peak RSS {rss2:.0f} MB")
                figures |= {
                    "scan_s": round(s1, 2),
                    "scan_notices": n1,
                    "scan_rss_mb": round(rss1),
                    "repeat_scan_s": round(s2, 2),
                    "repeat_scan_notices": n2,
                }
            problems = check(url, n1, n2) if not options.no_send else []
    finally:
        if options.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if options.json:
        print(json.dumps(figures | {"cpu_seconds": CPU_SECONDS}))
    for problem in problems:
        print(f"CHECK FAILED: {problem}")
    missed = []
    if figures["import_rows_s"] < TARGET_IMPORT_ROWS_S:
        missed.append("import rate")
    if figures["dry_scan_s"] > TARGET_SCAN_S or figures["dry_scan_rss_mb"] > TARGET_RSS_MB:
        missed.append("selection")
    if "scan_s" in figures and (
        figures["scan_s"] > TARGET_SCAN_S or figures["scan_rss_mb"] > TARGET_RSS_MB
    ):
        missed.append("scan")
    if missed:
        print(f"targets missed: {', '.join(missed)}")
    return 1 if problems else 0


def check(url: str, expected_notices: int, repeated: int) -> list[str]:
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    problems = []
    with engine.connect() as conn:
        notices = conn.execute(sa.text("SELECT count(*) FROM notices")).scalar_one()
        keys = conn.execute(sa.text("SELECT count(DISTINCT dedupe_key) FROM notices")).scalar_one()
        rows = conn.execute(
            sa.text("SELECT count(*) FROM outbox WHERE kind = 'notice'")
        ).scalar_one()
    engine.dispose()
    if notices != expected_notices:
        problems.append(f"{notices} notices in the database, the scans reported {expected_notices}")
    if keys != notices:
        problems.append(f"{notices - keys} duplicate dedupe keys")
    if rows != notices:
        problems.append(f"{rows} notice emails in the outbox for {notices} notices")
    if repeated:
        problems.append(f"the repeated scan queued {repeated} notices (not idempotent)")
    return problems


if __name__ == "__main__":
    sys.exit(main())
