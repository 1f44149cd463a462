"""Shared fixtures in Flask's vocabulary: `app`, `db_session`, `client`, `agent`, `login`.

Databases: every test that uses `app` runs on SQLite, and also on PostgreSQL when
TEST_DATABASE_URL names a server (the suite creates its own database there and drops it at
the end). HANDOFF_REQUIRE_SERVICES=1 makes a missing PostgreSQL a failure, never a skip.

Isolation: each test gets a fresh app over a migrated database, and every table is emptied
after it. Tests here drive real subprocesses (crashing pollers) and browser threads that must
see committed rows, which the rollback-per-test recipe cannot give them.

Service fixtures (Dovecot, aiosmtpd, Chromium) live in tests/support/.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

pytest.register_assert_rewrite("tests.support")

from tests.support.services import free_port, require_service  # noqa: E402

pytest_plugins = [
    "tests.support.services",
    "tests.support.dovecot",
    "tests.support.smtp",
    "tests.support.browser",
]

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TEST_PASSWORD = "correct horse battery staple"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "only_database(name): run this test on that database only (not skipped: deselected)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests about one database's behaviour are deselected for the others, so a run that must
    skip nothing (CI) stays honest: a deselected test was never meant to run there."""
    keep, drop = [], []
    for item in items:
        marker = item.get_closest_marker("only_database")
        param = getattr(getattr(item, "callspec", None), "params", {}).get("database_url")
        (drop if marker and param and param != marker.args[0] else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _database_params() -> list[str]:
    params = ["sqlite"]
    if os.environ.get("TEST_DATABASE_URL") or os.environ.get("HANDOFF_REQUIRE_SERVICES") == "1":
        params.append("postgresql")
    return params


@pytest.fixture(scope="session", params=_database_params())
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A migrated, empty database for this test session: SQLite file or a PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'handoff.db'}"
        _migrate(url, tmp_path_factory.mktemp("migrate-data"))
        yield url
        return
    server = os.environ.get("TEST_DATABASE_URL")
    if not server:
        require_service("postgresql", "HANDOFF_REQUIRE_SERVICES=1 but TEST_DATABASE_URL is unset")
    admin_url = sa.make_url(server.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"handoff_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        require_service("postgresql", f"cannot reach PostgreSQL at {server}: {exc}")
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    _migrate(url, tmp_path_factory.mktemp("migrate-data"))
    yield url
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def _migrate(url: str, data_dir: Path) -> None:
    from flask_migrate import upgrade

    app = make_app(url, data_dir)
    with app.app_context():
        upgrade()
        from web.extensions import db

        db.engine.dispose()


def make_app(database_url: str, data_dir: Path, **overrides: object) -> Flask:
    from web import create_app

    config = {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "HANDOFF_DATA_DIR": str(data_dir),
        "SECRET_KEY": "test-secret-key-" + "x" * 32,
        "HANDOFF_BASE_URL": "http://127.0.0.1:5000",
    }
    config.update(overrides)
    return create_app(config)


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> Iterator[Flask]:
    """A Handoff app on the session's database with its own data dir; tables emptied after."""
    app = make_app(database_url, tmp_path / "data")
    from web.auth.routes import failed_logins_by_ip
    from web.extensions import db, sqlite_read_only

    failed_logins_by_ip.reset()
    # The app context below stays pushed for the whole test, and Flask reuses it for every
    # test-client request, so `g` would outlive a request (Flask-Login caches the user there,
    # Flask-WTF the CSRF token). Start each request with an empty `g`, as production does.
    app.before_request_funcs.setdefault(None, []).insert(0, _forget_g)
    # The test thread mostly observes what subprocesses, pollers and the browser did; its
    # SQLite transactions start deferred so they never hold the write lock those need.
    read_only = sqlite_read_only.set(True)
    ctx = app.app_context()
    ctx.push()
    yield app
    sqlite_read_only.reset(read_only)
    db.session.remove()
    _empty_tables(db.engine)
    db.engine.dispose()
    ctx.pop()


def _forget_g() -> None:
    from flask import g

    for name in list(vars(g)):
        delattr(g, name)


def _empty_tables(engine: sa.Engine) -> None:
    from ticketing.db import Base

    tables = Base.metadata.sorted_tables
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in tables)
            conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
        else:
            for table in reversed(tables):
                conn.execute(table.delete())
        # The article search index lives outside the models' metadata (migration 0009).
        conn.exec_driver_sql("DELETE FROM kb_search")


@pytest.fixture
def db_session(app: Flask):
    from web.extensions import db

    return db.session


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask):
    return app.test_cli_runner()


@pytest.fixture
def agent(app: Flask):
    """An active agent with password TEST_PASSWORD."""
    from ticketing.services.agents import create_agent
    from web.extensions import db

    created = create_agent(
        db.session, email="dana@example.com", name="Dana", password=TEST_PASSWORD
    )
    db.session.commit()
    return created


def csrf_token(client: FlaskClient, path: str) -> str:
    """The CSRF token from the form on `path`, as a browser would submit it."""
    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html
    )
    assert match, f"no CSRF token on {path}"
    return match.group(1)


@pytest.fixture
def login(client: FlaskClient):
    """`login(agent)` signs the test client in through the real form."""

    def _login(who, password: str = TEST_PASSWORD):
        token = csrf_token(client, "/login")
        response = client.post(
            "/login", data={"csrf_token": token, "email": who.email, "password": password}
        )
        assert response.status_code == 302, response.get_data(as_text=True)
        return client

    return _login


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """The app served on a loopback port from a thread; yields its base URL."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    app.config["HANDOFF_BASE_URL"] = base_url
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base_url
    server.shutdown()
    thread.join(timeout=5)
