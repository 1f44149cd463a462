"""journeys: self-service journeys and deflections

Revision ID: 0010_journeys
Revises: 0009_kb_search
Create Date: 2026-11-23 16:05:00

Self-service sessions and their events, the signed "this solved it" links of acknowledgement
emails, and contact-form submissions keyed by idempotency token.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0010_journeys"
down_revision = "0009_kb_search"
branch_labels = None
depends_on = None

OUTCOMES = ("none", "deflected", "submitted")
EVENT_KINDS = (
    "search",
    "suggestions_shown",
    "article_opened",
    "article_read",
    "vote",
    "deflected",
    "submitted",
)


def upgrade():
    op.create_table(
        "selfservice_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "outcome",
            sa.Enum(*OUTCOMES, name="journeyoutcome", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("customer_email", sa.String(length=320), nullable=True),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_selfservice_sessions_ticket_id_tickets"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_selfservice_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_selfservice_sessions_token_hash")),
    )
    with op.batch_alter_table("selfservice_sessions") as batch:
        batch.create_index(
            batch.f("ix_selfservice_sessions_customer_email"), ["customer_email"], unique=False
        )
        batch.create_index(
            batch.f("ix_selfservice_sessions_last_seen_at"), ["last_seen_at"], unique=False
        )
        batch.create_index(
            batch.f("ix_selfservice_sessions_ticket_id"), ["ticket_id"], unique=False
        )

    op.create_table(
        "journey_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(*EVENT_KINDS, name="journeyeventkind", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column("query", sa.String(length=200), nullable=True),
        sa.Column("article_id", sa.Integer(), nullable=True),
        sa.Column("article_ids", sa.JSON(), nullable=True),
        sa.Column("result_count", sa.Integer(), nullable=True),
        sa.Column("seconds", sa.Integer(), nullable=True),
        sa.Column("helpful", sa.Boolean(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["selfservice_sessions.id"],
            name=op.f("fk_journey_events_session_id_selfservice_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journey_events")),
    )
    with op.batch_alter_table("journey_events") as batch:
        batch.create_index(batch.f("ix_journey_events_article_id"), ["article_id"], unique=False)
        batch.create_index(
            "ix_journey_events_kind_created_at", ["kind", "created_at"], unique=False
        )
        batch.create_index("ix_journey_events_session_id_id", ["session_id", "id"], unique=False)

    op.create_table(
        "solved_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_solved_links_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_solved_links")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_solved_links_token_hash")),
    )
    with op.batch_alter_table("solved_links") as batch:
        batch.create_index(batch.f("ix_solved_links_ticket_id"), ["ticket_id"], unique=False)

    op.create_table(
        "web_submissions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=64), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_web_submissions_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_submissions")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_web_submissions_idempotency_key")),
    )
    with op.batch_alter_table("web_submissions") as batch:
        batch.create_index(batch.f("ix_web_submissions_created_at"), ["created_at"], unique=False)
        batch.create_index(batch.f("ix_web_submissions_ticket_id"), ["ticket_id"], unique=False)


def downgrade():
    op.drop_table("web_submissions")
    op.drop_table("solved_links")
    op.drop_table("journey_events")
    op.drop_table("selfservice_sessions")
