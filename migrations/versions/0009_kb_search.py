"""kb_search: knowledge-base search index

Revision ID: 0009_kb_search
Revises: 0008_kb
Create Date: 2026-11-23 16:05:00

The article search index (see ticketing/kb_search.py): published articles only, keyed by the
article id with no foreign key, holding the articles' stemmed words (FTS5 porter stems, made in
Python) and their original title and body for snippets. SQLite gets an FTS5 table and an
fts5vocab table over it (document frequencies); PostgreSQL a table with a weighted tsvector
(`simple` configuration over the stems: title A, category B, body D) and a GIN index, plus
each field's length in stems (for BM25 length normalisation; FTS5 keeps its own). Neither is
in the models' metadata (`is_search_object` names them for the schema drift check).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009_kb_search'
down_revision = '0008_kb'
branch_labels = None
depends_on = None

SQLITE_UP = [
    # The indexed columns already hold stems: unicode61 only splits them (no second stemming).
    """CREATE VIRTUAL TABLE kb_search USING fts5(
        title, body, category, title_text UNINDEXED, body_text UNINDEXED,
        tokenize = 'unicode61 remove_diacritics 2')""",
    "CREATE VIRTUAL TABLE kb_search_vocab USING fts5vocab(kb_search, 'row')",
]

SQLITE_DOWN = [
    "DROP TABLE IF EXISTS kb_search_vocab",
    "DROP TABLE IF EXISTS kb_search",
]

PG_UP = [
    """CREATE TABLE kb_search (
        article_id integer PRIMARY KEY,
        title text NOT NULL,
        body text NOT NULL,
        category text NOT NULL,
        title_text text NOT NULL,
        body_text text NOT NULL,
        title_length integer NOT NULL,
        body_length integer NOT NULL,
        category_length integer NOT NULL,
        document tsvector NOT NULL
    )""",
    # Articles change rarely and are read on every keystroke pause: no pending list to scan.
    "CREATE INDEX ix_kb_search_document ON kb_search USING gin (document)"
    " WITH (fastupdate = off)",
]

PG_DOWN = [
    "DROP TABLE IF EXISTS kb_search",
]


def upgrade():
    dialect = op.get_bind().dialect.name
    for statement in SQLITE_UP if dialect == "sqlite" else PG_UP:
        op.execute(statement)


def downgrade():
    dialect = op.get_bind().dialect.name
    for statement in SQLITE_DOWN if dialect == "sqlite" else PG_DOWN:
        op.execute(statement)
