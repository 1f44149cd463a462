"""Alembic environment, driven by Flask-Migrate (`flask --app wsgi db upgrade`).

The target metadata is the domain's `Base.metadata`. The one custom column type (UTCDateTime)
is rendered as a plain `sa.DateTime(timezone=True)` so migration scripts never import app code.
"""

import logging
from logging.config import fileConfig

from alembic import context
from flask import current_app

config = context.config
if config.config_file_name and not logging.getLogger().handlers:
    # Don't reconfigure (and silence) the app's loggers when it already set logging up.
    fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")

target_db = current_app.extensions["migrate"].db


def render_item(type_, obj, autogen_context):
    from ticketing.db import UTCDateTime

    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _not_search_object(name, type_, parent_names):
    from ticketing.search import is_search_object

    return not is_search_object(name, type_)


def run_migrations_online():
    def process_revision_directives(context, revision, directives):
        # Never write an empty migration from `flask db migrate`.
        if getattr(config.cmd_opts, "autogenerate", False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info("No changes in schema detected.")

    conf_args = dict(current_app.extensions["migrate"].configure_args)
    conf_args.setdefault("process_revision_directives", process_revision_directives)
    conf_args.setdefault("render_item", render_item)
    # The full-text search objects (FTS5 table, triggers, tsvector) live outside the models'
    # metadata; autogenerate must not try to drop them.
    conf_args.setdefault("include_name", _not_search_object)

    with target_db.engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_db.metadata, **conf_args)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("Offline migrations are not supported; run `flask db upgrade`.")
run_migrations_online()
