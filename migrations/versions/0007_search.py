"""search: full-text index over tickets, partial indexes for the inbox views

Revision ID: 0007_search
Revises: 0006_workspace
Create Date: 2026-11-23 15:10:00

The search index is one document per ticket (subject, customer name and email, every message
body) kept by triggers, so it is transactional and automatic on every write path (inbound
email, web replies, imports, bulk seeding). SQLite gets an FTS5 table, PostgreSQL a tsvector
table with a GIN index. Neither is in the models' metadata (see ticketing/search.py; the
schema drift test ignores exactly these objects).

The inbox indexes replace (status, updated_at) and (assignee_id, status): one per sort order,
partial on `merged_into_id IS NULL` (see ticketing/services/inbox.py).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007_search'
down_revision = '0006_workspace'
branch_labels = None
depends_on = None

NOT_MERGED = sa.text("merged_into_id IS NULL")
INBOX_INDEXES = {
    "ix_tickets_inbox_status_updated": ["status", "updated_at", "id"],
    "ix_tickets_inbox_status_created": ["status", "created_at", "id"],
    "ix_tickets_inbox_status_priority": ["status", "priority", "updated_at", "id"],
    "ix_tickets_inbox_assignee": ["assignee_id", "status", "updated_at", "id"],
}

# Each message body is indexed up to this many characters (a 1 MB pasted log adds nothing
# searchable, and PostgreSQL caps a tsvector at 1 MB).
ENTRY_CHARS = 20000

# -- SQLite: FTS5 ------------------------------------------------------------------------------

SQLITE_BODY = f"""coalesce((SELECT group_concat(b, char(10)) FROM (
        SELECT substr(body_text, 1, {ENTRY_CHARS}) AS b FROM entries
        WHERE ticket_id = %(ticket)s AND kind <> 'system_event' AND body_text <> ''
        ORDER BY id)), '')"""

SQLITE_UP = [
    # porter: "declined" finds "decline"; remove_diacritics: "Maria" finds "María".
    """CREATE VIRTUAL TABLE ticket_search USING fts5(
        subject, body, customer, tokenize = 'porter unicode61 remove_diacritics 2')""",
    # Subject matches weigh most, then the customer, then message bodies.
    "INSERT INTO ticket_search(ticket_search, rank) VALUES ('rank', 'bm25(10.0, 1.0, 4.0)')",
    """CREATE TRIGGER ticket_search_ticket_insert AFTER INSERT ON tickets BEGIN
        INSERT INTO ticket_search(rowid, subject, body, customer)
        SELECT new.id, new.subject, '', c.name || ' ' || c.email
        FROM customers c WHERE c.id = new.customer_id;
    END""",
    """CREATE TRIGGER ticket_search_ticket_update AFTER UPDATE OF subject, customer_id ON tickets
    BEGIN
        UPDATE ticket_search SET subject = new.subject,
            customer = (SELECT c.name || ' ' || c.email FROM customers c
                        WHERE c.id = new.customer_id)
        WHERE rowid = new.id;
    END""",
    """CREATE TRIGGER ticket_search_ticket_delete AFTER DELETE ON tickets BEGIN
        DELETE FROM ticket_search WHERE rowid = old.id;
    END""",
    # A new message is appended to its ticket's document: no re-read of the other entries.
    f"""CREATE TRIGGER ticket_search_entry_insert AFTER INSERT ON entries
    WHEN new.kind <> 'system_event' AND new.body_text <> '' BEGIN
        UPDATE ticket_search SET body = body || char(10) || substr(new.body_text, 1, {ENTRY_CHARS})
        WHERE rowid = new.ticket_id;
    END""",
    # Edits, moves (detach, merge) and deletions rebuild the affected documents.
    f"""CREATE TRIGGER ticket_search_entry_update
    AFTER UPDATE OF ticket_id, body_text, kind ON entries BEGIN
        UPDATE ticket_search SET body = {SQLITE_BODY % {"ticket": "old.ticket_id"}}
        WHERE rowid = old.ticket_id;
        UPDATE ticket_search SET body = {SQLITE_BODY % {"ticket": "new.ticket_id"}}
        WHERE rowid = new.ticket_id AND new.ticket_id <> old.ticket_id;
    END""",
    f"""CREATE TRIGGER ticket_search_entry_delete AFTER DELETE ON entries BEGIN
        UPDATE ticket_search SET body = {SQLITE_BODY % {"ticket": "old.ticket_id"}}
        WHERE rowid = old.ticket_id;
    END""",
    """CREATE TRIGGER ticket_search_customer_update AFTER UPDATE OF name, email ON customers BEGIN
        UPDATE ticket_search SET customer = new.name || ' ' || new.email
        WHERE rowid IN (SELECT id FROM tickets WHERE customer_id = new.id);
    END""",
    # Tickets that exist already.
    f"""INSERT INTO ticket_search(rowid, subject, body, customer)
        SELECT t.id, t.subject, {SQLITE_BODY % {"ticket": "t.id"}}, c.name || ' ' || c.email
        FROM tickets t JOIN customers c ON c.id = t.customer_id""",
]

SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS ticket_search_customer_update",
    "DROP TRIGGER IF EXISTS ticket_search_entry_delete",
    "DROP TRIGGER IF EXISTS ticket_search_entry_update",
    "DROP TRIGGER IF EXISTS ticket_search_entry_insert",
    "DROP TRIGGER IF EXISTS ticket_search_ticket_delete",
    "DROP TRIGGER IF EXISTS ticket_search_ticket_update",
    "DROP TRIGGER IF EXISTS ticket_search_ticket_insert",
    "DROP TABLE IF EXISTS ticket_search",
]

# -- PostgreSQL: tsvector + GIN -----------------------------------------------------------------

PG_UP = [
    """CREATE TABLE ticket_search (
        ticket_id integer PRIMARY KEY REFERENCES tickets (id) ON DELETE CASCADE,
        document tsvector NOT NULL
    )""",
    "CREATE INDEX ix_ticket_search_document ON ticket_search USING gin (document)",
    # The whole document of one ticket: subject (weight A), customer (B), bodies (D).
    f"""CREATE FUNCTION handoff_ticket_document(tid integer) RETURNS tsvector
    LANGUAGE sql STABLE AS $$
        SELECT setweight(to_tsvector('english', t.subject), 'A')
            || setweight(to_tsvector('english', c.name || ' ' || c.email), 'B')
            || to_tsvector('english', coalesce((
                SELECT left(string_agg(left(e.body_text, {ENTRY_CHARS}), E'\\n' ORDER BY e.id),
                            {5 * ENTRY_CHARS})
                FROM entries e
                WHERE e.ticket_id = tid AND e.kind <> 'system_event' AND e.body_text <> ''
            ), ''))
        FROM tickets t JOIN customers c ON c.id = t.customer_id
        WHERE t.id = tid
    $$""",
    """CREATE FUNCTION handoff_search_tickets_inserted() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO ticket_search (ticket_id, document)
        SELECT n.id, setweight(to_tsvector('english', n.subject), 'A')
            || setweight(to_tsvector('english', c.name || ' ' || c.email), 'B')
        FROM new_tickets n JOIN customers c ON c.id = n.customer_id;
        RETURN NULL;
    END $$""",
    # Statement-level with a transition table: a bulk insert of entries updates each ticket's
    # document once. Appending stops growing a document past 256 KB (tsvector limit: 1 MB).
    f"""CREATE FUNCTION handoff_search_entries_inserted() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE ticket_search s
        SET document = s.document || to_tsvector('english', x.body)
        FROM (
            SELECT ticket_id,
                   left(string_agg(left(body_text, {ENTRY_CHARS}), E'\\n' ORDER BY id),
                        {5 * ENTRY_CHARS}) AS body
            FROM new_entries
            WHERE kind <> 'system_event' AND body_text <> ''
            GROUP BY ticket_id
        ) x
        WHERE s.ticket_id = x.ticket_id AND pg_column_size(s.document) < 262144;
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION handoff_search_rebuild() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_TABLE_NAME = 'customers' THEN
            UPDATE ticket_search SET document = handoff_ticket_document(ticket_id)
            WHERE ticket_id IN (SELECT id FROM tickets WHERE customer_id = NEW.id);
            RETURN NULL;
        END IF;
        IF TG_TABLE_NAME = 'tickets' THEN
            UPDATE ticket_search SET document = handoff_ticket_document(NEW.id)
            WHERE ticket_id = NEW.id;
            RETURN NULL;
        END IF;
        -- entries: an edit, a move to another ticket, or a deletion
        IF TG_OP <> 'INSERT' THEN
            UPDATE ticket_search
            SET document = coalesce(handoff_ticket_document(OLD.ticket_id), document)
            WHERE ticket_id = OLD.ticket_id;
        END IF;
        IF TG_OP = 'UPDATE' AND NEW.ticket_id <> OLD.ticket_id THEN
            UPDATE ticket_search
            SET document = coalesce(handoff_ticket_document(NEW.ticket_id), document)
            WHERE ticket_id = NEW.ticket_id;
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER ticket_search_ticket_insert AFTER INSERT ON tickets
        REFERENCING NEW TABLE AS new_tickets
        FOR EACH STATEMENT EXECUTE FUNCTION handoff_search_tickets_inserted()""",
    """CREATE TRIGGER ticket_search_ticket_update AFTER UPDATE OF subject, customer_id ON tickets
        FOR EACH ROW
        WHEN (OLD.subject IS DISTINCT FROM NEW.subject
              OR OLD.customer_id IS DISTINCT FROM NEW.customer_id)
        EXECUTE FUNCTION handoff_search_rebuild()""",
    """CREATE TRIGGER ticket_search_entry_insert AFTER INSERT ON entries
        REFERENCING NEW TABLE AS new_entries
        FOR EACH STATEMENT EXECUTE FUNCTION handoff_search_entries_inserted()""",
    """CREATE TRIGGER ticket_search_entry_update AFTER UPDATE OF ticket_id, body_text, kind
        ON entries FOR EACH ROW
        WHEN (OLD.ticket_id IS DISTINCT FROM NEW.ticket_id
              OR OLD.body_text IS DISTINCT FROM NEW.body_text
              OR OLD.kind IS DISTINCT FROM NEW.kind)
        EXECUTE FUNCTION handoff_search_rebuild()""",
    """CREATE TRIGGER ticket_search_entry_delete AFTER DELETE ON entries
        FOR EACH ROW EXECUTE FUNCTION handoff_search_rebuild()""",
    """CREATE TRIGGER ticket_search_customer_update AFTER UPDATE OF name, email ON customers
        FOR EACH ROW
        WHEN (OLD.name IS DISTINCT FROM NEW.name OR OLD.email IS DISTINCT FROM NEW.email)
        EXECUTE FUNCTION handoff_search_rebuild()""",
    # Tickets that exist already.
    """INSERT INTO ticket_search (ticket_id, document)
        SELECT id, handoff_ticket_document(id) FROM tickets""",
]

PG_DOWN = [
    "DROP TRIGGER IF EXISTS ticket_search_customer_update ON customers",
    "DROP TRIGGER IF EXISTS ticket_search_entry_delete ON entries",
    "DROP TRIGGER IF EXISTS ticket_search_entry_update ON entries",
    "DROP TRIGGER IF EXISTS ticket_search_entry_insert ON entries",
    "DROP TRIGGER IF EXISTS ticket_search_ticket_update ON tickets",
    "DROP TRIGGER IF EXISTS ticket_search_ticket_insert ON tickets",
    "DROP FUNCTION IF EXISTS handoff_search_rebuild()",
    "DROP FUNCTION IF EXISTS handoff_search_entries_inserted()",
    "DROP FUNCTION IF EXISTS handoff_search_tickets_inserted()",
    "DROP FUNCTION IF EXISTS handoff_ticket_document(integer)",
    "DROP TABLE IF EXISTS ticket_search",
]


def upgrade():
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_index('ix_tickets_status_updated_at')
        batch_op.drop_index('ix_tickets_assignee_id_status')
        for name, columns in INBOX_INDEXES.items():
            batch_op.create_index(
                name,
                columns,
                unique=False,
                sqlite_where=NOT_MERGED,
                postgresql_where=NOT_MERGED,
            )

    dialect = op.get_bind().dialect.name
    for statement in SQLITE_UP if dialect == "sqlite" else PG_UP:
        op.execute(statement)


def downgrade():
    dialect = op.get_bind().dialect.name
    for statement in SQLITE_DOWN if dialect == "sqlite" else PG_DOWN:
        op.execute(statement)

    with op.batch_alter_table('tickets', schema=None) as batch_op:
        for name in reversed(INBOX_INDEXES):
            batch_op.drop_index(name)
        batch_op.create_index('ix_tickets_assignee_id_status', ['assignee_id', 'status'], unique=False)
        batch_op.create_index('ix_tickets_status_updated_at', ['status', 'updated_at'], unique=False)
