"""`flask --app wsgi worker`: the background jobs in a foreground process of their own.

In production the web processes (gunicorn) serve requests only, and any number of workers on
any number of machines run the jobs of `web.jobs.JOBS` over one PostgreSQL database: mailbox
leases, `FOR UPDATE SKIP LOCKED` outbox claims and once-per-period claims keep them from
doing the same work twice. On SQLite (one machine, one writer) exactly one process runs the
jobs — a worker or `flask serve` — which an exclusive lock on a file next to the database
guarantees; the operating system drops it when the process dies, however it dies.

SIGTERM or SIGINT asks the worker to stop: nothing new is scheduled, the job in hand finishes
the message or outbox row it is working on and returns, then the worker exits 0. A second
signal exits at once (whatever was not committed is redone by the next worker).
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType

from flask import Flask

from web.extensions import db
from web.jobs import JOBS, start_scheduler
from web.mail_runtime import stop_requested

log = logging.getLogger(__name__)

# The open lock files (by path) of this process, which runs the jobs on those SQLite
# databases; held for the process's whole life.
_held_locks: dict[Path, int] = {}


class JobsAlreadyRunning(RuntimeError):
    """Another process already runs the background jobs on this SQLite database."""


def is_sqlite(app: Flask) -> bool:
    with app.app_context():
        return db.engine.dialect.name == "sqlite"


def lock_path(app: Flask) -> Path:
    """The lock file beside the SQLite database (so two data dirs on one file still clash)."""
    with app.app_context():
        database = db.engine.url.database
    if database and database != ":memory:":
        path = Path(database).resolve()
        return path.with_name(path.name + ".jobs.lock")
    return Path(app.config["HANDOFF_DATA_DIR"]) / "jobs.lock"


def hold_jobs_lock(app: Flask) -> None:
    """Take the SQLite jobs lock for the rest of this process's life, or raise
    JobsAlreadyRunning naming the process that holds it."""
    path = lock_path(app)
    if path in _held_locks:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise JobsAlreadyRunning(
            f"Another process (pid {holder}) already runs the background jobs on this SQLite "
            f"database (lock: {path}). SQLite allows one: stop it first, or move to PostgreSQL "
            "to run several workers."
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held_locks[path] = fd


def release_jobs_lock(app: Flask) -> None:
    """Give the SQLite jobs lock back (the process exiting does the same)."""
    fd = _held_locks.pop(lock_path(app), None)
    if fd is not None:
        os.close(fd)


def start_in_process_jobs(app: Flask) -> tuple[object | None, str]:
    """For `flask serve`: start the scheduler in this process when it should run the jobs.

    It does on the embedded default (SQLite) unless a worker already holds the jobs lock, and
    elsewhere only with HANDOFF_RUN_SCHEDULER=true. Returns (scheduler or None, what to say).
    """
    sqlite = is_sqlite(app)
    if not (sqlite or app.config.get("HANDOFF_RUN_SCHEDULER")):
        return None, (
            "Background jobs are off in this process (HANDOFF_RUN_SCHEDULER is false): "
            "run `flask --app wsgi worker`."
        )
    if sqlite:
        try:
            hold_jobs_lock(app)
        except JobsAlreadyRunning:
            return None, "Background jobs are run by another process (a worker)."
    return start_scheduler(app), f"Background jobs run in this process ({len(JOBS)} jobs)."


def _request_stop(signum: int, frame: FrameType | None) -> None:
    if stop_requested.is_set():
        log.warning("second %s: exiting now", signal.Signals(signum).name)
        os._exit(1)
    log.info(
        "%s: finishing the work in hand, then stopping (send it again to stop at once)",
        signal.Signals(signum).name,
    )
    stop_requested.set()


def run_worker(app: Flask) -> None:
    """Run every job until SIGTERM/SIGINT, then let the running ones finish; returns then.

    Raises JobsAlreadyRunning on SQLite when another process runs the jobs.
    """
    if is_sqlite(app):
        hold_jobs_lock(app)
    # A job still running at its next tick is skipped (max_instances=1): expected, not news.
    logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)
    stop_requested.clear()
    wake = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        _request_stop(signum, frame)
        wake.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        scheduler = start_scheduler(app, start_now=True)
        log.info("worker %d started: %s", os.getpid(), ", ".join(job.id for job in JOBS))
        while not wake.wait(timeout=3600):
            pass
        # Nothing new starts; running jobs see `stop_requested` between messages and return.
        scheduler.shutdown(wait=True)
        log.info("worker %d stopped", os.getpid())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
