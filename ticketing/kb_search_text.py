"""Text analysis for the knowledge-base search index: words, stems, stopwords.

Both engines index the same thing: the article's words stemmed here with SQLite FTS5's own
`porter` tokenizer (`unicode61 remove_diacritics 2` underneath), run on an in-memory SQLite
connection of the standard library. The stems are stored in the index (FTS5 on SQLite, a
`simple`-configuration tsvector on PostgreSQL), so a query matches and ranks alike on both.
"""

from __future__ import annotations

import re
import sqlite3
import threading

# A word: a run of letters and digits (what unicode61 keeps as one token).
WORD = re.compile(r"[^\W_]+")
MAX_WORD_CHARS = 40
TOKENIZER = "porter unicode61 remove_diacritics 2"

_CACHE_SIZE = 50_000
_cache: dict[str, str] = {}
_local = threading.local()

# Generic English function words plus the boilerplate of a question or a support request
# ("how do I", "is it possible to", "please help"). Queries only: documents keep every word.
STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are aren as at be because been
    before being below between both but by can cannot could couldn did didn do does doesn doing
    don down during each either else ever few for from further get gets getting got had hadn has
    hasn have haven having he her here hers herself him himself his how i if in into is isn it
    its itself just let lets me might more most must mustn my myself no nor not now of off on
    once only or other ought our ours ourselves out over own same shall shan she should shouldn
    so some such than that the their theirs them themselves then there these they this those
    through to too under until up upon us very was wasn we were weren what whats when where
    whether which while who whom whose why will with won would wouldn you your yours yourself
    yourselves s t d ll m re ve y im ive id dont cant
    anyone anybody someone somebody anything something possible possibly way ways want wanted
    wants wish like would need needs needed know tell please help thanks thank hi hello hey
    question questions ask asking anyway actually really also still able unable
    """.split()  # noqa: SIM905
)


def _connection() -> sqlite3.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(":memory:", check_same_thread=True)
        conn.execute("CREATE VIRTUAL TABLE w USING fts5(t, tokenize = '" + TOKENIZER + "')")
        conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(w, 'instance')")
        _local.conn = conn
    return conn


def _stem_many(words: list[str]) -> dict[str, str]:
    """Each word's stem(s) from FTS5's porter tokenizer, joined by spaces ('' for none)."""
    conn = _connection()
    with conn:
        conn.executemany("INSERT INTO w(rowid, t) VALUES (?, ?)", enumerate(words, 1))
        rows = conn.execute("SELECT doc, term FROM v ORDER BY doc, offset").fetchall()
        conn.execute("DELETE FROM w")
    found: dict[int, list[str]] = {}
    for doc, term in rows:
        found.setdefault(doc, []).append(term)
    return {word: " ".join(found.get(i, ())) for i, word in enumerate(words, 1)}


def stems_of(words: list[str]) -> list[str]:
    """The stem of each (lower-case) word, '' where the tokenizer keeps nothing."""
    found: dict[str, str] = {}
    missing: list[str] = []
    for word in set(words):
        stem = _cache.get(word)
        if stem is None:
            missing.append(word)
        else:
            found[word] = stem
    if missing:
        new = _stem_many(missing)
        if len(_cache) + len(new) > _CACHE_SIZE:
            _cache.clear()
        _cache.update(new)
        found.update(new)
    return [found[word] for word in words]


def words(text: str) -> list[str]:
    """The lower-case words of a text, each bounded in length."""
    return [w[:MAX_WORD_CHARS] for w in WORD.findall(text.lower())]


def stem_text(text: str) -> str:
    """The text as space-separated stems, in order: what the index stores and matches."""
    return " ".join(s for s in stems_of(words(text)) if s)


# Generic English synonyms and abbreviations of support questions (not fitted to any article
# set): a query word also looks for the others of its group, at a lower weight. British and
# American spellings count as synonyms.
SYNONYM_GROUPS = [
    "delete remove erase wipe",
    "email e-mail mail",
    "picture image photo pic",
    "screen display monitor",
    "tv television",
    "phone smartphone mobile cellphone",
    "app application program software",
    "password passcode passphrase pw",
    "login logon signin",
    "signup register registration",
    "buy purchase",
    "cancel terminate",
    "bill invoice",
    "change modify alter edit",
    "fix repair resolve troubleshoot",
    "problem issue trouble fault",
    "error failure",
    "launch open start",
    "stop halt",
    "hide conceal",
    "find locate search",
    "show display view",
    "copy duplicate",
    "move transfer",
    "connect pair link",
    "setting option preference configuration config",
    "wifi wi-fi wireless",
    "restart reboot",
    "oldest earliest",
    "newest latest recent",
    "large big huge",
    "small little tiny",
    "slow sluggish laggy",
    "mute silence",
    "notification alert notify",
    "subtitle caption",
    "cost price fee charge",
    "refund reimbursement",
    "shipping delivery",
    "unsubscribe optout",
    "facebook fb",
    "youtube yt",
    "computer pc laptop desktop",
    "message msg",
    "information info",
    "bluetooth bt",
    "colour color",
    "favourite favorite fav",
    "centre center",
    "licence license",
    "organise organize",
    "customise customize",
    "personalise personalize",
    "optimise optimize",
    "analyse analyze",
    "behaviour behavior",
    "grey gray",
    "cancelled canceled",
]

_synonyms: dict[str, tuple[str, ...]] | None = None


def synonyms(stem: str) -> tuple[str, ...]:
    """The stems that mean the same as this one (not itself), from SYNONYM_GROUPS."""
    global _synonyms
    if _synonyms is None:
        table: dict[str, set[str]] = {}
        for group in SYNONYM_GROUPS:
            stems = {s for s in (stem_text(w) for w in group.split()) if s and " " not in s}
            for s in stems:
                table.setdefault(s, set()).update(stems - {s})
        _synonyms = {s: tuple(sorted(others)) for s, others in table.items()}
    return _synonyms.get(stem, ())
