"""Rate limits on the public endpoints: per real client, shared by every web process.

Behind a reverse proxy the client is taken from `X-Forwarded-For` only as far as
`HANDOFF_TRUSTED_PROXIES` says; a client cannot pick its own address. With `HANDOFF_RATELIMIT_STORAGE_URL=redis://…` every gunicorn process (on every machine)
counts against the same budget, so a client cannot multiply its allowance by the number of
processes. This drives the public suggest endpoint against the Redis on 127.0.0.1:6379.
"""

from __future__ import annotations

import pytest
import redis

from tests.conftest import make_app
from tests.support.services import require_service

REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def redis_client():
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        require_service("redis", f"cannot reach {REDIS_URL}: {exc}")
    yield client
    client.close()


def test_suggest_budget_is_counted_in_redis_for_every_process(database_url, tmp_path, redis_client):
    from web.extensions import db
    from web.limits import limiter

    # Database 15 of the local Redis belongs to this test: empty before, emptied after.
    redis_client.flushdb()
    app = make_app(
        database_url,
        tmp_path / "data",
        HANDOFF_RATELIMIT_STORAGE_URL=REDIS_URL,
        HANDOFF_SUGGEST_RATE_LIMIT="3/minute",
    )
    try:
        client = app.test_client()
        for _ in range(3):
            assert client.get("/api/v1/articles/suggest?q=card").status_code == 200
        # Another process on the same store reads these counters: the budget is spent.
        assert redis_client.dbsize() > 0, "the limiter kept its counters outside Redis"
        assert client.get("/api/v1/articles/suggest?q=card").status_code == 429
    finally:
        redis_client.flushdb()
        with app.app_context():
            db.engine.dispose()
        limiter.reset()


def _suggest(client, forwarded_for: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return client.get("/api/v1/articles/suggest?q=card", headers=headers).status_code


def test_behind_one_proxy_each_visitor_has_their_own_budget(database_url, tmp_path):
    from web.extensions import db
    from web.limits import limiter

    app = make_app(
        database_url,
        tmp_path / "data",
        HANDOFF_TRUSTED_PROXIES=1,
        HANDOFF_SUGGEST_RATE_LIMIT="2/minute",
    )
    try:
        client = app.test_client()
        # Every request arrives from the proxy (127.0.0.1); the proxy names the visitor.
        assert [_suggest(client, "203.0.113.7") for _ in range(3)] == [200, 200, 429]
        assert _suggest(client, "198.51.100.9") == 200
        # A visitor who sends their own X-Forwarded-For only adds to the left of the list:
        # the proxy appends the address it saw, and that is the one counted.
        assert _suggest(client, "1.2.3.4, 203.0.113.7") == 429
    finally:
        with app.app_context():
            db.engine.dispose()
        limiter.reset()


def test_without_trusted_proxies_a_forged_forwarded_for_changes_nothing(database_url, tmp_path):
    from web.extensions import db
    from web.limits import limiter

    app = make_app(database_url, tmp_path / "data", HANDOFF_SUGGEST_RATE_LIMIT="2/minute")
    try:
        client = app.test_client()
        statuses = [_suggest(client, f"10.0.0.{i}") for i in range(3)]
        assert statuses == [200, 200, 429]
    finally:
        with app.app_context():
            db.engine.dispose()
        limiter.reset()
