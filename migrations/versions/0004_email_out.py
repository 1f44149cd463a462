"""email out: outbox, suppressions

Revision ID: 0004_email_out
Revises: 0003_mailbox_lease
Create Date: 2026-11-23 13:30:20.227758

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004_email_out'
down_revision = '0003_mailbox_lease'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('suppressions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_suppressions')),
    sa.UniqueConstraint('email', name=op.f('uq_suppressions_email'))
    )
    op.create_table('outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('reply', 'acknowledgement', 'notice', name='outboxkind', native_enum=False, length=20), nullable=False),
    sa.Column('status', sa.Enum('queued', 'sent', 'failed', 'bounced', 'suppressed', name='outboxstatus', native_enum=False, length=20), nullable=False),
    sa.Column('is_automatic', sa.Boolean(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('entry_id', sa.Integer(), nullable=True),
    sa.Column('mailbox_id', sa.Integer(), nullable=True),
    sa.Column('message_id', sa.String(length=998), nullable=False),
    sa.Column('envelope_from', sa.String(length=320), nullable=False),
    sa.Column('recipient', sa.String(length=320), nullable=False),
    sa.Column('recipients', sa.JSON(), nullable=False),
    sa.Column('subject', sa.String(length=998), nullable=False),
    sa.Column('raw_sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('claimed_by', sa.String(length=200), nullable=True),
    sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_code', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['entry_id'], ['entries.id'], name=op.f('fk_outbox_entry_id_entries'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['mailbox_id'], ['mailboxes.id'], name=op.f('fk_outbox_mailbox_id_mailboxes'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_outbox_ticket_id_tickets'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox')),
    sa.UniqueConstraint('message_id', name=op.f('uq_outbox_message_id'))
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbox_entry_id'), ['entry_id'], unique=False)
        batch_op.create_index('ix_outbox_recipient_created_at', ['recipient', 'created_at'], unique=False)
        batch_op.create_index('ix_outbox_status_next_attempt_at', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_outbox_ticket_id_created_at', ['ticket_id', 'created_at'], unique=False)

    with op.batch_alter_table('inbound_receipts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('opened_ticket', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.drop_index(batch_op.f('ix_inbound_receipts_sender_received_at'))
        batch_op.create_index('ix_inbound_receipts_sender_sent_at', ['sender', 'sent_at'], unique=False)

    with op.batch_alter_table('mailboxes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ack_enabled', sa.Boolean(), nullable=False, server_default=sa.true()))



def downgrade():
    with op.batch_alter_table('mailboxes', schema=None) as batch_op:
        batch_op.drop_column('ack_enabled')

    with op.batch_alter_table('inbound_receipts', schema=None) as batch_op:
        batch_op.drop_index('ix_inbound_receipts_sender_sent_at')
        batch_op.create_index(batch_op.f('ix_inbound_receipts_sender_received_at'), ['sender', 'received_at'], unique=False)
        batch_op.drop_column('opened_ticket')
        batch_op.drop_column('sent_at')

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_ticket_id_created_at')
        batch_op.drop_index('ix_outbox_status_next_attempt_at')
        batch_op.drop_index('ix_outbox_recipient_created_at')
        batch_op.drop_index(batch_op.f('ix_outbox_entry_id'))

    op.drop_table('outbox')
    op.drop_table('suppressions')
