"""operations: operations (production mode)

Revision ID: 0014_operations
Revises: 0013_presence
Create Date: 2026-11-23 16:05:00

One table: `job_runs`, the once-per-period claims of background jobs run by several workers.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0014_operations'
down_revision = '0013_presence'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'job_runs',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('job_id', sa.String(length=100), nullable=False),
        sa.Column('period_key', sa.String(length=40), nullable=False),
        sa.Column('claimed_by', sa.String(length=200), nullable=False),
        sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_job_runs')),
        sa.UniqueConstraint('job_id', 'period_key', name=op.f('uq_job_runs_job_id_period_key')),
    )


def downgrade():
    op.drop_table('job_runs')
