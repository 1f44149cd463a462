"""kb: knowledge base: articles, categories, revisions

Revision ID: 0008_kb
Revises: 0007_search
Create Date: 2026-11-23 16:05:00

Help articles (Markdown source, draft/published, helpful votes and views), their categories
and one revision per save. The search index over published articles is 0009's.
"""
from alembic import op
import sqlalchemy as sa



# revision identifiers, used by Alembic.
revision = '0008_kb'
down_revision = '0007_search'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'kb_categories',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('slug', sa.String(length=100), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_kb_categories')),
        sa.UniqueConstraint('name', name=op.f('uq_kb_categories_name')),
        sa.UniqueConstraint('slug', name=op.f('uq_kb_categories_slug')),
    )
    op.create_table(
        'kb_articles',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('external_id', sa.String(length=100), nullable=False),
        sa.Column('slug', sa.String(length=100), nullable=False),
        sa.Column('title', sa.String(length=300), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column(
            'status',
            sa.Enum('draft', 'published', name='articlestatus', native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column('category_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('helpful_yes', sa.Integer(), nullable=False),
        sa.Column('helpful_no', sa.Integer(), nullable=False),
        sa.Column('view_count', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ['category_id'],
            ['kb_categories.id'],
            name=op.f('fk_kb_articles_category_id_kb_categories'),
            ondelete='SET NULL',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_kb_articles')),
        sa.UniqueConstraint('external_id', name=op.f('uq_kb_articles_external_id')),
    )
    with op.batch_alter_table('kb_articles', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_kb_articles_category_id'), ['category_id'], unique=False
        )
        batch_op.create_index('ix_kb_articles_status_views', ['status', 'view_count'], unique=False)

    op.create_table(
        'kb_article_revisions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('article_id', sa.Integer(), nullable=False),
        sa.Column('number', sa.Integer(), nullable=False),
        sa.Column('title', sa.String(length=300), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('author_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ['article_id'],
            ['kb_articles.id'],
            name=op.f('fk_kb_article_revisions_article_id_kb_articles'),
            ondelete='CASCADE',
        ),
        sa.ForeignKeyConstraint(
            ['author_id'],
            ['agents.id'],
            name=op.f('fk_kb_article_revisions_author_id_agents'),
            ondelete='SET NULL',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_kb_article_revisions')),
        sa.UniqueConstraint(
            'article_id', 'number', name=op.f('uq_kb_article_revisions_article_id_number')
        ),
    )
    with op.batch_alter_table('kb_article_revisions', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_kb_article_revisions_author_id'), ['author_id'], unique=False
        )


def downgrade():
    with op.batch_alter_table('kb_article_revisions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_kb_article_revisions_author_id'))
    op.drop_table('kb_article_revisions')
    with op.batch_alter_table('kb_articles', schema=None) as batch_op:
        batch_op.drop_index('ix_kb_articles_status_views')
        batch_op.drop_index(batch_op.f('ix_kb_articles_category_id'))
    op.drop_table('kb_articles')
    op.drop_table('kb_categories')
