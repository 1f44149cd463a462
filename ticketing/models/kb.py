"""The knowledge base: help articles (Markdown), their categories and their revisions.

Agents write articles in the editor or import them as JSON Lines (`external_id` is the import
id, such as "tv-001"; articles written in the editor get a generated one). Only published
articles are public; every save that changes the title or the body keeps a revision. The
search index over published articles lives in `ticketing.kb_search`, kept current by
`ticketing.services.kb`.
"""

from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ticketing.db import Base, str_enum, utcnow
from ticketing.models.people import Agent


class ArticleStatus(enum.StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"


class Category(Base):
    """A group of articles on the help center's home page, ordered by `position`."""

    __tablename__ = "kb_categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(sa.String(100), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200), unique=True)
    description: Mapped[str] = mapped_column(sa.Text, default="")
    position: Mapped[int] = mapped_column(default=0)

    def __repr__(self) -> str:
        return f"<Category {self.slug}>"


class Article(Base):
    """A help article: Markdown source, shown rendered (see `ticketing.kb_markdown`)."""

    __tablename__ = "kb_articles"
    __table_args__ = (sa.Index("ix_kb_articles_status_views", "status", "view_count"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(sa.String(100), unique=True)
    slug: Mapped[str] = mapped_column(sa.String(100))
    title: Mapped[str] = mapped_column(sa.String(300))
    body: Mapped[str] = mapped_column(sa.Text, default="")
    status: Mapped[ArticleStatus] = mapped_column(
        str_enum(ArticleStatus), default=ArticleStatus.DRAFT
    )
    category_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("kb_categories.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    published_at: Mapped[dt.datetime | None]
    helpful_yes: Mapped[int] = mapped_column(default=0)
    helpful_no: Mapped[int] = mapped_column(default=0)
    view_count: Mapped[int] = mapped_column(default=0)

    category: Mapped[Category | None] = relationship(lazy="joined")

    @property
    def is_published(self) -> bool:
        return self.status is ArticleStatus.PUBLISHED

    def __repr__(self) -> str:
        return f"<Article {self.id} {self.external_id}>"


class ArticleRevision(Base):
    """The title and body of an article as one save left them (numbered from 1)."""

    __tablename__ = "kb_article_revisions"
    __table_args__ = (sa.UniqueConstraint("article_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    article_id: Mapped[int] = mapped_column(sa.ForeignKey("kb_articles.id", ondelete="CASCADE"))
    number: Mapped[int]
    title: Mapped[str] = mapped_column(sa.String(300))
    body: Mapped[str] = mapped_column(sa.Text)
    author_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("agents.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    author: Mapped[Agent | None] = relationship(lazy="joined")
