"""Account data in bulk: validate records, upsert them by external id, report bad rows.

Place in the flow: CSV import (`flask accounts import`), `POST /api/v1/accounts` and the
Stripe webhook all end here. Every value first passes `ticketing.cards.reject_pan`, so a
card number is refused before it can be stored, echoed or logged. Writes are set-based
(core ``INSERT … ON CONFLICT`` in chunks, never an ORM object per row), so a million rows
import in about a minute on SQLite. A changed card resolves the problems notices were sent
about (`ticketing.services.notices.resolve`).
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ticketing.cards import reject_pan
from ticketing.errors import Invalid
from ticketing.models import AccountEvent, AccountEventKind
from ticketing.models.accounts import expiry_date

FIELDS = (
    "external_id",
    "email",
    "name",
    "plan",
    "status",
    "card_brand",
    "card_last4",
    "card_exp_month",
    "card_exp_year",
)
REQUIRED = ("external_id", "email")
CARD_FIELDS = ("card_brand", "card_last4", "card_exp_month", "card_exp_year")
# Cards from the CSV and the API: one per account, under this payment-method id.
DEFAULT_CARD_ID = "default"
CHUNK_SIZE = 2000

_EMAIL = re.compile(r"[^@\s<>,;:\"()\[\]\\]+@[^@\s<>,;:\"()\[\]\\]+\.[^@\s<>,;:\"()\[\]\\]+")
_FIELD_SET = frozenset(FIELDS)
_SHORTEST_LIMIT = 40
_LAST4 = re.compile(r"[0-9]{4}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LIMITS = {"external_id": 200, "name": 200, "plan": 100, "status": 40, "card_brand": 40}


@dataclass(frozen=True, slots=True)
class CardRecord:
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    external_id: str = DEFAULT_CARD_ID

    @property
    def expires_on(self) -> dt.date:
        return expiry_date(self.exp_month, self.exp_year)


@dataclass(frozen=True, slots=True)
class AccountRecord:
    external_id: str
    email: str
    name: str = ""
    plan: str = ""
    status: str = ""
    card: CardRecord | None = None


@dataclass(frozen=True, slots=True)
class RowError:
    line: int  # CSV line number (1 is the header), or the item's index for the API
    reason: str


@dataclass
class ImportResult:
    rows: int = 0
    created: int = 0
    updated: int = 0
    cards_changed: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def imported(self) -> int:
        return self.created + self.updated

    def summary(self) -> str:
        return (
            f"{self.rows} rows: {self.created} created, {self.updated} updated, "
            f"{self.cards_changed} cards changed, {len(self.errors)} rejected"
        )


def _texts(values: Mapping[str, Any]) -> dict[str, str]:
    """Every field as trimmed text, checked for type, control characters and length."""
    try:  # the common case (CSV): all text and clean, checked in one pass
        fast = {name: value.strip() for name, value in values.items()}
    except AttributeError:
        pass
    else:
        if (
            _CONTROL.search("\u2028".join(fast.values())) is None
            and max(map(len, fast.values()), default=0) <= _SHORTEST_LIMIT
        ):
            return fast
    out: dict[str, str] = {}
    for name, value in values.items():
        if value is None:
            text = ""
        elif isinstance(value, str):
            text = value.strip()
        elif isinstance(value, int) and not isinstance(value, bool):
            text = str(value)
        else:
            raise Invalid(f"{name} must be text.")
        if _CONTROL.search(text):
            raise Invalid(f"{name} must not contain control characters.")
        limit = _LIMITS.get(name)
        if limit and len(text) > limit:
            raise Invalid(f"{name} is longer than {limit} characters.")
        out[name] = text
    return out


def _int(text: str, name: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise Invalid(f"{name} must be a number.")
    return int(text)


def parse_record(values: Mapping[str, Any]) -> AccountRecord:
    """One account record from CSV/JSON fields; raises `Invalid` saying what is wrong.

    Card fields are all given or all empty (then the stored card is left as it is).
    """
    reject_pan(values)
    if not _FIELD_SET.issuperset(values):
        unknown = sorted(str(k)[:40] for k in values if k not in _FIELD_SET)
        raise Invalid(f"unknown field(s): {', '.join(unknown)}")
    texts = _texts(values)
    get = texts.get
    external_id = get("external_id", "")
    if not external_id:
        raise Invalid("external_id is required.")
    email = get("email", "").lower()
    if not email:
        raise Invalid("email is required.")
    if len(email) > 320 or not _EMAIL.fullmatch(email):
        raise Invalid("email is not a valid email address.")
    brand, last4 = get("card_brand", ""), get("card_last4", "")
    month_text, year_text = get("card_exp_month", ""), get("card_exp_year", "")
    card = None
    if brand or last4 or month_text or year_text:
        if not (last4 and month_text and year_text):
            raise Invalid("card_last4, card_exp_month and card_exp_year go together.")
        if not _LAST4.fullmatch(last4):
            raise Invalid("card_last4 must be exactly 4 digits.")
        month = _int(month_text, "card_exp_month")
        if not 1 <= month <= 12:
            raise Invalid("card_exp_month must be 1-12.")
        year = _int(year_text, "card_exp_year")
        if year < 100:
            year += 2000
        if not 2000 <= year <= 2099:
            raise Invalid("card_exp_year must be a year like 2027.")
        card = CardRecord(brand=brand.lower(), last4=last4, exp_month=month, exp_year=year)
    return AccountRecord(
        external_id=external_id,
        email=email,
        name=get("name", ""),
        plan=get("plan", ""),
        status=get("status", "").lower(),
        card=card,
    )


@dataclass(frozen=True, slots=True)
class ChunkOutcome:
    created: int
    updated: int
    changed_card_account_ids: list[int]


class _Sql:
    """Plain SQL for the bulk path, the same text on SQLite and PostgreSQL (both speak
    ``INSERT … ON CONFLICT``). Values are converted once per chunk here instead of per row by
    SQLAlchemy's bind processing, which is most of the cost at a million rows."""

    def __init__(self, session: Session) -> None:
        self.connection = session.connection()
        self.is_sqlite = self.connection.dialect.name == "sqlite"
        self.mark = "?" if self.is_sqlite else "%s"

    def time(self, value: dt.datetime) -> Any:
        # SQLite: the text form SQLAlchemy's DateTime writes, naive UTC (see db.UTCDateTime).
        utc = value.astimezone(dt.UTC)
        return utc.strftime("%Y-%m-%d %H:%M:%S.%f") if self.is_sqlite else utc

    def day(self, value: dt.date) -> Any:
        return value.isoformat() if self.is_sqlite else value

    def flag(self, value: bool) -> Any:
        return int(value) if self.is_sqlite else value

    def marks(self, count: int) -> str:
        return ", ".join([self.mark] * count)

    def many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            self.connection.exec_driver_sql(sql.replace("?", self.mark), rows)

    def select_in(self, sql: str, keys: list[Any]) -> list[Any]:
        """`sql` with ``IN (…)`` holding `keys` (ends with ``IN``)."""
        if not keys:
            return []
        result = self.connection.exec_driver_sql(f"{sql} ({self.marks(len(keys))})", tuple(keys))
        return result.fetchall()


def upsert(
    session: Session, records: Sequence[AccountRecord], *, now: dt.datetime, dry_run: bool = False
) -> ChunkOutcome:
    """Create or update these accounts (by external id) and their default cards, set-based.

    Later records win over earlier ones with the same external id. An account whose card
    changed gets a `card_updated` event and its open problems resolved (see
    `notices.resolve`). With `dry_run`, only counts what would happen.
    """
    from ticketing.services import notices

    by_id = {r.external_id: r for r in records}
    if not by_id:
        return ChunkOutcome(0, 0, [])
    sql = _Sql(session)
    existing = {
        row[1]: row
        for row in sql.select_in(
            "SELECT a.id, a.external_id, pm.last4, pm.exp_month, pm.exp_year FROM accounts a "
            "LEFT JOIN payment_methods pm ON pm.account_id = a.id "
            "AND pm.external_id = 'default' WHERE a.external_id IN",  # DEFAULT_CARD_ID
            list(by_id),
        )
    }
    created = len(by_id) - len(existing)
    changed_ext = [
        ext
        for ext, rec in by_id.items()
        if rec.card is not None
        and ext in existing
        and existing[ext][3] is not None
        and tuple(existing[ext][2:5]) != (rec.card.last4, rec.card.exp_month, rec.card.exp_year)
    ]
    if dry_run:
        return ChunkOutcome(created, len(existing), [existing[e][0] for e in changed_ext])

    stamp = sql.time(now)
    emails = {r.email: r.name for r in by_id.values()}
    sql.many(
        "INSERT INTO customers (email, name, created_at) VALUES (?, ?, ?) "
        "ON CONFLICT (email) DO NOTHING",
        [(email, name, stamp) for email, name in emails.items()],
    )
    customer_ids = dict(
        (row[0], row[1])
        for row in sql.select_in("SELECT email, id FROM customers WHERE email IN", list(emails))
    )
    sql.many(
        "INSERT INTO accounts (external_id, customer_id, name, plan, status, created_at, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (external_id) DO UPDATE SET "
        "customer_id = excluded.customer_id, name = excluded.name, plan = excluded.plan, "
        "status = excluded.status, updated_at = excluded.updated_at",
        [
            (r.external_id, customer_ids[r.email], r.name, r.plan, r.status, stamp, stamp)
            for r in by_id.values()
        ],
    )
    with_cards = [r for r in by_id.values() if r.card is not None]
    if with_cards:
        account_ids = {
            row[0]: row[1]
            for row in sql.select_in(
                "SELECT external_id, id FROM accounts WHERE external_id IN",
                [r.external_id for r in with_cards],
            )
        }
        days: dict[dt.date, Any] = {}
        is_default = sql.flag(True)
        rows = []
        for r in with_cards:
            card = r.card
            assert card is not None
            expires_on = card.expires_on
            day = days.get(expires_on)
            if day is None:
                day = days[expires_on] = sql.day(expires_on)
            rows.append(
                (
                    account_ids[r.external_id],
                    card.external_id,
                    card.brand,
                    card.last4,
                    card.exp_month,
                    card.exp_year,
                    day,
                    is_default,
                    stamp,
                )
            )
        sql.many(
            "INSERT INTO payment_methods (account_id, external_id, brand, last4, exp_month, "
            "exp_year, expires_on, is_default, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (account_id, external_id) DO UPDATE SET brand = excluded.brand, "
            "last4 = excluded.last4, exp_month = excluded.exp_month, "
            "exp_year = excluded.exp_year, expires_on = excluded.expires_on, "
            "is_default = excluded.is_default, updated_at = excluded.updated_at",
            rows,
        )
    changed_ids = [existing[e][0] for e in changed_ext]
    if changed_ids:
        session.execute(
            sa.insert(AccountEvent),
            [
                {
                    "account_id": account_id,
                    "kind": AccountEventKind.CARD_UPDATED.value,
                    "external_id": None,
                    "summary": "card details changed by import",
                    "occurred_at": now,
                }
                for account_id in changed_ids
            ],
        )
        notices.resolve(session, account_ids=changed_ids, why="the card was updated", now=now)
    session.flush()
    return ChunkOutcome(created, len(existing), changed_ids)


def upsert_records(
    session: Session,
    items: Iterable[tuple[int, Mapping[str, Any]]],
    *,
    now: dt.datetime,
    dry_run: bool = False,
    chunk_size: int = CHUNK_SIZE,
    on_chunk: Callable[[int], None] | None = None,
) -> ImportResult:
    """Validate and upsert numbered records in chunks; bad ones are reported, never fatal.

    `on_chunk(rows_done)` is called after each chunk is flushed (the CLI commits there and
    moves its progress bar).
    """
    result = ImportResult()
    chunk: list[AccountRecord] = []

    def flush_chunk(rows_done: int) -> None:
        outcome = upsert(session, chunk, now=now, dry_run=dry_run)
        result.created += outcome.created
        result.updated += outcome.updated
        result.cards_changed += len(outcome.changed_card_account_ids)
        chunk.clear()
        if on_chunk is not None:
            on_chunk(rows_done)

    for line, values in items:
        result.rows += 1
        if "__width__" in values:  # a malformed row, reported as such (not echoed)
            result.errors.append(RowError(line, str(values["__width__"])))
            continue
        try:
            chunk.append(parse_record(values))
        except Invalid as exc:
            result.errors.append(RowError(line, str(exc)))
        if len(chunk) >= chunk_size:
            flush_chunk(result.rows)
    flush_chunk(result.rows)
    return result


def read_csv(stream: IO[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, fields) for each data row of an account CSV; `Invalid` for a bad header.

    The line number is where the row ends in the file (the header is line 1), so a quoted
    field spanning lines still points at the right place.
    """
    reader = csv.reader(stream)
    try:
        header = [name.strip().lower() for name in next(reader)]
    except StopIteration:
        raise Invalid("The file is empty; expected a header line.") from None
    if header and header[0].startswith("\ufeff"):
        header[0] = header[0][1:]
    missing = [name for name in REQUIRED if name not in header]
    unknown = [name[:40] for name in header if name not in FIELDS]
    if missing or unknown:
        raise Invalid(
            f"Bad header: missing {', '.join(missing) or 'nothing'}, unknown "
            f"{', '.join(unknown) or 'nothing'}. Columns: {','.join(FIELDS)}"
        )
    width = len(header)
    for row in reader:
        if not row or row == [""]:
            continue
        if len(row) != width:
            # Not echoed: the row may hold anything (a card number in the wrong column).
            yield (
                reader.line_num,
                {"__width__": f"wrong number of fields: {len(row)}, expected {width}"},
            )
            continue
        yield reader.line_num, dict(zip(header, row, strict=True))
