"""Migrations: `flask db upgrade` on an empty database yields exactly the models' schema."""

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from ticketing.db import Base
from ticketing.search import is_search_object


def _include_name(name, type_, _parent_names):
    # The full-text search index (FTS5 table and its shadow tables on SQLite, the tsvector
    # table and its GIN index on PostgreSQL) is created by migration 0007 with dialect-specific
    # DDL and is deliberately not in the models' metadata; everything else must match exactly.
    return not is_search_object(name, type_)


def test_upgrade_on_empty_database_matches_models(app):
    # The session's database was built by running every migration from empty (conftest).
    from web.extensions import db

    with db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_name": _include_name}
        )
        diff = compare_metadata(context, Base.metadata)
        version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
    assert diff == [], f"models and migrations differ: {diff}"
    assert version


def test_every_model_table_exists(app):
    from web.extensions import db

    tables = set(sa.inspect(db.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
