"""mailbox smtp url

Revision ID: 0005_mailbox_smtp
Revises: 0004_email_out
Create Date: 2026-11-23 13:46:02.707162

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005_mailbox_smtp'
down_revision = '0004_email_out'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('mailboxes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('smtp_url_encrypted', sa.Text(), nullable=False, server_default=''))



def downgrade():
    with op.batch_alter_table('mailboxes', schema=None) as batch_op:
        batch_op.drop_column('smtp_url_encrypted')

