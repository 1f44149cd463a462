"""journeys: self-service journeys and deflections

Revision ID: 0010_journeys
Revises: 0009_kb_search
Create Date: 2026-11-23 16:05:00

Placeholder in the migration chain; filled in by the work that owns it.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010_journeys'
down_revision = '0009_kb_search'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
