"""Full-text search over tickets with the database's own engine, behind one interface.

One search document per ticket: its subject, its customer's name and email, and the bodies of
its messages and notes (system events are left out). Triggers created by migration
`0007_search` keep the documents in step with every write, inside the writing transaction, so
inbound email, agent replies, imports and bulk seeding need no indexing code of their own:

- SQLite: an FTS5 table `ticket_search` (rowid = ticket id; porter stemming, diacritics
  folded), ranked with bm25 weighting subject > customer > bodies;
- PostgreSQL: a table `ticket_search(ticket_id, document tsvector)` with a GIN index, the
  `english` configuration, ranked with `ts_rank` (subject weight A, customer B, bodies D).

Neither object is part of `Base.metadata`; `is_search_object()` names them for the schema drift
check and for Alembic autogenerate. Caution for future SQLite migrations: a batch operation
that recreates `tickets`, `entries` or `customers` ("move and copy") drops their triggers; a
test checks that every trigger in `TRIGGERS` still exists after all migrations.

User input never reaches the query syntax: it is cut into words here, each word is quoted for
FTS5 (and handed to `plainto_tsquery` on PostgreSQL), so `%`, `_`, `"`, `*`, `NEAR(`, `-`, `OR`
or any other string is just text to look for.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy.orm import Session

SEARCH_TABLE = "ticket_search"
TRIGGERS = (
    "ticket_search_ticket_insert",
    "ticket_search_ticket_update",
    "ticket_search_entry_insert",
    "ticket_search_entry_update",
    "ticket_search_entry_delete",
    "ticket_search_customer_update",
)
# SQLite only; on PostgreSQL the documents are dropped with their ticket (ON DELETE CASCADE).
SQLITE_ONLY_TRIGGERS = ("ticket_search_ticket_delete",)

MAX_TERMS = 12
# On SQLite, relevance is ranked among this many most recent matches (`ranked_ticket_ids`).
RANK_WINDOW = 5000
MAX_TERM_CHARS = 64
# A word is a run of letters, digits, and the characters that join them inside an email
# address, a domain or a version number ("ann@example.com", "v2.3"); everything else separates.
_WORD = re.compile(r"[^\W_](?:[\w.@+'-]*[^\W_])?")


def is_search_object(name: str | None, type_: str) -> bool:
    """Whether a reflected schema object belongs to the search index (not to the models).

    For Alembic's `include_name` hook: the FTS5 table and its shadow tables
    (`ticket_search_data`, `_idx`, `_content`, `_docsize`, `_config`) on SQLite, the tsvector
    table and its GIN index on PostgreSQL.
    """
    if not name:
        return False
    # The knowledge base's article index (ticketing/kb_search.py, migration 0009) likewise.
    tables = (SEARCH_TABLE, "kb_search")
    if type_ == "table":
        return any(name == t or name.startswith(t + "_") for t in tables)
    if type_ == "index":
        return any(name.startswith("ix_" + t) for t in tables)
    return False


def terms(text: str) -> list[str]:
    """The words of a search box's text, at most MAX_TERMS of them, each bounded in length."""
    found: list[str] = []
    for match in _WORD.finditer(text[: MAX_TERMS * (MAX_TERM_CHARS + 8)]):
        word = match.group()[:MAX_TERM_CHARS]
        if word.lower() not in (w.lower() for w in found):
            found.append(word)
        if len(found) == MAX_TERMS:
            break
    return found


def fts5_query(words: list[str]) -> str:
    """An FTS5 MATCH expression that requires every word: each one a quoted string.

    Inside double quotes FTS5 treats everything as text for its tokenizer (a doubled `"` is a
    literal quote), so no operator, column filter, prefix star or NEAR group can be formed.
    """
    return " ".join('"' + word.replace('"', '""') + '"' for word in words)


def ranked_ticket_ids(session: Session, text: str, *, limit: int) -> list[int]:
    """Ids of the tickets matching every word of `text`, best first, at most `limit`.

    Empty when `text` holds no word to look for. Merged tickets and any other filters are
    the caller's business. On SQLite only the RANK_WINDOW most recent matching tickets are
    ranked: bm25 costs a few microseconds per match (finding them is cheap), and a word found
    in most of 100k tickets would otherwise cost a tenth of a second per search. On
    PostgreSQL finding the matches (a GIN bitmap scan) dominates and ts_rank is cheap, so
    every match is ranked.
    """
    words = terms(text)
    if not words:
        return []
    if session.get_bind().dialect.name == "postgresql":
        stmt = sa.text(
            "SELECT s.ticket_id FROM ticket_search s, plainto_tsquery('english', :q) AS q(query) "
            "WHERE s.document @@ q.query "
            "ORDER BY ts_rank(s.document, q.query) DESC, s.ticket_id DESC LIMIT :limit"
        ).bindparams(q=" ".join(words), limit=limit)
    else:
        stmt = sa.text(
            "SELECT rowid FROM ticket_search "
            "WHERE ticket_search MATCH :q AND rowid >= ("
            "  SELECT coalesce(min(rowid), 0) FROM ("
            "    SELECT rowid FROM ticket_search WHERE ticket_search MATCH :q"
            "    ORDER BY rowid DESC LIMIT :window)) "
            "ORDER BY rank, rowid DESC LIMIT :limit"
        ).bindparams(q=fts5_query(words), window=RANK_WINDOW, limit=limit)
    return list(session.scalars(stmt))


# -- bulk loading --------------------------------------------------------------------------------

# What migration 0007's triggers index for a ticket, for many tickets at once. Each message
# body counts up to 20000 characters, as in the triggers.
_SQLITE_REINDEX = """
INSERT INTO ticket_search (rowid, subject, body, customer)
SELECT t.id, t.subject,
       coalesce((SELECT group_concat(b, char(10)) FROM (
           SELECT substr(e.body_text, 1, 20000) AS b FROM entries e
           WHERE e.ticket_id = t.id AND e.kind <> 'system_event' AND e.body_text <> ''
           ORDER BY e.id)), ''),
       c.name || ' ' || c.email
FROM tickets t JOIN customers c ON c.id = t.customer_id
WHERE t.id > :low
"""
_BULK_TRIGGERS = ("ticket_search_ticket_insert", "ticket_search_entry_insert")


@contextlib.contextmanager
def bulk_insert(session: Session) -> Iterator[None]:
    """Around a bulk insert of new tickets and their entries: index each ticket once.

    On SQLite the row triggers would rewrite a ticket's FTS5 document once per entry. Inside
    this block the two insert triggers are dropped; at its end the tickets inserted meanwhile
    (ids above the largest one before) are indexed in one statement, and the triggers are
    recreated from their own stored SQL. All of it happens in the caller's transaction, which
    holds SQLite's write lock, so no other writer can slip in unindexed rows, and a rollback
    (after an error inside the block) restores the triggers. PostgreSQL's statement-level
    triggers already index a bulk insert in one pass: nothing changes there.
    """
    if session.get_bind().dialect.name != "sqlite":
        yield
        return
    connection = session.connection()
    saved = [
        sql
        for (sql,) in connection.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name IN (?, ?)",
            _BULK_TRIGGERS,
        )
    ]
    before = connection.exec_driver_sql("SELECT coalesce(max(id), 0) FROM tickets").scalar()
    for name in _BULK_TRIGGERS:
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
    yield
    connection.execute(sa.text(_SQLITE_REINDEX), {"low": before})
    for sql in saved:
        connection.exec_driver_sql(sql)
