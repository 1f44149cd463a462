"""operations: operations (production mode)

Revision ID: 0014_operations
Revises: 0013_presence
Create Date: 2026-11-23 16:05:00

Placeholder in the migration chain; filled in by the work that owns it.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0014_operations'
down_revision = '0013_presence'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
