"""Demo data for the embedded default: a few agents, customers and tickets to click through.

`seed` is idempotent: seeding twice changes nothing the second time (the demo admin's presence
is the marker), so `make run` can call it on every start. `seed_scale` adds N synthetic tickets
in bulk (`flask demo seed --tickets N`), for trying Handoff at scale and for the benchmarks.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import random
import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ticketing import search
from ticketing.models import (
    Agent,
    AgentRole,
    Channel,
    Customer,
    Entry,
    EntryKind,
    Mailbox,
    Priority,
    Status,
    Tag,
    Ticket,
    ticket_tags,
)
from ticketing.models.counters import reserve
from ticketing.services import agents, conversation, customers
from ticketing.services.conversation import FIRST_TICKET_NUMBER

DEMO_ADMIN_EMAIL = "admin@handoff.example"

_DEMO_TICKETS = [
    (
        "maria.lopez@example.com",
        "María López",
        "Card declined when renewing my plan",
        "Hi,\n\nI tried to renew my Pro plan this morning and my card was declined twice. "
        "The bank says everything is fine on their side. Can you check?\n\nThanks,\nMaría",
        Channel.EMAIL,
        Priority.HIGH,
    ),
    (
        "tom@northwind.example",
        "Tom Becker",
        "How do I export my invoices?",
        "Hello, our accountant needs all invoices from last year as PDF. Is there a bulk "
        "export somewhere? I looked in Settings but could not find it.",
        Channel.WEB,
        Priority.NORMAL,
    ),
    (
        "yuki@example.jp",
        "Yuki Tanaka",
        "Password reset email never arrives",
        "I requested a password reset three times in the last hour but nothing arrives, "
        "not even in spam. My address is yuki@example.jp.",
        Channel.EMAIL,
        Priority.NORMAL,
    ),
    (
        "sam@contoso.example",
        "Sam Rivera",
        "Feature request: dark mode",
        "Love the product! Any plans for a dark mode? Our team works late.",
        Channel.WEB,
        Priority.LOW,
    ),
]


def seed(session: Session, *, admin_password: str, now: dt.datetime) -> bool:
    """Create the demo data unless it exists. Returns True when something was created."""
    if session.scalar(sa.select(Agent.id).where(Agent.email == DEMO_ADMIN_EMAIL)):
        return False
    admin = agents.create_agent(
        session,
        email=DEMO_ADMIN_EMAIL,
        name="Dana Admin",
        password=admin_password,
        role=AgentRole.ADMIN,
    )
    start = now - dt.timedelta(days=2)
    for i, (email, name, subject, body, channel, priority) in enumerate(_DEMO_TICKETS):
        at = start + dt.timedelta(hours=7 * i)
        customer = customers.find_or_create(session, email=email, name=name)
        ticket = conversation.open_ticket(
            session, customer=customer, subject=subject, channel=channel, priority=priority, now=at
        )
        kind = EntryKind.CUSTOMER_EMAIL if channel == Channel.EMAIL else EntryKind.CUSTOMER_WEB
        conversation.add_customer_message(
            ticket, author=customer, kind=kind, subject=subject, body_text=body, now=at
        )
        if i == 0:
            conversation.assign(ticket, admin, actor=admin, now=at + dt.timedelta(minutes=5))
            conversation.add_note(
                ticket,
                actor=admin,
                body_text="Payment provider shows a 3-D Secure timeout. Checking with billing.",
                now=at + dt.timedelta(minutes=10),
            )
        if i == 2:
            conversation.reply(
                ticket,
                actor=admin,
                body_text="Hi Yuki, sorry about that. I have re-sent the reset link from our "
                "side; it should arrive within a few minutes. Let me know if it does not.",
                now=at + dt.timedelta(hours=1),
                status=Status.PENDING,
            )
    return True


# -- synthetic data at scale ---------------------------------------------------------------------
#
# `seed_scale` fills a helpdesk with N realistic tickets (about five entries each, two years of
# history) through bulk INSERTs, so anyone can try Handoff — and benchmark it — at 100k tickets.
# Rows go in through SQL, never around it, so the search triggers index every ticket and entry
# as they land; ticket numbers are reserved from the real counter in one step per chunk. Core
# inserts on the tables (not the ORM's bulk path, which here ran one statement per row) make
# them executemany / multi-row INSERT ... RETURNING statements.


@dataclass(frozen=True, slots=True)
class ScaleSummary:
    tickets: int
    entries: int
    customers: int
    first_number: int | None
    last_number: int | None


def _words(text: str) -> list[str]:
    return text.split()


_FIRST = _words(
    "Ann Tom Yuki Sam María Lukas Priya Chen Fatima Olga Kwame Sofia Mateo Aiko Noah Emma "
    "Liam Zoe Omar Elif Jonas Ingrid Raj Mei Diego Chloe Hana Pierre Ana Björn Leila Marco "
    "Nadia Felix Grace Ivan Amara Hugo Sara Tariq"
)
_LAST = _words(
    "Smith López Tanaka Becker Rivera Müller Patel Wang Haddad Ivanova Mensah Rossi García "
    "Sato Johnson Dubois Kowalski Nguyen Öztürk Jensen Kaur Li Fernández Martin Costa "
    "Andersson Khan Silva Novak Schmidt Moreau Brown Yilmaz Okafor Rahman Larsen Ricci Kim"
)
_DOMAINS = _words(
    "example.com example.org example.net northwind.example contoso.example fabrikam.example "
    "initech.example globex.example umbrella.example acme.example mail.example"
)
_AGENTS = [
    ("Dana Admin", "admin@handoff.example"),
    ("Alex Support", "alex@handoff.example"),
    ("Jamie Support", "jamie@handoff.example"),
    ("Robin Billing", "robin@handoff.example"),
    ("Kim Tech", "kim@handoff.example"),
    ("Noor Success", "noor@handoff.example"),
]
_TAGS = [
    "billing", "bug", "feature-request", "login", "refund", "export", "api", "mobile",
    "onboarding", "vip", "shipping", "security",
]  # fmt: skip
_PLANS = ["Starter", "Pro", "Business", "Enterprise"]
_BROWSERS = ["Chrome 131", "Firefox 133", "Safari 18", "Edge 131", "the iOS app", "the Android app"]

# Topic: (tag, subjects, customer openings, customer follow-ups, agent replies, notes).
# Placeholders: {order} {amount} {plan} {browser} {code} {date} {agent} {first}.
_TOPICS: list[tuple[str, list[str], list[str], list[str], list[str], list[str]]] = [
    (
        "billing",
        [
            "Card declined when renewing",
            "Charged twice this month",
            "Invoice shows wrong VAT",
            "Payment failed for order {order}",
            "Update billing address on invoices",
        ],
        [
            "I tried to renew our {plan} plan today and the card was declined twice. The bank says "
            "everything is fine on their side. Order {order}, amount {amount} EUR.",
            "We were charged {amount} EUR twice on {date} for the {plan} plan. Please refund the "
            "duplicate payment; the card ends in {code}.",
            "Our invoice for {date} lists the wrong VAT number and the company address is "
            "outdated. Can you reissue it? The accountant needs it before the end of the month.",
        ],
        [
            "Still no luck, the payment page says 'declined by issuer' again.",
            "Thanks. Could you also send the corrected invoice as PDF?",
            "I checked with the bank, they see no attempt at all from your side.",
        ],
        [
            "Hi {first}, sorry about the trouble. The payment provider reported a 3-D Secure "
            "timeout for order {order}. I reset the attempt; please try once "
            "more from the billing page.",
            "Hi {first}, I have refunded the duplicate charge of {amount} EUR. It usually takes "
            "3-5 business days to show on your statement.",
            "Hi {first}, the corrected invoice is attached to your account under Billing > "
            "Invoices. Let me know if anything else is off.",
        ],
        [
            "Provider dashboard shows two captures for {order}; refund issued.",
            "Asked finance to check the VAT rules for this country.",
        ],
    ),
    (
        "login",
        [
            "Password reset email never arrives",
            "Locked out after two-factor change",
            "Cannot sign in with SSO",
            "Login loop in {browser}",
        ],
        [
            "I requested a password reset three times in the last hour but nothing arrives, not "
            "even in spam.",
            "I replaced my phone and now the two-factor codes are rejected. I cannot get into my "
            "account at all.",
            "Since this morning signing in with our company SSO sends me back to the login page in "
            "{browser}. Colleagues have the same problem.",
        ],
        [
            "The reset link finally arrived but it says the token expired.",
            "Tried in a private window as you suggested, same loop.",
            "Got in now, thank you!",
        ],
        [
            "Hi {first}, our mail provider delayed some messages earlier today. I re-sent the "
            "reset link; it should arrive within a few minutes.",
            "Hi {first}, I have reset two-factor on your account. Sign in with your password and "
            "you will be asked to set it up again.",
            "Hi {first}, we found a misconfigured redirect for SSO and deployed a fix. Could you "
            "clear cookies and try again?",
        ],
        [
            "Identity verified by callback to the number on file.",
            "Known issue with the SSO redirect, linked to incident {code}.",
        ],
    ),
    (
        "export",
        [
            "How do I export my invoices?",
            "CSV export is missing columns",
            "Export of {amount} contacts times out",
            "Need all data for an audit",
        ],
        [
            "Our accountant needs all invoices from last year as PDF. Is there a bulk export "
            "somewhere? I looked in Settings but could not find it.",
            "The CSV export stopped including the custom fields column after the last update.",
            "Exporting our full contact list times out after a minute with error {code}.",
        ],
        [
            "Found it, thanks. Is there a way to schedule it monthly?",
            "The export finished but the file is empty.",
        ],
        [
            "Hi {first}, you can export invoices under Billing > Invoices > Download all. The ZIP "
            "contains one PDF per invoice.",
            "Hi {first}, large exports now run in the background; you will get an email with the "
            "download link when it is ready.",
        ],
        ["Reproduced the missing column on staging, filed as bug {code}."],
    ),
    (
        "bug",
        [
            "Dashboard shows a blank page",
            "Error {code} when saving a report",
            "Attachments fail to upload in {browser}",
            "Numbers in the chart do not add up",
        ],
        [
            "When I open the dashboard in {browser} I only see a blank page. It worked yesterday.",
            "Saving a report fails with error {code}. Steps: open Reports, change the date range, "
            "click Save.",
            "Uploading a PDF attachment larger than 5 MB fails silently in {browser}.",
        ],
        [
            "Here is a screenshot of the console errors.",
            "It happens for my colleague too, on a different computer.",
            "Works again after your fix, thanks.",
        ],
        [
            "Hi {first}, thanks for the detailed steps. Our engineers reproduced it and a fix is "
            "scheduled for this week's release.",
            "Hi {first}, the fix for error {code} is live. Could you check on your side?",
        ],
        ["Escalated to engineering as {code}.", "Customer is on the {plan} plan, priority bump."],
    ),
    (
        "feature-request",
        [
            "Feature request: dark mode",
            "Can we get an API for reports?",
            "Request: bulk edit contacts",
            "Suggestion for the mobile app",
        ],
        [
            "Love the product! Any plans for a dark mode? Our team works late.",
            "We would like to pull report data into our BI tool. Is there an API for that?",
            "Editing contacts one by one takes forever. A bulk edit would save us hours.",
        ],
        ["Thanks, please keep me posted.", "Any update on this?"],
        [
            "Hi {first}, thanks for the suggestion! I have added your vote to the request; our "
            "product team reviews these every month.",
            "Hi {first}, good news: it is on the roadmap for next quarter.",
        ],
        ["Logged on the product board, {amount} votes now."],
    ),
    (
        "refund",
        [
            "Refund for unused months",
            "Cancel and refund order {order}",
            "Downgrade from {plan} and refund difference",
        ],
        [
            "We are closing the company and would like a refund for the unused months of our "
            "{plan} subscription.",
            "Please cancel order {order} and refund the {amount} EUR; we ordered by mistake.",
        ],
        ["Thank you, received the refund.", "How long does the refund take?"],
        [
            "Hi {first}, I have cancelled the subscription and refunded {amount} EUR for the "
            "remaining period.",
            "Hi {first}, order {order} is cancelled and refunded in full.",
        ],
        ["Refund approved by Robin, within policy."],
    ),
    (
        "shipping",
        ["Where is my order {order}?", "Package arrived damaged", "Wrong item delivered"],
        [
            "Order {order} was supposed to arrive on {date} but tracking has not changed "
            "for a week.",
            "The package for order {order} arrived with a broken seal and a cracked screen.",
        ],
        ["Tracking now says delivered but nothing is here.", "Photos attached."],
        [
            "Hi {first}, the carrier confirmed a delay at the depot; a replacement ships today.",
            "Hi {first}, sorry about that! A replacement is on its way, no need to return the "
            "damaged one.",
        ],
        ["Carrier claim opened, reference {code}."],
    ),
    (
        "api",
        [
            "API returns 429 too often",
            "Webhook signature does not verify",
            "API token stopped working",
        ],
        [
            "Our integration gets HTTP 429 responses after about 50 requests per minute although "
            "the docs say 120.",
            "The webhook signature check fails for every event since {date}; we use the "
            "secret from the dashboard.",
        ],
        ["Still failing with request id {code}.", "That fixed it, cheers."],
        [
            "Hi {first}, the rate limit on your account was set too low after the plan change; it "
            "is 120 per minute again.",
            "Hi {first}, the signing secret was rotated on {date}. Please copy the new one from "
            "Settings > Webhooks.",
        ],
        ["Checked gateway logs for {code}: rate limiter config mismatch."],
    ),
]


def seed_scale(
    session: Session,
    *,
    tickets: int,
    now: dt.datetime,
    seed: int = 42,
    chunk: int = 2000,
    on_chunk: Callable[[int], None] | None = None,
) -> ScaleSummary:
    """Add `tickets` synthetic tickets (≈5 entries each, spread over two years) in bulk.

    Deterministic for a given `seed`. Also makes sure the demo agents, tags and customers it
    uses exist (customers are reused when seeding again). `on_chunk(done)` is called after each
    chunk of `chunk` tickets has been flushed — the CLI commits there and reports progress.
    Ticket numbers continue the real counter; the search index fills through its triggers.
    Enqueues nothing (no email is sent for synthetic tickets).
    """
    rng = random.Random(seed)
    agent_ids = _ensure_agents(session)
    tag_ids = _ensure_tags(session)
    mailbox_ids = list(session.scalars(sa.select(Mailbox.id).order_by(Mailbox.id)))
    customer_rows = _ensure_customers(session, rng, max(20, tickets // 5))
    total_entries = 0
    first_number: int | None = None
    last_number: int | None = None
    done = 0
    while done < tickets:
        size = min(chunk, tickets - done)
        numbers = _reserve_numbers(session, size)
        first_number = first_number or numbers[0]
        last_number = numbers[-1]
        plans = [
            _plan_ticket(rng, number, now, customer_rows, agent_ids, mailbox_ids, seed)
            for number in numbers
        ]
        with search.bulk_insert(session):
            _bulk_insert(session, Ticket.__table__, [plan.ticket for plan in plans])
            # Numbers are unique: they name the new rows (cheaper than RETURNING row by row).
            by_number = dict(
                session.execute(
                    sa.select(Ticket.number, Ticket.id).where(
                        Ticket.number.between(numbers[0], numbers[-1])
                    )
                )
                .tuples()
                .all()
            )
            ids = [by_number[number] for number in numbers]
            entries = [
                {**entry, "ticket_id": ticket_id}
                for plan, ticket_id in zip(plans, ids, strict=True)
                for entry in plan.entries
            ]
            _bulk_insert(session, Entry.__table__, entries)
            links = [
                {"ticket_id": ticket_id, "tag_id": tag_ids[name]}
                for plan, ticket_id in zip(plans, ids, strict=True)
                for name in plan.tags
            ]
            if links:
                _bulk_insert(session, ticket_tags, links)
        total_entries += len(entries)
        done += size
        session.flush()
        if on_chunk is not None:
            on_chunk(done)
    # Fresh planner statistics: the inbox's index choices depend on them.
    session.execute(sa.text("ANALYZE"))
    return ScaleSummary(done, total_entries, len(customer_rows), first_number, last_number)


@dataclass(slots=True)
class _Plan:
    ticket: dict[str, Any]
    entries: list[dict[str, Any]]
    tags: list[str]


def _bulk_insert(session: Session, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """INSERT many rows at once: an executemany on SQLite, COPY on PostgreSQL.

    On PostgreSQL psycopg's executemany sends one INSERT per row (and the search triggers
    there are statement-level, once per statement), while COPY is one statement for the whole
    chunk. It runs on the session's own connection, inside its transaction.
    """
    if not rows:
        return
    if session.get_bind().dialect.name != "postgresql":
        session.execute(sa.insert(table), rows)
        return
    names = list(rows[0])
    columns = [table.c[name] for name in names]
    driver = session.connection().connection.driver_connection
    quoted = ", ".join(f'"{name}"' for name in names)
    with (
        driver.cursor() as cursor,  # type: ignore[union-attr]
        cursor.copy(f'COPY "{table.name}" ({quoted}) FROM STDIN') as copy,
    ):
        for row in rows:
            copy.write_row([_copy_value(column, row[column.name]) for column in columns])


def _copy_value(column: sa.Column[Any], value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(column.type, sa.JSON):
        return json.dumps(value)
    return value


def _ensure_agents(session: Session) -> list[int]:
    existing = dict(session.execute(sa.select(Agent.email, Agent.id)).tuples().all())
    ids = []
    for name, email in _AGENTS:
        if email not in existing:
            # Nobody knows these passwords: the demo agents are names on tickets.
            created = agents.create_agent(
                session, email=email, name=name, password=secrets.token_urlsafe(24)
            )
            existing[email] = created.id
        ids.append(existing[email])
    return ids


def _ensure_tags(session: Session) -> dict[str, int]:
    existing = dict(session.execute(sa.select(Tag.name, Tag.id)).tuples().all())
    missing = [{"name": name} for name in _TAGS if name not in existing]
    if missing:
        session.execute(sa.insert(Tag), missing)
        existing = dict(session.execute(sa.select(Tag.name, Tag.id)).tuples().all())
    return {name: existing[name] for name in _TAGS}


def _ensure_customers(
    session: Session, rng: random.Random, count: int
) -> list[tuple[int, str, str]]:
    """(id, name, first name) of `count` synthetic customers, created where missing."""
    people: dict[str, tuple[str, str]] = {}
    for i in range(count):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        local = f"{_ascii(first)}.{_ascii(last)}{i}"
        people[f"{local}@{rng.choice(_DOMAINS)}"] = (f"{first} {last}", first)
    emails = list(people)
    ids: dict[str, int] = {}
    for start in range(0, len(emails), 500):
        part = emails[start : start + 500]
        ids.update(
            session.execute(sa.select(Customer.email, Customer.id).where(Customer.email.in_(part)))
            .tuples()
            .all()
        )
    missing = [e for e in emails if e not in ids]
    for start in range(0, len(missing), 2000):
        part = missing[start : start + 2000]
        rows = session.execute(
            sa.insert(Customer.__table__).returning(
                Customer.__table__.c.id, sort_by_parameter_order=True
            ),
            [{"email": e, "name": people[e][0]} for e in part],
        ).scalars()
        ids.update(zip(part, rows, strict=True))
    return [(ids[e], people[e][0], people[e][1]) for e in emails]


def _ascii(name: str) -> str:
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return folded.lower()


def _reserve_numbers(session: Session, count: int) -> list[int]:
    """`count` consecutive ticket numbers, reserved on the counter the app uses."""
    first = reserve(session, "ticket_number", count, start=FIRST_TICKET_NUMBER)
    return list(range(first, first + count))


_PRIORITIES = [Priority.LOW] * 15 + [Priority.NORMAL] * 60 + [Priority.HIGH] * 20
_PRIORITIES += [Priority.URGENT] * 5
_CHANNELS = [Channel.EMAIL] * 70 + [Channel.WEB] * 25 + [Channel.NOTICE] * 5


def _plan_ticket(
    rng: random.Random,
    number: int,
    now: dt.datetime,
    customer_rows: list[tuple[int, str, str]],
    agent_ids: list[int],
    mailbox_ids: list[int],
    seed: int,
) -> _Plan:
    # Recent weeks are busier than two years ago; a few customers write a lot.
    age = dt.timedelta(days=730 * rng.random() ** 1.6, seconds=rng.randrange(86400))
    created = now - age
    customer_id, _name, first = customer_rows[int(len(customer_rows) * rng.random() ** 2)]
    tag, subjects, openings, follow_ups, replies, notes = rng.choice(_TOPICS)
    agent_id = rng.choice(agent_ids)
    values = {
        "order": f"{rng.randrange(10000, 99999)}",
        "amount": f"{rng.randrange(9, 2400)}",
        "plan": rng.choice(_PLANS),
        "browser": rng.choice(_BROWSERS),
        "code": f"{rng.choice('ABCDEFGHKMNPRSTX')}{rng.choice('ABCDEFGHKMNPRSTX')}-"
        f"{rng.randrange(1000, 9999)}",
        "date": (created - dt.timedelta(days=rng.randrange(1, 20))).strftime("%d %B %Y"),
        "first": first,
    }
    subject = rng.choice(subjects).format(**values)
    channel = rng.choice(_CHANNELS)
    priority = rng.choice(_PRIORITIES)

    if age > dt.timedelta(days=14):
        status = rng.choices(
            [Status.CLOSED, Status.SOLVED, Status.PENDING, Status.OPEN], [70, 26, 2, 2]
        )[0]
    else:
        status = rng.choices(
            [Status.NEW, Status.OPEN, Status.PENDING, Status.SOLVED], [20, 35, 20, 25]
        )[0]
    length = 1 if status == Status.NEW else rng.choice([2, 3, 4, 5, 5, 6, 6, 7, 8])

    customer_kind = EntryKind.CUSTOMER_WEB if channel == Channel.WEB else EntryKind.CUSTOMER_EMAIL
    if channel == Channel.NOTICE:
        customer_kind = EntryKind.CUSTOMER_EMAIL
    entries: list[dict[str, Any]] = []
    at = created
    first_response = None
    last_public = ""
    from_customer = True
    for k in range(length):
        if k:
            # Minutes to a day or so later, but never in the future: recent tickets'
            # conversations end somewhere in the last hours, not all at "now".
            latest = now - dt.timedelta(seconds=rng.randrange(60, 6 * 3600))
            at = max(at, min(latest, at + dt.timedelta(minutes=rng.randrange(5, 60 * 30))))
        if k and rng.random() < 0.12:
            kind, body = EntryKind.INTERNAL_NOTE, rng.choice(notes)
        elif from_customer:
            kind = customer_kind
            body = rng.choice(openings if k == 0 else follow_ups)
            body = f"Hi,\n\n{body}\n\nThanks,\n{first}"
            from_customer = False
        else:
            kind = EntryKind.AGENT_REPLY
            body = rng.choice(replies) + "\n\nBest regards,\nSupport team"
            first_response = first_response or at
            from_customer = True
        body = body.format(**values)
        if kind.is_public:
            last_public = body
        is_email = kind == EntryKind.CUSTOMER_EMAIL
        entries.append(
            {
                "kind": kind,
                "author_agent_id": None if kind.is_from_customer else agent_id,
                "author_customer_id": customer_id if kind.is_from_customer else None,
                "subject": (subject if k == 0 else f"Re: {subject}") if is_email else "",
                "body_text": body,
                "message_id": f"demo-{seed}-{number}-{k}@mail.example" if is_email else None,
                "threaded_by": ("new ticket" if k == 0 else "subject token") if is_email else "",
                "flags": [],
                "created_at": at,
            }
        )
    solved_at = at if status in (Status.SOLVED, Status.CLOSED) else None
    assigned = status != Status.NEW and rng.random() < 0.85
    tags = [tag] if rng.random() < 0.6 else []
    if rng.random() < 0.05:
        tags.append("vip")
    ticket = {
        "number": number,
        "subject": subject,
        "status": status,
        "priority": priority,
        "channel": channel,
        "customer_id": customer_id,
        "assignee_id": agent_id if assigned else None,
        "mailbox_id": rng.choice(mailbox_ids) if mailbox_ids and channel == Channel.EMAIL else None,
        "preview": conversation.preview_of(last_public),
        "created_at": created,
        "updated_at": at,
        "first_response_at": first_response,
        "solved_at": solved_at,
        "closed_at": at + dt.timedelta(days=4) if status == Status.CLOSED else None,
    }
    return _Plan(ticket, entries, sorted(set(tags)))
