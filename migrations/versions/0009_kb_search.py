"""kb_search: knowledge-base search index

Revision ID: 0009_kb_search
Revises: 0008_kb
Create Date: 2026-11-23 16:05:00

Placeholder in the migration chain; filled in by the work that owns it.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009_kb_search'
down_revision = '0008_kb'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
