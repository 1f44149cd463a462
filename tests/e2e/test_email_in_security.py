"""Email in, attacked: hostile mail APPENDed to a real Dovecot, polled, then looked at.

Each test is one case of /work/shared/security.md (its number in the test's docstring): what a
sender controls — file names, file types, From, Reply-To, headers, charsets, plus-addresses —
never decides where bytes land, who a message is from, or which ticket it joins, and the
poller survives all of it.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import tempfile
import time
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest
import sqlalchemy as sa
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page

from mail.inbound import QUARANTINE_ADDRESS, content_digest, synthetic_message_id
from tests.conftest import TEST_PASSWORD
from tests.e2e.test_agent_browser import sign_in
from tests.support.flows import (
    SUPPORT,
    SimulatedCrash,
    customer_entries,
    entries,
    poll,
    tickets,
)
from tests.support.mailfactory import make_email
from ticketing.models import (
    Attachment,
    Customer,
    Entry,
    EntryKind,
    Participant,
    Receipt,
    ReceiptStatus,
)
from web.mail_runtime import poll_mailboxes

pytestmark = pytest.mark.e2e

DATE = "Mon, 23 Nov 2026 09:00:00 +0000"
BOUNDARY = "=_handoff_test_boundary"
# Characters a display name must never contain: path separators, NUL and other controls,
# bidi overrides/isolates/marks and zero-width characters.
_BIDI_AND_INVISIBLE = set(
    "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u061c"
    "\u200b\u200c\u200d\u2060\ufeff\u180e"
)
_BLOB_PATH = re.compile(r"blobs/([0-9a-f]{2})/([0-9a-f]{2})/(\1\2[0-9a-f]{60})")
_ATTACHMENT_LINK = re.compile(r'href="(/attachments/\d+/[^"]+)"')


def crlf(raw: bytes) -> bytes:
    """`make_email` writes LF line ends; Dovecot hands back CRLF. Append what it will return."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def multipart_email(
    parts: list[bytes],
    *,
    message_id: str,
    subject: str = "Files for you",
    sender: str = "Ann Customer <ann@example.org>",
) -> bytes:
    """A multipart/mixed message with a short text part and `parts` (raw MIME parts)."""
    head = (
        f"From: {sender}\r\nTo: {SUPPORT}\r\nSubject: {subject}\r\nDate: {DATE}\r\n"
        f"Message-ID: <{message_id}>\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/mixed; boundary="{BOUNDARY}"\r\n\r\n'
    ).encode()
    body = f"--{BOUNDARY}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee attached.\r\n"
    out = head + body.encode()
    for part in parts:
        out += f"--{BOUNDARY}\r\n".encode() + part + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def attachment_part(
    disposition_params: str, data: bytes, content_type: str = "application/octet-stream"
) -> bytes:
    """One base64 attachment part with the Content-Disposition parameters written verbatim."""
    encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return (
        f"Content-Type: {content_type}\r\n"
        f"Content-Disposition: attachment; {disposition_params}\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode() + encoded


def text_email(
    body: bytes, *, content_type: str, message_id: str, subject: str, cte: str | None = None
) -> bytes:
    """A single-part text message whose body bytes and Content-Type are written verbatim."""
    head = (
        f"From: Ann Customer <ann@example.org>\r\nTo: {SUPPORT}\r\nSubject: {subject}\r\n"
        f"Date: {DATE}\r\nMessage-ID: <{message_id}>\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: {content_type}\r\n"
        + (f"Content-Transfer-Encoding: {cte}\r\n" if cte else "")
        + "\r\n"
    ).encode()
    return head + body


def attachment_links(client, ticket_number: int) -> list[str]:
    html = client.get(f"/tickets/{ticket_number}").get_data(as_text=True)
    return [link.replace("&amp;", "&") for link in _ATTACHMENT_LINK.findall(html)]


def blob_bytes(app, sha256: str) -> bytes:
    return app.extensions["handoff_blobs"].get(sha256)


# --- case 18: attachment file names never choose where bytes land -------------------------------

HOSTILE_NAMES: list[tuple[str, str]] = [
    # (what the sender means, the Content-Disposition parameters that say it)
    ("../../../../etc/passwd", 'filename="../../../../etc/passwd"'),
    ("..\\..\\win.ini", "filename*=UTF-8''..%5C..%5Cwin.ini"),
    ("/abs/x", 'filename="/abs/x"'),
    ("a\x00.txt", "filename*=UTF-8''a%00.txt"),
    ("\u202egnp.exe", "filename*=UTF-8''%E2%80%AEgnp.exe"),
    (".htaccess", 'filename=".htaccess"'),
    ("\u200b.htaccess", "filename*=UTF-8''%E2%80%8B.htaccess"),
    ("n" * 396 + ".pdf", 'filename="' + "n" * 396 + '.pdf"'),
    (
        "../../etc/cron.d/split.txt",  # RFC 2231 continuations, the path split across them
        "filename*0*=UTF-8''%2E%2E%2F%2E%2E%2Fetc%2F; filename*1*=cron.d%2Fsplit.txt",
    ),
    (
        "../../tmp/evil.sh",  # an RFC 2047 encoded-word hiding the slashes
        'filename="=?UTF-8?B?' + base64.b64encode(b"../../tmp/evil.sh").decode() + '?="',
    ),
]


def _snapshot_outside(data_dir: Path) -> dict[str, object]:
    """What a path traversal would change outside the data dir."""
    places = {Path.cwd(), Path(tempfile.gettempdir()), data_dir.parent, data_dir / "blobs"}
    stray = sorted(
        str(place / name)
        for place in places
        for name in ("passwd", "win.ini", "x", "evil.sh", "split.txt", "htaccess", ".htaccess")
        if (place / name).exists()
    )
    return {
        "/etc/passwd": os.stat("/etc/passwd").st_mtime_ns,
        "/abs exists": Path("/abs").exists(),
        "/etc/cron.d/split.txt": Path("/etc/cron.d/split.txt").exists(),
        "/tmp/evil.sh": Path("/tmp/evil.sh").exists(),
        "stray": stray,
    }


def test_hostile_attachment_names_are_stored_by_digest_and_downloaded_safely(
    app, db_session, mailbox, imap_mailbox, agent, login
):
    """Security case 18 (FreeScout CVE-2026-28289)."""
    data_dir = Path(app.config["HANDOFF_DATA_DIR"])
    before = _snapshot_outside(data_dir)
    payloads = [f"payload {i} for {meant!r}".encode() for i, (meant, _) in enumerate(HOSTILE_NAMES)]
    raw = multipart_email(
        [
            attachment_part(params, data)
            for (_, params), data in zip(HOSTILE_NAMES, payloads, strict=True)
        ],
        message_id="names@x",
    )
    imap_mailbox.append(SUPPORT, raw)

    [result] = poll(app)
    assert result.processed == 1 and result.parked == 0

    [ticket] = tickets(db_session)
    [entry] = entries(db_session, ticket)
    stored = list(
        db_session.scalars(
            sa.select(Attachment).where(Attachment.entry_id == entry.id).order_by(Attachment.id)
        )
    )
    assert [a.sha256 for a in stored] == [hashlib.sha256(p).hexdigest() for p in payloads]

    # Every file in the data dir is content-addressed under blobs/ (or the database).
    expected_blobs = {hashlib.sha256(p).hexdigest() for p in payloads} | {entry.raw_sha256}
    found_blobs = set()
    for path in data_dir.rglob("*"):
        relative = path.relative_to(data_dir).as_posix()
        if path.is_dir():
            assert re.fullmatch(r"blobs(/[0-9a-f]{2}){0,2}", relative), relative
            continue
        if relative == "secret_key" or relative.startswith("handoff.db"):
            continue
        match = _BLOB_PATH.fullmatch(relative)
        assert match, f"unexpected file in the data dir: {relative!r}"
        found_blobs.add(match.group(3))
        assert hashlib.sha256(path.read_bytes()).hexdigest() == match.group(3)
    # (other blobs may be there too, e.g. the acknowledgement we sent; all by digest)
    assert expected_blobs <= found_blobs
    # ... and nothing appeared or changed anywhere else.
    assert _snapshot_outside(data_dir) == before
    assert sorted(p.name for p in data_dir.parent.iterdir()) == [data_dir.name]

    names = [a.filename for a in stored]
    for name in names:
        assert name and len(name) <= 255, name
        assert not any(c in "/\\\x00" for c in name), name
        assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in name), repr(name)
        assert not _BIDI_AND_INVISIBLE & set(name), repr(name)
        assert not name.startswith("."), name
    # What is left is the last path component, readable.
    assert names[0] == "passwd" and names[1] == "win.ini" and names[2] == "x"
    assert names[4] == "gnp.exe" and names[5] == names[6] == "htaccess"
    assert names[7].endswith(".pdf") and names[8] == "split.txt" and names[9] == "evil.sh"

    client = login(agent)
    links = attachment_links(client, ticket.number)
    assert len(links) == len(HOSTILE_NAMES)
    downloaded = []
    for link in links:
        response = client.get(link)
        assert response.status_code == 200, link
        disposition = response.headers["Content-Disposition"]
        assert disposition.startswith("attachment;"), disposition
        offered = re.search(r"filename\*=UTF-8''(\S+)", disposition)
        assert offered, disposition
        assert unquote(offered.group(1)) in names
        assert "\r" not in disposition and "\n" not in disposition
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Content-Type"] == "application/octet-stream"
        downloaded.append(response.data)
    assert sorted(downloaded) == sorted(payloads)


# --- case 19: dangerous attachment types never run in the agent's browser ----------------------

DANGEROUS = [
    (
        "invoice.html",
        "text/html",
        b"<html><body><script>window.__pwned=1;alert('html')</script>Invoice</body></html>",
    ),
    (
        "logo.svg",
        "image/svg+xml",
        b'<svg xmlns="http://www.w3.org/2000/svg" onload="window.__pwned=2;alert(\'svg\')">'
        b"<script>window.__pwned=3;alert('svg script')</script><circle r='5'/></svg>",
    ),
    (
        "data.xml",
        "application/xml",
        b'<?xml version="1.0"?><root xmlns:h="http://www.w3.org/1999/xhtml">'
        b"<h:script>window.__pwned=4;alert('xml')</h:script></root>",
    ),
    (
        "doc.pdf",
        "application/pdf",
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /OpenAction << /S /JavaScript "
        b"/JS (app.alert('pdf')) >> >> endobj\n<script>window.__pwned=5</script>\n%%EOF\n",
    ),
    (
        "photo.png",
        "image/png",
        b"<html><script>window.__pwned=6;alert('png')</script></html>",
    ),
]


def test_dangerous_attachment_types_download_and_never_run_in_the_browser(
    app, db_session, mailbox, imap_mailbox, agent, login, page: Page, live_server
):
    """Security case 19 (django-helpdesk 2.3.3, osTicket SVG, FreeScout #1359, OTRS CVE-2005-3895)."""
    imap_mailbox.append(
        SUPPORT,
        crlf(make_email(message_id="types@x", subject="Documents", attachments=DANGEROUS)),
    )
    poll(app)
    [ticket] = tickets(db_session)
    by_name = {name: data for name, _, data in DANGEROUS}

    dialogs: list[str] = []

    def on_dialog(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    sign_in(page, live_server, agent.email, TEST_PASSWORD)
    ticket_url = f"{live_server}/tickets/{ticket.number}"
    page.goto(ticket_url)
    links = page.locator("ul.attachments a")
    urls = links.evaluate_all("els => els.map(e => e.href)")
    shown = links.all_inner_texts()
    assert sorted(shown) == sorted(by_name)

    for url, name in zip(urls, shown, strict=True):
        with page.expect_download() as info:
            try:
                page.goto(url)
            except PlaywrightError as exc:  # navigating to a download aborts the navigation
                assert "Download is starting" in str(exc) or "ERR_ABORTED" in str(exc), exc
        download = info.value
        assert Path(download.path()).read_bytes() == by_name[name]
        assert download.suggested_filename == name
        assert page.url == ticket_url  # the browser stayed on the ticket page
        assert page.evaluate("window.__pwned") is None, name
    # Clicking the links on the page downloads them too; nothing renders inline.
    for i in range(len(urls)):
        with page.expect_download():
            links.nth(i).click()
        assert page.evaluate("window.__pwned") is None
    assert page.url == ticket_url
    assert dialogs == []

    db_session.rollback()  # end this thread's read snapshot: the browser's sign-in wrote since
    client = login(agent)
    for link in attachment_links(client, ticket.number):
        response = client.get(link)
        assert response.status_code == 200
        assert response.headers["Content-Disposition"].startswith("attachment;")
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Content-Type"] == "application/octet-stream"
        csp = response.headers["Content-Security-Policy"]
        assert "sandbox" in csp and "default-src 'none'" in csp


# --- case 34: a mail "from an agent" is a customer email ----------------------------------------


def test_mail_spoofing_an_agent_is_recorded_as_a_customer_email(
    app, db_session, mailbox, imap_mailbox, agent
):
    """Security case 34 (FreeScout CVE-2026-47123, Zammad SenderIsSystemAddress)."""
    imap_mailbox.append(SUPPORT, make_email(message_id="ann1@x"))
    poll(app)
    [anns] = tickets(db_session)
    forged_ours = f"handoff.{anns.number}.0123456789abcdef.aaaaaaaaaaaaaaaa@example.com"
    imap_mailbox.append(
        SUPPORT,
        make_email(
            sender=f"Dana <{agent.email}>",
            subject=f"Re: [#{anns.number}] Refund approved",
            body="I have approved your refund, please send your card number.",
            message_id="spoof@evil.example",
            in_reply_to=forged_ours,
            references=[forged_ours],
            headers={"Authentication-Results": "mx.example.com; dkim=fail; spf=fail"},
        ),
    )
    poll(app)

    anns, spoofed = tickets(db_session)
    assert len(entries(db_session, anns)) == 1  # the forged Message-ID bought nothing
    [entry] = entries(db_session, spoofed)
    assert entry.kind == EntryKind.CUSTOMER_EMAIL
    assert entry.author_agent_id is None
    assert entry.author_customer.email == agent.email
    assert spoofed.customer.email == agent.email
    assert db_session.scalar(sa.select(Customer.id).where(Customer.email == agent.email))
    assert (
        db_session.scalar(
            sa.select(sa.func.count(Entry.id)).where(Entry.author_agent_id == agent.id)
        )
        == 0
    )
    assert spoofed.first_response_at is None  # not counted as an agent's answer


# --- case 35: Reply-To never decides who the customer is ---------------------------------------


def test_reply_to_divergence_keeps_the_from_address_as_the_customer(
    app, db_session, mailbox, imap_mailbox
):
    """Security case 35 (GitLab #349329)."""
    imap_mailbox.append(
        SUPPORT,
        make_email(
            sender="Victim <victim@corp.example>",
            message_id="rt@corp.example",
            headers={"Reply-To": "Victim <attacker@evil.example>"},
        ),
    )
    poll(app)
    [ticket] = tickets(db_session)
    assert ticket.customer.email == "victim@corp.example"
    [entry] = entries(db_session, ticket)
    assert entry.author_customer.email == "victim@corp.example"
    assert (
        db_session.scalar(sa.select(Customer).where(Customer.email == "attacker@evil.example"))
        is None
    )
    assert (
        db_session.scalar(
            sa.select(sa.func.count(Participant.id)).where(Participant.ticket_id == ticket.id)
        )
        == 0
    )


# --- case 16: no usable sender ------------------------------------------------------------------


def test_multiple_empty_and_null_from_are_unusable_senders_and_kept(
    app, db_session, mailbox, imap_mailbox
):
    """Security case 16."""
    placeholder = b"From: placeholder@example.net"
    froms = [b"From: a@x.example, b@y.example", b"From: ", b"From: <>"]
    raws = [
        crlf(make_email(sender="placeholder@example.net", message_id=f"nofrom{i}@x")).replace(
            placeholder, header
        )
        for i, header in enumerate(froms)
    ]
    uids = [imap_mailbox.append(SUPPORT, raw) for raw in raws]

    [result] = poll(app)  # one poll, no crash
    assert (result.fetched, result.processed, result.parked) == (3, 3, 0)

    received = customer_entries(db_session)
    assert [e.message_id for e in received] == [f"nofrom{i}@x" for i in range(3)]
    for entry, raw, uid in zip(received, raws, uids, strict=True):
        assert entry.author_customer.email == QUARANTINE_ADDRESS
        assert "unusable_sender" in entry.flags
        assert blob_bytes(app, entry.raw_sha256) == raw == imap_mailbox.fetch_raw(SUPPORT, uid)
    assert {r.sender for r in db_session.scalars(sa.select(Receipt))} == {None}
    # Three senders nobody knows are three tickets, not one thread of "unknown sender".
    assert len(tickets(db_session)) == 3


# --- case 17: header bombs ----------------------------------------------------------------------


def test_header_bombs_are_processed_in_bounded_time_among_good_mail(
    app, db_session, mailbox, imap_mailbox
):
    """Security case 17 (gh-134873 inputs)."""
    good1 = crlf(make_email(message_id="good-a@x", subject="good a"))
    one_big_header = crlf(make_email(message_id="bomb-big@x", subject="bomb 1")).replace(
        b"\r\nSubject:", b"\r\nX-Bomb: " + b"a" * (1024 * 1024) + b"\r\nSubject:", 1
    )
    many_headers = crlf(make_email(message_id="bomb-many@x", subject="bomb 2")).replace(
        b"\r\nSubject:",
        b"\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(10_000)) + b"Subject:",
        1,
    )
    good2 = crlf(make_email(message_id="good-b@x", subject="good b"))
    assert len(one_big_header) > 1024 * 1024 and many_headers.count(b"\r\nX-H") == 10_000
    for raw in (good1, one_big_header, many_headers, good2):
        imap_mailbox.append(SUPPORT, raw)

    started = time.monotonic()
    [result] = poll(app)
    elapsed = time.monotonic() - started

    assert elapsed < 10, f"polling four messages took {elapsed:.1f} s"
    assert result.fetched == 4 and result.processed + result.parked == 4
    statuses = db_session.scalars(sa.select(Receipt.status)).all()
    assert len(statuses) == 4
    assert set(statuses) <= {ReceiptStatus.PROCESSED, ReceiptStatus.PARKED}
    ids = {e.message_id for e in customer_entries(db_session)}
    assert {"good-a@x", "good-b@x"} <= ids
    # The bombs were not dropped: their raw bytes are kept whatever became of them.
    for receipt in db_session.scalars(sa.select(Receipt)):
        assert app.extensions["handoff_blobs"].exists(receipt.raw_sha256)


# --- case 13: broken charsets -------------------------------------------------------------------


def test_broken_charsets_become_readable_tickets_and_raw_bytes_stay_untouched(
    app, db_session, mailbox, imap_mailbox, caplog
):
    """Security case 13 (RT CVE-2014-9472)."""
    f_run = "F" * 100_000
    cases = {
        "cs-utf32@x": text_email(
            base64.encodebytes(f_run.encode("utf-32-le")).replace(b"\n", b"\r\n"),
            content_type="text/plain; charset=utf-32",
            cte="base64",
            message_id="cs-utf32@x",
            subject="utf-32 Fs",
        ),
        "cs-unknown@x": text_email(
            "Caf\xe9 cr\xe8me, 50\xa0\u20ac\r\n".encode("cp1252"),
            content_type="text/plain; charset=unknown-8bit",
            cte="8bit",
            message_id="cs-unknown@x",
            subject="unknown-8bit",
        ),
        "cs-none@x": text_email(
            b"Gr\xfc\xdfe aus M\xfcnchen \xff\xfe\r\n",
            content_type="text/plain",
            cte="8bit",
            message_id="cs-none@x",
            subject="no charset",
        ),
        "cs-jis@x": text_email(
            "こんにちは、カードが使えません。\r\n".encode("iso-2022-jp"),
            content_type="text/plain; charset=ISO-2022-JP",
            cte="7bit",
            message_id="cs-jis@x",
            subject="=?ISO-2022-JP?B?"
            + base64.b64encode("カード".encode("iso-2022-jp")).decode()
            + "?=",
        ),
        "cs-twice@x": text_email(
            "Zürich\r\n".encode(),
            content_type='text/plain; charset="utf-8"; charset="utf-8"',
            cte="8bit",
            message_id="cs-twice@x",
            subject="charset twice",
        ),
    }
    for raw in cases.values():
        imap_mailbox.append(SUPPORT, raw)

    caplog.set_level(logging.INFO)
    started = time.monotonic()
    [result] = poll(app)
    assert time.monotonic() - started < 10
    assert (result.processed, result.parked) == (5, 0)
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(noisy) <= 5, [r.getMessage()[:200] for r in noisy]

    by_id = {e.message_id: e for e in customer_entries(db_session)}
    assert len(tickets(db_session)) == 5
    utf32 = by_id["cs-utf32@x"].body_text
    assert "FFFF" in utf32 or "\ufffd" in utf32
    unknown = by_id["cs-unknown@x"].body_text
    assert "Caf" in unknown and ("Café" in unknown or "\ufffd" in unknown)
    nocharset = by_id["cs-none@x"].body_text
    assert "aus M" in nocharset and ("Grüße" in nocharset or "\ufffd" in nocharset)
    assert "カードが使えません" in by_id["cs-jis@x"].body_text
    assert by_id["cs-jis@x"].subject == "カード"
    assert "Zürich" in by_id["cs-twice@x"].body_text
    for message_id, raw in cases.items():
        assert blob_bytes(app, by_id[message_id].raw_sha256) == raw, message_id


# --- case 5: no Message-ID, crash after commit --------------------------------------------------


def test_message_without_message_id_survives_a_crash_after_commit_as_one_entry(
    app, db_session, mailbox, imap_mailbox
):
    """Security case 5."""
    from mail.poller import poll_mailbox
    from web.mail_runtime import blobs, inbound_settings

    raw = crlf(make_email(message_id=""))
    assert b"Message-ID" not in raw
    uid = imap_mailbox.append(SUPPORT, raw)

    def crash(point: str) -> None:
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
    poll(app)
    [entry] = customer_entries(db_session)
    assert entry.message_id == synthetic_message_id(content_digest(raw))
    assert entry.message_id.endswith("@synthetic.handoff.invalid")
    assert blob_bytes(app, entry.raw_sha256) == raw
    assert db_session.scalar(sa.select(sa.func.count(Receipt.id))) == 1
    assert "\\Seen" in imap_mailbox.flags(SUPPORT, uid)


# --- case 37: "Ticket Trick" --------------------------------------------------------------------


def test_ticket_trick_verification_mail_opens_its_own_ticket(
    app, db_session, mailbox, imap_mailbox
):
    """Security case 37: a third party's verification mail never joins someone's ticket."""
    imap_mailbox.append(SUPPORT, make_email(message_id="victim@x"))
    poll(app)
    [victims] = tickets(db_session)
    local, _, domain = SUPPORT.partition("@")
    guessed = f"{local}+t{victims.number}.aaaaaaaaaaaaaaaa@{domain}"
    unsigned = f"{local}+t{victims.number}@{domain}"
    saas = "Slack <no-reply@slack.example>"
    for i, to in enumerate((guessed, SUPPORT, unsigned)):
        imap_mailbox.append(
            SUPPORT,
            make_email(
                sender=saas,
                to=to,
                subject=f"Confirm your email address [#{victims.number}]",
                body="Your confirmation code is 424-242. Click to verify your account.",
                message_id=f"verify{i}@slack.example",
                headers={"Delivered-To": to},
            ),
        )
    poll(app)

    victims, *trick = tickets(db_session)
    assert [e.message_id for e in entries(db_session, victims)] == ["victim@x"]
    assert len(trick) == 3
    for ticket in trick:
        assert ticket.customer.email == "no-reply@slack.example"
        [entry] = entries(db_session, ticket)
        assert entry.threaded_by.startswith("new ticket")
    assert (
        db_session.scalar(
            sa.select(sa.func.count(Participant.id)).where(Participant.ticket_id == victims.id)
        )
        == 0
    )
    # Our own (plus-)addresses are never recorded as people to write to.
    ours = db_session.scalars(
        sa.select(Customer.email).where(Customer.email.like(f"{local}%@{domain}"))
    ).all()
    assert ours == []


# --- cases 8 and 11: what monitoring and the admin see after a bad poll -------------------------


def test_health_and_admin_page_show_parked_mail_and_a_failing_mailbox(
    app, db_session, mailbox, imap_mailbox, client, login, monkeypatch
):
    """Security cases 8 and 11, end to end: a poison message and a wrong IMAP password."""
    import mail.prepare
    from ticketing.models import AgentRole, MailboxSecurity
    from ticketing.services.agents import create_agent
    from ticketing.services.mailboxes import add_mailbox

    add_mailbox(
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
    admin = create_agent(
        db_session,
        email="root@example.com",
        name="Admin",
        password=TEST_PASSWORD,
        role=AgentRole.ADMIN,
    )
    db_session.commit()
    real_parse = mail.prepare.parse

    def fragile_parse(raw, **kwargs):
        if b"POISON" in raw:
            raise RuntimeError("parser exploded")
        return real_parse(raw, **kwargs)

    monkeypatch.setattr(mail.prepare, "parse", fragile_parse)
    imap_mailbox.append(SUPPORT, make_email(message_id="fine@x"))
    imap_mailbox.append(SUPPORT, make_email(message_id="poison@x", body="POISON"))
    results = {r.mailbox: r for r in poll_mailboxes(app, only_due=False)}
    assert results["support"].parked == 1 and "login failed" in results["sales"].error
    db_session.rollback()

    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.get_json()["mail"] == {"parked": 1, "failing_mailboxes": ["sales"]}
    assert "wrong password" not in health.get_data(as_text=True)

    html = login(admin).get("/admin/mail/failed").get_data(as_text=True)
    mailboxes = html.split('id="mailboxes-heading"')[1].split("</section>")[0]
    sales = mailboxes.split("<td>sales</td>")[1].split("</tr>")[0]
    assert "login failed" in sales and "<td>1</td>" in sales and "just now" in sales
    assert "OK" in mailboxes.split("<td>support</td>")[1].split("</tr>")[0]
    assert "wrong password" not in html
    assert "RuntimeError: parser exploded" in html
