"""Configuration: defaults, environment, explicit overrides, and checks that fail fast."""

import pytest

from web.config import ConfigError, database_uri, load_config


def test_embedded_default_is_sqlite_under_the_data_dir(tmp_path):
    config = load_config(environ={"HANDOFF_DATA_DIR": str(tmp_path)})
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'handoff.db'}"
    assert config["SESSION_COOKIE_HTTPONLY"] is True
    assert config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert config["SESSION_COOKIE_SECURE"] is False  # plain http base URL


def test_secret_key_is_generated_once_and_kept_private(tmp_path):
    first = load_config(environ={"HANDOFF_DATA_DIR": str(tmp_path)})["SECRET_KEY"]
    second = load_config(environ={"HANDOFF_DATA_DIR": str(tmp_path)})["SECRET_KEY"]
    assert first == second and len(first) >= 32
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_environment_overrides_defaults(tmp_path):
    config = load_config(
        environ={
            "HANDOFF_DATA_DIR": str(tmp_path),
            "DATABASE_URL": "postgresql://u:p@db.internal:5432/handoff",
            "SECRET_KEY": "k" * 40,
            "HANDOFF_BASE_URL": "https://help.example.com/",
            "HANDOFF_RUN_SCHEDULER": "yes",
        }
    )
    assert config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u:p@db.internal:5432/handoff"
    assert config["HANDOFF_BASE_URL"] == "https://help.example.com"
    assert config["SESSION_COOKIE_SECURE"] is True
    assert config["HANDOFF_RUN_SCHEDULER"] is True
    assert not (tmp_path / "secret_key").exists()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SECRET_KEY": "short"}, "SECRET_KEY"),
        ({"HANDOFF_BASE_URL": "javascript:alert(1)"}, "HANDOFF_BASE_URL"),
        ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL"),
        ({"HANDOFF_POLL_INTERVAL": "often"}, "HANDOFF_POLL_INTERVAL"),
    ],
)
def test_settings_that_cannot_work_fail_fast(tmp_path, environ, message):
    with pytest.raises(ConfigError, match=message):
        load_config(environ={"HANDOFF_DATA_DIR": str(tmp_path), **environ})


def test_postgres_scheme_aliases_map_to_psycopg():
    assert database_uri("postgres://h/db") == "postgresql+psycopg://h/db"
    assert database_uri("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
