"""Article search for the knowledge base: the database's full-text engine finds candidates,
a small re-ranker orders them. One interface on SQLite and PostgreSQL.

The index holds published articles only (the KB service calls `index_article` and
`remove_article`), keyed by the article's id with no foreign key. Both engines store the same
analysed text (`ticketing.kb_search_text`: FTS5 porter stems), so they match and rank alike:

- SQLite: an FTS5 table `kb_search` (rowid = article id; stemmed title, body and category,
  plus the original title and body, unindexed, for snippets) and an `fts5vocab` table
  `kb_search_vocab` for document frequencies;
- PostgreSQL: a table `kb_search` with the same columns and a `tsvector` (`simple`
  configuration over the stems; title weight A, category B, body D) with a GIN index.

A query drops stopwords and question boilerplate ("how do I", "is it possible to"), adds the
synonyms of its words at a lower weight (a generic list: delete/remove, colour/color, …), and
asks the engine for the CANDIDATES best articles (bm25 / ts_rank) matching any of its rarer stems
(MATCH_BUDGET: the most common words still score, but do not make the engine rank most of a
large collection). Those are re-scored in Python with BM25F (title weighted over body, per-field
length normalisation), a bonus for consecutive query words found next to each other, and a bonus
for the share of the query found in the title. Collection statistics and document frequencies
are cached per process for STATS_SECONDS. User text never reaches a query syntax: stems are
letters and digits only, passed as bound parameters. Figures and the log of what was tried:
bench/README.md (`bench/suggest_eval.py`).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import sqlalchemy as sa
from markupsafe import Markup, escape
from sqlalchemy.orm import Session

from ticketing.kb_search_text import MAX_WORD_CHARS, STOPWORDS, stems_of, synonyms, words

SEARCH_TABLE = "kb_search"
MAX_QUERY_CHARS = 4000
MAX_QUERY_TERMS = 32
MAX_BODY_CHARS = 200_000
# Articles re-ranked in Python. ts_rank knows no idf, so PostgreSQL's first ordering is weaker
# than bm25's and needs a deeper pool to hold the same articles (identical results on the dev
# sets; 50 loses some there).
MIN_MATCH_TERMS = 1
CANDIDATES = {"sqlite": 50, "postgresql": 100}
# Matching articles the engine ranks at most (see `_selective`). ts_rank unpacks each matching
# tsvector, dearer than FTS5's bm25, so PostgreSQL gets a smaller budget.
MATCH_BUDGET = {"sqlite": 1500, "postgresql": 300}
STATS_SECONDS = 300.0
MAX_LIMIT = 50


@dataclass
class Tuning:
    """The re-ranker's knobs (one instance per entry point)."""

    k1: float = 1.5
    title_weight: float = 3.5
    category_weight: float = 0.5
    body_weight: float = 1.0
    title_b: float = 0.5
    body_b: float = 0.4
    # Bonus per pair of consecutive query words found next to each other in the article.
    pair_bonus: float = 0.6
    # Bonus for the share of the query's idf mass found in the title.
    title_coverage_bonus: float = 2.5
    # Weight of a word's synonyms (kb_search_text.SYNONYM_GROUPS) relative to the word.
    synonym_weight: float = 0.3


SUGGEST = Tuning()
SEARCH = Tuning()


@dataclass(frozen=True)
class ArticleHit:
    article_id: int
    score: float
    snippet: str
    snippet_html: Markup
    title_html: Markup


# -- indexing -------------------------------------------------------------------------------------


def _stem_text(text: str) -> str:
    return " ".join(s for s in stems_of(words(text)) if s)


def index_article(
    session: Session, *, article_id: int, title: str, body: str, category: str | None = None
) -> None:
    """Upsert one published article into the search index (body is plain text)."""
    title = _clean(title or "")
    body = _clean((body or "")[:MAX_BODY_CHARS])
    category = _clean(category or "")
    values = {
        "id": int(article_id),
        "title": _stem_text(title),
        "body": _stem_text(body),
        "category": _stem_text(category),
        "title_text": title,
        "body_text": body,
    }
    for field in ("title", "body", "category"):
        values[f"{field}_length"] = len(values[field].split())
    remove_article(session, article_id=article_id)
    if _dialect(session) == "postgresql":
        session.execute(
            sa.text(
                "INSERT INTO kb_search (article_id, title, body, category, title_text, body_text,"
                " title_length, body_length, category_length, document)"
                " VALUES (:id, :title, :body, :category, :title_text, :body_text,"
                " :title_length, :body_length, :category_length,"
                " setweight(to_tsvector('simple', :title), 'A')"
                " || setweight(to_tsvector('simple', :category), 'B')"
                " || to_tsvector('simple', :body))"
            ),
            values,
        )
    else:
        session.execute(
            sa.text(
                "INSERT INTO kb_search (rowid, title, body, category, title_text, body_text)"
                " VALUES (:id, :title, :body, :category, :title_text, :body_text)"
            ),
            values,
        )


def _clean(text: str) -> str:
    """Text either database stores: no NUL, no lone surrogates."""
    return text.replace("\x00", " ").encode("utf-8", "replace").decode("utf-8")


def remove_article(session: Session, *, article_id: int) -> None:
    """Take an article out of the index (unpublished or deleted); nothing if it is not there."""
    column = "article_id" if _dialect(session) == "postgresql" else "rowid"
    session.execute(
        sa.text(f"DELETE FROM kb_search WHERE {column} = :id"),  # noqa: S608 (fixed names)
        {"id": int(article_id)},
    )
    _forget()


# -- querying -------------------------------------------------------------------------------------


def suggest(session: Session, text: str, *, limit: int = 5) -> list[ArticleHit]:
    """Articles for free text a customer is typing (a question, or a ticket's subject and
    description). Text without a searchable word gives []; no input raises."""
    return _ranked(session, text, limit=limit, tuning=SUGGEST)


def search(session: Session, text: str, *, limit: int = 20) -> list[ArticleHit]:
    """The help center's search box: the same engine."""
    return _ranked(session, text, limit=limit, tuning=SEARCH)


def query_terms(text: str) -> list[str]:
    """The stems a text asks for, in order, without stopwords; repeats kept (they count)."""
    if not isinstance(text, str):
        return []
    found = [w for w in words(text[:MAX_QUERY_CHARS]) if w not in STOPWORDS]
    stems = [s for stem in stems_of(found) for s in stem.split()]
    return stems[: MAX_QUERY_TERMS * 4]


@dataclass
class _Candidate:
    """An article's stems, each field padded with spaces: `" stem "` counts whole words."""

    article_id: int
    title: str
    body: str
    category: str

    @staticmethod
    def of(article_id: int, title: str | None, body: str | None, category: str | None):
        return _Candidate(article_id, f" {title or ''} ", f" {body or ''} ", f" {category or ''} ")


def _ranked(session: Session, text: str, *, limit: int, tuning: Tuning) -> list[ArticleHit]:
    terms = query_terms(text)
    limit = max(0, min(int(limit), MAX_LIMIT))
    if not terms or not limit:
        return []
    weights: dict[str, float] = {}
    for term in terms:
        weights[term] = weights.get(term, 0.0) + 1.0
    if len(weights) > MAX_QUERY_TERMS:
        weights = dict(list(weights.items())[:MAX_QUERY_TERMS])
    if tuning.synonym_weight:
        for term, weight in list(weights.items()):
            for other in synonyms(term):
                if other not in weights:
                    weights[other] = tuning.synonym_weight * weight
    with _index_scans(session):
        stats = _stats(session, list(weights))
        selective = _selective(weights, stats, MATCH_BUDGET.get(_dialect(session), 1500))
        candidates = _candidates(session, selective) if selective else []
    if not candidates:
        return []
    query = _prepare(terms, weights, stats)
    scored = sorted(
        ((_score(c, query, stats, tuning), c) for c in candidates),
        key=lambda pair: (-pair[0], pair[1].article_id),
    )
    scored = [(score, c.article_id) for score, c in scored[:limit]]
    texts = _texts(session, [article_id for _, article_id in scored])
    wanted = set(weights)
    hits = []
    for score, article_id in scored:
        title, body = texts.get(article_id, ("", ""))
        snippet, snippet_html = _snippet(body, wanted)
        hits.append(
            ArticleHit(
                article_id=article_id,
                score=round(score, 4),
                snippet=snippet,
                snippet_html=snippet_html,
                title_html=_highlight(title, wanted),
            )
        )
    return hits


def _selective(weights: dict[str, float], stats: _Stats, budget: int) -> list[str]:
    """The query terms that pick the candidates: the rarest first, until their matches add up
    to MATCH_BUDGET articles (at least MIN_MATCH_TERMS terms). Common words still count in the
    scoring; leaving them out of the match keeps the engine from ranking most of a large
    collection (the dev sets rank identically with budgets down to 200)."""
    found = sorted((stats.df.get(t, 0), t) for t in weights if stats.df.get(t, 0))
    chosen: list[str] = []
    total = 0
    for df, term in found:
        if len(chosen) >= MIN_MATCH_TERMS and total + df > budget:
            break
        chosen.append(term)
        total += df
    return chosen


@contextlib.contextmanager
def _index_scans(session: Session) -> Iterator[None]:
    """On PostgreSQL, have the planner use the GIN index. It prices `@@` on each row as cheap
    and picks a sequential scan of a few thousand articles, but every row then unpacks its
    TOASTed tsvector: 40 ms instead of 2 ms at 5,000 articles."""
    if _dialect(session) != "postgresql":
        yield
        return
    session.execute(sa.text("SELECT set_config('enable_seqscan', 'off', true)"))
    try:
        yield
    finally:
        session.execute(sa.text("SELECT set_config('enable_seqscan', 'on', true)"))


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _candidates(session: Session, unique: list[str]) -> list[_Candidate]:
    dialect = _dialect(session)
    params: dict[str, str | int] = {f"t{i}": term for i, term in enumerate(unique)}
    params["k"] = CANDIDATES.get(dialect, 100)
    if dialect == "postgresql":
        query = " || ".join(f"plainto_tsquery('simple', :t{i})" for i in range(len(unique)))
        stmt = sa.text(
            "SELECT s.article_id, s.title, s.body, s.category"  # noqa: S608 (placeholders only)
            f" FROM kb_search s, (SELECT {query}) AS q(query) WHERE s.document @@ q.query"
            " ORDER BY ts_rank(s.document, q.query) DESC, s.article_id LIMIT :k"
        )
        rows = session.execute(stmt, params)
    else:
        match = " OR ".join(f'"{term}"' for term in unique)  # stems: letters and digits only
        rows = session.execute(
            sa.text(
                "SELECT rowid, title, body, category FROM kb_search WHERE kb_search MATCH :q"
                " ORDER BY bm25(kb_search, 3.0, 1.0, 0.5), rowid LIMIT :k"
            ),
            {"q": match, "k": params["k"]},
        )
    return [_Candidate.of(int(r[0]), r[1], r[2], r[3]) for r in rows]


@dataclass
class _Stats:
    documents: int
    title_length: float
    body_length: float
    category_length: float
    df: dict[str, int]


_cache: dict[str, tuple[float, _Stats]] = {}


def _forget() -> None:
    _cache.clear()


def _stats(session: Session, terms: list[str]) -> _Stats:
    """Collection statistics and the terms' document frequencies, kept STATS_SECONDS per
    process (writes in this process start afresh; another process's writes shift the figures
    a little for that long, which only nudges scores)."""
    key = str(session.get_bind().url)
    now = time.monotonic()
    entry = _cache.get(key)
    if entry is None or now - entry[0] > STATS_SECONDS or len(entry[1].df) > 50_000:
        entry = (now, _collection(session))
        _cache[key] = entry
    stats = entry[1]
    _add_frequencies(session, stats, terms)
    return stats


def _collection(session: Session) -> _Stats:
    """The number of articles and the mean length of each field, in stems."""
    if _dialect(session) == "postgresql":
        row = session.execute(
            sa.text(
                "SELECT count(*), avg(title_length), avg(body_length), avg(category_length)"
                " FROM kb_search"
            )
        ).one()
        documents, title, body, category = (float(v or 0) for v in row)
        # PostgreSQL's own statistics (ANALYZE, autovacuum) know the share of rows holding each
        # common lexeme: counting those rows would visit most of the table.
        common_row = session.execute(
            sa.text(
                "SELECT most_common_elems::text::text[], most_common_elem_freqs FROM pg_stats"
                " WHERE schemaname = current_schema() AND tablename = 'kb_search'"
                " AND attname = 'document'"
            )
        ).first()
        df: dict[str, int] = {}
        if common_row and common_row[0] and common_row[1]:
            df = {
                str(lexeme): round(float(share) * documents)
                for lexeme, share in zip(common_row[0], common_row[1], strict=False)
            }
        return _Stats(int(documents), max(title, 1.0), max(body, 1.0), max(category, 1.0), df)
    else:
        # FTS5 keeps the row count and each column's token total in its "averages" record.
        record = session.execute(sa.text("SELECT block FROM kb_search_data WHERE id = 1")).scalar()
        numbers = _varints(bytes(record or b""), 4)
        documents = numbers[0]
        title, body, category = (n / max(documents, 1) for n in numbers[1:4])
    return _Stats(int(documents), max(title, 1.0), max(body, 1.0), max(category, 1.0), {})


def _add_frequencies(session: Session, stats: _Stats, terms: list[str]) -> None:
    missing = [t for t in terms if t not in stats.df]
    if missing:
        stats.df.update(_document_frequencies(session, missing))


def _varints(data: bytes, count: int) -> list[int]:
    """The first `count` SQLite varints of `data` (zeros when it is shorter)."""
    found: list[int] = []
    position = 0
    while len(found) < count and position < len(data):
        value = 0
        for i in range(9):
            if position >= len(data):
                break
            byte = data[position]
            position += 1
            if i == 8:
                value = (value << 8) | byte
                break
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        found.append(value)
    return found + [0] * (count - len(found))


def _document_frequencies(session: Session, terms: list[str]) -> dict[str, int]:
    params = {f"t{i}": term for i, term in enumerate(terms)}
    if _dialect(session) == "postgresql":
        parts = " UNION ALL ".join(
            f"SELECT :t{i}, count(*) FROM kb_search"  # noqa: S608 (placeholders only)
            f" WHERE document @@ plainto_tsquery('simple', :t{i})"
            for i in range(len(terms))
        )
        rows = session.execute(sa.text(parts), params)
    else:
        marks = ", ".join(f":t{i}" for i in range(len(terms)))
        rows = session.execute(
            sa.text(f"SELECT term, doc FROM kb_search_vocab WHERE term IN ({marks})"),  # noqa: S608
            params,
        )
    found = {term: 0 for term in terms}
    found.update({str(term): int(count) for term, count in rows})
    return found


@dataclass
class _Query:
    """What scoring needs of a query, computed once: idf and weight per stem, word pairs."""

    terms: list[tuple[str, float, float]]  # (" stem ", idf, weight)
    pairs: list[tuple[str, str, str, str, float]]  # (" a ", " b ", " a b ", " b a ", mean idf)
    total_idf: float


def _idf(stats: _Stats, term: str) -> float:
    df = stats.df.get(term, 0)
    return math.log(1 + (max(stats.documents, 1) - df + 0.5) / (df + 0.5))


def _prepare(terms: list[str], weights: dict[str, float], stats: _Stats) -> _Query:
    idf = {term: _idf(stats, term) for term in weights}
    pairs = {(a, b) for a, b in itertools.pairwise(terms) if a != b and a in idf and b in idf}
    return _Query(
        terms=[(f" {t} ", idf[t], weights[t]) for t in weights],
        pairs=[
            (f" {a} ", f" {b} ", f" {a} {b} ", f" {b} {a} ", (idf[a] + idf[b]) / 2)
            for a, b in pairs
        ],
        total_idf=sum(idf[t] * weights[t] for t in weights),
    )


def _score(candidate: _Candidate, query: _Query, stats: _Stats, tuning: Tuning) -> float:
    """BM25F over title, body and category, plus a bonus per query word pair found adjacent."""
    title, body, category = candidate.title, candidate.body, candidate.category
    title_norm = 1 - tuning.title_b + tuning.title_b * (title.count(" ") - 1) / stats.title_length
    body_norm = 1 - tuning.body_b + tuning.body_b * (body.count(" ") - 1) / stats.body_length
    score = 0.0
    title_idf = 0.0
    found: set[str] = set()
    for word, idf, repeats in query.terms:
        in_title = title.count(word)
        if in_title:
            title_idf += idf * repeats
        in_body = body.count(word)
        tf = (
            tuning.title_weight * in_title / title_norm
            + tuning.body_weight * in_body / body_norm
            + tuning.category_weight * category.count(word)
        )
        if in_title or in_body:
            found.add(word)
        if tf:
            score += repeats * idf * tf / (tuning.k1 + tf)
    if tuning.pair_bonus:
        for a, b, forward, backward, idf in query.pairs:
            if (
                a in found
                and b in found
                and any(pair in field for field in (title, body) for pair in (forward, backward))
            ):
                score += tuning.pair_bonus * idf
    if tuning.title_coverage_bonus and query.total_idf:
        score += tuning.title_coverage_bonus * title_idf / query.total_idf
    return score


def _texts(session: Session, ids: list[int]) -> dict[int, tuple[str, str]]:
    """The original title and body of these articles, for snippets."""
    column = "article_id" if _dialect(session) == "postgresql" else "rowid"
    stmt = sa.text(
        f"SELECT {column}, title_text, body_text FROM kb_search"  # noqa: S608 (fixed names)
        f" WHERE {column} IN :ids"
    ).bindparams(sa.bindparam("ids", expanding=True))
    return {int(r[0]): (r[1] or "", r[2] or "") for r in session.execute(stmt, {"ids": ids})}


# -- snippets -------------------------------------------------------------------------------------

SNIPPET_CHARS = 200
SNIPPET_CONTEXT = 40
SNIPPET_SCAN_CHARS = 20_000
_MARK = Markup("<mark>%s</mark>")
_SPACE = re.compile(r"\s")


@functools.lru_cache(maxsize=256)
def _candidate_words(wanted: frozenset[str]) -> re.Pattern[str] | None:
    """A pattern for the words that may stem to a wanted stem: those starting with the stem
    (a porter stem is its word's beginning, but for a final y turned i)."""
    prefixes = {stem[:-1] if stem.endswith("i") and len(stem) > 2 else stem for stem in wanted}
    prefixes.discard("")
    if not prefixes:
        return None
    alternatives = "|".join(re.escape(p) for p in sorted(prefixes, key=len, reverse=True))
    return re.compile(rf"(?<![^\W_])(?:{alternatives})[^\W_]*", re.IGNORECASE)


def _marked(text: str, wanted: set[str]) -> list[tuple[int, int]]:
    """The spans of the words of `text` whose stem is wanted."""
    pattern = _candidate_words(frozenset(wanted))
    found = list(pattern.finditer(text)) if pattern else []
    if not found:
        return []
    stems = stems_of([m.group().lower()[:MAX_WORD_CHARS] for m in found])
    return [
        m.span()
        for m, stem in zip(found, stems, strict=True)
        if stem in wanted or (" " in stem and wanted.intersection(stem.split()))
    ]


def _highlight(text: str, wanted: set[str]) -> Markup:
    """The text, HTML-escaped, with every word whose stem is wanted inside <mark>."""
    out = Markup("")
    position = 0
    for start, end in _marked(text, wanted):
        out += escape(text[position:start]) + _MARK % text[start:end]
        position = end
    return out + escape(text[position:])


def _snippet(body: str, wanted: set[str]) -> tuple[str, Markup]:
    """About SNIPPET_CHARS characters of the body around the densest run of matched words, as
    plain text and as escaped HTML with the matched words marked."""
    head = body[:SNIPPET_SCAN_CHARS]
    spans = _marked(head, wanted)
    start = 0
    if spans:
        best, best_count, j = 0, 0, 0
        for i, (first, _) in enumerate(spans):
            while j < len(spans) and spans[j][1] <= first + SNIPPET_CHARS - SNIPPET_CONTEXT:
                j += 1
            count = len({head[a:b].lower() for a, b in spans[i:j]})
            if count > best_count:
                best, best_count = i, count
        start = max(0, spans[best][0] - SNIPPET_CONTEXT)
        if start:
            start = max(head.rfind(" ", 0, start), head.rfind("\n", 0, start)) + 1
    end = len(head)
    if end - start > SNIPPET_CHARS:
        space = _SPACE.search(head, start + SNIPPET_CHARS)
        end = space.start() if space else len(head)
    text = " ".join(head[start:end].split())
    if not text:
        return "", Markup("")
    prefix = "… " if start > 0 else ""
    suffix = " …" if end < len(body) else ""
    return prefix + text + suffix, escape(prefix) + _highlight(text, wanted) + escape(suffix)
