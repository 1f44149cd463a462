"""Help-center routes: thin — parse input, load through one helper that 404s, call a service.

Customers are not signed in here. Only published articles exist for them: a draft's page is a
404 exactly like an unknown id. The "Was this helpful?" vote is a CSRF-protected POST (the
token rides on the anonymous session cookie), counted once per browser session, throttled per
address. Searches, article views and votes are recorded on the visitor's self-service journey
(`web.selfservice`), best effort.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from ticketing import kb_search
from ticketing.kb_markdown import render
from ticketing.models import Article
from ticketing.services import kb
from web import selfservice
from web.extensions import db, sqlite_read_only
from web.limits import limiter
from web.security import CONTENT_SECURITY_POLICY

log = logging.getLogger(__name__)

bp = Blueprint("help", __name__, url_prefix="/help")

MAX_QUERY_CHARS = 500
SEARCH_RESULTS = 20
POPULAR = 8
VOTE_LIMIT = "20/minute"
_VOTED_KEY = "kb_voted"
_VOTED_MAX = 200
# Article bodies may show images from any https site (agents put them there); everything else
# is the app's usual policy.
HELP_CSP = CONTENT_SECURITY_POLICY.replace("img-src 'self' data:", "img-src 'self' data: https:")


class VoteForm(FlaskForm):
    """Only the CSRF token; the answer is the button pressed (`helpful=yes|no`)."""


@bp.after_request
def _policy(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", HELP_CSP)
    return response


def query_text(raw: str | None) -> str:
    """A search box's text, made safe to keep: one line, no NUL, at most MAX_QUERY_CHARS."""
    text = (raw or "").replace("\x00", " ")
    return " ".join(text.split())[:MAX_QUERY_CHARS]


def article_url(article: Article, **params: str) -> str:
    return url_for("help.article", article_id=article.id, slug=article.slug, **params)


def contact_url(q: str = "") -> str:
    """The contact form, with what the visitor searched for carried over."""
    return "/contact" + (f"?{urlencode({'q': q})}" if q else "")


def _published(article_id: int) -> Article:
    return kb.get_published_article(db.session, article_id)


@bp.get("")
def home() -> str:
    categories = kb.list_categories(db.session)
    counts = kb.category_counts(db.session)
    return render_template(
        "help/home.html",
        categories=[c for c in categories if counts.get(c.id)],
        counts=counts,
        popular=kb.popular_articles(db.session, limit=POPULAR),
    )


@bp.get("/categories/<slug>")
def category(slug: str) -> str:
    found = kb.get_category_by_slug(db.session, slug)
    return render_template(
        "help/category.html",
        category=found,
        articles=kb.published_articles(db.session, category=found),
    )


@bp.get("/search")
def search() -> str:
    q = query_text(request.args.get("q"))
    results = []
    if q:
        hits = kb_search.search(db.session, q, limit=SEARCH_RESULTS)
        articles = kb.published_by_ids(db.session, (hit.article_id for hit in hits))
        results = [(hit, articles[hit.article_id]) for hit in hits if hit.article_id in articles]
        _end_read()
        selfservice.current_journey()
        selfservice.track_search(q, len(results))
    return render_template("help/search.html", q=q, results=results, contact_url=contact_url(q))


@bp.get("/articles/<int:article_id>")
@bp.get("/articles/<int:article_id>-<slug>")
def article(article_id: int, slug: str | None = None) -> Response | str:
    found = _published(article_id)
    q = query_text(request.args.get("q"))
    if slug != found.slug:
        return redirect(article_url(found, **({"q": q} if q else {})), code=301)
    article_id = found.id
    _end_read()
    _count_view(article_id)
    selfservice.current_journey()
    selfservice.track_article_view(article_id)
    return render_template(
        "help/article.html",
        article=found,
        body=render(found.body),
        q=q,
        contact_url=contact_url(q or found.title),
        vote_form=VoteForm(),
        has_voted=found.id in session.get(_VOTED_KEY, []),
    )


@bp.post("/articles/<int:article_id>/vote")
@limiter.limit(VOTE_LIMIT)
def vote(article_id: int) -> Response:
    found = _published(article_id)
    if not VoteForm().validate_on_submit():
        abort(400)
    answer = request.form.get("helpful")
    if answer not in ("yes", "no"):
        abort(400)
    voted = list(session.get(_VOTED_KEY, []))
    if found.id not in voted:
        kb.record_vote(db.session, found, helpful=answer == "yes")
        selfservice.track_vote(found.id, answer == "yes")
        db.session.commit()
        session[_VOTED_KEY] = [*voted, found.id][-_VOTED_MAX:]
    message = (
        "Thanks! Glad it helped."
        if answer == "yes"
        else "Thanks for telling us. We'll improve this article."
    )
    flash(message, "info")
    q = query_text(request.form.get("q"))
    return redirect(article_url(found, **({"q": q} if q else {})) + "#feedback")


def _end_read() -> None:
    """End this GET's read transaction before the visit is recorded in short transactions of
    their own (`_count_view`, `web.selfservice`): on SQLite a transaction whose snapshot is
    older than those writes could not write later in the same session."""
    db.session.commit()


def _count_view(article_id: int) -> None:
    """Count a page view in its own short write transaction (this GET's own session only
    reads); a failure is logged and the page is shown anyway."""
    reset = sqlite_read_only.set(False)
    try:
        with Session(db.engine) as own:
            kb.record_view(own, article_id)
            own.commit()
    except sa.exc.SQLAlchemyError:
        log.warning("could not count a view of article %s", article_id, exc_info=True)
    finally:
        sqlite_read_only.reset(reset)
