"""What an admin sees of incoming mail: mailbox health, parked mail with Retry and raw bytes,
and `/healthz` for monitoring (security cases 8 and 11)."""

import datetime as dt
import re

import pytest
import sqlalchemy as sa

from mail.inbound import Delivery, park
from tests.conftest import TEST_PASSWORD, csrf_token, make_app
from tests.support.mailfactory import make_email
from ticketing.db import utcnow
from ticketing.models import AgentRole, Entry, MailboxSecurity, Receipt, ReceiptStatus, Ticket
from ticketing.services.agents import create_agent
from ticketing.services.mailboxes import add_mailbox

FAILED = "/admin/mail/failed"
LOGIN_ERROR = "login failed: the server refused the IMAP user name or password"


@pytest.fixture
def admin(db_session):
    created = create_agent(
        db_session,
        email="root@example.com",
        name="Robin Admin",
        password=TEST_PASSWORD,
        role=AgentRole.ADMIN,
    )
    db_session.commit()
    return created


def make_mailbox(db_session, app, name, *, password="imap secret 123", **state):
    box = add_mailbox(
        db_session,
        name=name,
        address=f"{name}@example.com",
        imap_host="127.0.0.1",
        imap_port=1143,
        imap_user=f"{name}@example.com",
        imap_password=password,
        imap_security=MailboxSecurity.PLAIN,
        secret_key=app.config["SECRET_KEY"],
    )
    for key, value in state.items():
        setattr(box, key, value)
    db_session.commit()
    return box


def parked_receipt(db_session, app, raw: bytes, error="RuntimeError: parser exploded"):
    """A message whose processing failed, as the poller leaves it: bytes stored, error kept."""
    sha = app.extensions["handoff_blobs"].put(raw)
    receipt = park(
        db_session, Delivery(raw=raw, source="import"), raw_sha256=sha, error=error, now=utcnow()
    )
    db_session.commit()
    return receipt


def test_admin_sees_each_mailbox_and_a_failing_ones_error(login, admin, db_session, app):
    now = utcnow()
    make_mailbox(
        db_session,
        app,
        "sales",
        last_error=LOGIN_ERROR,
        poll_failures=3,
        last_polled_at=now - dt.timedelta(minutes=5),
    )
    make_mailbox(db_session, app, "support", last_polled_at=now - dt.timedelta(hours=2))
    make_mailbox(db_session, app, "fresh")
    gone = make_mailbox(db_session, app, "retired", last_error="old failure", poll_failures=9)
    gone.is_active = False
    db_session.commit()

    html = login(admin).get(FAILED).get_data(as_text=True)

    section = html.split('id="mailboxes-heading"')[1].split("</section>")[0]
    rows = {
        re.search(r"<td>([a-z]+)</td>", row).group(1): row
        for row in section.split("<tr>")[2:]  # past the header row
    }
    assert set(rows) == {"sales", "support", "fresh"}  # active mailboxes only
    assert "sales@example.com" in rows["sales"]
    assert LOGIN_ERROR in rows["sales"] and "5 min ago" in rows["sales"]
    assert "<td>3</td>" in rows["sales"]
    assert ">OK<" in rows["support"] and "2 h ago" in rows["support"]
    assert "<td>0</td>" in rows["support"]
    assert "never" in rows["fresh"]
    assert "imap secret 123" not in html
    assert section.index("fresh") < section.index("sales") < section.index("support")
    assert html.index('id="mailboxes-heading"') < html.index('id="parked-heading"')


def test_admin_pages_are_not_found_for_agents_who_are_not_admins(
    login, agent, admin, db_session, app
):
    receipt = parked_receipt(db_session, app, make_email(message_id="p@x"))
    client = login(agent)
    assert client.get(FAILED).status_code == 404
    assert client.get(f"/admin/mail/receipts/{receipt.id}/raw").status_code == 404
    token = csrf_token(client, "/tickets")
    response = client.post(f"{FAILED}/{receipt.id}/retry", data={"csrf_token": token})
    assert response.status_code == 404
    db_session.expire_all()
    assert db_session.get(Receipt, receipt.id).status == ReceiptStatus.PARKED


def test_retry_without_a_csrf_token_changes_nothing(login, admin, db_session, app):
    receipt = parked_receipt(db_session, app, make_email(message_id="p@x"))
    response = login(admin).post(f"{FAILED}/{receipt.id}/retry", data={})
    assert response.status_code == 400
    db_session.expire_all()
    assert db_session.get(Receipt, receipt.id).status == ReceiptStatus.PARKED
    assert db_session.get(Receipt, receipt.id).attempts == 1
    assert db_session.scalar(sa.select(sa.func.count(Ticket.id))) == 0


def test_retry_runs_the_parked_message_through_the_pipeline(login, admin, db_session, app):
    raw = make_email(message_id="parked@x", subject="Invoice missing")
    receipt = parked_receipt(db_session, app, raw)
    client = login(admin)
    html = client.get(FAILED).get_data(as_text=True)
    assert "RuntimeError: parser exploded" in html and f"Retry message {receipt.id}" in html

    response = client.post(
        f"{FAILED}/{receipt.id}/retry", data={"csrf_token": csrf_token(client, FAILED)}
    )
    assert response.status_code == 302 and response.headers["Location"] == FAILED

    db_session.expire_all()
    done = db_session.get(Receipt, receipt.id)
    assert done.status == ReceiptStatus.PROCESSED and done.error is None
    entry = db_session.get(Entry, done.entry_id)
    assert entry.message_id == "parked@x" and entry.raw_sha256 == receipt.raw_sha256
    assert db_session.get(Ticket, done.ticket_id).subject == "Invoice missing"
    after = client.get(FAILED).get_data(as_text=True)
    assert "The message was processed." in after
    assert "Nothing is waiting here." in after
    # Done once: a second Retry finds nothing parked.
    again = client.post(
        f"{FAILED}/{receipt.id}/retry", data={"csrf_token": csrf_token(client, FAILED)}
    )
    assert again.status_code == 404
    assert db_session.scalar(sa.select(sa.func.count(Entry.id))) == 1


def test_retry_that_still_fails_keeps_the_message_parked(
    login, admin, db_session, app, monkeypatch
):
    import mail.prepare

    def broken_parse(raw, **kwargs):
        raise ValueError("still broken")

    receipt = parked_receipt(db_session, app, make_email(message_id="p@x"))
    monkeypatch.setattr(mail.prepare, "parse", broken_parse)
    client = login(admin)
    client.post(f"{FAILED}/{receipt.id}/retry", data={"csrf_token": csrf_token(client, FAILED)})
    db_session.expire_all()
    kept = db_session.get(Receipt, receipt.id)
    assert kept.status == ReceiptStatus.PARKED and kept.attempts >= 2
    assert "still broken" in kept.error
    assert "Still failing: ValueError: still broken" in client.get(FAILED).get_data(as_text=True)


def test_raw_message_link_downloads_the_exact_bytes(login, admin, db_session, app):
    # Bytes no parser would round-trip: 8-bit junk, a bare CR, no final newline.
    raw = make_email(message_id="raw@x") + b"\r\n\xff\xfe caf\xe9 \r trailing"
    receipt = parked_receipt(db_session, app, raw)
    client = login(admin)
    html = client.get(FAILED).get_data(as_text=True)
    link = re.search(r'href="(/admin/mail/receipts/\d+/raw)"', html).group(1)
    assert link == f"/admin/mail/receipts/{receipt.id}/raw"
    response = client.get(link)
    assert response.status_code == 200
    assert response.data == raw
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert f"message-{receipt.id}.eml" in response.headers["Content-Disposition"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get("/admin/mail/receipts/999999/raw").status_code == 404


def test_healthz_counts_parked_mail_and_names_failing_mailboxes(client, db_session, app):
    assert client.get("/healthz").get_json() == {
        "status": "ok",
        "mail": {"parked": 0, "failing_mailboxes": []},
    }
    make_mailbox(db_session, app, "support", last_polled_at=utcnow())
    make_mailbox(db_session, app, "sales", last_error=LOGIN_ERROR, poll_failures=2)
    retired = make_mailbox(db_session, app, "old", last_error="x", poll_failures=5)
    retired.is_active = False
    db_session.commit()
    parked_receipt(db_session, app, make_email(message_id="p1@x"))
    parked_receipt(db_session, app, make_email(message_id="p2@x"), error="secret host down")

    response = client.get("/healthz")  # no sign-in: it is for monitoring
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ok",
        "mail": {"parked": 2, "failing_mailboxes": ["sales"]},
    }
    body = response.get_data(as_text=True)
    assert "login failed" not in body and "secret host" not in body and "@" not in body
    assert response.headers["Cache-Control"] == "no-store"


def test_healthz_answers_degraded_when_the_database_is_unreachable(tmp_path):
    unreachable = make_app(f"sqlite:///{tmp_path / 'no such dir' / 'handoff.db'}", tmp_path)
    response = unreachable.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "degraded", "database": "unreachable"}
    assert "no such dir" not in response.get_data(as_text=True)
