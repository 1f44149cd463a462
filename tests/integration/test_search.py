"""Full-text search (ticketing.search behind services.inbox.search_tickets and /tickets?q=).

Runs on SQLite (FTS5) and PostgreSQL (tsvector + GIN): same behaviour from either engine.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from ticketing import search
from ticketing.errors import Invalid
from ticketing.models import Channel, Counter, Entry, EntryKind, Status, Ticket
from ticketing.services import conversation, customers, demo
from ticketing.services import inbox as queries
from ticketing.services.inbox import Filters

NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)

# A sample of the Big List of Naughty Strings, written inline, plus search-syntax attacks.
HOSTILE = [
    "",
    " ",
    "%",
    "_",
    "%_%",
    '"',
    "'",
    "''",
    '"unclosed',
    "*",
    "card*",
    "NEAR(",
    "NEAR(card declined, 2)",
    "-",
    "-card",
    "OR",
    "card OR 1=1",
    "AND NOT",
    "subject:card",
    "{subject}: card",
    "^card",
    "card + declined",
    "(",
    ")",
    "\\",
    "\\x00",
    "\x00",
    "card\x00declined",
    "' OR '1'='1",
    "'; DROP TABLE tickets; --",
    "1; SELECT pg_sleep(5)",
    "<script>alert(1)</script>",
    "{{7*7}}",
    "${7*7}",
    "%s%s%s%n",
    "undefined",
    "null",
    "NaN",
    "-1e309",
    "0x0",
    "ÅÍÎÏ˝ÓÔÒÚÆ☃",
    "Œ„´‰ˇÁ¨ˆØ∏”’",  # noqa: RUF001
    "田中さんにあげて下さい",
    "和製漢語",
    "사회과학원 어학연구소",
    "ثم نفس سقطت وبالتحديد",
    "בְּרֵאשִׁית, בָּרָא",
    "Ṱ̺̺̕o͞ ̷i̲̬͇̪͙n̝̗͕v̟̜̘̦͟o̶̙̰̠kè͚̮̺̪̹̱̤ ̖t̝͕̳̣̻̪͞h̼͓̲̦̳̘̲e͇̣̰̦̬͎ ̢̼̻̱̘h͚͎͙̜̣̲ͅi̦̲̣̰̤v̻͍e̺̭̳̪̰-m̢iͅn̖̺̞̲̯̰d̵̼̟͙̩̼̘̳",
    "😍 👩🏽 👨‍🦰",
    "\u202etest\u202e",
    "\u200b",
    "\ufeff",
    "\ud800",
    "ﾟ･✿ヾ╲(｡◕‿◕｡)╱✿･ﾟ",  # noqa: RUF001
    "card declined " * 200,
    "x" * 10_000,
    "word " * 2_000,
    "a" * 3000 + " " + "b" * 3000,
]


def make(db_session, subject, body, *, email="ann@example.com", name="Ann", at=NOW):
    customer = customers.find_or_create(db_session, email=email, name=name)
    ticket = conversation.open_ticket(
        db_session, customer=customer, subject=subject, channel=Channel.EMAIL, now=at
    )
    conversation.add_customer_message(
        ticket, author=customer, kind=EntryKind.CUSTOMER_EMAIL, body_text=body, now=at
    )
    db_session.commit()
    return ticket


def found(db_session, agent, text, **filters):
    tickets = queries.search_tickets(db_session, text, agent=agent, filters=Filters(**filters))
    return [t.subject for t in tickets]


@pytest.fixture
def corpus(db_session):
    return {
        "card": make(
            db_session,
            "Card declined when renewing",
            "My card was declined twice this morning.",
            email="maria.lopez@example.com",
            name="María López",
        ),
        "export": make(
            db_session,
            "How do I export my invoices?",
            "Our accountant needs every invoice as PDF. Is there a bulk download?",
            email="tom@northwind.example",
            name="Tom Becker",
        ),
        "password": make(
            db_session,
            "Password reset email never arrives",
            "I requested a reset three times; nothing arrives, not even in spam.",
            email="yuki@example.jp",
            name="Yuki Tanaka",
        ),
    }


def test_search_finds_tickets_by_subject_and_body_words(db_session, agent, corpus):
    assert found(db_session, agent, "declined") == ["Card declined when renewing"]
    assert found(db_session, agent, "accountant") == ["How do I export my invoices?"]
    # Stemmed on both engines: "invoices" in the subject, "invoice" in the body.
    assert found(db_session, agent, "invoice") == ["How do I export my invoices?"]
    assert found(db_session, agent, "DECLINE") == ["Card declined when renewing"]
    # Every word must match.
    assert found(db_session, agent, "reset spam") == ["Password reset email never arrives"]
    assert found(db_session, agent, "reset invoice") == []
    assert found(db_session, agent, "nonexistentword") == []


def test_search_finds_the_customer_by_name_and_email(db_session, agent, corpus):
    assert found(db_session, agent, "Becker") == ["How do I export my invoices?"]
    assert found(db_session, agent, "yuki@example.jp") == ["Password reset email never arrives"]
    assert found(db_session, agent, "López") == ["Card declined when renewing"]


def test_search_follows_new_entries_replies_and_notes(db_session, agent, corpus):
    ticket = corpus["export"]
    assert found(db_session, agent, "spreadsheet") == []
    conversation.add_customer_message(
        ticket,
        author=ticket.customer,
        kind=EntryKind.CUSTOMER_EMAIL,
        body_text="Could it be a spreadsheet instead?",
        now=NOW,
    )
    db_session.commit()
    assert found(db_session, agent, "spreadsheet") == ["How do I export my invoices?"]
    conversation.add_note(ticket, actor=agent, body_text="Escalated to the xylophone team", now=NOW)
    conversation.reply(ticket, actor=agent, body_text="Try the quokka exporter", now=NOW)
    db_session.commit()
    assert found(db_session, agent, "xylophone") == ["How do I export my invoices?"]
    assert found(db_session, agent, "quokka") == ["How do I export my invoices?"]


def test_search_follows_subject_customer_and_moved_or_deleted_entries(db_session, agent, corpus):
    card, export = corpus["card"], corpus["export"]
    card.subject = "Payment trouble"
    db_session.commit()
    assert found(db_session, agent, "renewing") == []
    assert found(db_session, agent, "payment") == ["Payment trouble"]

    card.customer.name = "Maria Zebrowski"
    db_session.commit()
    assert found(db_session, agent, "Zebrowski") == ["Payment trouble"]

    # An entry moved to another ticket (detach/merge) takes its words along.
    entry = db_session.scalars(card.entries.select()).one()
    entry.ticket_id = export.id
    db_session.commit()
    assert found(db_session, agent, "twice") == ["How do I export my invoices?"]
    db_session.delete(entry)
    db_session.commit()
    assert found(db_session, agent, "twice") == []
    assert found(db_session, agent, "accountant") == ["How do I export my invoices?"]


def test_search_ranks_subject_matches_first(db_session, agent):
    make(db_session, "Question about my account", "The refund has not arrived yet.")
    make(db_session, "Refund for order 1234", "Please send the money back.")
    make(db_session, "Another thing", "Nothing to do with it.")
    assert found(db_session, agent, "refund") == [
        "Refund for order 1234",
        "Question about my account",
    ]


@pytest.mark.only_database("sqlite")  # PostgreSQL ranks every match (no window)
def test_search_ranks_within_the_most_recent_matches(db_session, agent, monkeypatch):
    make(db_session, "Oldest: refund refund refund", "refund")
    make(db_session, "Middle", "about a refund")
    make(db_session, "Newest", "another refund")
    assert len(found(db_session, agent, "refund")) == 3
    monkeypatch.setattr(search, "RANK_WINDOW", 2)
    # A word in very many tickets: only the most recent ones are ranked (bounded cost).
    assert sorted(found(db_session, agent, "refund")) == ["Middle", "Newest"]


def test_picky_filters_look_further_down_the_ranking(db_session, agent):
    for i in range(5):
        make(db_session, f"Refund number {i}", "refund refund")
    solved = make(db_session, "Something else", "a refund, once")
    solved.status = Status.SOLVED
    db_session.commit()
    picky = Filters(status=Status.SOLVED)
    best = queries.search_tickets(db_session, "refund", agent=agent, filters=picky, limit=1)
    assert [t.subject for t in best] == ["Something else"]


def test_search_leaves_merged_tickets_out_and_applies_filters(db_session, agent, corpus):
    corpus["password"].merged_into_id = corpus["card"].id
    corpus["export"].status = Status.SOLVED
    db_session.commit()
    assert found(db_session, agent, "spam") == []
    assert found(db_session, agent, "invoice") == ["How do I export my invoices?"]
    assert found(db_session, agent, "invoice", status=Status.OPEN) == []
    assert found(db_session, agent, "invoice", status=Status.SOLVED) != []
    assert found(db_session, agent, "invoice", tag="nope") == []


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_search_text_is_just_text(db_session, agent, corpus, text):
    result = queries.search_tickets(db_session, text, agent=agent)
    assert isinstance(result, list)
    assert db_session.scalar(sa.select(sa.func.count(Ticket.id))) == 3


def test_hostile_search_text_over_http(login, agent, corpus):
    client = login(agent)
    for text in HOSTILE:
        if text == "\ud800":
            continue  # not encodable; sent below as raw invalid UTF-8
        response = client.get("/tickets", query_string={"q": text, "view": "all"})
        assert response.status_code == 200, repr(text[:40])
        html = response.get_data(as_text=True)
        assert "<script>alert(1)</script>" not in html
    for raw in ["%ED%A0%80", "%FF%FE", "%C0%AF", "%00", "%25%5F%22%27"]:
        assert client.get(f"/tickets?q={raw}").status_code == 200, raw
    # Syntax characters around a real word still find it, and never widen the match.
    for text in ['"declined"', "declined*", "-declined", "(declined)", "declined OR spam"]:
        response = client.get("/tickets", query_string={"q": text})
        assert response.status_code == 200
    html = client.get("/tickets", query_string={"q": "declined OR spam"}).get_data(as_text=True)
    assert "Card declined" not in html  # "or" is a word to find, not an operator


def test_search_page_shows_results_and_keeps_the_query(login, agent, corpus):
    client = login(agent)
    html = client.get("/tickets?q=declined").get_data(as_text=True)
    assert "Search results" in html
    assert "Card declined when renewing" in html and "export my invoices" not in html
    assert 'value="declined"' in html
    assert f'data-ticket-number="{corpus["card"].number}"' in html
    html = client.get("/tickets?q=zzzqqq").get_data(as_text=True)
    assert "No tickets match" in html


def test_query_words_are_quoted_for_fts5():
    assert search.terms('card "declined" NEAR( x* -y OR') == [
        "card", "declined", "NEAR", "x", "y", "OR",
    ]  # fmt: skip
    assert search.fts5_query(["card", 'a"b']) == '"card" "a""b"'
    assert search.terms("%_%") == []
    assert search.terms("ann@example.com v2.3") == ["ann@example.com", "v2.3"]
    assert len(search.terms(" ".join(f"w{i}" for i in range(5000)))) == search.MAX_TERMS
    assert search.terms("Card card CARD") == ["Card"]


def test_every_search_trigger_exists_after_the_migrations(db_session):
    """A later SQLite batch migration that recreates a table would silently drop these."""
    if db_session.get_bind().dialect.name == "sqlite":
        names = set(
            db_session.scalars(sa.text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
        )
        expected = set(search.TRIGGERS) | set(search.SQLITE_ONLY_TRIGGERS)
    else:
        names = set(
            db_session.scalars(sa.text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"))
        )
        expected = set(search.TRIGGERS)
    assert expected <= names


def _assert_index_consistent(db_session):
    """Every ticket has exactly the document the triggers would build from scratch."""
    tickets = db_session.scalar(sa.select(sa.func.count(Ticket.id)))
    if db_session.get_bind().dialect.name == "sqlite":
        rows = db_session.scalar(sa.text("SELECT count(*) FROM ticket_search"))
        db_session.execute(
            sa.text("INSERT INTO ticket_search(ticket_search) VALUES ('integrity-check')")
        )
        mismatched = db_session.scalar(
            sa.text(
                "SELECT count(*) FROM tickets t JOIN customers c ON c.id = t.customer_id "
                "LEFT JOIN ticket_search s ON s.rowid = t.id "
                "WHERE s.rowid IS NULL OR s.subject <> t.subject "
                "OR s.customer <> c.name || ' ' || c.email "
                "OR ltrim(s.body, char(10)) <> coalesce((SELECT group_concat(body_text, char(10)) "
                "  FROM (SELECT body_text FROM entries WHERE ticket_id = t.id "
                "        AND kind <> 'system_event' AND body_text <> '' ORDER BY id)), '')"
            )
        )
    else:
        rows = db_session.scalar(sa.text("SELECT count(*) FROM ticket_search"))
        mismatched = db_session.scalar(
            sa.text(
                "SELECT count(*) FROM tickets t LEFT JOIN ticket_search s ON s.ticket_id = t.id "
                "WHERE s.ticket_id IS NULL "
                "OR strip(s.document) <> strip(handoff_ticket_document(t.id))"
            )
        )
    assert rows == tickets
    assert mismatched == 0


def test_demo_seed_at_scale_keeps_search_and_numbers_consistent(runner, db_session, agent):
    before = make(db_session, "Existing ticket", "Before the seed.")
    result = runner.invoke(args=["demo", "seed", "--tickets", "300"])
    assert result.exit_code == 0, result.output
    assert "Added 300 tickets" in result.output
    db_session.expire_all()
    demo_tickets = 4  # `demo seed` also creates the small hand-written demo once
    assert db_session.scalar(sa.select(sa.func.count(Ticket.id))) == 1 + demo_tickets + 300
    entries = db_session.scalar(sa.select(sa.func.count(Entry.id)))
    assert 1200 < entries < 2200  # about five per ticket
    numbers = list(db_session.scalars(sa.select(Ticket.number).order_by(Ticket.number)))
    assert numbers == list(range(before.number, before.number + len(numbers)))
    counter = db_session.get(Counter, "ticket_number")
    assert counter.value == numbers[-1]
    _assert_index_consistent(db_session)

    # The next real ticket continues the numbering, and is searchable at once.
    after = make(db_session, "After the seed", "A brand new zanzibar question.")
    assert after.number == numbers[-1] + 1
    assert found(db_session, agent, "zanzibar") == ["After the seed"]
    # Synthetic tickets are findable, and spread over statuses, priorities and channels.
    assert found(db_session, agent, "invoice")
    seeded = db_session.scalars(sa.select(Ticket).where(Ticket.number > before.number)).all()
    assert {t.status for t in seeded} == set(Status)
    assert len({t.priority for t in seeded}) == 4 and len({t.channel for t in seeded}) == 3
    assert any(t.tags for t in seeded) and any(t.assignee_id for t in seeded)
    spread = max(t.created_at for t in seeded) - min(t.created_at for t in seeded)
    assert spread > dt.timedelta(days=300)


def test_demo_seed_is_deterministic_and_reuses_its_customers(db_session):
    first = demo.seed_scale(db_session, tickets=25, now=NOW, seed=7)
    second = demo.seed_scale(db_session, tickets=25, now=NOW, seed=7)
    db_session.commit()
    assert first.customers == second.customers

    def subjects(low, high):
        return list(
            db_session.scalars(
                sa.select(Ticket.subject)
                .where(Ticket.number.between(low, high))
                .order_by(Ticket.number)
            )
        )

    assert subjects(first.first_number, first.last_number) == subjects(
        second.first_number, second.last_number
    )
    _assert_index_consistent(db_session)


# -- paging through search results ---------------------------------------------------------


def test_search_pages_through_every_match_once_in_rank_order(db_session, agent):
    # Three strong matches (the word in the subject) and five equal weaker ones: the strong
    # come first, and the tie among the weak ones is broken by ticket id, newest first.
    strong = [make(db_session, f"Refund {i}", "refund refund") for i in range(3)]
    weak = [make(db_session, f"Question {i}", "and a refund") for i in range(5)]
    weak[2].status = Status.SOLVED  # filtered out below
    db_session.commit()
    pages, cursor = [], None
    while True:
        page = queries.search_page(
            db_session, "refund", agent=agent, cursor=cursor, limit=2,
            filters=Filters(status=Status.NEW),
        )  # fmt: skip
        pages.append([t.subject for t in page.tickets])
        cursor = page.next_cursor
        if cursor is None:
            break
    shown = [subject for page in pages for subject in page]
    assert sorted(shown[:3]) == sorted(t.subject for t in strong)
    assert shown[3:] == [f"Question {i}" for i in (4, 3, 1, 0)]
    assert [len(p) for p in pages] == [2, 2, 2, 1]


def test_search_cursors_are_checked(db_session, agent):
    for i in range(3):
        make(db_session, f"Refund {i}", "refund")
    first = queries.search_page(db_session, "refund", agent=agent, limit=1)
    assert first.next_cursor
    # A list cursor is not a search cursor, and the other way round; junk is refused.
    listed = queries.list_tickets(db_session, view=queries.View.ALL, agent=agent, limit=1)
    for bad in [listed.next_cursor, "c2VhcmNofDA", "c2VhcmNofDk5OTk5", "x" * 100, "%%%"]:
        with pytest.raises(Invalid):
            queries.search_page(db_session, "refund", agent=agent, cursor=bad)
    with pytest.raises(Invalid):
        queries.list_tickets(
            db_session, view=queries.View.ALL, agent=agent, cursor=first.next_cursor
        )


def test_inbox_search_results_have_a_more_results_link(login, agent, db_session):
    for i in range(queries.PAGE_SIZE + 3):
        make(db_session, f"Refund {i}", "refund", at=NOW + dt.timedelta(minutes=i))
    client = login(agent)
    html = client.get("/tickets?q=refund").get_data(as_text=True)
    assert html.count("data-ticket-number=") == queries.PAGE_SIZE
    assert "Best matches" in html and "More results" in html
    more = html.split('<p class="more"><a href="')[1].split('"')[0].replace("&amp;", "&")
    html = client.get(more).get_data(as_text=True)
    assert html.count("data-ticket-number=") == 3 and "More results" not in html
    assert client.get("/tickets?q=refund&after=bogus").status_code == 400
