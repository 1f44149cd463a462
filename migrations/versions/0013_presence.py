"""presence: ticket presence (who is replying)

Revision ID: 0013_presence
Revises: 0012_accounts
Create Date: 2026-11-23 16:05:00

Placeholder in the migration chain; filled in by the work that owns it.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0013_presence'
down_revision = '0012_accounts'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
