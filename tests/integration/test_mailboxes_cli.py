"""`mailboxes add|list|remove|set-password|test`: passwords encrypted at rest, never printed."""

from __future__ import annotations

import sqlalchemy as sa

from ticketing.db import utcnow
from ticketing.models import Channel, Mailbox, MailboxSecurity, Ticket
from ticketing.services import conversation, customers
from ticketing.services.mailboxes import imap_password

SUPPORT = "support@example.com"
IMAP_PASSWORD = "Imap-Pa55word-that-must-not-leak"


def add_args(name: str = "support", *extra: str, host: str = "imap.example.com") -> list[str]:
    return [
        "mailboxes",
        "add",
        name,
        "--address",
        "Support@Example.com",
        "--imap-host",
        host,
        "--imap-port",
        "993",
        "--imap-user",
        SUPPORT,
        "--imap-password-stdin",
        *extra,
    ]


def add_dovecot_mailbox(runner, server, *, password: str, name: str = "support") -> None:
    args = add_args(name, "--plain", host=server.host)
    args[args.index("--imap-port") + 1] = str(server.port)
    result = runner.invoke(args=args, input=password + "\n")
    assert result.exit_code == 0, result.output


def stored(db_session, name: str = "support") -> Mailbox:
    db_session.expire_all()
    return db_session.scalar(sa.select(Mailbox).where(Mailbox.name == name))


def test_add_reads_the_password_from_stdin_and_stores_it_encrypted(runner, db_session, app):
    result = runner.invoke(
        args=add_args("support", "--move-to", "Processed"), input=IMAP_PASSWORD + "\n"
    )

    assert result.exit_code == 0, result.output
    assert "Added mailbox support (support@example.com, imap.example.com:993, tls" in result.output
    assert IMAP_PASSWORD not in result.output
    mailbox = stored(db_session)
    assert mailbox.address == SUPPORT
    assert mailbox.imap_security is MailboxSecurity.TLS  # the default
    assert (mailbox.folder, mailbox.move_to_folder, mailbox.is_active) == (
        "INBOX",
        "Processed",
        True,
    )
    assert IMAP_PASSWORD not in mailbox.imap_password_encrypted
    assert imap_password(mailbox, secret_key=app.config["SECRET_KEY"]) == IMAP_PASSWORD


def test_add_chooses_starttls_or_plain_and_refuses_plain_to_a_remote_host(runner, db_session):
    result = runner.invoke(args=add_args("starttls", "--starttls"), input="pw\n")
    assert result.exit_code == 0, result.output
    assert stored(db_session, "starttls").imap_security is MailboxSecurity.STARTTLS

    result = runner.invoke(args=add_args("remote-plain", "--plain"), input="pw\n")
    assert result.exit_code != 0
    assert "unencrypted" in result.output
    assert stored(db_session, "remote-plain") is None


def test_add_without_a_password_source_fails_clearly(runner, db_session):
    args = [a for a in add_args() if a != "--imap-password-stdin"]
    result = runner.invoke(args=args, input="")
    assert result.exit_code != 0
    assert "--imap-password-stdin" in result.output
    assert stored(db_session) is None


def test_add_rejects_a_duplicate_name_a_bad_address_and_a_bad_port(runner, db_session):
    assert runner.invoke(args=add_args(), input="pw\n").exit_code == 0

    duplicate = runner.invoke(args=add_args(), input="pw\n")
    assert duplicate.exit_code != 0
    assert "A mailbox named 'support' already exists." in duplicate.output

    bad_address = add_args("other")
    bad_address[bad_address.index("--address") + 1] = "not an address"
    result = runner.invoke(args=bad_address, input="pw\n")
    assert result.exit_code != 0
    assert "is not an email address" in result.output

    bad_port = add_args("other")
    bad_port[bad_port.index("--imap-port") + 1] = "70000"
    result = runner.invoke(args=bad_port, input="pw\n")
    assert result.exit_code != 0
    assert "between 1 and 65535" in result.output
    assert db_session.scalar(sa.select(sa.func.count(Mailbox.id))) == 1


def test_list_shows_the_mailboxes_but_never_the_password(runner, db_session):
    runner.invoke(args=add_args("support"), input=IMAP_PASSWORD + "\n")
    runner.invoke(args=add_args("billing", "--starttls"), input=IMAP_PASSWORD + "\n")
    mailbox = stored(db_session, "billing")
    mailbox.last_error = "login failed for user support@example.com:\ncheck the password"
    db_session.commit()

    result = runner.invoke(args=["mailboxes", "list"])

    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "billing\tsupport@example.com\timap.example.com:993\tstarttls\tINBOX\tnever\t"
        "login failed for user support@example.com: check the password",
        "support\tsupport@example.com\timap.example.com:993\ttls\tINBOX\tnever\t-",
    ]
    assert IMAP_PASSWORD not in result.output
    assert mailbox.imap_password_encrypted not in result.output


def test_remove_deletes_a_mailbox_nothing_refers_to(runner, db_session):
    runner.invoke(args=add_args(), input="pw\n")

    result = runner.invoke(args=["mailboxes", "remove", "support"])

    assert result.exit_code == 0, result.output
    assert "Removed mailbox support." in result.output
    assert stored(db_session) is None
    again = runner.invoke(args=["mailboxes", "remove", "support"])
    assert again.exit_code != 0
    assert "No mailbox named 'support'." in again.output


def test_remove_keeps_a_mailbox_tickets_refer_to_but_stops_polling_it(runner, db_session):
    runner.invoke(args=add_args(), input=IMAP_PASSWORD + "\n")
    mailbox = stored(db_session)
    ticket = conversation.open_ticket(
        db_session,
        customer=customers.find_or_create(db_session, email="ann@example.net"),
        subject="Card declined",
        channel=Channel.EMAIL,
        now=utcnow(),
        mailbox_id=mailbox.id,
    )
    db_session.commit()

    result = runner.invoke(args=["mailboxes", "remove", "support"])

    assert result.exit_code == 0, result.output
    assert "Deactivated mailbox support" in result.output
    kept = stored(db_session)
    assert (kept.is_active, kept.imap_password_encrypted) == (False, "")
    assert db_session.get(Ticket, ticket.id).mailbox_id == kept.id
    assert runner.invoke(args=["mailboxes", "list"]).output == ""
    reused = runner.invoke(args=add_args(), input="pw\n")
    assert reused.exit_code != 0
    assert "belongs to a removed mailbox" in reused.output


def test_mailboxes_test_prints_folder_uidvalidity_and_counts(runner, db_session, imap_mailbox):
    imap_mailbox.append(SUPPORT, b"Subject: one\r\n\r\nHello\r\n")
    imap_mailbox.append(SUPPORT, b"Subject: two\r\n\r\nHello\r\n", flags=[r"\Seen"])
    add_dovecot_mailbox(runner, imap_mailbox, password=imap_mailbox.users[SUPPORT])

    result = runner.invoke(args=["mailboxes", "test", "support"])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == (
        f"Mailbox support: logged in to {imap_mailbox.host}:{imap_mailbox.port} as {SUPPORT}"
        " (plain)"
    )
    uids = imap_mailbox.uids(SUPPORT)
    assert lines[1:] == [
        "Folder:      INBOX",
        f"UIDVALIDITY: {imap_mailbox.uidvalidity(SUPPORT)}",
        "Messages:    2",
        "Unseen:      1",
        # Reconciliation: nothing polled yet, so both messages are still to be recorded.
        "Recorded:    0 of 2 messages on the server",
        f"Not yet recorded: 2 (UIDs {uids[0]}, {uids[1]})",
    ]
    # Checking changes nothing on the server.
    assert imap_mailbox.uids(SUPPORT, criteria="UNSEEN") != []


def test_mailboxes_test_with_a_wrong_password_fails_in_words_without_the_password(
    runner, db_session, imap_server
):
    add_dovecot_mailbox(runner, imap_server, password=IMAP_PASSWORD)

    result = runner.invoke(args=["mailboxes", "test", "support"])

    assert result.exit_code != 0
    assert (
        f"mailbox support: login failed for user {SUPPORT}: check the user name and password"
        in result.output
    )
    assert IMAP_PASSWORD not in result.output
    assert result.exception is None or IMAP_PASSWORD not in repr(result.exception)


def test_set_password_replaces_the_stored_password(runner, db_session, app, imap_server):
    add_dovecot_mailbox(runner, imap_server, password="old-wrong-password")

    result = runner.invoke(
        args=["mailboxes", "set-password", "support", "--imap-password-stdin"],
        input=imap_server.users[SUPPORT] + "\n",
    )

    assert result.exit_code == 0, result.output
    assert imap_password(stored(db_session), secret_key=app.config["SECRET_KEY"]) == "secret"
    assert runner.invoke(args=["mailboxes", "test", "support"]).exit_code == 0


def test_mailboxes_test_after_secret_key_changed_says_so(runner, db_session, app, imap_server):
    add_dovecot_mailbox(runner, imap_server, password=imap_server.users[SUPPORT])
    app.config["SECRET_KEY"] = "another-secret-key-" + "y" * 32

    result = runner.invoke(args=["mailboxes", "test", "support"])

    assert result.exit_code != 0
    assert "was SECRET_KEY changed?" in result.output


def test_mailboxes_test_reconciles_after_a_poll(runner, db_session, imap_mailbox, app):
    from web.mail_runtime import poll_mailboxes

    imap_mailbox.append(
        SUPPORT, b"Message-ID: <r1@x>\r\nFrom: a@example.org\r\nSubject: one\r\n\r\nHi\r\n"
    )
    add_dovecot_mailbox(runner, imap_mailbox, password=imap_mailbox.users[SUPPORT])
    poll_mailboxes(app, only_due=False)
    imap_mailbox.append(
        SUPPORT, b"Message-ID: <r2@x>\r\nFrom: a@example.org\r\nSubject: two\r\n\r\nHi\r\n"
    )

    output = runner.invoke(args=["mailboxes", "test", "support"]).output

    assert "Recorded:    1 of 2 messages on the server" in output
    assert f"Not yet recorded: 1 (UIDs {imap_mailbox.uids(SUPPORT)[-1]})" in output
