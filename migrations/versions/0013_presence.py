"""presence: ticket presence (who is replying)

Revision ID: 0013_presence
Revises: 0012_accounts
Create Date: 2026-11-23 16:05:00

One row per (ticket, agent) with an activity (viewing/replying) and an expiry; see
ticketing.models.presence.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0013_presence'
down_revision = '0012_accounts'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'ticket_presence',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('ticket_id', sa.Integer(), nullable=False),
        sa.Column('agent_id', sa.Integer(), nullable=False),
        sa.Column(
            'activity',
            sa.Enum('viewing', 'replying', name='activity', native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ['agent_id'], ['agents.id'],
            name=op.f('fk_ticket_presence_agent_id_agents'), ondelete='CASCADE',
        ),
        sa.ForeignKeyConstraint(
            ['ticket_id'], ['tickets.id'],
            name=op.f('fk_ticket_presence_ticket_id_tickets'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_ticket_presence')),
        sa.UniqueConstraint(
            'ticket_id', 'agent_id', name=op.f('uq_ticket_presence_ticket_id_agent_id')
        ),
    )
    with op.batch_alter_table('ticket_presence', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_ticket_presence_agent_id'), ['agent_id'], unique=False
        )


def downgrade():
    with op.batch_alter_table('ticket_presence', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ticket_presence_agent_id'))
    op.drop_table('ticket_presence')
