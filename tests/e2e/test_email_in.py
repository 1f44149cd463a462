"""Email in, end to end: mail APPENDed to a real Dovecot becomes tickets through the poller.

Each test tells one story: a customer writes, replies thread back, strangers do not get in,
and nothing is lost or doubled whatever crashes in between.
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest
import sqlalchemy as sa

from mail.tokens import make_message_id, reply_address
from tests.support.flows import (
    SUPPORT,
    SimulatedCrash,
    customer_entries,
    entries,
    poll,
    tickets,
)
from tests.support.mailfactory import make_email
from ticketing.db import utcnow
from ticketing.models import (
    Entry,
    EntryKind,
    Mailbox,
    MailboxSecurity,
    Receipt,
    ReceiptStatus,
    Status,
    Ticket,
)
from ticketing.services import conversation
from ticketing.services.mailboxes import add_mailbox
from web.mail_runtime import poll_mailboxes

pytestmark = pytest.mark.e2e


def agent_reply(db_session, app, ticket: Ticket, agent) -> str:
    """An agent's reply carrying our signed Message-ID (what the outbox will send)."""
    mid = make_message_id(ticket.number, secret_key=app.config["SECRET_KEY"], domain="example.com")
    conversation.reply(
        ticket, actor=agent, body_text="Please try again.", now=utcnow(), message_id=mid
    )
    db_session.commit()
    return mid


# --- a customer writes, the conversation threads --------------------------------------------


def test_a_backlog_is_prepared_in_a_helper_process_and_threads_in_arrival_order(
    app, db_session, mailbox, imap_mailbox, caplog
):
    """A poll of many messages parses them in a helper process (HANDOFF_INGEST_PROCESSES)
    while the poller records them: a reply that arrives in the same batch as the message it
    answers still joins its ticket, and attachments are stored by the helper."""
    assert app.config["HANDOFF_INGEST_PROCESSES"] == 1
    for i in range(12):
        imap_mailbox.append(
            SUPPORT,
            make_email(
                sender=f"Customer {i} <c{i}@example.org>",
                subject=f"Question {i}",
                message_id=f"q{i}@example.org",
                attachments=[("note.txt", "text/plain", f"attachment {i}".encode())]
                if i == 3
                else [],
            ),
        )
        if i % 3 == 2:  # the customer of an earlier message follows up, same batch
            j = i - 1
            imap_mailbox.append(
                SUPPORT,
                make_email(
                    sender=f"Customer {j} <c{j}@example.org>",
                    subject=f"Re: Question {j}",
                    message_id=f"f{j}@example.org",
                    in_reply_to=f"q{j}@example.org",
                    references=[f"q{j}@example.org"],
                ),
            )
    with caplog.at_level("INFO", logger="mail.prepare"):
        [result] = poll(app)
    assert result.processed == 16 and result.parked == 0
    assert "helper processes prepared 16 messages" in caplog.text
    assert len(tickets(db_session)) == 12
    for j in (1, 4, 7, 10):
        follow_up = db_session.scalar(
            sa.select(Entry).where(Entry.message_id == f"f{j}@example.org")
        )
        first = db_session.scalar(sa.select(Entry).where(Entry.message_id == f"q{j}@example.org"))
        assert follow_up.ticket_id == first.ticket_id
        assert follow_up.threaded_by.startswith("References matched")
    [with_file] = [e for e in customer_entries(db_session) if e.attachments]
    blob = app.extensions["handoff_blobs"].get(with_file.attachments[0].sha256)
    assert blob == b"attachment 3"


def test_customer_email_becomes_a_ticket_and_is_marked_seen(app, db_session, mailbox, imap_mailbox):
    raw = make_email(message_id="first@mail.example.org")
    uid = imap_mailbox.append(SUPPORT, raw)

    poll(app)

    [ticket] = tickets(db_session)
    assert ticket.subject == "My card was declined"
    assert ticket.customer.email == "ann@example.org" and ticket.customer.name == "Ann Customer"
    assert ticket.channel.value == "email" and ticket.mailbox_id == mailbox.id
    [entry] = entries(db_session, ticket)
    assert entry.kind == EntryKind.CUSTOMER_EMAIL
    assert entry.message_id == "first@mail.example.org"
    assert "declined twice" in entry.body_text
    assert entry.threaded_by == "new ticket"
    # The raw bytes kept are exactly what the server holds.
    server_raw = imap_mailbox.fetch_raw(SUPPORT, uid)
    assert entry.raw_sha256 == hashlib.sha256(server_raw).hexdigest()
    assert app.extensions["handoff_blobs"].get(entry.raw_sha256) == server_raw
    assert "\\Seen" in imap_mailbox.flags(SUPPORT, uid)
    assert imap_mailbox.uids(SUPPORT) == [uid]  # never deleted


def test_three_level_conversation_threads_into_one_ticket(
    app, db_session, mailbox, imap_mailbox, agent
):
    imap_mailbox.append(SUPPORT, make_email(message_id="q1@mail.example.org"))
    poll(app)
    [ticket] = tickets(db_session)
    ours = agent_reply(db_session, app, ticket, agent)

    # Gmail-style: In-Reply-To our reply, References the whole chain, "Re:" prefix.
    imap_mailbox.append(
        SUPPORT,
        make_email(
            subject=f"Re: [#{ticket.number}] My card was declined",
            body=f"Still failing.\n\nOn Mon, Nov 23, 2026 at 10:00 AM Support <{SUPPORT}> wrote:\n> Please try again.\n",
            message_id="q2@mail.example.org",
            in_reply_to=ours,
            references=["q1@mail.example.org", ours],
        ),
    )
    # Outlook-style: only References, "AW:" prefix, quoted header block.
    imap_mailbox.append(
        SUPPORT,
        make_email(
            subject="AW: My card was declined",
            body="Now it works, thanks!\n\n-----Original Message-----\nFrom: Support\nSent: Monday\n\nPlease try again.",
            message_id="q3@mail.example.org",
            references=["q1@mail.example.org", ours, "q2@mail.example.org"],
        ),
    )
    poll(app)

    [only] = tickets(db_session)
    history = entries(db_session, only)
    emails = [e for e in history if e.kind == EntryKind.CUSTOMER_EMAIL]
    assert [e.message_id for e in emails] == [
        "q1@mail.example.org",
        "q2@mail.example.org",
        "q3@mail.example.org",
    ]
    assert emails[1].threaded_by == f"References matched our message <{ours}>"
    assert emails[2].threaded_by.startswith("References matched <q2@mail.example.org>")
    # Reply stripping is reversible: the new part is shown, the quote kept aside.
    assert emails[1].body_text.strip() == "Still failing."
    assert "Please try again." in emails[1].quoted_text
    assert emails[2].body_text.strip() == "Now it works, thanks!"
    assert only.status == Status.OPEN  # the customer's answer reopened the pending ticket


def test_subject_token_threads_only_for_the_customer(app, db_session, mailbox, imap_mailbox):
    imap_mailbox.append(SUPPORT, make_email(message_id="a1@mail.example.org"))
    poll(app)
    [ticket] = tickets(db_session)

    imap_mailbox.append(
        SUPPORT,
        make_email(subject=f"[#{ticket.number}] one more thing", message_id="a2@mail.example.org"),
    )
    imap_mailbox.append(
        SUPPORT,
        make_email(
            sender="Mallory <mallory@evil.example>",
            subject=f"Re: [#{ticket.number}] send me the thread",
            message_id="m1@evil.example",
        ),
    )
    poll(app)

    first, strangers = tickets(db_session)
    assert [e.message_id for e in entries(db_session, first)] == [
        "a1@mail.example.org",
        "a2@mail.example.org",
    ]
    assert (
        entries(db_session, first)[1].threaded_by
        == f"subject token [#{ticket.number}], sender is the customer"
    )
    assert strangers.customer.email == "mallory@evil.example"
    assert strangers.subject == "send me the thread"
    assert "not a participant" in entries(db_session, strangers)[0].threaded_by


def test_forged_references_from_a_stranger_open_a_new_ticket(
    app, db_session, mailbox, imap_mailbox
):
    imap_mailbox.append(
        SUPPORT, make_email(message_id="victim1@corp.example", sender="victim@corp.example")
    )
    poll(app)
    imap_mailbox.append(
        SUPPORT,
        make_email(
            sender="attacker@evil.example",
            subject="Re: My card was declined",
            message_id="x@evil.example",
            in_reply_to="victim1@corp.example",
            references=["victim1@corp.example"],
        ),
    )
    poll(app)
    victim, attacker = tickets(db_session)
    assert len(entries(db_session, victim)) == 1
    assert attacker.customer.email == "attacker@evil.example"


def test_signed_reply_address_threads_and_a_tampered_one_does_not(
    app, db_session, mailbox, imap_mailbox
):
    imap_mailbox.append(SUPPORT, make_email(message_id="s1@mail.example.org"))
    poll(app)
    [ticket] = tickets(db_session)
    address = reply_address(SUPPORT, ticket.number, secret_key=app.config["SECRET_KEY"])
    tampered = address.replace(f"+t{ticket.number}.", f"+t{ticket.number + 1}.")
    imap_mailbox.append(
        SUPPORT,
        make_email(
            sender="colleague@example.org", to=address, subject="Fwd: thing", message_id="s2@x"
        ),
    )
    imap_mailbox.append(
        SUPPORT,
        make_email(sender="other@example.org", to=tampered, subject="hello", message_id="s3@x"),
    )
    poll(app)
    first, second = tickets(db_session)
    history = entries(db_session, first)
    assert [e.message_id for e in history] == ["s1@mail.example.org", "s2@x"]
    assert history[1].threaded_by == f"signed reply address {address}"
    assert history[1].author_customer.email == "colleague@example.org"  # recorded as themselves
    assert second.customer.email == "other@example.org"


def test_cc_colleague_is_recorded_and_can_follow_up_by_subject(
    app, db_session, mailbox, imap_mailbox, agent, login
):
    imap_mailbox.append(SUPPORT, make_email(cc="Bob <bob@example.org>", message_id="c1@x"))
    poll(app)
    [ticket] = tickets(db_session)
    imap_mailbox.append(
        SUPPORT,
        make_email(
            sender="Bob <bob@example.org>",
            subject=f"Re: [#{ticket.number}] card",
            message_id="c2@x",
        ),
    )
    poll(app)
    [same] = tickets(db_session)
    last = entries(db_session, same)[-1]
    assert last.author_customer.email == "bob@example.org"
    assert last.threaded_by.endswith("sender is a participant")
    assert same.customer.email == "ann@example.org"  # the ticket stays Ann's
    page = login(agent).get(f"/tickets/{same.number}").get_data(as_text=True)
    also = page.split("Also in this conversation")[1].split("</ul>")[0]
    assert "bob@example.org" in also


def test_reply_to_solved_ticket_reopens_but_an_autoreply_does_not(
    app, db_session, mailbox, imap_mailbox, agent
):
    imap_mailbox.append(SUPPORT, make_email(message_id="r1@x"))
    poll(app)
    [ticket] = tickets(db_session)
    ours = agent_reply(db_session, app, ticket, agent)
    conversation.set_status(ticket, Status.SOLVED, actor=agent, now=utcnow())
    db_session.commit()

    imap_mailbox.append(
        SUPPORT,
        make_email(
            subject="Automatic reply: My card was declined",
            body="I am out of office until Monday.",
            message_id="ooo@x",
            in_reply_to=ours,
            headers={"Auto-Submitted": "auto-replied"},
        ),
    )
    poll(app)
    [ticket] = tickets(db_session)
    assert ticket.status == Status.SOLVED
    assert "autoreply" in entries(db_session, ticket)[-1].flags

    imap_mailbox.append(
        SUPPORT,
        make_email(subject="Re: card", body="It broke again", message_id="r2@x", in_reply_to=ours),
    )
    poll(app)
    [ticket] = tickets(db_session)
    assert ticket.status == Status.OPEN


def test_reply_to_closed_ticket_opens_a_linked_new_one(
    app, db_session, mailbox, imap_mailbox, agent
):
    imap_mailbox.append(SUPPORT, make_email(message_id="k1@x"))
    poll(app)
    [old] = tickets(db_session)
    ours = agent_reply(db_session, app, old, agent)
    conversation.set_status(old, Status.CLOSED, actor=agent, now=utcnow())
    db_session.commit()
    imap_mailbox.append(
        SUPPORT, make_email(subject="Re: card", message_id="k2@x", in_reply_to=ours)
    )
    poll(app)
    old, new = tickets(db_session)
    assert new.follows_up_id == old.id
    assert "is closed, so a new ticket" in entries(db_session, new)[0].threaded_by


# --- custody: nothing lost, nothing doubled ----------------------------------------------------


def test_exact_duplicate_delivery_yields_one_entry(app, db_session, mailbox, imap_mailbox):
    raw = make_email(message_id="dup@x")
    uid1 = imap_mailbox.append(SUPPORT, raw)
    uid2 = imap_mailbox.append(SUPPORT, raw)
    poll(app)
    assert len(customer_entries(db_session)) == 1
    statuses = db_session.scalars(sa.select(Receipt.status).order_by(Receipt.uid)).all()
    assert statuses == [ReceiptStatus.PROCESSED, ReceiptStatus.DUPLICATE]
    assert "\\Seen" in imap_mailbox.flags(SUPPORT, uid1) and "\\Seen" in imap_mailbox.flags(
        SUPPORT, uid2
    )


def test_same_message_through_another_relay_is_still_one_entry(
    app, db_session, mailbox, imap_mailbox
):
    raw = make_email(message_id="relay@x")
    imap_mailbox.append(SUPPORT, raw)
    imap_mailbox.append(SUPPORT, b"Received: from mx2.example.com by mx.example.com\r\n" + raw)
    poll(app)
    assert len(customer_entries(db_session)) == 1


def test_reused_message_id_with_other_content_is_stored_and_flagged(
    app, db_session, mailbox, imap_mailbox
):
    imap_mailbox.append(SUPPORT, make_email(message_id="same@x", body="first"))
    imap_mailbox.append(
        SUPPORT, make_email(message_id="same@x", body="second, different", sender="b@example.org")
    )
    poll(app)
    first, second = customer_entries(db_session)
    assert first.message_id == "same@x" and "message_id_conflict" not in first.flags
    assert "message_id_conflict" in second.flags and "second, different" in second.body_text


def test_message_without_message_id_gets_a_stable_synthetic_one(
    app, db_session, mailbox, imap_mailbox
):
    raw = make_email(message_id="")
    imap_mailbox.append(SUPPORT, raw)
    imap_mailbox.append(SUPPORT, raw)
    poll(app)
    [entry] = customer_entries(db_session)
    assert entry.message_id.endswith("@synthetic.handoff.invalid")


def test_crash_after_commit_before_flag_neither_loses_nor_duplicates(
    app, db_session, mailbox, imap_mailbox
):
    uid = imap_mailbox.append(SUPPORT, make_email(message_id="crash1@x"))
    from mail.poller import poll_mailbox
    from web.mail_runtime import blobs, inbound_settings

    def crash(point):
        if point == "after_commit":
            raise SimulatedCrash

    with pytest.raises(SimulatedCrash):
        poll_mailbox(
            db_session,
            mailbox,
            password="secret",
            settings=inbound_settings(app),
            blobs=blobs(app),
            fault=crash,
        )
    db_session.rollback()
    assert "\\Seen" not in imap_mailbox.flags(SUPPORT, uid)

    poll(app)
    [entry] = customer_entries(db_session)
    assert entry.raw_sha256 == hashlib.sha256(imap_mailbox.fetch_raw(SUPPORT, uid)).hexdigest()
    assert "\\Seen" in imap_mailbox.flags(SUPPORT, uid)
    assert db_session.scalar(sa.select(sa.func.count(Receipt.id))) == 1


def test_crash_before_commit_leaves_the_message_unseen_and_it_is_ingested_once(
    app, db_session, mailbox, imap_mailbox
):
    uid = imap_mailbox.append(SUPPORT, make_email(message_id="crash2@x"))
    from mail.poller import poll_mailbox
    from web.mail_runtime import blobs, inbound_settings

    def crash(point):
        if point == "before_commit":
            raise SimulatedCrash

    with pytest.raises(SimulatedCrash):
        poll_mailbox(
            db_session,
            mailbox,
            password="secret",
            settings=inbound_settings(app),
            blobs=blobs(app),
            fault=crash,
        )
    db_session.rollback()
    assert tickets(db_session) == []
    assert "\\Seen" not in imap_mailbox.flags(SUPPORT, uid)
    poll(app)
    assert len(customer_entries(db_session)) == 1


def test_uidvalidity_change_rescans_without_duplicates(app, db_session, mailbox, imap_mailbox):
    raws = [make_email(message_id=f"v{i}@x", subject=f"question {i}") for i in range(3)]
    for raw in raws:
        imap_mailbox.append(SUPPORT, raw)
    poll(app)
    before = imap_mailbox.uidvalidity(SUPPORT)
    imap_mailbox.recreate_folder(SUPPORT, "INBOX")
    for raw in [*raws, make_email(message_id="v3@x", subject="question 3")]:
        imap_mailbox.append(SUPPORT, raw)
    assert imap_mailbox.uidvalidity(SUPPORT) != before
    poll(app)
    assert [e.message_id for e in customer_entries(db_session)] == ["v0@x", "v1@x", "v2@x", "v3@x"]
    db_session.expire_all()
    assert db_session.get(Mailbox, mailbox.id).uidvalidity == imap_mailbox.uidvalidity(SUPPORT)


def test_processed_mail_is_moved_only_once_its_commits_are_on_disk(
    app, db_session, mailbox, imap_mailbox, monkeypatch
):
    """With a move-to folder, mail leaves the inbox; on SQLite (whose WAL is synced lazily) the
    write-ahead log is fsynced first, so a power loss cannot forget mail no longer there."""
    import mail.poller
    from mail.imap import ImapSession

    imap_mailbox.create_folder(SUPPORT, "Processed")
    mailbox.move_to_folder = "Processed"
    db_session.commit()
    events: list[str] = []
    real_durable, real_fsync = mail.poller.make_durable, os.fsync

    def durable(session):
        events.append("durable")
        real_durable(session)

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith("-wal"):
            events.append("wal fsync")
        real_fsync(fd)

    def moved(self, uids, *, move_to):
        events.append(f"move {len(uids)} to {move_to}")
        return real_mark(self, uids, move_to=move_to)

    real_mark = ImapSession.mark_processed
    monkeypatch.setattr(mail.poller, "make_durable", durable)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(ImapSession, "mark_processed", moved)
    for i in range(2):
        imap_mailbox.append(SUPPORT, make_email(message_id=f"move{i}@x", subject=f"move {i}"))

    [result] = poll(app)

    assert result.processed == 2
    assert imap_mailbox.uids(SUPPORT) == [] and len(imap_mailbox.uids(SUPPORT, "Processed")) == 2
    sqlite = db_session.get_bind().dialect.name == "sqlite"
    expected = ["durable", *(["wal fsync"] if sqlite else []), "move 2 to Processed"]
    assert events == expected


def test_polling_again_with_nothing_new_processes_nothing(app, db_session, mailbox, imap_mailbox):
    imap_mailbox.append(SUPPORT, make_email(message_id="once@x"))
    poll(app)
    [result] = poll(app)  # UID SEARCH last+1:* still returns the last UID; it is filtered
    assert result.fetched == 0
    assert db_session.scalar(sa.select(sa.func.count(Receipt.id))) == 1


def test_poison_message_is_parked_and_the_others_go_through(
    app, db_session, mailbox, imap_mailbox, runner, monkeypatch
):
    import mail.prepare

    real_parse = mail.prepare.parse

    def fragile_parse(raw, **kwargs):
        if b"POISON" in raw:
            raise RuntimeError("parser exploded")
        return real_parse(raw, **kwargs)

    monkeypatch.setattr(mail.prepare, "parse", fragile_parse)
    for i in range(5):
        imap_mailbox.append(SUPPORT, make_email(message_id=f"good{i}@x", subject=f"good {i}"))
        if i == 2:
            poison_uid = imap_mailbox.append(
                SUPPORT, make_email(message_id="poison@x", body="POISON")
            )
    [result] = poll(app)
    assert result.processed == 5 and result.parked == 1
    assert len(customer_entries(db_session)) == 5
    parked = db_session.scalar(sa.select(Receipt).where(Receipt.status == ReceiptStatus.PARKED))
    assert "parser exploded" in parked.error
    assert app.extensions["handoff_blobs"].get(parked.raw_sha256) == imap_mailbox.fetch_raw(
        SUPPORT, poison_uid
    )
    listing = runner.invoke(args=["mail", "failed"])
    assert "parser exploded" in listing.output

    [again] = poll(app)  # not re-fetched
    assert again.fetched == 0

    monkeypatch.setattr(mail.prepare, "parse", real_parse)
    result = runner.invoke(args=["mail", "retry", "--all"])
    assert result.exit_code == 0, result.output
    assert len(customer_entries(db_session)) == 6
    db_session.expire_all()
    assert db_session.get(Receipt, parked.id).status == ReceiptStatus.PROCESSED


def test_oversized_message_is_recorded_from_its_headers_only(
    app, db_session, mailbox, imap_mailbox
):
    app.config["HANDOFF_MAX_EMAIL_BYTES"] = 200_000
    uid = imap_mailbox.append(
        SUPPORT,
        make_email(
            message_id="big@x",
            attachments=[("scan.pdf", "application/pdf", b"%PDF" + b"0" * 400_000)],
        ),
    )
    poll(app)
    [ticket] = tickets(db_session)
    history = entries(db_session, ticket)
    assert history[0].message_id == "big@x"
    assert "over the 195.3 KB limit: only its headers were downloaded" in history[-1].body_text
    receipt = db_session.scalar(sa.select(Receipt))
    assert receipt.is_truncated and receipt.size > 400_000
    assert "\\Seen" in imap_mailbox.flags(SUPPORT, uid)
    [again] = poll(app)
    assert again.fetched == 0


def test_a_failing_mailbox_is_recorded_and_does_not_stop_the_others(
    app, db_session, mailbox, imap_mailbox
):
    broken = add_mailbox(
        db_session,
        name="sales",
        address="sales@example.com",
        imap_host=imap_mailbox.host,
        imap_port=imap_mailbox.port,
        imap_user="sales@example.com",
        imap_password="wrong password",
        imap_security=MailboxSecurity.PLAIN,
        secret_key=app.config["SECRET_KEY"],
    )
    db_session.commit()
    sales_uid = imap_mailbox.append(
        "sales@example.com", make_email(to="sales@example.com", message_id="s@x")
    )
    imap_mailbox.append(SUPPORT, make_email(message_id="ok@x"))
    results = {r.mailbox: r for r in poll_mailboxes(app, only_due=False)}
    assert results["support"].processed == 1
    assert "login failed" in results["sales"].error
    db_session.expire_all()
    broken = db_session.get(Mailbox, broken.id)
    assert broken.poll_failures == 1 and "login failed" in broken.last_error
    assert "wrong password" not in broken.last_error
    assert "\\Seen" not in imap_mailbox.flags("sales@example.com", sales_uid)


# --- identity, loops and noise ---------------------------------------------------------------


def test_ambiguous_from_never_threads_into_the_victims_ticket(
    app, db_session, mailbox, imap_mailbox
):
    imap_mailbox.append(SUPPORT, make_email(sender="victim@corp.example", message_id="v@corp"))
    poll(app)
    [victim] = tickets(db_session)
    imap_mailbox.append(
        SUPPORT,
        make_email(
            sender="victim@corp.example <attacker@evil.example>",
            subject=f"Re: [#{victim.number}]",
            message_id="amb@x",
        ),
    )
    poll(app)
    victim, other = tickets(db_session)
    assert len(entries(db_session, victim)) == 1
    assert other.customer.email == "attacker@evil.example"
    assert "sender_unverified" in entries(db_session, other)[0].flags


def test_newline_in_encoded_subject_is_flattened(app, db_session, mailbox, imap_mailbox):
    raw = make_email(message_id="nl@x").replace(
        b"Subject: My card was declined",
        b"Subject: Help =?UTF-8?Q?me=0ABcc:_attacker@evil.example?=",
    )
    imap_mailbox.append(SUPPORT, raw)
    poll(app)
    [ticket] = tickets(db_session)
    assert "\n" not in ticket.subject and "\r" not in ticket.subject
    assert ticket.subject.startswith("Help me")


def test_our_own_mail_coming_back_changes_nothing(app, db_session, mailbox, imap_mailbox):
    from mail.tokens import make_loop_token

    token = make_loop_token(secret_key=app.config["SECRET_KEY"])
    imap_mailbox.append(
        SUPPORT, make_email(sender=SUPPORT, message_id="own@x", headers={"X-Handoff-Loop": token})
    )
    poll(app)
    assert tickets(db_session) == []
    assert db_session.scalar(sa.select(Receipt.status)) == ReceiptStatus.LOOP


def test_forged_internal_headers_are_ignored(app, db_session, mailbox, imap_mailbox):
    imap_mailbox.append(
        SUPPORT,
        make_email(
            message_id="forged@x",
            headers={
                "X-Handoff-Loop": "0123456789abcdef.aaaaaaaaaaaaaaaa",
                "X-Handoff-Ticket": "1",
                "X-Handoff-Priority": "urgent",
            },
        ),
    )
    poll(app)
    [ticket] = tickets(db_session)
    assert ticket.priority.value == "normal"
    assert entries(db_session, ticket)[0].flags == []


def test_bounce_for_our_reply_is_noted_on_its_ticket(app, db_session, mailbox, imap_mailbox, agent):
    imap_mailbox.append(SUPPORT, make_email(message_id="b1@x"))
    poll(app)
    [ticket] = tickets(db_session)
    ours = agent_reply(db_session, app, ticket, agent)
    dsn = (
        "From: MAILER-DAEMON@mx.example.org\r\nTo: support@example.com\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <dsn1@mx.example.org>\r\nMIME-Version: 1.0\r\nAuto-Submitted: auto-replied\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n"
        "Final-Recipient: rfc822; ann@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
        f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <{ours}>\r\nTo: ann@example.org\r\n--B--\r\n"
    ).encode()
    imap_mailbox.append(SUPPORT, dsn)
    poll(app)
    [ticket] = tickets(db_session)  # no new ticket
    last = entries(db_session, ticket)[-1]
    assert last.kind == EntryKind.SYSTEM_EVENT and "bounce" in last.flags
    assert "ann@example.org" in last.body_text and "5.1.1" in last.body_text


def test_every_email_ticket_appears_in_the_export(
    app, db_session, mailbox, imap_mailbox, runner, tmp_path
):
    imap_mailbox.append(
        SUPPORT,
        make_email(
            message_id="exp@x",
            attachments=[("receipt.pdf", "application/pdf", b"%PDF-1.4 receipt")],
        ),
    )
    poll(app)
    out = tmp_path / "export.jsonl"
    assert runner.invoke(args=["tickets", "export", "-o", str(out)]).exit_code == 0
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    [entry] = record["entries"]
    assert entry["message_id"] == "exp@x"
    assert entry["author_email"] == "ann@example.org"
    assert entry["threaded_by"] == "new ticket"
    assert "declined twice" in entry["body_text"]
    assert entry["attachments"] == [
        {
            "filename": "receipt.pdf",
            "content_type": "application/pdf",
            "size": 16,
            "sha256": hashlib.sha256(b"%PDF-1.4 receipt").hexdigest(),
        }
    ]


# --- crash of a real poller process, and archives ----------------------------------------------


def test_poller_killed_mid_batch_then_rerun_ends_with_one_entry_per_message(
    app, db_session, mailbox, imap_mailbox, database_url, tmp_path
):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    count = 120
    with imap_mailbox.connect(SUPPORT) as client:
        for i in range(count):
            client.append("INBOX", make_email(message_id=f"kill{i}@x", subject=f"crash test {i}"))
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "HANDOFF_DATA_DIR": app.config["HANDOFF_DATA_DIR"],
        "SECRET_KEY": app.config["SECRET_KEY"],
        "HANDOFF_POLL_LEASE": "2",
    }
    flask = [sys.executable, "-m", "flask", "--app", "wsgi", "mail", "poll", "--once"]
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        flask, env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    # Kill it once it is part-way through the batch.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        db_session.rollback()
        done = db_session.scalar(sa.select(sa.func.count(Receipt.id))) or 0
        if done >= 10:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    db_session.rollback()
    partial = db_session.scalar(sa.select(sa.func.count(Receipt.id)))
    assert 0 < partial < count, f"the kill should land mid-run, not after {partial}"
    db_session.expire_all()
    assert db_session.get(Mailbox, mailbox.id).lease_owner is not None  # the dead poller's
    time.sleep(2.5)  # ... until its lease expires

    rerun = subprocess.run(flask, env=env, cwd=root, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    db_session.rollback()
    ids = db_session.scalars(
        sa.select(Entry.message_id).where(Entry.kind == EntryKind.CUSTOMER_EMAIL)
    ).all()
    assert sorted(ids) == sorted(f"kill{i}@x" for i in range(count))
    assert all("\\Seen" in imap_mailbox.flags(SUPPORT, uid) for uid in imap_mailbox.uids(SUPPORT))


def test_concurrent_pollers_ingest_every_message_exactly_once(
    app, db_session, mailbox, imap_mailbox, database_url
):
    import os
    import subprocess
    import sys
    from pathlib import Path

    with imap_mailbox.connect(SUPPORT) as client:
        for i in range(50):
            client.append("INBOX", make_email(message_id=f"conc{i}@x", subject=f"concurrent {i}"))
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "HANDOFF_DATA_DIR": app.config["HANDOFF_DATA_DIR"],
        "SECRET_KEY": app.config["SECRET_KEY"],
    }
    flask = [sys.executable, "-m", "flask", "--app", "wsgi", "mail", "poll", "--once"]
    root = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen(
            flask, env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n---\n".join(err[-3000:] for _, err in outputs)
    summaries = [out for out, _ in outputs]
    assert sum("skipped" in s for s in summaries) + sum("processed" in s for s in summaries) == 4
    db_session.rollback()
    ids = db_session.scalars(
        sa.select(Entry.message_id).where(Entry.kind == EntryKind.CUSTOMER_EMAIL)
    ).all()
    assert sorted(ids) == sorted(f"conc{i}@x" for i in range(50))
    assert db_session.scalar(sa.select(sa.func.count(Receipt.id))) == 50
    assert db_session.get(Mailbox, mailbox.id).lease_owner is None


def test_mbox_import_goes_through_the_pipeline_and_is_idempotent(app, db_session, runner, tmp_path):
    import mailbox as stdlib_mailbox

    path = tmp_path / "history.mbox"
    archive = stdlib_mailbox.mbox(path)
    archive.add(make_email(message_id="old1@x", subject="Invoice question"))
    archive.add(
        make_email(
            message_id="old2@x",
            subject="Re: Invoice question",
            in_reply_to="old1@x",
            references=["old1@x"],
        )
    )
    archive.add(make_email(message_id="old3@x", sender="zoe@example.net", subject="Password reset"))
    archive.flush()
    archive.close()

    first = runner.invoke(args=["mail", "import", str(path)])
    assert first.exit_code == 0, first.output
    assert "Imported 3 messages" in first.output
    second = runner.invoke(args=["mail", "import", str(path)])
    assert "3 duplicate" in second.output
    invoice, password = tickets(db_session)
    assert [e.message_id for e in entries(db_session, invoice)] == ["old1@x", "old2@x"]
    assert password.customer.email == "zoe@example.net"


def test_maildir_import(app, db_session, runner, tmp_path):
    import mailbox as stdlib_mailbox

    folder = stdlib_mailbox.Maildir(tmp_path / "Maildir", create=True)
    folder.add(make_email(message_id="md1@x"))
    assert runner.invoke(args=["mail", "import", str(tmp_path / "Maildir")]).exit_code == 0
    assert len(tickets(db_session)) == 1
    bad = runner.invoke(args=["mail", "import", str(tmp_path)])
    assert bad.exit_code != 0 and "not a Maildir" in bad.output


def test_reply_to_a_merged_ticket_lands_on_the_ticket_it_was_merged_into(
    app, db_session, mailbox, imap_mailbox, agent
):
    from ticketing.services import actions

    imap_mailbox.append(SUPPORT, make_email(message_id="m-a@x", subject="First question"))
    imap_mailbox.append(SUPPORT, make_email(message_id="m-b@x", subject="Same problem again"))
    poll(app)
    first, second = tickets(db_session)
    actions.merge(db_session, first, into=second.number, actor=agent, now=utcnow())
    db_session.commit()
    imap_mailbox.append(
        SUPPORT,
        make_email(message_id="m-c@x", subject=f"Re: [#{first.number}] First question"),
    )
    poll(app)
    assert len(tickets(db_session)) == 2  # no new ticket
    assert entries(db_session, second)[-1].message_id == "m-c@x"
