"""The Flask extensions, created unbound and initialised by the factory."""

from __future__ import annotations

import contextvars
from typing import Any

import sqlalchemy as sa
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect

from ticketing.db import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate(compare_type=True, render_as_batch=True)
login_manager = LoginManager()
csrf = CSRFProtect()


# Whether transactions started in this context only read (a GET request). See below.
sqlite_read_only: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "sqlite_read_only", default=False
)


def configure_sqlite(engine: sa.Engine) -> None:
    """SQLite settings for a web app with background jobs, plus pysqlite's SAVEPOINT fix.

    WAL lets readers proceed while a job writes; busy_timeout waits for the writer instead of
    failing; foreign keys are off by default in SQLite. pysqlite starts transactions on its
    own schedule, which breaks SAVEPOINT; SQLAlchemy's documented recipe takes that over.

    Transactions that may write start with BEGIN IMMEDIATE: a deferred transaction that read
    first and writes later cannot wait for another writer (SQLite fails it at once with
    "database is locked" to avoid a deadlock), whereas IMMEDIATE takes the write lock up front
    and waits its turn. Read-only contexts (GET requests) keep plain BEGIN, so pages never
    queue behind the mail poller.
    """

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN" if sqlite_read_only.get() else "BEGIN IMMEDIATE")
