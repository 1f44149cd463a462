"""Article-suggestion benchmark: how well, and how fast, the suggest endpoint finds the article
that answers a question.

Not a test: it prints figures. DIR holds `articles.jsonl` (`{"id","title","body"}`, optional
`category`) and `queries.jsonl` (`{"id","text","relevant":[article ids]}`; when rows carry a
`split`, only `split == "dev"` rows are used unless `--split` says otherwise).

1. make a fresh database (a SQLite file in a temp data dir, or a `handoff_bench_<random>`
   database on a PostgreSQL server, dropped afterwards) and migrate it in-process;
2. import the articles (published) with the knowledge base's import service when it exists,
   else straight into the search index (`ticketing.kb_search.index_article`); `--pad-to N`
   adds synthetic filler articles (words drawn from the articles' own vocabulary, seed 42)
   until the index holds N;
3. ask `GET /api/v1/articles/suggest?q=TEXT&limit=10` through the Flask test client for every
   query (or `ticketing.kb_search.suggest` directly without the endpoint, or with `--direct`),
   one at a time, and print recall@1/3/5, MRR@10 and latency p50/p95 in milliseconds.

Usage (from the project root):

    .venv/bin/python bench/suggest_eval.py ../shared/kbeval/emanual_tv
    .venv/bin/python bench/suggest_eval.py ../shared/kbeval/stackfaq --pad-to 5000 \
        --database-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from benchlib import BenchError, database

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/test"
FILLER_ID_BASE = 1_000_000
TARGET_P95_MS = 20.0


@dataclass
class Figures:
    dataset: str
    database: str
    path: str
    articles: int
    indexed: int
    queries: int
    recall_at_1: float = 0.0
    recall_at_3: float = 0.0
    recall_at_5: float = 0.0
    mrr_at_10: float = 0.0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    cpu_p50_ms: float = 0.0
    cpu_p95_ms: float = 0.0


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def select_queries(rows: list[dict[str, Any]], split: str) -> list[dict[str, Any]]:
    if split == "all" or not any("split" in row for row in rows):
        return rows
    return [row for row in rows if row.get("split") == split]


def filler_articles(articles: list[dict[str, Any]], count: int, seed: int) -> list[dict[str, Any]]:
    """`count` synthetic articles whose words follow the real articles' word frequencies."""
    rng = random.Random(seed)
    vocabulary = [w for a in articles for w in (a["title"] + " " + a["body"]).split()]
    filler = []
    for i in range(count):
        title = " ".join(rng.choices(vocabulary, k=rng.randint(3, 9)))[:120]
        body = " ".join(rng.choices(vocabulary, k=rng.randint(40, 400)))
        filler.append({"id": f"filler-{i}", "title": title.capitalize(), "body": body})
    return filler


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


class Instance:
    """A migrated app on a fresh database, with the articles loaded."""

    def __init__(self, url: str, data_dir: Path, *, direct: bool) -> None:
        from flask_migrate import upgrade

        from web import create_app

        self.app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": url.replace("postgresql://", "postgresql+psycopg://", 1),
                "HANDOFF_DATA_DIR": str(data_dir),
                "SECRET_KEY": "bench-secret-" + "x" * 32,
                "HANDOFF_BASE_URL": "http://127.0.0.1:5000",
                "HANDOFF_RATELIMIT_ENABLED": False,
                "RATELIMIT_ENABLED": False,
            }
        )
        self.context = self.app.app_context()
        self.context.push()
        upgrade()
        self.client = self.app.test_client()
        self.endpoint = not direct and "/api/v1/articles/suggest" in {
            rule.rule for rule in self.app.url_map.iter_rules()
        }
        self.external: dict[int, str] = {}

    def close(self) -> None:
        from web.extensions import db

        db.session.remove()
        db.engine.dispose()
        self.context.pop()

    def load(self, articles: list[dict[str, Any]]) -> str:
        """Import the articles (published); returns which path loaded them."""
        from web.extensions import db

        try:
            from ticketing.models.kb import Article
            from ticketing.services.kb import import_articles
        except ImportError:
            return self._index_directly(articles)
        from ticketing.db import utcnow

        report = import_articles(db.session, iter(articles), now=utcnow())
        db.session.commit()
        if report.errors:
            raise BenchError(f"kb import reported {len(report.errors)} errors: {report.errors[:3]}")
        for article_id, external_id in db.session.execute(
            sa.select(Article.id, Article.external_id)
        ):
            self.external[article_id] = external_id
        db.session.rollback()
        self.settle()
        return "ticketing.services.kb.import_articles"

    def settle(self) -> None:
        """What autovacuum does on PostgreSQL shortly after a bulk import: VACUUM ANALYZE (the
        ranker reads common words' document frequencies from the planner's statistics)."""
        from web.extensions import db

        if db.engine.dialect.name == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE kb_search")

    def _index_directly(self, articles: list[dict[str, Any]]) -> str:
        from ticketing import kb_search
        from web.extensions import db

        for number, article in enumerate(articles, 1):
            self.external[number] = str(article["id"])
            kb_search.index_article(
                db.session,
                article_id=number,
                title=article["title"],
                body=article["body"],
                category=article.get("category"),
            )
            if number % 500 == 0:
                db.session.commit()
        db.session.commit()
        self.settle()
        return "kb_search.index_article"

    def ask(self, text: str, limit: int) -> list[str]:
        if self.endpoint:
            response = self.client.get(
                "/api/v1/articles/suggest", query_string={"q": text, "limit": limit}
            )
            if response.status_code != 200:
                raise BenchError(
                    f"suggest answered {response.status_code}: {response.data[:200]!r}"
                )
            return [str(article["id"]) for article in response.json["articles"]]
        from ticketing import kb_search
        from web.extensions import db

        hits = kb_search.suggest(db.session, text, limit=limit)
        db.session.rollback()
        return [self.external[hit.article_id] for hit in hits]


def evaluate(instance: Instance, queries: list[dict[str, Any]]) -> dict[str, float]:
    found = {1: 0, 3: 0, 5: 0}
    reciprocal = 0.0
    latencies = []
    cpu = []
    for query in queries:
        relevant = {str(r) for r in query["relevant"]}
        started, started_cpu = time.perf_counter(), time.process_time()
        ranked = instance.ask(query["text"], 10)
        latencies.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
        for k in found:
            if relevant & set(ranked[:k]):
                found[k] += 1
        rank = next((i for i, a in enumerate(ranked, 1) if a in relevant), None)
        if rank:
            reciprocal += 1 / rank
    n = max(len(queries), 1)
    return {
        "recall_at_1": found[1] / n,
        "recall_at_3": found[3] / n,
        "recall_at_5": found[5] / n,
        "mrr_at_10": reciprocal / n,
        "p50_ms": percentile(latencies, 0.5),
        "p95_ms": percentile(latencies, 0.95),
        "cpu_p50_ms": percentile(cpu, 0.5),
        "cpu_p95_ms": percentile(cpu, 0.95),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--database", choices=["sqlite", "postgresql"])
    parser.add_argument("--database-url", help="a PostgreSQL server (implies postgresql)")
    parser.add_argument("--pad-to", type=int, default=0)
    parser.add_argument("--split", default="dev", help="queries of this split ('all': every row)")
    parser.add_argument("--direct", action="store_true", help="call kb_search, not the endpoint")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    kind = args.database or ("postgresql" if args.database_url else "sqlite")
    articles = read_jsonl(args.dir / "articles.jsonl")
    queries = select_queries(read_jsonl(args.dir / "queries.jsonl"), args.split)
    filler = filler_articles(articles, max(0, args.pad_to - len(articles)), args.seed)
    temp = Path(tempfile.mkdtemp(prefix="handoff-suggest-"))
    with database(kind, args.database_url or DEFAULT_SERVER_URL, temp, args.keep) as url:
        instance = Instance(url, temp / "data", direct=args.direct)
        try:
            loaded_by = instance.load(articles + filler)
            path = f"{loaded_by} + " + (
                "GET /api/v1/articles/suggest" if instance.endpoint else "kb_search.suggest"
            )
            figures = Figures(
                dataset=args.dir.name,
                database=kind,
                path=path,
                articles=len(articles),
                indexed=len(articles) + len(filler),
                queries=len(queries),
            )
            instance.ask("warm up the caches", 10)
            for name, value in evaluate(instance, queries).items():
                setattr(figures, name, round(value, 3))
        finally:
            instance.close()
            if args.keep:
                print(f"  kept {temp}")
            else:
                shutil.rmtree(temp, ignore_errors=True)
    print(
        f"{figures.dataset} on {figures.database}: {figures.queries} queries,"
        f" {figures.indexed} articles indexed ({figures.path})"
    )
    print(
        f"  R@1 {figures.recall_at_1:.3f}  R@3 {figures.recall_at_3:.3f}"
        f"  R@5 {figures.recall_at_5:.3f}  MRR@10 {figures.mrr_at_10:.3f}"
    )
    verdict = "ok" if figures.p95_ms < TARGET_P95_MS else f"over the {TARGET_P95_MS:.0f} ms target"
    print(f"  latency p50 {figures.p50_ms:.1f} ms  p95 {figures.p95_ms:.1f} ms ({verdict})")
    print(
        f"  CPU of this process per query p50 {figures.cpu_p50_ms:.1f} ms"
        f"  p95 {figures.cpu_p95_ms:.1f} ms (PostgreSQL's own work not included)"
    )
    if filler:
        print(
            "  (the filler is drawn from the articles' own word frequencies: a worst case for"
            " latency; recall with it is not comparable to the unpadded figures)"
        )
    if args.json:
        print(json.dumps(asdict(figures)))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
