"""portal: customer portal magic links

Revision ID: 0011_portal
Revises: 0010_journeys
Create Date: 2026-11-23 16:05:00

Magic links for the customer portal: only the SHA-256 of each token is stored. The outbox
gains a `magic_link` kind; the column is a plain VARCHAR (portable enum, no CHECK), so that
needs no DDL.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011_portal'
down_revision = '0010_journeys'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('magic_links',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('purpose', sa.Enum('portal_login', name='magiclinkpurpose', native_enum=False, length=30), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_magic_links_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_magic_links')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_magic_links_token_hash'))
    )
    with op.batch_alter_table('magic_links', schema=None) as batch_op:
        batch_op.create_index('ix_magic_links_customer_id_created_at', ['customer_id', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_magic_links_expires_at'), ['expires_at'], unique=False)


def downgrade():
    with op.batch_alter_table('magic_links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_magic_links_expires_at'))
        batch_op.drop_index('ix_magic_links_customer_id_created_at')

    op.drop_table('magic_links')
