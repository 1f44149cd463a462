"""Rate limits shared by several web processes: the counters live in the configured store.

With `HANDOFF_RATELIMIT_STORAGE_URL=redis://…` every gunicorn process (on every machine)
counts against the same budget, so a client cannot multiply its allowance by the number of
processes. This drives the public suggest endpoint against the Redis on 127.0.0.1:6379.
"""

from __future__ import annotations

import secrets

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

    prefix = f"handoff-test-{secrets.token_hex(4)}"
    app = make_app(
        database_url,
        tmp_path / "data",
        HANDOFF_RATELIMIT_STORAGE_URL=REDIS_URL,
        RATELIMIT_KEY_PREFIX=prefix,
        HANDOFF_SUGGEST_RATE_LIMIT="3/minute",
    )
    try:
        client = app.test_client()
        for _ in range(3):
            assert client.get("/api/v1/articles/suggest?q=card").status_code == 200
        keys = [k.decode() for k in redis_client.scan_iter(match=f"*{prefix}*")]
        # Another process on the same store reads these counters: the budget is spent.
        assert keys, "the limiter kept its counters somewhere other than Redis"
        assert client.get("/api/v1/articles/suggest?q=card").status_code == 429
    finally:
        for key in redis_client.scan_iter(match=f"*{prefix}*"):
            redis_client.delete(key)
        with app.app_context():
            db.engine.dispose()
        limiter.reset()
