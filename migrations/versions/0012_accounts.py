"""accounts: accounts, payment methods, account events, notices

Revision ID: 0012_accounts
Revises: 0011_portal
Create Date: 2026-11-23 16:05:00

Placeholder in the migration chain; filled in by the work that owns it.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0012_accounts'
down_revision = '0011_portal'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
