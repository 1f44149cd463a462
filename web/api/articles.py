"""`GET /api/v1/articles/suggest`: help articles for what a customer is typing.

The one public route of the API: the contact form calls it from the browser while the
customer types (debounced), so it takes no token and reads no cookie-bound credentials — it
only ever returns published articles, which are public anyway. It is throttled per client
address (`HANDOFF_SUGGEST_RATE_LIMIT`, Flask-Limiter; storage shared by `web.limits`), and every
answer is JSON, refusals (400, 429) included.

Contract: `?q=TEXT&limit=5` → `{"articles": [{"id", "title", "url", "snippet", "score"}]}`, best
first; `id` is the article's import id (its `external_id`), `url` the absolute path of its
help-center page, `snippet` plain text. `limit` is clamped to 1..10, `q` cut to 500
characters; an empty `q` gives an empty list.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, jsonify, request, url_for
from werkzeug.wrappers import Response

from ticketing import kb_search
from ticketing.services import kb
from web import selfservice
from web.api.auth import ApiError
from web.api.routes import bp
from web.extensions import db
from web.limits import limiter

MAX_QUERY_CHARS = 500
DEFAULT_LIMIT = 5
MAX_LIMIT = 10


def _rate_limit() -> str:
    return str(current_app.config["HANDOFF_SUGGEST_RATE_LIMIT"])


def _limit() -> int:
    raw = request.args.get("limit", "").strip()
    if not raw:
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "limit must be a whole number between 1 and 10.") from None
    return max(1, min(MAX_LIMIT, value))


def _query() -> str:
    text = request.args.get("q", "").replace("\x00", " ")
    return " ".join(text.split())[:MAX_QUERY_CHARS]


@bp.get("/articles/suggest")
@limiter.limit(_rate_limit)
def suggest_articles() -> Response:
    limit = _limit()
    q = _query()
    articles: list[dict[str, Any]] = []
    if q:
        hits = kb_search.suggest(db.session, q, limit=limit)
        found = kb.published_by_ids(db.session, (hit.article_id for hit in hits))
        for hit in hits:
            article = found.get(hit.article_id)
            if article is None:
                continue
            articles.append(
                {
                    "id": article.external_id,
                    "title": article.title,
                    "url": url_for("help.article", article_id=article.id, slug=article.slug),
                    "snippet": hit.snippet,
                    "score": round(float(hit.score), 4),
                }
            )
        # Only a visit that /contact or /help already started is tracked: API callers and
        # scrapers without the cookie must not create a journey row per request.
        if articles and selfservice.current_journey(create=False) is not None:
            # Recorded in short transactions of their own; end this GET's read first.
            shown = [hit.article_id for hit in hits if hit.article_id in found]
            db.session.commit()
            selfservice.track_suggestions(q, shown)
    return jsonify({"articles": articles})
