"""email in: receipts, participants, entry flags

Revision ID: 0002_email_in
Revises: 0001_foundation
Create Date: 2026-11-23 13:02:19.034341

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0002_email_in'
down_revision = '0001_foundation'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('ticket_participants',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_ticket_participants_customer_id_customers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_ticket_participants_ticket_id_tickets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ticket_participants')),
    sa.UniqueConstraint('ticket_id', 'customer_id', name=op.f('uq_ticket_participants_ticket_id_customer_id'))
    )
    with op.batch_alter_table('ticket_participants', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ticket_participants_customer_id'), ['customer_id'], unique=False)

    op.create_table('inbound_receipts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('mailbox_id', sa.Integer(), nullable=True),
    sa.Column('uidvalidity', sa.BigInteger(), nullable=True),
    sa.Column('uid', sa.BigInteger(), nullable=True),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('raw_sha256', sa.String(length=64), nullable=False),
    sa.Column('content_sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('is_truncated', sa.Boolean(), nullable=False),
    sa.Column('message_id', sa.String(length=998), nullable=False),
    sa.Column('sender', sa.String(length=320), nullable=True),
    sa.Column('subject', sa.String(length=998), nullable=False),
    sa.Column('status', sa.Enum('processed', 'duplicate', 'loop', 'parked', name='receiptstatus', native_enum=False, length=20), nullable=False),
    sa.Column('disposition', sa.String(length=30), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('entry_id', sa.Integer(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('flagged_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['entry_id'], ['entries.id'], name=op.f('fk_inbound_receipts_entry_id_entries'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['mailbox_id'], ['mailboxes.id'], name=op.f('fk_inbound_receipts_mailbox_id_mailboxes'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_inbound_receipts_ticket_id_tickets'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbound_receipts')),
    sa.UniqueConstraint('mailbox_id', 'uidvalidity', 'uid', name=op.f('uq_inbound_receipts_mailbox_id_uidvalidity_uid'))
    )
    with op.batch_alter_table('inbound_receipts', schema=None) as batch_op:
        batch_op.create_index('ix_inbound_receipts_message_id', ['message_id'], unique=False)
        batch_op.create_index('ix_inbound_receipts_sender_received_at', ['sender', 'received_at'], unique=False)
        batch_op.create_index('ix_inbound_receipts_status', ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_inbound_receipts_ticket_id'), ['ticket_id'], unique=False)

    with op.batch_alter_table('entries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('quoted_text', sa.Text(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('flags', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('raw_sha256', sa.String(length=64), nullable=True))

    with op.batch_alter_table('mailboxes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('poll_failures', sa.Integer(), nullable=False, server_default='0'))

    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('follows_up_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_tickets_follows_up_id_tickets'), 'tickets', ['follows_up_id'], ['id'])



def downgrade():
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_tickets_follows_up_id_tickets'), type_='foreignkey')
        batch_op.drop_column('follows_up_id')

    with op.batch_alter_table('mailboxes', schema=None) as batch_op:
        batch_op.drop_column('poll_failures')

    with op.batch_alter_table('entries', schema=None) as batch_op:
        batch_op.drop_column('raw_sha256')
        batch_op.drop_column('flags')
        batch_op.drop_column('quoted_text')

    with op.batch_alter_table('inbound_receipts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inbound_receipts_ticket_id'))
        batch_op.drop_index('ix_inbound_receipts_status')
        batch_op.drop_index('ix_inbound_receipts_sender_received_at')
        batch_op.drop_index('ix_inbound_receipts_message_id')

    op.drop_table('inbound_receipts')
    with op.batch_alter_table('ticket_participants', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ticket_participants_customer_id'))

    op.drop_table('ticket_participants')
