"""mail.imap against a real Dovecot: UIDs, PEEK fetches, flags, moves, and failures in words."""

from __future__ import annotations

import hashlib
import logging
import socket
import ssl
import traceback
from collections.abc import Iterator

import pytest
from imapclient import IMAPClient

from mail.imap import (
    FetchedMessage,
    ImapError,
    ImapSession,
    ImapSettings,
    check_mailbox,
    connect,
)
from tests.support.dovecot import ImapServer
from tests.support.services import free_port
from ticketing.models import MailboxSecurity

pytestmark = pytest.mark.e2e

SUPPORT = "support@example.com"
SECRET_LOOKING_PASSWORD = "Tr0ub4dor&3-not-the-password"


def raw_message(n: int, body: str | None = None) -> bytes:
    text = body if body is not None else f"Hello, this is message {n}.\r\n"
    return (
        f"From: Customer {n} <customer{n}@example.net>\r\nTo: {SUPPORT}\r\n"
        f"Subject: Order {n}\r\nMessage-ID: <order-{n}@example.net>\r\n"
        f"Date: Mon, 23 Nov 2026 09:00:00 +0000\r\n\r\n{text}"
    ).encode()


def big_message(n: int, size: int = 300_000) -> bytes:
    line = "x" * 76 + "\r\n"
    return raw_message(n, body=line * (size // len(line)))


def settings_for(server: ImapServer, **overrides: object) -> ImapSettings:
    values: dict[str, object] = {
        "host": server.host,
        "port": server.port,
        "user": SUPPORT,
        "password": server.users[SUPPORT],
        "security": MailboxSecurity.PLAIN,
        "timeout": 10.0,
    }
    values.update(overrides)
    return ImapSettings(**values)  # type: ignore[arg-type]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def session(imap_mailbox: ImapServer) -> Iterator[ImapSession]:
    """A logged-in adapter session on support@'s INBOX (emptied first), not yet selected."""
    with connect(settings_for(imap_mailbox)) as opened:
        yield opened


def refused(settings: ImapSettings) -> ImapError:
    with pytest.raises(ImapError) as info:
        connect(settings).close()
    return info.value


# -- select, UIDs ------------------------------------------------------------------------


def test_select_reports_uidvalidity_uidnext_and_message_count(
    imap_mailbox: ImapServer, session: ImapSession
) -> None:
    uids = [imap_mailbox.append(SUPPORT, raw_message(n)) for n in range(3)]

    state = session.select()

    assert state.uidvalidity == imap_mailbox.uidvalidity(SUPPORT)
    assert state.exists == 3
    assert state.uidnext is not None and state.uidnext > uids[-1]


def test_new_uids_returns_only_uids_after_the_bookmark_in_order(
    imap_mailbox: ImapServer, session: ImapSession
) -> None:
    uids = [imap_mailbox.append(SUPPORT, raw_message(n)) for n in range(5)]
    session.select()

    assert session.new_uids(0) == uids
    assert session.new_uids(uids[1]) == uids[2:]
    assert session.all_uids() == uids


def test_new_uids_is_empty_when_the_bookmark_is_the_highest_uid_despite_the_n_star_quirk(
    imap_mailbox: ImapServer, session: ImapSession
) -> None:
    uids = [imap_mailbox.append(SUPPORT, raw_message(n)) for n in range(3)]
    session.select()
    # RFC 3501: "UID n:*" includes the highest UID even when it is below n.
    with imap_mailbox.connect(SUPPORT) as raw_client:
        raw_client.select_folder("INBOX", readonly=True)
        assert raw_client.search(["UID", f"{uids[-1] + 1}:*"]) == [uids[-1]]

    assert session.new_uids(uids[-1]) == []
    assert session.new_uids(uids[-1] + 100) == []


def test_new_uids_in_an_empty_folder_is_empty(session: ImapSession) -> None:
    session.select()
    assert session.new_uids(0) == []
    assert session.all_uids() == []


def test_a_missing_folder_is_an_error_naming_the_folder(imap_mailbox: ImapServer) -> None:
    with (
        connect(settings_for(imap_mailbox, folder="Nope")) as session,
        pytest.raises(ImapError) as info,
    ):
        session.select()
    assert info.value.kind == "folder"
    assert "'Nope' does not exist" in str(info.value)


# -- fetch ---------------------------------------------------------------------------------


def test_fetch_returns_the_exact_bytes_and_leaves_messages_unseen(
    imap_mailbox: ImapServer, session: ImapSession
) -> None:
    raws = [raw_message(n) for n in range(3)]
    uids = [imap_mailbox.append(SUPPORT, raw) for raw in raws]
    session.select()

    fetched = list(session.fetch(uids))

    assert [m.uid for m in fetched] == uids
    for message, raw in zip(fetched, raws, strict=True):
        assert sha256(message.raw) == sha256(imap_mailbox.fetch_raw(SUPPORT, message.uid))
        assert message.raw == raw  # CRLF in, CRLF out: Dovecot stores these unchanged
        assert message.size == len(raw)
        assert not message.is_truncated
        assert r"\Seen" not in imap_mailbox.flags(SUPPORT, message.uid)


def test_fetch_with_max_bytes_downloads_only_the_header_of_a_big_message(
    imap_mailbox: ImapServer, session: ImapSession
) -> None:
    small, big = raw_message(1), big_message(2)
    small_uid = imap_mailbox.append(SUPPORT, small)
    big_uid = imap_mailbox.append(SUPPORT, big)
    session.select()

    fetched = {m.uid: m for m in session.fetch([big_uid, small_uid], max_bytes=100_000)}

    assert session.sizes([small_uid, big_uid]) == {small_uid: len(small), big_uid: len(big)}
    assert fetched[small_uid].raw == small and not fetched[small_uid].is_truncated
    header = fetched[big_uid]
    assert header.is_truncated
    assert header.size == len(big) == len(imap_mailbox.fetch_raw(SUPPORT, big_uid))
    assert header.raw == big.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    assert r"\Seen" not in imap_mailbox.flags(SUPPORT, big_uid)


def test_fetch_skips_uids_that_were_expunged_meanwhile(
    imap_mailbox: ImapServer, session: ImapSession
) -> None:
    uids = [imap_mailbox.append(SUPPORT, raw_message(n)) for n in range(3)]
    session.select()
    with imap_mailbox.connect(SUPPORT) as other:  # another client expunges the middle one
        other.select_folder("INBOX")
        other.delete_messages([uids[1]])
        other.expunge()

    fetched = list(session.fetch([*uids, uids[-1] + 50], max_bytes=10_000))

    assert [m.uid for m in fetched] == [uids[0], uids[2]]
    assert session.sizes(uids) == {uids[0]: len(raw_message(0)), uids[2]: len(raw_message(2))}


def test_fetch_works_in_batches_and_yields_120_messages_in_uid_order(
    imap_mailbox: ImapServer, session: ImapSession
) -> None:
    raws = [raw_message(n) for n in range(120)]
    with imap_mailbox.connect(SUPPORT) as client:
        for raw in raws:
            client.append("INBOX", raw)
    session.select()
    uids = session.new_uids(0)
    fetch_sizes: list[int] = []
    original_fetch = session._client.fetch

    def counting_fetch(messages, data, modifiers=None):  # type: ignore[no-untyped-def]
        fetch_sizes.append(len(messages))
        return original_fetch(messages, data, modifiers)

    session._client.fetch = counting_fetch  # type: ignore[method-assign]

    stream = session.fetch(list(reversed(uids)), batch_size=50)
    first = next(stream)
    assert fetch_sizes == [50]  # lazily: only the first batch is downloaded so far
    fetched: list[FetchedMessage] = [first, *stream]

    assert fetch_sizes == [50, 50, 20]
    assert [m.uid for m in fetched] == uids
    assert [m.raw for m in fetched] == raws


# -- flags and moves -----------------------------------------------------------------------


def test_mark_processed_sets_seen_and_leaves_the_message_in_place(
    imap_mailbox: ImapServer, session: ImapSession
) -> None:
    uids = [imap_mailbox.append(SUPPORT, raw_message(n)) for n in range(2)]
    session.select()

    session.mark_processed([uids[0]])

    assert r"\Seen" in imap_mailbox.flags(SUPPORT, uids[0])
    assert r"\Seen" not in imap_mailbox.flags(SUPPORT, uids[1])
    assert imap_mailbox.uids(SUPPORT) == uids


def test_mark_processed_moves_to_a_folder_it_creates_and_deletes_nothing(
    imap_mailbox: ImapServer, session: ImapSession
) -> None:
    raws = [raw_message(n) for n in range(3)]
    uids = [imap_mailbox.append(SUPPORT, raw) for raw in raws]
    session.select()
    assert "Handoff/Processed" not in imap_mailbox.folders(SUPPORT)
    assert session.has_capability("MOVE")

    session.mark_processed(uids[:2], move_to="Handoff/Processed")

    assert "Handoff/Processed" in imap_mailbox.folders(SUPPORT)
    assert imap_mailbox.uids(SUPPORT) == [uids[2]]
    moved = imap_mailbox.uids(SUPPORT, "Handoff/Processed")
    assert len(moved) == 2
    assert {imap_mailbox.fetch_raw(SUPPORT, uid, "Handoff/Processed") for uid in moved} == set(
        raws[:2]
    )
    for uid in moved:
        flags = imap_mailbox.flags(SUPPORT, uid, "Handoff/Processed")
        assert r"\Seen" in flags and r"\Deleted" not in flags
    # Moving into an existing folder works too.
    session.mark_processed([uids[2]], move_to="Handoff/Processed")
    assert len(imap_mailbox.uids(SUPPORT, "Handoff/Processed")) == 3


def test_mark_processed_without_move_capability_copies_and_keeps_the_seen_original(
    imap_mailbox: ImapServer, session: ImapSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = raw_message(1)
    uid = imap_mailbox.append(SUPPORT, raw)
    session.select()
    monkeypatch.setattr(session, "has_capability", lambda name: name.upper() != "MOVE")

    session.mark_processed([uid], move_to="Archive")

    assert imap_mailbox.uids(SUPPORT) == [uid]
    flags = imap_mailbox.flags(SUPPORT, uid)
    assert r"\Seen" in flags and r"\Deleted" not in flags  # the original is never deleted
    (copied,) = imap_mailbox.uids(SUPPORT, "Archive")
    assert imap_mailbox.fetch_raw(SUPPORT, copied, "Archive") == raw


def test_check_mailbox_reports_folder_uidvalidity_and_counts(imap_mailbox: ImapServer) -> None:
    uids = [imap_mailbox.append(SUPPORT, raw_message(n)) for n in range(3)]
    imap_mailbox.append(SUPPORT, raw_message(9), flags=[r"\Seen"])

    result = check_mailbox(settings_for(imap_mailbox))

    assert result.folder == "INBOX"
    assert result.uidvalidity == imap_mailbox.uidvalidity(SUPPORT)
    assert (result.exists, result.unseen) == (4, 3)
    assert all(r"\Seen" not in imap_mailbox.flags(SUPPORT, uid) for uid in uids)


# -- failures ------------------------------------------------------------------------------


def test_wrong_password_is_an_error_in_words_that_never_contains_the_password(
    imap_server: ImapServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # imapclient logs the protocol at DEBUG
    settings = settings_for(imap_server, password=SECRET_LOOKING_PASSWORD)

    error = refused(settings)

    assert error.kind == "auth"
    assert str(error) == (f"login failed for user {SUPPORT}: check the user name and password")
    shown = "".join(traceback.format_exception(error)) + repr(error) + repr(settings)
    assert SECRET_LOOKING_PASSWORD not in shown
    assert SECRET_LOOKING_PASSWORD not in caplog.text


def test_connection_refused_is_an_error_in_words(imap_server: ImapServer) -> None:
    error = refused(settings_for(imap_server, port=free_port()))
    assert error.kind == "connect"
    assert "connection refused" in str(error)


def test_a_server_that_never_answers_times_out_with_an_error() -> None:
    with socket.socket() as silent:  # accepts the TCP connection, never sends a greeting
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        settings = ImapSettings(
            host="127.0.0.1",
            port=silent.getsockname()[1],
            user=SUPPORT,
            password="x",
            security=MailboxSecurity.PLAIN,
            timeout=0.5,
        )
        error = refused(settings)
    assert error.kind == "connect"
    assert "timed out after 0.5s" in str(error)


def test_implicit_tls_works_with_a_context_trusting_the_server_certificate(
    imap_server_tls: ImapServer,
) -> None:
    settings = settings_for(
        imap_server_tls, security=MailboxSecurity.TLS, ssl_context=imap_server_tls.ssl_context()
    )
    with connect(settings) as session:
        assert session.select().uidvalidity > 0


def test_implicit_tls_refuses_an_untrusted_certificate_by_default(
    imap_server_tls: ImapServer,
) -> None:
    error = refused(settings_for(imap_server_tls, security=MailboxSecurity.TLS))
    assert error.kind == "tls"
    assert "certificate" in str(error)


def test_implicit_tls_with_verification_off_connects(imap_server_tls: ImapServer) -> None:
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    settings = settings_for(imap_server_tls, security=MailboxSecurity.TLS, ssl_context=insecure)
    assert check_mailbox(settings).folder == "INBOX"


def test_starttls_upgrades_before_logging_in(imap_server_tls: ImapServer) -> None:
    settings = settings_for(
        imap_server_tls,
        port=imap_server_tls.starttls_port,
        security=MailboxSecurity.STARTTLS,
        ssl_context=imap_server_tls.ssl_context(),
    )
    assert check_mailbox(settings).folder == "INBOX"


def test_starttls_to_a_server_without_it_fails_and_never_logs_in_in_plain_text(
    imap_server: ImapServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    logins: list[str] = []
    original_login = IMAPClient.login

    def recording_login(self: IMAPClient, username: str, password: str) -> object:
        logins.append(username)
        return original_login(self, username, password)

    monkeypatch.setattr(IMAPClient, "login", recording_login)

    error = refused(settings_for(imap_server, security=MailboxSecurity.STARTTLS))

    assert error.kind == "tls"
    assert "server refused STARTTLS" in str(error)
    assert logins == []


def test_plain_login_where_the_server_requires_tls_is_refused_before_sending_the_password(
    imap_server_tls: ImapServer,
) -> None:
    error = refused(settings_for(imap_server_tls, port=imap_server_tls.starttls_port))
    assert error.kind == "auth"
    assert "without encryption" in str(error)


def test_implicit_tls_against_a_plain_port_fails_cleanly(imap_server: ImapServer) -> None:
    error = refused(settings_for(imap_server, security=MailboxSecurity.TLS))
    assert error.kind == "tls"
    assert f"TLS handshake with {imap_server.host}:{imap_server.port} failed" in str(error)


def test_settings_repr_hides_the_password() -> None:
    settings = ImapSettings(
        host="imap.example.com",
        port=993,
        user=SUPPORT,
        password=SECRET_LOOKING_PASSWORD,
        security=MailboxSecurity.TLS,
    )
    assert SECRET_LOOKING_PASSWORD not in repr(settings)


def test_mark_processed_again_after_a_crash_is_harmless_when_the_mail_already_moved(
    imap_mailbox: ImapServer, session: ImapSession
) -> None:
    # A poller that moved mail but crashed before recording it repeats the call next run.
    uid = imap_mailbox.append(SUPPORT, raw_message(1))
    session.select()
    session.mark_processed([uid], move_to="Processed")

    session.mark_processed([uid], move_to="Processed")
    session.mark_processed([uid])

    assert imap_mailbox.uids(SUPPORT) == []
    assert len(imap_mailbox.uids(SUPPORT, "Processed")) == 1
