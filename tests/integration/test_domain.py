"""The domain model and its services on a real database (SQLite and PostgreSQL)."""

import datetime as dt

import pytest
import sqlalchemy as sa

from ticketing.errors import Invalid
from ticketing.models import Channel, Customer, Entry, EntryKind, Status, Ticket
from ticketing.models.counters import next_value, reserve
from ticketing.services import conversation, customers

NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


def _ticket(db_session, email="ann@example.com", subject="Help", at=NOW):
    customer = customers.find_or_create(db_session, email=email, name="Ann")
    ticket = conversation.open_ticket(
        db_session, customer=customer, subject=subject, channel=Channel.EMAIL, now=at
    )
    conversation.add_customer_message(
        ticket, author=customer, kind=EntryKind.CUSTOMER_EMAIL, body_text="It broke.", now=at
    )
    return ticket


def test_customer_email_is_unique_case_insensitively(db_session):
    first = customers.find_or_create(db_session, email="Ann@Example.COM", name="Ann")
    second = customers.find_or_create(db_session, email=" ann@example.com ")
    db_session.commit()
    assert first.id == second.id
    assert db_session.scalar(sa.select(sa.func.count(Customer.id))) == 1
    assert first.email == "ann@example.com"


def test_ticket_numbers_are_sequential_and_human(db_session):
    numbers = [_ticket(db_session, subject=f"t{i}").number for i in range(3)]
    assert numbers == [1001, 1002, 1003]


def test_the_insert_path_writes_the_same_rows_as_the_orm_path(db_session):
    """Email ingest writes tickets and entries with plain INSERTs; nothing may differ."""
    ann = customers.find_or_create(db_session, email="ann@example.com", name="Ann")
    kwargs = dict(subject="Re:\tCard  declined", channel=Channel.EMAIL, now=NOW)
    orm = conversation.open_ticket(db_session, customer=ann, **kwargs)
    # The INSERT path writes the first message's preview with the ticket; on the ORM path
    # the first message sets it.
    inserted = conversation.insert_ticket(
        db_session, customer_id=ann.id, preview="It broke.", **kwargs
    )
    message = dict(
        kind=EntryKind.CUSTOMER_EMAIL,
        body_text="It broke.",
        now=NOW,
        subject="Card\x07 declined",
        message_id="m@x",
        threaded_by="new ticket" * 50,
        flags=["b", "a", "b"],
        attachments=[
            conversation.NewAttachment(
                sha256="0" * 64, size=3, content_type="t/" + "x" * 300, filename="f.txt"
            )
        ],
    )
    orm_entry = conversation.add_customer_message(orm, author=ann, **message)
    entry_id = conversation.insert_customer_message(
        db_session, ticket_id=inserted.id, author_id=ann.id, **message
    )
    db_session.commit()
    db_session.expire_all()

    def row(model, id_, skip):
        obj = db_session.get(model, id_)
        return {c.key: getattr(obj, c.key) for c in model.__table__.columns if c.key not in skip}

    ticket_skip = {"id", "number", "updated_at"}  # add_customer_message also bumps updated_at
    assert row(Ticket, inserted.id, ticket_skip) == row(Ticket, orm.id, ticket_skip)
    assert inserted.number == orm.number + 1
    entry_skip = {"id", "ticket_id", "message_id"}
    assert row(Entry, entry_id, entry_skip) == row(Entry, orm_entry.id, entry_skip)
    copy, original = db_session.get(Entry, entry_id), db_session.get(Entry, orm_entry.id)
    assert [(a.sha256, a.content_type, a.filename) for a in copy.attachments] == [
        (a.sha256, a.content_type, a.filename) for a in original.attachments
    ]
    assert copy.flags == ["a", "b"] and len(copy.threaded_by) == 300


def test_a_block_of_counter_values_is_reserved_at_once(db_session):
    assert reserve(db_session, "bench", 5, start=10) == 10  # first use creates the row
    assert reserve(db_session, "bench", 3) == 15
    assert next_value(db_session, "bench") == 18
    with pytest.raises(ValueError):
        reserve(db_session, "bench", 0)


def test_datetimes_come_back_timezone_aware_utc(db_session):
    ticket = _ticket(db_session)
    db_session.commit()
    db_session.expire_all()
    loaded = db_session.get(Ticket, ticket.id)
    assert loaded.created_at == NOW
    assert loaded.created_at.tzinfo is not None


def test_subject_is_one_clean_line(db_session):
    ticket = _ticket(db_session, subject="Help\r\nBcc: attacker@evil.example\x00")
    assert ticket.subject == "Help Bcc: attacker@evil.example"


def test_reply_sets_first_response_and_pending_then_customer_reopens(db_session, agent):
    ticket = _ticket(db_session)
    later = NOW + dt.timedelta(hours=1)
    conversation.reply(ticket, actor=agent, body_text="Try again now.", now=later)
    assert ticket.first_response_at == later
    assert ticket.status == Status.PENDING
    conversation.add_customer_message(
        ticket,
        author=ticket.customer,
        kind=EntryKind.CUSTOMER_EMAIL,
        body_text="Still broken.",
        now=later + dt.timedelta(hours=1),
    )
    assert ticket.status == Status.OPEN
    assert ticket.first_response_at == later  # the first response stays the first


def test_solving_records_time_and_an_event(db_session, agent):
    ticket = _ticket(db_session)
    conversation.set_status(ticket, Status.SOLVED, actor=agent, now=NOW)
    kinds = [e.kind for e in db_session.scalars(ticket.entries.select())]
    assert ticket.solved_at == NOW
    assert kinds == [EntryKind.CUSTOMER_EMAIL, EntryKind.SYSTEM_EVENT]


def test_empty_reply_is_refused(db_session, agent):
    ticket = _ticket(db_session)
    with pytest.raises(Invalid):
        conversation.reply(ticket, actor=agent, body_text="   ", now=NOW)


def test_one_message_id_per_ticket(db_session):
    ticket = _ticket(db_session)
    kwargs = dict(author=ticket.customer, kind=EntryKind.CUSTOMER_EMAIL, now=NOW)
    conversation.add_customer_message(ticket, body_text="a", message_id="m1@x", **kwargs)
    with pytest.raises(sa.exc.IntegrityError):
        conversation.add_customer_message(ticket, body_text="b", message_id="m1@x", **kwargs)
