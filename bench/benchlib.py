"""Shared plumbing of the benchmark scripts: running `flask` commands and making a fresh
database (a SQLite file, or a throwaway `handoff_bench_<random>` database on PostgreSQL).

The scripts run as `python bench/<name>.py`, so this module is imported from the script's
own folder.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


class BenchError(RuntimeError):
    """A step failed; the message says which, with the tail of its output."""


def venv_bin(name: str) -> str:
    """The project's `.venv/bin/<name>` when it exists, else the name on PATH."""
    path = ROOT / ".venv" / "bin" / name
    return str(path) if path.exists() else name


def flask_command() -> list[str]:
    venv_flask = ROOT / ".venv" / "bin" / "flask"
    if venv_flask.exists():
        return [str(venv_flask), "--app", "wsgi"]
    return [sys.executable, "-m", "flask", "--app", "wsgi"]


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run(
    args: Sequence[str], *, env: dict[str, str], what: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command from the project root; BenchError with its output tail if it fails."""
    done = subprocess.run(
        list(args), cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BenchError(
            f"{what} failed (exit {done.returncode}):\n{tail(done.stdout)}\n{tail(done.stderr)}"
        )
    return done


def flask(*args: str, env: dict[str, str], stdin: str | None = None) -> str:
    """`flask --app wsgi <args>`; returns its stdout."""
    return run(
        [*flask_command(), *args], env=env, what=f"flask {' '.join(args)}", stdin=stdin
    ).stdout


@contextlib.contextmanager
def database(kind: str, server_url: str, data_dir: Path, keep: bool) -> Iterator[str]:
    """A fresh, empty database URL for Handoff; a PostgreSQL one is dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{data_dir / 'handoff.db'}"
        return
    import sqlalchemy as sa

    server = sa.make_url(server_url)
    admin = sa.create_engine(
        server.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    name = f"handoff_bench_{secrets.token_hex(5)}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        raise BenchError(f"cannot create a database on {server_url}: {exc}") from exc
    try:
        yield server.set(drivername="postgresql", database=name).render_as_string(
            hide_password=False
        )
    finally:
        if keep:
            print(f"  kept database {name} on {server.render_as_string()}")
        else:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
