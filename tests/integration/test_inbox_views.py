"""Inbox views, filters, sorts, keyset pages and counts (services.inbox and the /tickets page)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa

from ticketing.errors import Invalid
from ticketing.models import Channel, EntryKind, Mailbox, Priority, Status, Tag, Ticket
from ticketing.services import agents, conversation, customers, demo
from ticketing.services import inbox as queries
from ticketing.services.inbox import Filters, Sort, View

NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


def make(
    db_session,
    subject,
    *,
    at=NOW,
    status=Status.OPEN,
    priority=Priority.NORMAL,
    channel=Channel.EMAIL,
    assignee=None,
    email="ann@example.com",
    mailbox_id=None,
    tags=(),
    updated=None,
):
    customer = customers.find_or_create(db_session, email=email, name=email.split("@")[0])
    ticket = conversation.open_ticket(
        db_session,
        customer=customer,
        subject=subject,
        channel=channel,
        priority=priority,
        now=at,
        mailbox_id=mailbox_id,
    )
    conversation.add_customer_message(
        ticket, author=customer, kind=EntryKind.CUSTOMER_EMAIL, body_text=f"About {subject}", now=at
    )
    ticket.status = status
    ticket.assignee = assignee
    ticket.updated_at = updated or at
    for name in tags:
        tag = db_session.scalar(sa.select(Tag).where(Tag.name == name)) or Tag(name=name)
        ticket.tags.append(tag)
    db_session.commit()
    return ticket


def subjects(page_or_list):
    tickets = page_or_list.tickets if hasattr(page_or_list, "tickets") else page_or_list
    return [t.subject for t in tickets]


@pytest.fixture
def other(db_session):
    created = agents.create_agent(
        db_session, email="sam@example.com", name="Sam", password="another long password"
    )
    db_session.commit()
    return created


@pytest.fixture
def helpdesk(db_session, agent, other):
    """A small helpdesk: every status, both agents, a merged ticket, priorities, channels."""
    box = Mailbox(name="sales", address="sales@example.com", is_active=False)
    db_session.add(box)
    db_session.flush()
    t = {}
    t["new"] = make(db_session, "New one", status=Status.NEW, at=NOW)
    t["mine"] = make(
        db_session, "Mine open", assignee=agent, priority=Priority.HIGH, tags=["billing"],
        at=NOW - dt.timedelta(hours=1),
    )  # fmt: skip
    t["theirs"] = make(
        db_session, "Sam's open", assignee=other, channel=Channel.WEB,
        at=NOW - dt.timedelta(hours=2),
    )  # fmt: skip
    t["pending"] = make(
        db_session, "Waiting on customer", status=Status.PENDING, assignee=agent,
        priority=Priority.URGENT, mailbox_id=box.id, at=NOW - dt.timedelta(hours=3),
    )  # fmt: skip
    t["solved"] = make(
        db_session, "Solved one", status=Status.SOLVED, tags=["billing", "vip"],
        at=NOW - dt.timedelta(days=2),
    )  # fmt: skip
    t["closed"] = make(
        db_session, "Closed one", status=Status.CLOSED, at=NOW - dt.timedelta(days=3)
    )
    t["merged"] = make(
        db_session, "Merged away", status=Status.OPEN, at=NOW + dt.timedelta(hours=1)
    )
    t["merged"].merged_into_id = t["mine"].id
    db_session.commit()
    return t | {"mailbox": box}


def test_each_view_lists_its_tickets_newest_first(db_session, agent, helpdesk):
    def listed(view):
        return subjects(queries.list_tickets(db_session, view=view, agent=agent))

    assert listed(View.MINE) == ["Mine open", "Waiting on customer"]
    assert listed(View.UNASSIGNED) == ["New one"]
    assert listed(View.OPEN) == ["New one", "Mine open", "Sam's open"]
    assert listed(View.PENDING) == ["Waiting on customer"]
    assert listed(View.SOLVED) == ["Solved one", "Closed one"]
    assert listed(View.ALL) == [
        "New one", "Mine open", "Sam's open", "Waiting on customer", "Solved one", "Closed one",
    ]  # fmt: skip


def test_counts_per_view_leave_merged_tickets_out(db_session, agent, helpdesk):
    counts = queries.view_counts(db_session, agent=agent)
    assert counts == {
        View.MINE: 2,
        View.UNASSIGNED: 1,
        View.OPEN: 3,
        View.PENDING: 1,
        View.SOLVED: 2,
        View.ALL: 6,
    }


def test_counts_stop_at_the_cap(db_session, agent, helpdesk, monkeypatch):
    monkeypatch.setattr(queries, "COUNT_CAP", 2)
    counts = queries.view_counts(db_session, agent=agent)
    # "more than the cap" is cap + 1, whatever the real number
    assert counts[View.ALL] == 3 and counts[View.OPEN] == 3 and counts[View.MINE] == 2


def test_merged_tickets_never_show(db_session, agent, helpdesk):
    for view in View:
        page = queries.list_tickets(db_session, view=view, agent=agent)
        assert "Merged away" not in subjects(page)


@pytest.mark.parametrize(
    ("view", "filters", "expected"),
    [
        (View.ALL, Filters(status=Status.PENDING), ["Waiting on customer"]),
        (View.OPEN, Filters(status=Status.PENDING), []),
        (View.ALL, Filters(priority=Priority.URGENT), ["Waiting on customer"]),
        (View.ALL, Filters(assignee="me"), ["Mine open", "Waiting on customer"]),
        (View.OPEN, Filters(assignee="none"), ["New one"]),
        (View.ALL, Filters(channel=Channel.WEB), ["Sam's open"]),
        (View.ALL, Filters(tag="billing"), ["Mine open", "Solved one"]),
        (View.SOLVED, Filters(tag="vip"), ["Solved one"]),
        (View.ALL, Filters(tag="no-such-tag"), []),
        (View.ALL, Filters(status=Status.OPEN, tag="billing"), ["Mine open"]),
    ],
)
def test_filters_narrow_a_view(db_session, agent, helpdesk, view, filters, expected):
    page = queries.list_tickets(db_session, view=view, agent=agent, filters=filters)
    assert subjects(page) == expected


def test_filter_by_assignee_id_and_mailbox(db_session, agent, other, helpdesk):
    by_sam = queries.list_tickets(
        db_session, view=View.ALL, agent=agent, filters=Filters(assignee=other.id)
    )
    assert subjects(by_sam) == ["Sam's open"]
    by_box = queries.list_tickets(
        db_session, view=View.ALL, agent=agent, filters=Filters(mailbox_id=helpdesk["mailbox"].id)
    )
    assert subjects(by_box) == ["Waiting on customer"]


def _expected_order(tickets, sort):
    if sort == Sort.CREATED:
        key = lambda t: (t.created_at, t.id)  # noqa: E731
    elif sort == Sort.PRIORITY:
        key = lambda t: (t.priority.rank, t.updated_at, t.id)  # noqa: E731
    else:
        key = lambda t: (t.updated_at, t.id)  # noqa: E731
    return [t.number for t in sorted(tickets, key=key, reverse=True)]


@pytest.mark.parametrize("sort", list(Sort))
@pytest.mark.parametrize("view", [View.ALL, View.OPEN])
def test_keyset_pages_cover_every_ticket_once_in_order(db_session, agent, sort, view):
    priorities = list(Priority)
    statuses = [Status.NEW, Status.OPEN, Status.PENDING, Status.SOLVED, Status.CLOSED]
    made = []
    for i in range(23):
        # Repeated timestamps: the id must break ties, in every sort.
        at = NOW - dt.timedelta(hours=i // 3)
        made.append(
            make(
                db_session,
                f"Ticket {i}",
                at=NOW - dt.timedelta(hours=(i * 7) % 11),
                updated=at,
                status=statuses[i % 5],
                priority=priorities[(i * 3) % 4],
            )
        )
    in_view = [t for t in made if t.status in view.statuses]
    numbers, cursor, pages = [], None, 0
    while True:
        page = queries.list_tickets(
            db_session, view=view, agent=agent, sort=sort, cursor=cursor, limit=4
        )
        numbers += [t.number for t in page.tickets]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
        assert pages < 20
    assert numbers == _expected_order(in_view, sort)
    assert pages == -(-len(in_view) // 4)


def test_cursors_are_checked(db_session, agent, helpdesk):
    page = queries.list_tickets(db_session, view=View.ALL, agent=agent, limit=2)
    assert page.next_cursor
    with pytest.raises(Invalid):  # a cursor from another sort is not misread
        queries.list_tickets(
            db_session, view=View.ALL, agent=agent, sort=Sort.PRIORITY, cursor=page.next_cursor
        )
    for bad in ["x", "' OR 1=1--", "dXwyMDI2LTExLTIzfDE", "A" * 5000, "cHw5fDIwMjYtMTEtMjNUMDk6MDA6MDArMDA6MDB8MQ"]:  # fmt: skip
        with pytest.raises(Invalid):
            queries.list_tickets(db_session, view=View.ALL, agent=agent, cursor=bad)


def test_filters_parse_only_the_listed_values():
    assert Filters.parse({}) == Filters()
    assert Filters.parse({"status": "open", "priority": "", "assignee": "me"}) == Filters(
        status=Status.OPEN, assignee="me"
    )
    assert Filters.parse({"assignee": "12", "mailbox": "3", "tag": " VIP "}) == Filters(
        assignee=12, mailbox_id=3, tag="vip"
    )
    for bad in [
        {"status": "x' OR '1'='1"},
        {"priority": "customer__password_hash"},
        {"channel": "fax"},
        {"assignee": "-1"},
        {"assignee": "99999999999999999999999"},
        {"assignee": "\uff11\uff12"},  # full-width digits
        {"mailbox": "0"},
        {"tag": "a" * 51},
        {"tag": "bad\x00tag"},
    ]:
        with pytest.raises(Invalid):
            Filters.parse(bad)
    assert Sort.parse("customer__password_hash") == Sort.UPDATED
    assert Sort.parse("-mailbox__imap_password") == Sort.UPDATED
    assert Sort.parse("priority") == Sort.PRIORITY


@pytest.mark.only_database("sqlite")  # plan shapes are SQLite's EXPLAIN QUERY PLAN
def test_pages_are_ordered_index_range_scans_on_sqlite(db_session, agent):
    """Every per-status scan reads an inbox index in order: no sort of the whole view."""
    demo.seed_scale(db_session, tickets=400, now=NOW, seed=3)  # runs ANALYZE
    db_session.commit()
    plans: list[list[tuple]] = []

    @sa.event.listens_for(db_session.get_bind(), "before_cursor_execute")
    def _explain(conn, cursor, statement, parameters, context, executemany):
        if " AS heads" in statement and not statement.startswith("EXPLAIN"):
            plans.append(conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all())

    try:
        for sort in Sort:
            page = queries.list_tickets(db_session, view=View.SOLVED, agent=agent, sort=sort)
            queries.list_tickets(
                db_session, view=View.SOLVED, agent=agent, sort=sort, cursor=page.next_cursor
            )
    finally:
        sa.event.remove(db_session.get_bind(), "before_cursor_execute", _explain)
    assert plans
    for plan in plans:
        children: dict[int, list[str]] = {}
        for _node, parent, _, detail in plan:
            children.setdefault(parent, []).append(detail)
        nodes = {node: detail for node, _, _, detail in plan}
        scans = 0
        for node, details in children.items():
            if any(d.startswith("SEARCH tickets USING INDEX") for d in details):
                scans += 1
                text = " / ".join(details)
                assert "ix_tickets_inbox_" in text, text
                # each status's scan reads its index in order: no sort of the whole view
                assert "TEMP B-TREE" not in text, (nodes.get(node), text)
        assert scans == 2  # solved and closed


# -- the page -----------------------------------------------------------------------------------


def test_inbox_page_has_labelled_search_filters_and_sort(login, agent, helpdesk):
    html = login(agent).get("/tickets?view=all").get_data(as_text=True)
    for label in ["Search tickets", "Status", "Priority", "Assignee", "Channel", "Mailbox", "Tag", "Sort by"]:  # fmt: skip
        assert re.search(rf"<label[^>]*>\s*{label}", html), label
    assert 'type="search"' in html and 'name="q"' in html
    numbers = re.findall(r'<tr data-ticket-number="(\d+)"', html)
    assert len(numbers) == 6
    assert str(helpdesk["merged"].number) not in numbers


def test_inbox_page_filters_and_sorts(login, agent, helpdesk):
    client = login(agent)
    html = client.get("/tickets?view=all&priority=urgent").get_data(as_text=True)
    assert "Waiting on customer" in html and "Mine open" not in html
    html = client.get("/tickets?view=all&sort=priority").get_data(as_text=True)
    order = re.findall(r'<tr data-ticket-number="(\d+)"', html)
    assert order[:2] == [str(helpdesk["pending"].number), str(helpdesk["mine"].number)]
    html = client.get("/tickets?view=open&tag=billing").get_data(as_text=True)
    assert "Mine open" in html and "Solved one" not in html


def test_injected_sort_and_filter_values_never_reach_sql(login, agent, helpdesk):
    client = login(agent)
    default = client.get("/tickets?view=all").get_data(as_text=True)
    default_rows = re.findall(r'data-ticket-number="(\d+)"', default)
    for query in [
        "sort=customer__password_hash",
        "sort=-mailbox__imap_password",
        "sort=updated_at;DROP TABLE tickets",
        "status[]=open&status[]=x%27%20OR%20%271%27=%271",
        "order_by=password_hash",
        "view=customer__password_hash",
    ]:
        response = client.get(f"/tickets?view=all&{query}")
        assert response.status_code == 200, query
        rows = re.findall(r'data-ticket-number="(\d+)"', response.get_data(as_text=True))
        if not query.startswith("view="):
            assert rows == default_rows, query
    for query in [
        "status=x%27%20OR%20%271%27=%271",
        "priority=customer__password_hash",
        "assignee=1%20OR%201=1",
        "mailbox=99999999999999999999999999",
        "channel=%00",
        "tag=%00",
    ]:
        response = client.get(f"/tickets?view=all&{query}")
        assert response.status_code == 400, query
        assert "Traceback" not in response.get_data(as_text=True)


def test_older_link_keeps_sort_and_filters(login, agent, db_session):
    for i in range(55):
        make(db_session, f"Question {i:02d}", at=NOW + dt.timedelta(minutes=i), tags=["vip"])
    client = login(agent)
    first = client.get("/tickets?view=all&sort=created&tag=vip").get_data(as_text=True)
    link = re.search(r'href="(/tickets\?[^"]*after=[^"]+)"', first).group(1).replace("&amp;", "&")
    assert "sort=created" in link and "tag=vip" in link
    second = client.get(link).get_data(as_text=True)
    assert "Question 04" in second and "Question 54" not in second
    assert len(re.findall(r"data-ticket-number=", second)) == 5


def test_counts_show_a_cap(login, agent, helpdesk, monkeypatch):
    monkeypatch.setattr(queries, "COUNT_CAP", 2)
    html = login(agent).get("/tickets").get_data(as_text=True)
    assert '<span class="count">2+</span>' in html


def test_empty_views_say_so(login, agent, db_session):
    client = login(agent)
    assert "Enjoy the calm" in client.get("/tickets?view=mine").get_data(as_text=True)
    html = client.get("/tickets?view=all&priority=urgent").get_data(as_text=True)
    assert "No tickets match these filters" in html


def test_unknown_ticket_ids_in_filters_find_nothing(db_session, agent, helpdesk):
    page = queries.list_tickets(
        db_session, view=View.ALL, agent=agent, filters=Filters(assignee=2**31 - 1)
    )
    assert page.tickets == [] and page.next_cursor is None
    assert db_session.scalar(sa.select(sa.func.count(Ticket.id))) == 7


# -- htmx: the inbox as a partial ------------------------------------------------------------


def test_htmx_requests_get_the_inbox_alone_with_its_title(login, agent, helpdesk):
    client = login(agent)
    full = client.get("/tickets?view=all&channel=web")
    assert "HX-Request" in full.headers.get("Vary", "")
    assert "<html" in full.get_data(as_text=True)

    partial = client.get("/tickets?view=all&channel=web", headers={"HX-Request": "true"})
    html = partial.get_data(as_text=True)
    assert partial.status_code == 200 and "HX-Request" in partial.headers.get("Vary", "")
    assert "<html" not in html and 'class="topbar"' not in html
    assert html.lstrip().startswith("<title>All tickets · Handoff</title>")
    assert '<div class="inbox" id="inbox"' in html
    assert 'id="filter-channel"' in html and '<span class="count">' in html
    assert "Sam&#39;s open" in html and "New one" not in html

    # Search results, and their title, come the same way; the text is escaped.
    html = client.get("/tickets?q=%3Cb%3Eone", headers={"HX-Request": "true"}).get_data(
        as_text=True
    )
    assert "<title>Search: &lt;b&gt;one · Handoff</title>" in html

    # Back/forward after htmx swaps: a history restore gets the whole page.
    restore = client.get(
        "/tickets?view=all",
        headers={"HX-Request": "true", "HX-History-Restore-Request": "true"},
    )
    assert "<html" in restore.get_data(as_text=True)


def test_every_inbox_link_works_without_javascript_too(login, agent, helpdesk):
    client = login(agent)
    html = client.get("/tickets?view=all").get_data(as_text=True)
    # Each htmx link is also a plain link to the same place.
    for href, hx_get in re.findall(r'<a href="([^"]+)" hx-get="([^"]+)"', html):
        assert href == hx_get
        assert client.get(href.replace("&amp;", "&")).status_code == 200
    form = re.search(r'<form class="inbox-query" method="get" action="([^"]+)"', html)
    assert form and form.group(1) == "/tickets"
