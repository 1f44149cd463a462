"""Proactive notices end to end: CSV import -> scan -> the notice delivered over SMTP
(aiosmtpd) -> the customer's reply APPENDed to Dovecot and polled -> it threads into the notice
ticket, and the agent sees the account context (plan, card, expiry, notices) in the browser."""

from __future__ import annotations

import calendar
import datetime as dt

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from tests.conftest import TEST_PASSWORD
from tests.support.flows import SUPPORT, entries, poll, tickets
from tests.support.mailfactory import make_email
from ticketing.models import Channel, EntryKind, Notice, Status
from web.mail_runtime import send_outbox

pytestmark = pytest.mark.e2e

HEADER = "external_id,email,name,plan,status,card_brand,card_last4,card_exp_month,card_exp_year\n"


def test_expiring_card_notice_reply_and_account_context_for_the_agent(
    app,
    db_session,
    runner,
    mailbox,
    imap_mailbox,
    smtp_server,
    agent,
    page: Page,
    live_server,
    tmp_path,
):
    app.config["HANDOFF_SMTP_URL"] = f"smtp://{smtp_server.host}:{smtp_server.port}"
    app.config["HANDOFF_MAIL_FROM"] = SUPPORT
    app.config["HANDOFF_ACCOUNT_URL"] = "https://billing.example.com/card?x=1"
    today = dt.datetime.now(dt.UTC).date()
    last_day = dt.date(today.year, today.month, calendar.monthrange(today.year, today.month)[1])
    days_left = (last_day - today).days

    # Billing exports its accounts; the scan finds the card that expires this month.
    csv_file = tmp_path / "accounts.csv"
    csv_file.write_text(
        HEADER
        + f"cus_ann,ann@example.org,Ann's Bakery,Pro,active,visa,4242,{today.month},{today.year}\n"
        + "cus_bob,bob@example.org,Bob,Basic,active,mastercard,4444,1,2099\n"
    )
    result = runner.invoke(args=["accounts", "import", str(csv_file)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["notices", "scan", "--today", today.isoformat()])
    assert "1 notices queued" in result.output, result.output

    db_session.rollback()
    assert send_outbox(app).sent == 1
    [sent] = smtp_server.messages
    notice = sent.message
    assert sent.rcpt_tos == ["ann@example.org"]
    assert "card ending 4242" in notice["Subject"]
    assert notice["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "https://billing.example.com/card?x=1&account=cus_ann" in (
        notice.get_body(("plain",)).get_content()
    )
    [ticket] = tickets(db_session)
    assert ticket.channel == Channel.NOTICE and ticket.status == Status.SOLVED

    # Ann answers the notice from her mail client.
    message_id = notice["Message-ID"].strip("<>")
    answer = make_email(
        sender="Ann Baker <ann@example.org>",
        to=notice["Reply-To"],
        subject=f"Re: {notice['Subject']}",
        body="I tried to update it but the page says my bank refused. What now?",
        message_id="ann-reply-1@mail.example.org",
        in_reply_to=message_id,
        references=[message_id],
    )
    imap_mailbox.append(SUPPORT, answer)
    poll(app)
    [same] = tickets(db_session)
    assert same.id == ticket.id and same.status == Status.OPEN
    kinds = [e.kind for e in entries(db_session, same)]
    assert kinds[0] == EntryKind.NOTICE and kinds[-1] == EntryKind.CUSTOMER_EMAIL
    assert db_session.scalar(sa.select(sa.func.count(Notice.id))) == 1

    # The agent opens it and sees the account problem next to the message.
    page.goto(f"{live_server}/login")
    page.get_by_label("Email").fill(agent.email)
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"{live_server}/tickets/{ticket.number}")
    expect(page.get_by_text("the page says my bank refused")).to_be_visible()
    account = page.locator(".account-context")
    expect(account).to_contain_text("Ann's Bakery")
    expect(account).to_contain_text("Pro")
    expect(account).to_contain_text(f"Visa ending 4242, expires {today.month:02d}/{today.year}")
    expected = (
        "expires today"
        if days_left == 0
        else f"expires in {days_left} day{'' if days_left == 1 else 's'}"
    )
    expect(account.locator(".account-expiry")).to_have_text(expected)
    expect(account).to_contain_text("Notices sent")
    expect(account).to_contain_text("1 (last: expires")
