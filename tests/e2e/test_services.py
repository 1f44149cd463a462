"""The service fixtures work against the real services: Dovecot, aiosmtpd and Chromium."""

from __future__ import annotations

import contextlib
import smtplib
import ssl
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError
from playwright.sync_api import Page

from tests.support.dovecot import ImapServer, run_dovecot
from tests.support.services import OutsideAttempts
from tests.support.smtp import SmtpServer

pytestmark = pytest.mark.e2e

SUPPORT = "support@example.com"
SALES = "sales@example.com"


def raw_message(subject: str, to: str = SUPPORT) -> bytes:
    return (
        f"From: Customer <customer@example.net>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{abs(hash(subject))}@example.net>\r\n\r\nHello about {subject}.\r\n"
    ).encode()


# -- Dovecot -----------------------------------------------------------------------------


def test_dovecot_accepts_login_for_every_user_and_rejects_a_wrong_password(
    imap_server: ImapServer,
) -> None:
    for user, password in imap_server.users.items():
        with IMAPClient(imap_server.host, port=imap_server.port, ssl=False, timeout=5) as client:
            assert client.login(user, password) == b"Logged in"
            client.logout()
    with (
        IMAPClient(imap_server.host, port=imap_server.port, ssl=False, timeout=5) as client,
        pytest.raises(LoginError),
    ):
        client.login(SUPPORT, "wrong")


def test_append_returns_increasing_uids_readable_by_the_helpers(
    imap_mailbox: ImapServer,
) -> None:
    raws = [raw_message(f"order {n}") for n in range(3)]
    uids = [imap_mailbox.append(SUPPORT, raw) for raw in raws]
    seen_uid = imap_mailbox.append(SUPPORT, raw_message("already read"), flags=[r"\Seen"])

    assert uids == sorted(uids) and len(set(uids)) == 3
    assert seen_uid > uids[-1]
    assert imap_mailbox.uids(SUPPORT) == [*uids, seen_uid]
    assert imap_mailbox.uids(SUPPORT, criteria="UNSEEN") == uids
    assert r"\Seen" in imap_mailbox.flags(SUPPORT, seen_uid)
    assert r"\Seen" not in imap_mailbox.flags(SUPPORT, uids[0])
    assert imap_mailbox.fetch_raw(SUPPORT, uids[1]) == raws[1]
    # fetch_raw peeks: reading the message must not mark it \Seen.
    assert r"\Seen" not in imap_mailbox.flags(SUPPORT, uids[1])


def test_users_have_separate_mailboxes_and_clear_empties_a_folder(
    imap_mailbox: ImapServer,
) -> None:
    imap_mailbox.append(SALES, raw_message("quote", to=SALES))
    imap_mailbox.append(SUPPORT, raw_message("help"))
    imap_mailbox.append(SUPPORT, raw_message("archived"), folder="Archive")

    assert len(imap_mailbox.uids(SALES)) == 1
    assert len(imap_mailbox.uids(SUPPORT)) == 1
    imap_mailbox.clear(SUPPORT)
    assert imap_mailbox.uids(SUPPORT) == []
    assert len(imap_mailbox.uids(SUPPORT, folder="Archive")) == 1
    assert len(imap_mailbox.uids(SALES)) == 1


def test_imap_mailbox_starts_each_test_empty(imap_mailbox: ImapServer) -> None:
    # Runs after the tests above appended mail; reset() must have removed all of it.
    for user in imap_mailbox.users:
        assert imap_mailbox.uids(user) == []
        assert imap_mailbox.uids(user, folder="Archive") == []
        assert sorted(imap_mailbox.folders(user)) == ["Archive", "INBOX", "Junk", "Sent", "Trash"]


def test_recreate_folder_gives_a_new_uidvalidity(imap_mailbox: ImapServer) -> None:
    imap_mailbox.create_folder(SUPPORT, "Projects/2024")
    imap_mailbox.append(SUPPORT, raw_message("project"), folder="Projects/2024")
    before = imap_mailbox.uidvalidity(SUPPORT, "Projects/2024")

    imap_mailbox.recreate_folder(SUPPORT, "Projects/2024")

    assert imap_mailbox.uidvalidity(SUPPORT, "Projects/2024") != before
    assert imap_mailbox.uids(SUPPORT, folder="Projects/2024") == []


def test_recreate_inbox_gives_a_new_uidvalidity_seen_by_a_real_client(
    imap_mailbox: ImapServer,
) -> None:
    imap_mailbox.append(SUPPORT, raw_message("first"))
    with imap_mailbox.connect(SUPPORT) as client:
        before = client.select_folder("INBOX")[b"UIDVALIDITY"]

    imap_mailbox.recreate_folder(SUPPORT, "INBOX")

    with imap_mailbox.connect(SUPPORT) as client:
        selected = client.select_folder("INBOX")
    assert selected[b"UIDVALIDITY"] != before
    assert selected[b"EXISTS"] == 0
    # New mail is numbered from 1 again under the new UIDVALIDITY.
    assert imap_mailbox.append(SUPPORT, raw_message("second")) == 1


def test_reset_uidvalidity_keeps_messages_under_new_uids(imap_mailbox: ImapServer) -> None:
    for n in range(3):
        imap_mailbox.append(SUPPORT, raw_message(f"expunged {n}"))
    imap_mailbox.clear(SUPPORT)  # expunging keeps UIDNEXT, so the next UIDs are above 3
    old = [imap_mailbox.append(SUPPORT, raw_message(f"renumber {n}")) for n in range(3)]
    before = imap_mailbox.uidvalidity(SUPPORT)

    imap_mailbox.reset_uidvalidity(SUPPORT)
    imap_mailbox.reset_uidvalidity(SUPPORT)  # twice in the same second: still increasing

    assert min(old) > 3
    assert imap_mailbox.uidvalidity(SUPPORT) > before
    assert imap_mailbox.uids(SUPPORT) == [1, 2, 3]
    subjects = {imap_mailbox.fetch_raw(SUPPORT, uid).split(b"\r\n")[2] for uid in (1, 2, 3)}
    assert subjects == {b"Subject: renumber 0", b"Subject: renumber 1", b"Subject: renumber 2"}


def test_reset_uidvalidity_works_for_other_folders(imap_mailbox: ImapServer) -> None:
    imap_mailbox.create_folder(SUPPORT, "Projects/2024")
    for folder in ("Archive", "Projects/2024"):
        imap_mailbox.append(SUPPORT, raw_message(f"in {folder}"), folder=folder)
        imap_mailbox.clear(SUPPORT, folder)
        imap_mailbox.append(SUPPORT, raw_message(f"kept in {folder}"), folder=folder)
        before = imap_mailbox.uidvalidity(SUPPORT, folder)

        imap_mailbox.reset_uidvalidity(SUPPORT, folder)

        assert imap_mailbox.uidvalidity(SUPPORT, folder) > before
        assert imap_mailbox.uids(SUPPORT, folder=folder) == [1]


def test_dovecot_instance_stops_without_leftover_processes() -> None:
    with run_dovecot() as server:
        root = server.mail_root.parent
        master = int((root / "run" / "master.pid").read_text().split()[0])
        assert server.uids(SUPPORT) == []
        assert _processes_mentioning(root.name)

    assert not Path(f"/proc/{master}").exists()
    assert _processes_mentioning(root.name) == []
    assert not root.exists()


def _processes_mentioning(marker: str) -> list[int]:
    """Pids whose command line names this instance (the master's config path or the
    children's ``instance_name``-based titles)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if marker.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
    return found


# -- Dovecot with TLS ----------------------------------------------------------------------


def test_tls_dovecot_accepts_tls_without_verification(imap_server_tls: ImapServer) -> None:
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE

    with IMAPClient(
        imap_server_tls.host, port=imap_server_tls.port, ssl=True, ssl_context=insecure, timeout=5
    ) as client:
        assert client.login(SUPPORT, imap_server_tls.users[SUPPORT]) == b"Logged in"
        client.logout()


def test_tls_dovecot_certificate_is_self_signed(imap_server_tls: ImapServer) -> None:
    # Verification against the system trust store fails...
    with pytest.raises(ssl.SSLCertVerificationError):
        IMAPClient(
            imap_server_tls.host,
            port=imap_server_tls.port,
            ssl=True,
            ssl_context=ssl.create_default_context(),
            timeout=5,
        )
    # ...and succeeds when trusting exactly the fixture's certificate.
    uid = imap_server_tls.append(SUPPORT, raw_message("over tls"))
    assert uid in imap_server_tls.uids(SUPPORT)


def test_tls_dovecot_refuses_plain_login_until_starttls(imap_server_tls: ImapServer) -> None:
    assert imap_server_tls.starttls_port is not None
    with IMAPClient(
        imap_server_tls.host, port=imap_server_tls.starttls_port, ssl=False, timeout=5
    ) as client:
        capabilities = client.capabilities()
        assert b"LOGINDISABLED" in capabilities and b"STARTTLS" in capabilities
        with pytest.raises(LoginError, match="Plaintext authentication disallowed"):
            client.login(SUPPORT, imap_server_tls.users[SUPPORT])

        client.starttls(imap_server_tls.ssl_context())
        assert client.login(SUPPORT, imap_server_tls.users[SUPPORT]) == b"Logged in"
        client.logout()


# -- aiosmtpd ------------------------------------------------------------------------------


def outgoing(subject: str = "Your ticket #42", to: str = "customer@example.net") -> EmailMessage:
    message = EmailMessage()
    message["From"] = SUPPORT
    message["To"] = to
    message["Subject"] = subject
    message.set_content("We are on it.\n")
    return message


def test_smtp_server_receives_a_message_sent_with_smtplib(smtp_server: SmtpServer) -> None:
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client:
        refused = client.send_message(outgoing())

    assert refused == {}
    [received] = smtp_server.messages
    assert received.mail_from == SUPPORT
    assert received.rcpt_tos == ["customer@example.net"]
    assert received.message["Subject"] == "Your ticket #42"
    assert received.message.get_content() == "We are on it.\n"
    assert b"\r\nSubject: Your ticket #42\r\n" in received.content
    assert received.auth_user is None


def test_fail_next_451_refuses_data_twice_then_accepts(smtp_server: SmtpServer) -> None:
    smtp_server.fail_next(451, "4.3.0 Try again later", times=2)

    for _attempt in range(2):
        with (
            smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client,
            pytest.raises(smtplib.SMTPDataError) as refused,
        ):
            client.send_message(outgoing())
        assert refused.value.smtp_code == 451
        assert refused.value.smtp_error == b"4.3.0 Try again later"
        assert smtp_server.messages == []

    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client:
        client.send_message(outgoing())
    assert len(smtp_server.messages) == 1
    assert [(r.stage, r.code) for r in smtp_server.rejections] == [("data", 451)] * 2


def test_fail_next_550_refuses_one_recipient_only(smtp_server: SmtpServer) -> None:
    smtp_server.fail_next(550, "5.1.1 No such user", rcpt="gone@example.net")

    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client:
        refused = client.sendmail(
            SUPPORT, ["ok@example.net", "gone@example.net"], outgoing().as_bytes()
        )

    assert refused == {"gone@example.net": (550, b"5.1.1 No such user")}
    [received] = smtp_server.messages
    assert received.rcpt_tos == ["ok@example.net"]


def test_fail_next_for_the_only_recipient_raises_recipients_refused(
    smtp_server: SmtpServer,
) -> None:
    smtp_server.fail_next(550, "5.1.1 No such user", rcpt="gone@example.net")

    with (
        smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client,
        pytest.raises(smtplib.SMTPRecipientsRefused) as refused,
    ):
        client.send_message(outgoing(to="gone@example.net"))

    assert refused.value.recipients == {"gone@example.net": (550, b"5.1.1 No such user")}
    assert smtp_server.messages == []


def test_fail_next_at_mail_from_raises_sender_refused(smtp_server: SmtpServer) -> None:
    smtp_server.fail_next(421, "4.7.0 Too many connections", stage="mail")

    with (
        smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client,
        pytest.raises(smtplib.SMTPSenderRefused) as refused,
    ):
        client.send_message(outgoing())
    assert refused.value.smtp_code == 421


def test_smtp_auth_server_requires_and_records_login(smtp_server_auth: SmtpServer) -> None:
    assert smtp_server_auth.username and smtp_server_auth.password
    with smtplib.SMTP(smtp_server_auth.host, smtp_server_auth.port, timeout=5) as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.send_message(outgoing())
        assert refused.value.smtp_code == 530

    with (
        smtplib.SMTP(smtp_server_auth.host, smtp_server_auth.port, timeout=5) as client,
        pytest.raises(smtplib.SMTPAuthenticationError),
    ):
        client.login(smtp_server_auth.username, "wrong")

    with smtplib.SMTP(smtp_server_auth.host, smtp_server_auth.port, timeout=5) as client:
        client.login(smtp_server_auth.username, smtp_server_auth.password)
        client.send_message(outgoing())
    [received] = smtp_server_auth.messages
    assert received.auth_user == smtp_server_auth.username


# -- Chromium ------------------------------------------------------------------------------

PAGES = {
    "/": b"<!doctype html><title>Handoff test page</title><h1>Inbox</h1>",
    "/outside": (
        b"<!doctype html><title>Remote image</title>"
        b'<img id="pixel" alt="tracker" src="http://example.com/x">'
    ),
}


class _PageHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = PAGES.get(self.path)
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        self.wfile.write(body or b"not found")

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture(scope="module")
def loopback_site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_chromium_loads_a_loopback_page(page: Page, loopback_site: str) -> None:
    page.goto(f"{loopback_site}/")

    assert page.title() == "Handoff test page"
    assert page.get_by_role("heading", name="Inbox").is_visible()


def test_browser_request_to_outside_host_is_blocked_and_recorded(
    page: Page, loopback_site: str, outside_requests: OutsideAttempts
) -> None:
    page.goto(f"{loopback_site}/outside")

    assert outside_requests.take() == ["http://example.com/x"]
    # The image never loaded: the request was aborted, not sent.
    assert page.locator("#pixel").evaluate("img => img.complete && img.naturalWidth") == 0
