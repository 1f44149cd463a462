"""Knowledge-base verbs: write, publish and delete articles, categories, votes, import/export.

Place in the flow: the agent KB editor (`web/agent/kb.py`) and the `kb import`/`kb export`
commands call these; the public help center (`web/help/`) reads published articles through
`get_published_article`, `published_articles`, `popular_articles` and records votes and views.

Every save that changes an article's title or body keeps an `ArticleRevision`. The search index
(`ticketing.kb_search`) holds published articles only: publishing, or saving a published
article, (re)indexes its plain text; unpublishing or deleting takes it out — in the same
transaction, so the index never disagrees with what is public. Services flush; the caller
commits.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import secrets
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ticketing import kb_search
from ticketing.errors import Invalid, NotFound
from ticketing.kb_markdown import plain_text
from ticketing.models import Agent, Article, ArticleRevision, ArticleStatus, Category

MAX_TITLE = 300
MAX_BODY = 200_000
MAX_EXTERNAL_ID = 100
MAX_CATEGORY_NAME = 200
MAX_SLUG = 80
IMPORT_CHUNK = 500
_SLUG_DROP = re.compile(r"[^a-z0-9]+")


# -- small helpers --------------------------------------------------------------------------------


def slugify(text: str, *, default: str = "article") -> str:
    """A URL slug: ASCII letters and digits joined by hyphens ("Update your card" →
    "update-your-card"), at most MAX_SLUG characters; `default` when nothing is left."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = _SLUG_DROP.sub("-", ascii_text.lower()).strip("-")[:MAX_SLUG].rstrip("-")
    return slug or default


def _has_control(text: str, *, allow_newlines: bool) -> bool:
    allowed = "\t\r\n" if allow_newlines else ""
    return any((ord(c) < 32 and c not in allowed) or ord(c) == 127 for c in text)


def _clean_title(title: Any) -> str:
    if not isinstance(title, str) or not title.strip():
        raise Invalid("Give the article a title.")
    title = " ".join(title.split())
    if len(title) > MAX_TITLE:
        raise Invalid(f"The title is longer than {MAX_TITLE} characters.")
    if _has_control(title, allow_newlines=False):
        raise Invalid("The title contains control characters.")
    return title


def _clean_body(body: Any) -> str:
    if not isinstance(body, str):
        raise Invalid("The body must be text.")
    if len(body) > MAX_BODY:
        raise Invalid(f"The body is longer than {MAX_BODY} characters.")
    if _has_control(body, allow_newlines=True):
        raise Invalid("The body contains control characters (such as NUL).")
    try:
        body.encode("utf-8")
    except UnicodeEncodeError:
        raise Invalid("The body contains characters that are not valid Unicode.") from None
    return body.replace("\r\n", "\n")


def _new_external_id() -> str:
    return f"kb-{secrets.token_hex(6)}"


def _index(session: Session, article: Article) -> None:
    """Bring the search index in line with the article: indexed if published, else not."""
    if article.status is ArticleStatus.PUBLISHED:
        kb_search.index_article(
            session,
            article_id=article.id,
            title=article.title,
            body=plain_text(article.body),
            category=article.category.name if article.category else None,
        )
    else:
        kb_search.remove_article(session, article_id=article.id)


def _add_revision(
    session: Session, article: Article, *, actor: Agent | None, now: dt.datetime
) -> ArticleRevision:
    number = (
        session.scalar(
            sa.select(sa.func.max(ArticleRevision.number)).where(
                ArticleRevision.article_id == article.id
            )
        )
        or 0
    ) + 1
    revision = ArticleRevision(
        article_id=article.id,
        number=number,
        title=article.title,
        body=article.body,
        author_id=actor.id if actor else None,
        created_at=now,
    )
    session.add(revision)
    return revision


# -- articles -------------------------------------------------------------------------------------


def get_article(session: Session, article_id: int) -> Article:
    """The article with this id, draft or published; NotFound otherwise."""
    article = session.get(Article, article_id) if 0 < article_id < 2**31 else None
    if article is None:
        raise NotFound(f"article {article_id}")
    return article


def get_published_article(session: Session, article_id: int) -> Article:
    """The article if it is published; NotFound for drafts and unknown ids alike."""
    article = get_article(session, article_id)
    if article.status is not ArticleStatus.PUBLISHED:
        raise NotFound(f"article {article_id}")
    return article


def list_articles(
    session: Session,
    *,
    status: ArticleStatus | None = None,
    category: Category | None = None,
    title: str = "",
    limit: int | None = None,
) -> list[Article]:
    """Articles for the editor's list, most recently updated first; `title` keeps those whose
    title or id contains it (case-insensitive, `%` and `_` are plain characters)."""
    query = sa.select(Article).order_by(Article.updated_at.desc(), Article.id.desc())
    if status is not None:
        query = query.where(Article.status == status)
    if category is not None:
        query = query.where(Article.category_id == category.id)
    if title.strip():
        escaped = title.strip()[:200].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped.lower()}%"
        query = query.where(
            sa.or_(
                sa.func.lower(Article.title).like(pattern, escape="\\"),
                sa.func.lower(Article.external_id).like(pattern, escape="\\"),
            )
        )
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def count_articles(session: Session, *, status: ArticleStatus | None = None) -> int:
    """How many articles there are (with this status)."""
    query = sa.select(sa.func.count()).select_from(Article)
    if status is not None:
        query = query.where(Article.status == status)
    return session.scalar(query) or 0


def published_articles(session: Session, *, category: Category) -> list[Article]:
    """The published articles of a category, by title."""
    return list(
        session.scalars(
            sa.select(Article)
            .where(Article.status == ArticleStatus.PUBLISHED, Article.category_id == category.id)
            .order_by(Article.title, Article.id)
        )
    )


def published_by_ids(session: Session, ids: Iterable[int]) -> dict[int, Article]:
    """Published articles by id (for search hits); unknown and draft ids are left out."""
    wanted = list(dict.fromkeys(int(i) for i in ids))
    if not wanted:
        return {}
    found = session.scalars(
        sa.select(Article).where(Article.id.in_(wanted), Article.status == ArticleStatus.PUBLISHED)
    )
    return {article.id: article for article in found}


def popular_articles(session: Session, *, limit: int = 8) -> list[Article]:
    """The most viewed published articles (ties: most helpful, then newest)."""
    return list(
        session.scalars(
            sa.select(Article)
            .where(Article.status == ArticleStatus.PUBLISHED)
            .order_by(Article.view_count.desc(), Article.helpful_yes.desc(), Article.id.desc())
            .limit(limit)
        )
    )


def revisions(session: Session, article: Article) -> list[ArticleRevision]:
    """An article's revisions, newest first."""
    return list(
        session.scalars(
            sa.select(ArticleRevision)
            .where(ArticleRevision.article_id == article.id)
            .order_by(ArticleRevision.number.desc())
        )
    )


def get_revision(session: Session, article: Article, number: int) -> ArticleRevision:
    """One revision of the article; NotFound otherwise."""
    found = session.scalar(
        sa.select(ArticleRevision).where(
            ArticleRevision.article_id == article.id, ArticleRevision.number == number
        )
    )
    if found is None:
        raise NotFound(f"revision {number} of article {article.id}")
    return found


def create_article(
    session: Session,
    *,
    title: str,
    body: str,
    category: Category | None = None,
    actor: Agent | None,
    now: dt.datetime,
    publish: bool = False,
    external_id: str | None = None,
) -> Article:
    """A new article (a draft unless `publish`), with its first revision."""
    title = _clean_title(title)
    article = Article(
        external_id=_clean_external_id(external_id) if external_id else _new_external_id(),
        slug=slugify(title),
        title=title,
        body=_clean_body(body),
        status=ArticleStatus.PUBLISHED if publish else ArticleStatus.DRAFT,
        category=category,
        created_at=now,
        updated_at=now,
        published_at=now if publish else None,
        helpful_yes=0,
        helpful_no=0,
        view_count=0,
    )
    if external_id and session.scalar(
        sa.select(Article.id).where(Article.external_id == article.external_id)
    ):
        raise Invalid(f"An article with the id {article.external_id} exists already.")
    session.add(article)
    session.flush()
    _add_revision(session, article, actor=actor, now=now)
    _index(session, article)
    session.flush()
    return article


def update_article(
    session: Session,
    article: Article,
    *,
    title: str,
    body: str,
    category: Category | None,
    actor: Agent | None,
    now: dt.datetime,
) -> Article:
    """Save the editor's changes; a changed title or body makes a new revision, and a
    published article is re-indexed."""
    title = _clean_title(title)
    body = _clean_body(body)
    changed_text = (title, body) != (article.title, article.body)
    changed = changed_text or article.category_id != (category.id if category else None)
    if not changed:
        return article
    article.title = title
    article.slug = slugify(title)
    article.body = body
    article.category = category
    article.updated_at = now
    session.flush()
    if changed_text:
        _add_revision(session, article, actor=actor, now=now)
    if article.status is ArticleStatus.PUBLISHED:
        _index(session, article)
    session.flush()
    return article


def publish_article(session: Session, article: Article, *, now: dt.datetime) -> Article:
    """Make the article public and searchable."""
    if article.status is not ArticleStatus.PUBLISHED:
        article.status = ArticleStatus.PUBLISHED
        article.published_at = now
        article.updated_at = now
    session.flush()
    _index(session, article)
    return article


def unpublish_article(session: Session, article: Article, *, now: dt.datetime) -> Article:
    """Back to draft: no longer public (its page is a 404) nor searchable."""
    if article.status is not ArticleStatus.DRAFT:
        article.status = ArticleStatus.DRAFT
        article.updated_at = now
    session.flush()
    _index(session, article)
    return article


def delete_article(session: Session, article: Article) -> None:
    """Delete the article, its revisions and its index entry."""
    kb_search.remove_article(session, article_id=article.id)
    session.execute(sa.delete(ArticleRevision).where(ArticleRevision.article_id == article.id))
    session.delete(article)
    session.flush()


def record_vote(session: Session, article: Article, *, helpful: bool) -> None:
    """Count a "Was this helpful?" answer (an atomic increment: concurrent votes all count)."""
    column = Article.helpful_yes if helpful else Article.helpful_no
    session.execute(
        sa.update(Article)
        .where(Article.id == article.id)
        .values({column: column + 1})
        .execution_options(synchronize_session=False)
    )


def record_view(session: Session, article_id: int) -> None:
    """Count a view of the article's public page (an atomic increment)."""
    session.execute(
        sa.update(Article)
        .where(Article.id == article_id)
        .values(view_count=Article.view_count + 1)
        .execution_options(synchronize_session=False)
    )


# -- categories -----------------------------------------------------------------------------------


def list_categories(session: Session) -> list[Category]:
    """Every category in display order."""
    return list(session.scalars(sa.select(Category).order_by(Category.position, Category.name)))


def category_counts(session: Session) -> dict[int, int]:
    """How many published articles each category holds."""
    rows = session.execute(
        sa.select(Article.category_id, sa.func.count())
        .where(Article.status == ArticleStatus.PUBLISHED, Article.category_id.is_not(None))
        .group_by(Article.category_id)
    )
    return {category_id: count for category_id, count in rows}


def get_category(session: Session, category_id: int) -> Category:
    found = session.get(Category, category_id) if 0 < category_id < 2**31 else None
    if found is None:
        raise NotFound(f"category {category_id}")
    return found


def get_category_by_slug(session: Session, slug: str) -> Category:
    found = session.scalar(sa.select(Category).where(Category.slug == slug[: MAX_SLUG + 20]))
    if found is None:
        raise NotFound(f"category {slug}")
    return found


def _clean_category_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise Invalid("Give the category a name.")
    name = " ".join(name.split())
    if len(name) > MAX_CATEGORY_NAME:
        raise Invalid(f"The category name is longer than {MAX_CATEGORY_NAME} characters.")
    if _has_control(name, allow_newlines=False):
        raise Invalid("The category name contains control characters.")
    return name


def _unique_category_slug(session: Session, name: str, *, exclude: int | None = None) -> str:
    base = slugify(name, default="category")
    slug, n = base, 2
    while True:
        query = sa.select(Category.id).where(Category.slug == slug)
        if exclude is not None:
            query = query.where(Category.id != exclude)
        if session.scalar(query) is None:
            return slug
        slug, n = f"{base}-{n}", n + 1


def _category_named(session: Session, name: str, *, exclude: int | None = None) -> Category | None:
    query = sa.select(Category).where(sa.func.lower(Category.name) == name.lower())
    if exclude is not None:
        query = query.where(Category.id != exclude)
    return session.scalar(query)


def create_category(
    session: Session, *, name: str, description: str = "", position: int | None = None
) -> Category:
    """A new category; names are unique (case-insensitively), the slug is derived."""
    name = _clean_category_name(name)
    if _category_named(session, name):
        raise Invalid(f"A category named “{name}” exists already.")
    if position is None:
        position = (session.scalar(sa.select(sa.func.max(Category.position))) or 0) + 1
    category = Category(
        name=name,
        slug=_unique_category_slug(session, name),
        description=_clean_body(description or "").strip(),
        position=position,
    )
    session.add(category)
    session.flush()
    return category


def update_category(
    session: Session, category: Category, *, name: str, description: str, position: int
) -> Category:
    """Rename or reorder a category (its slug follows the name); articles in it are
    re-indexed under the new name."""
    name = _clean_category_name(name)
    if _category_named(session, name, exclude=category.id):
        raise Invalid(f"A category named “{name}” exists already.")
    renamed = name != category.name
    category.name = name
    category.slug = _unique_category_slug(session, name, exclude=category.id)
    category.description = _clean_body(description or "").strip()
    category.position = position
    session.flush()
    if renamed:
        for article in published_articles(session, category=category):
            _index(session, article)
    return category


def delete_category(session: Session, category: Category) -> None:
    """Delete a category; its articles stay, without a category."""
    articles = published_articles(session, category=category)
    session.execute(
        sa.update(Article)
        .where(Article.category_id == category.id)
        .values(category_id=None)
        .execution_options(synchronize_session=False)
    )
    session.delete(category)
    session.flush()
    for article in articles:
        session.refresh(article)
        _index(session, article)


# -- import and export ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportProblem:
    line: int
    message: str


@dataclass
class ImportReport:
    """What an import did: counts, and the lines that were refused (with why)."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[ImportProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class _Row:
    line: int
    external_id: str
    title: str
    body: str
    category: str | None
    status: ArticleStatus


def _clean_external_id(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise Invalid('"id" must be a non-empty string, such as "billing-001".')
    value = value.strip()
    if len(value) > MAX_EXTERNAL_ID:
        raise Invalid(f'"id" is longer than {MAX_EXTERNAL_ID} characters.')
    if _has_control(value, allow_newlines=False):
        raise Invalid('"id" contains control characters.')
    return value


def _parse_row(line: int, raw: str | dict[str, Any]) -> _Row:
    if isinstance(raw, str):
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise Invalid("not valid JSON") from None
    else:
        data = raw
    if not isinstance(data, dict):
        raise Invalid('each line must be a JSON object like {"id": …, "title": …, "body": …}')
    external_id = _clean_external_id(data.get("id"))
    try:
        title = _clean_title(data.get("title"))
    except Invalid:
        raise Invalid('"title" must be a non-empty string of at most 300 characters') from None
    body = _clean_body(data.get("body", ""))
    category = data.get("category")
    if category is not None:
        category = _clean_category_name(category) if str(category).strip() else None
    status_text = data.get("status", ArticleStatus.PUBLISHED.value)
    try:
        status = ArticleStatus(status_text)
    except ValueError:
        raise Invalid('"status" must be "published" or "draft"') from None
    return _Row(line, external_id, title, body, category, status)


def import_articles(
    session: Session,
    rows: Iterable[str | dict[str, Any]],
    *,
    now: dt.datetime,
    actor: Agent | None = None,
) -> ImportReport:
    """Create or update articles from JSON Lines, matched by their `id` (the external id).

    `rows` are the file's lines (or decoded objects), numbered from 1; blank lines are skipped.
    Each holds `id`, `title`, `body` and optionally `category` (a name; created when missing)
    and `status` (default "published"). A bad line is reported with its number and skipped;
    the good ones are kept. Work is done in bulk, IMPORT_CHUNK lines at a time, so thousands
    of articles take seconds. An article whose title or body changed gets a new revision.
    """
    report = ImportReport()
    seen: dict[str, int] = {}
    chunk: list[_Row] = []
    categories = {c.name.lower(): c for c in list_categories(session)}
    for number, raw in enumerate(rows, start=1):
        if isinstance(raw, str) and not raw.strip():
            continue
        try:
            row = _parse_row(number, raw)
        except Invalid as exc:
            report.errors.append(ImportProblem(number, str(exc)))
            continue
        if row.external_id in seen:
            report.errors.append(
                ImportProblem(
                    number, f'id "{row.external_id}" is already on line {seen[row.external_id]}'
                )
            )
            continue
        seen[row.external_id] = number
        chunk.append(row)
        if len(chunk) >= IMPORT_CHUNK:
            _import_chunk(session, chunk, categories, report, now=now, actor=actor)
            chunk = []
    if chunk:
        _import_chunk(session, chunk, categories, report, now=now, actor=actor)
    return report


def _import_chunk(
    session: Session,
    rows: list[_Row],
    categories: dict[str, Category],
    report: ImportReport,
    *,
    now: dt.datetime,
    actor: Agent | None,
) -> None:
    for row in rows:
        if row.category and row.category.lower() not in categories:
            categories[row.category.lower()] = create_category(session, name=row.category)

    def category_id(row: _Row) -> int | None:
        return categories[row.category.lower()].id if row.category else None

    existing = {
        found.external_id: found
        for found in session.execute(
            sa.select(
                Article.id,
                Article.external_id,
                Article.title,
                Article.body,
                Article.status,
                Article.category_id,
                Article.published_at,
            ).where(Article.external_id.in_([row.external_id for row in rows]))
        )
    }
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    revised: list[tuple[int, _Row]] = []  # (article id, row) for updated title/body
    for row in rows:
        old = existing.get(row.external_id)
        if old is None:
            inserts.append(
                {
                    "external_id": row.external_id,
                    "slug": slugify(row.title),
                    "title": row.title,
                    "body": row.body,
                    "status": row.status,
                    "category_id": category_id(row),
                    "created_at": now,
                    "updated_at": now,
                    "published_at": now if row.status is ArticleStatus.PUBLISHED else None,
                    "helpful_yes": 0,
                    "helpful_no": 0,
                    "view_count": 0,
                }
            )
            continue
        same_text = (old.title, old.body) == (row.title, row.body)
        if same_text and (old.status, old.category_id) == (row.status, category_id(row)):
            report.unchanged += 1
            continue
        published_at = old.published_at
        if row.status is ArticleStatus.PUBLISHED and old.status is not ArticleStatus.PUBLISHED:
            published_at = now
        updates.append(
            {
                "id": old.id,
                "slug": slugify(row.title),
                "title": row.title,
                "body": row.body,
                "status": row.status,
                "category_id": category_id(row),
                "updated_at": now,
                "published_at": published_at,
            }
        )
        if not same_text:
            revised.append((old.id, row))
        report.updated += 1

    new_ids: dict[str, int] = {}
    if inserts:
        result = session.execute(
            sa.insert(Article).returning(
                Article.id, Article.external_id, sort_by_parameter_order=True
            ),
            inserts,
        )
        new_ids = {external_id: article_id for article_id, external_id in result}
        report.created += len(inserts)
    if updates:
        session.execute(sa.update(Article), updates)

    next_number = dict(
        session.execute(
            sa.select(ArticleRevision.article_id, sa.func.max(ArticleRevision.number))
            .where(ArticleRevision.article_id.in_([article_id for article_id, _ in revised]))
            .group_by(ArticleRevision.article_id)
        ).all()
    )
    revision_rows = [
        {
            "article_id": new_ids[row.external_id],
            "number": 1,
            "title": row.title,
            "body": row.body,
            "author_id": actor.id if actor else None,
            "created_at": now,
        }
        for row in rows
        if row.external_id in new_ids
    ] + [
        {
            "article_id": article_id,
            "number": next_number.get(article_id, 0) + 1,
            "title": row.title,
            "body": row.body,
            "author_id": actor.id if actor else None,
            "created_at": now,
        }
        for article_id, row in revised
    ]
    if revision_rows:
        session.execute(sa.insert(ArticleRevision), revision_rows)

    names = {c.id: c.name for c in categories.values()}
    changed = {row["id"] for row in updates}
    with _pipelined(session):
        for row in rows:
            article_id = new_ids.get(row.external_id)
            if article_id is None:
                old = existing[row.external_id]
                if old.id not in changed:
                    continue
                article_id = old.id
            if row.status is ArticleStatus.PUBLISHED:
                kb_search.index_article(
                    session,
                    article_id=article_id,
                    title=row.title,
                    body=plain_text(row.body),
                    category=names.get(category_id(row)) if row.category else None,
                )
            else:
                kb_search.remove_article(session, article_id=article_id)
    session.flush()


@contextlib.contextmanager
def _pipelined(session: Session) -> Iterator[None]:
    """On PostgreSQL with psycopg 3, send the statements inside without waiting for each
    answer (pipeline mode): the search index is written one article at a time, and a round
    trip per statement would dominate an import. Elsewhere, nothing changes."""
    driver = session.connection().connection.driver_connection
    pipeline = getattr(driver, "pipeline", None)
    if session.get_bind().dialect.name != "postgresql" or pipeline is None:
        yield
        return
    with pipeline():
        yield


def export_articles(session: Session) -> Iterator[dict[str, Any]]:
    """Every article in import format, by id: `{"id", "title", "body", "category", "status"}`
    (`category` is a name or null). `kb import` of this output recreates the same articles."""
    query = (
        sa.select(Article.external_id, Article.title, Article.body, Article.status, Category.name)
        .outerjoin(Category, Category.id == Article.category_id)
        .order_by(Article.id)
        .execution_options(yield_per=500)
    )
    for external_id, title, body, status, category in session.execute(query):
        yield {
            "id": external_id,
            "title": title,
            "body": body,
            "category": category,
            "status": status.value,
        }
