"""portal: customer portal magic links

Revision ID: 0011_portal
Revises: 0010_journeys
Create Date: 2026-11-23 16:05:00

Placeholder in the migration chain; filled in by the work that owns it.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011_portal'
down_revision = '0010_journeys'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
