"""The notice scan's batch path: a batch decides each notice as if they were sent one by one
(per-customer cap, opt-out, suppression, the automatic-mail cap, quarantined addresses), writes
tickets with consecutive numbers, stores the batch's messages in one write, skips what another
scan claimed first, and stops between batches when the worker is shutting down."""

from __future__ import annotations

import datetime as dt
import email
import email.policy

import pytest
import sqlalchemy as sa

import mail.notices as notice_mail
from mail.notices import NoticeContext, scan, send_many
from ticketing.models import (
    Channel,
    Customer,
    Entry,
    EntryKind,
    Notice,
    NoticeOptOut,
    NoticeStatus,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Status,
    Ticket,
)
from ticketing.services import notices as notice_rules
from ticketing.services import outbox as outbox_rules
from web.mail_runtime import blobs
from web.notices_runtime import notice_context

HEADER = "external_id,email,name,plan,status,card_brand,card_last4,card_exp_month,card_exp_year\n"
TODAY = dt.date(2026, 11, 10)
NOW = dt.datetime(2026, 11, 10, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def configured(app):
    app.config["HANDOFF_MAIL_FROM"] = "support@example.com"
    app.config["HANDOFF_ACCOUNT_URL"] = "https://billing.example.com/accounts/{account_id}/card"
    return app


def import_csv(runner, tmp_path, rows: list[str]) -> None:
    path = tmp_path / "accounts.csv"
    path.write_text(HEADER + "".join(f"{row}\n" for row in rows))
    result = runner.invoke(args=["accounts", "import", str(path)])
    assert result.exit_code == 0, result.output


def context(app) -> NoticeContext:
    return notice_context(app)


def count_batches(monkeypatch) -> list[int]:
    """How many messages each blob-store write held (`put_batch` is called once a batch)."""
    sizes: list[int] = []
    real = notice_mail.put_batch

    def put_batch(store, data):
        sizes.append(len(data))
        return real(store, data)

    monkeypatch.setattr(notice_mail, "put_batch", put_batch)
    return sizes


def test_a_batch_decides_each_notice_as_one_by_one_and_writes_it_at_once(
    configured, runner, db_session, tmp_path, monkeypatch
):
    configured.config["HANDOFF_NOTICE_CAP"] = 2
    import_csv(
        runner,
        tmp_path,
        [
            # Three cards of one customer: the cap (2) defers the third.
            "cap_1,many@example.com,Many,pro,active,visa,1111,11,2026",
            "cap_2,many@example.com,Many,pro,active,visa,2222,11,2026",
            "cap_3,many@example.com,Many,pro,active,visa,3333,11,2026",
            "out_1,out@example.com,Out,pro,active,visa,4444,11,2026",
            "bounce_1,bounced@example.com,Bounced,pro,active,visa,5555,11,2026",
            "ok_1,ok@example.com,Okay,pro,active,visa,6666,11,2026",
            "ok_2,fine@example.com,Fine,pro,active,visa,7777,11,2026",
        ],
    )
    out = db_session.scalar(sa.select(Customer).where(Customer.email == "out@example.com"))
    db_session.add(NoticeOptOut(customer_id=out.id, created_at=NOW))
    outbox_rules.suppress(db_session, "bounced@example.com", reason="550 5.1.1", now=NOW)
    db_session.commit()
    sizes = count_batches(monkeypatch)

    result = scan(
        db_session, today=TODAY, now=NOW, ctx=context(configured), on_batch=db_session.commit
    )
    db_session.commit()

    assert (result.sent, result.skipped, result.deferred) == (4, 2, 1)
    assert sizes == [4]  # one batch, its four messages stored in one write
    notices = db_session.scalars(sa.select(Notice).order_by(Notice.id)).all()
    assert len(notices) == 6  # the deferred one is not claimed: a later scan sends it
    emails = dict(db_session.execute(sa.select(Customer.id, Customer.email)).tuples().all())
    status = {}
    for notice in notices:
        status.setdefault(emails[notice.customer_id], []).append(notice.status)
    assert status["many@example.com"] == [NoticeStatus.QUEUED, NoticeStatus.QUEUED]
    assert status["out@example.com"] == [NoticeStatus.SKIPPED]
    assert status["bounced@example.com"] == [NoticeStatus.SKIPPED]
    assert status["ok@example.com"] == status["fine@example.com"] == [NoticeStatus.QUEUED]
    unsubscribed = next(n for n in notices if n.customer_id == out.id)
    assert unsubscribed.reason == "the customer unsubscribed from notices"
    assert unsubscribed.ticket_id is None and unsubscribed.outbox_id is None

    # The suppressed address: no email, an internal note where agents see it.
    bounced = next(n for n in notices if emails[n.customer_id] == "bounced@example.com")
    assert "suppression list" in bounced.reason and bounced.outbox_id is None
    ticket = db_session.get(Ticket, bounced.ticket_id)
    assert ticket.status in (Status.NEW, Status.OPEN)
    kinds = db_session.scalars(sa.select(Entry.kind).where(Entry.ticket_id == ticket.id)).all()
    assert kinds == [EntryKind.INTERNAL_NOTE]

    # Every queued notice: a solved notice ticket per account (numbers consecutive, unique),
    # one notice entry with the email's Message-ID, an outbox row whose bytes are stored.
    queued = [n for n in notices if n.status == NoticeStatus.QUEUED]
    tickets = [db_session.get(Ticket, n.ticket_id) for n in queued]
    numbers = sorted(t.number for t in tickets)
    assert numbers == list(range(numbers[0], numbers[0] + 4))
    assert all(t.channel == Channel.NOTICE and t.status == Status.SOLVED for t in tickets)
    assert all(t.solved_at is not None and t.preview.startswith("Hello ") for t in tickets)
    store = blobs(configured)
    for notice, ticket in zip(queued, tickets, strict=True):
        row = db_session.get(OutboxMessage, notice.outbox_id)
        [entry] = db_session.scalars(sa.select(Entry).where(Entry.ticket_id == ticket.id)).all()
        assert entry.kind == EntryKind.NOTICE and row.entry_id == entry.id
        assert row.kind == OutboxKind.NOTICE and row.status == OutboxStatus.QUEUED
        assert row.is_automatic and row.ticket_id == ticket.id
        raw = store.get(row.raw_sha256)
        assert len(raw) == row.size
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert message["Message-ID"] == f"<{entry.message_id}>" == f"<{row.message_id}>"
        assert message["Subject"] == row.subject == entry.subject
        assert entry.subject.startswith(f"[#{ticket.number}] Your card ending ")
        assert message["To"].addresses[0].addr_spec == row.recipient
        text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
        assert text == entry.body_text

    # The next scan: nothing new, the capped notice still waits for the window.
    again = scan(db_session, today=TODAY, now=NOW, ctx=context(configured))
    assert (again.sent, again.skipped, again.deferred) == (0, 0, 1)


def test_the_automatic_mail_cap_and_unusable_addresses_count_within_a_batch(
    configured, runner, db_session, tmp_path
):
    configured.config["HANDOFF_AUTO_MAIL_PER_RECIPIENT"] = 1
    import_csv(
        runner,
        tmp_path,
        [
            "a_1,twice@example.com,Twice,pro,active,visa,1111,11,2026",
            "a_2,twice@example.com,Twice,pro,active,visa,2222,11,2026",
            "q_1,gone@handoff.invalid,Gone,pro,active,visa,3333,11,2026",
        ],
    )
    result = scan(db_session, today=TODAY, now=NOW, ctx=context(configured))
    db_session.commit()
    assert (result.sent, result.skipped, result.deferred) == (1, 2, 0)
    rows = db_session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)).all()
    assert [r.status for r in rows] == [OutboxStatus.QUEUED, *[OutboxStatus.SUPPRESSED] * 2]
    notes = sorted(r.last_error for r in rows if r.last_error)
    assert notes == [
        "cap reached: 1 automatic emails to twice@example.com in the last window",
        "the customer's address is unusable; nothing was sent",
    ]
    skipped = db_session.scalars(sa.select(Notice).where(Notice.status == NoticeStatus.SKIPPED))
    assert sorted(n.reason for n in skipped) == notes
    # A skipped notice does not count towards the customer's notice cap.
    assert (
        db_session.scalar(
            sa.select(sa.func.count(Notice.id)).where(Notice.status.in_(notice_rules.LIVE))
        )
        == 1
    )


def test_a_notice_another_scan_claimed_first_is_left_out_and_counts_for_nothing(
    configured, runner, db_session, tmp_path
):
    """The race the UNIQUE dedupe key settles: a candidate claimed by another scan after
    this one selected it is a duplicate, and the cap is decided again without it."""
    configured.config["HANDOFF_NOTICE_CAP"] = 1
    import_csv(
        runner,
        tmp_path,
        [
            "r_1,race@example.com,Race,pro,active,visa,1111,11,2026",
            "r_2,race@example.com,Race,pro,active,visa,2222,11,2026",
        ],
    )
    ctx = context(configured)
    screened = notice_rules.screen(db_session, now=NOW, settings=ctx.settings)
    first, second = notice_rules.due(db_session, today=TODAY, settings=ctx.settings)
    # Another scan claims the first (as skipped: it counts towards no cap) and commits.
    other = notice_rules.claim(
        db_session, first, now=NOW, status=NoticeStatus.SKIPPED, reason="other scan"
    )
    db_session.commit()

    outcomes = send_many(
        db_session, [first, second], now=NOW, today=TODAY, ctx=ctx, screened=screened
    )
    db_session.commit()

    assert [o for o, _ in outcomes] == ["duplicate", "sent"]
    notices = db_session.scalars(sa.select(Notice).order_by(Notice.id)).all()
    assert [n.id for n in notices] == [other.id, outcomes[1][1]]
    assert notices[1].status == NoticeStatus.QUEUED and notices[1].outbox_id is not None
    assert screened.recent[first.customer_id] == 1


def test_the_scan_stops_between_batches_when_asked(configured, runner, db_session, tmp_path):
    import_csv(
        runner,
        tmp_path,
        [f"s_{i},c{i}@example.com,C{i},pro,active,visa,{i:04d},11,2026" for i in range(5)],
    )
    asked: list[int] = []

    def should_stop() -> bool:
        asked.append(1)
        return len(asked) > 1  # the worker got SIGTERM while the first batch was written

    result = scan(
        db_session,
        today=TODAY,
        now=NOW,
        ctx=context(configured),
        on_batch=db_session.commit,
        should_stop=should_stop,
        batch_size=2,
    )
    assert result.stopped and result.sent == 2
    assert result.summary().endswith("; stopped early, the next scan sends the rest")
    db_session.rollback()
    assert db_session.scalar(sa.select(sa.func.count(Notice.id))) == 2  # committed

    rest = scan(db_session, today=TODAY, now=NOW, ctx=context(configured), batch_size=2)
    db_session.commit()
    assert not rest.stopped and rest.sent == 3
    numbers = db_session.scalars(sa.select(Ticket.number).order_by(Ticket.number)).all()
    assert len(numbers) == 5 and numbers == list(range(numbers[0], numbers[0] + 5))


def test_the_worker_stop_flag_reaches_the_scan(configured, runner, db_session, tmp_path):
    from web.mail_runtime import stop_requested
    from web.notices_runtime import run_scan

    import_csv(runner, tmp_path, ["w_1,w@example.com,W,pro,active,visa,1111,11,2026"])
    stop_requested.set()
    try:
        result = run_scan(configured, today=TODAY)
    finally:
        stop_requested.clear()
    assert result.stopped and result.sent == 0
    assert run_scan(configured, today=TODAY).sent == 1
