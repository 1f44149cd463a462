"""kb: knowledge base: articles, categories, revisions

Revision ID: 0008_kb
Revises: 0007_search
Create Date: 2026-11-23 16:05:00

Placeholder in the migration chain; filled in by the work that owns it.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008_kb'
down_revision = '0007_search'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
