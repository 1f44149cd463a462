"""Unit tests for `mail.rules`: loop and noise protection (security.md §F cases 36, 38, 40, 41)."""

from __future__ import annotations

import pytest

from mail.message import Address, ParsedEmail, SenderStatus
from mail.rules import (
    LOOP_HEADER,
    Kind,
    classify,
    is_autoreply,
    is_bounce,
    is_loop,
    is_own,
    parse_dsn,
)

SUPPORT = "support@handoff.example"
GOOD_TOKEN = "v1.valid-hmac"


def make_email(
    *headers: tuple[str, str],
    sender: str | None = "alice@customer.example",
    name: str = "Alice",
    subject: str = "Printer on fire",
    content_type: str = "text/plain",
) -> ParsedEmail:
    """A ParsedEmail as `mail.parse` would produce it, with the given extra headers."""
    address = Address(sender, name) if sender else None
    all_headers = (("from", f"{name} <{sender}>" if sender else ""), ("subject", subject), *headers)
    return ParsedEmail(
        message_id="m1@customer.example",
        in_reply_to=None,
        references=(),
        subject=subject,
        sender=address,
        sender_status=SenderStatus.OK if address else SenderStatus.UNUSABLE,
        headers=tuple((k.lower(), v) for k, v in all_headers),
        content_type=content_type,
    )


def verify(token: str) -> bool:
    return token == GOOD_TOKEN


# --- case 38: automaton classification -----------------------------------------------------------

AUTOMATIC_CASES = [
    pytest.param(
        make_email(("Auto-Submitted", "auto-replied")),
        Kind.AUTOREPLY,
        id="auto-submitted-auto-replied",
    ),
    pytest.param(
        make_email(("Auto-Submitted", "auto-generated")),
        Kind.AUTOREPLY,
        id="auto-submitted-auto-generated",
    ),
    pytest.param(make_email(("X-Autoreply", "yes")), Kind.AUTOREPLY, id="x-autoreply"),
    pytest.param(make_email(("Precedence", "bulk")), Kind.AUTOREPLY, id="precedence-bulk"),
    pytest.param(make_email(("Precedence", "list")), Kind.AUTOREPLY, id="precedence-list"),
    pytest.param(make_email(("Precedence", "junk")), Kind.AUTOREPLY, id="precedence-junk"),
    pytest.param(make_email(("Return-Path", "<>")), Kind.BOUNCE, id="return-path-null"),
    pytest.param(
        make_email(sender="MAILER-DAEMON@mx.customer.example", name="Mail Delivery System"),
        Kind.BOUNCE,
        id="from-mailer-daemon",
    ),
    pytest.param(make_email(("List-Id", "<news.customer.example>")), Kind.AUTOREPLY, id="list-id"),
    pytest.param(
        make_email(("X-Auto-Response-Suppress", "All")),
        Kind.AUTOREPLY,
        id="x-auto-response-suppress",
    ),
]


@pytest.mark.parametrize(("msg", "kind"), AUTOMATIC_CASES)
def test_automaton_headers_are_recorded_as_automatic_mail(msg: ParsedEmail, kind: Kind) -> None:
    result = classify(msg, own_addresses=[SUPPORT], verify_loop_token=verify)
    assert result.kind is kind
    assert result.is_automatic
    assert result.reasons


def test_auto_submitted_no_is_a_normal_mail_and_gets_the_auto_ack() -> None:
    # FreeScout treated any Auto-Submitted header as automatic and swallowed this one.
    msg = make_email(("Auto-Submitted", "no"))
    assert not is_autoreply(msg)
    result = classify(msg, own_addresses=[SUPPORT], verify_loop_token=verify)
    assert result.kind is Kind.NORMAL
    assert not result.is_automatic


def test_plain_customer_mail_is_normal() -> None:
    assert classify(make_email()).kind is Kind.NORMAL


@pytest.mark.parametrize(
    "subject",
    [
        "Out of Office: Printer on fire",
        "Automatic reply: Printer on fire",
        "Autoreply: Printer",
        "Abwesenheitsnotiz: Drucker",
        "Automatische Antwort: Drucker",
        "Réponse automatique : imprimante",
        "Absence du bureau",
        "Respuesta automática: impresora",
        "Afwezig: printer",
        "AW: Automatische Antwort",
    ],
)
def test_out_of_office_subjects_in_several_languages_are_autoreplies(subject: str) -> None:
    assert classify(make_email(subject=subject)).kind is Kind.AUTOREPLY


def test_a_customer_mentioning_an_autoreply_mid_subject_is_normal() -> None:
    assert classify(make_email(subject="Why did I get your automatic reply?")).kind is Kind.NORMAL


@pytest.mark.parametrize(
    "subject",
    [
        "Undelivered Mail Returned to Sender",
        "Delivery Status Notification (Failure)",
        "Mail delivery failed: returning message to sender",
    ],
)
def test_bounce_subjects_are_bounces(subject: str) -> None:
    msg = make_email(subject=subject, sender="bounces@mx.example", name="")
    assert is_bounce(msg)
    assert classify(msg).kind is Kind.BOUNCE


def test_multipart_report_delivery_status_is_a_bounce() -> None:
    msg = make_email(
        ("Content-Type", 'multipart/report; report-type=delivery-status; boundary="b"'),
        content_type="multipart/report",
        subject="Hello",
        sender="someone@mx.example",
    )
    assert classify(msg).kind is Kind.BOUNCE


def test_feedback_report_is_its_own_kind() -> None:
    msg = make_email(
        ("Content-Type", 'multipart/report; report-type=feedback-report; boundary="b"'),
        content_type="multipart/report",
        subject="Abuse report",
    )
    assert classify(msg).kind is Kind.FEEDBACK_REPORT


def test_missing_from_is_an_unusable_sender() -> None:
    assert classify(make_email(sender=None)).kind is Kind.UNUSABLE_SENDER


# --- case 36: forged internal loop header --------------------------------------------------------


def test_forged_loop_header_that_does_not_verify_is_ignored() -> None:
    msg = make_email((LOOP_HEADER, "v1.forged"))
    assert not is_loop(msg, verify)
    result = classify(msg, own_addresses=[SUPPORT], verify_loop_token=verify)
    assert result.kind is Kind.NORMAL
    assert any("not verified" in reason for reason in result.reasons)


def test_loop_header_without_a_verifier_never_counts() -> None:
    assert classify(make_email((LOOP_HEADER, GOOD_TOKEN))).kind is Kind.NORMAL


def test_a_verifier_that_raises_does_not_crash_classification() -> None:
    def broken(token: str) -> bool:
        raise RuntimeError("key store down")

    assert (
        classify(make_email((LOOP_HEADER, GOOD_TOKEN)), verify_loop_token=broken).kind
        is Kind.NORMAL
    )


# --- case 40: our own mail returns ---------------------------------------------------------------


def test_our_address_without_a_loop_token_is_automatic_but_not_dropped() -> None:
    # Anyone can put our address in From (case 34): it never gets an automatic answer, but it
    # is not silently swallowed as our own mail either.
    msg = make_email(sender="Support@Handoff.example", name="Handoff")
    assert is_own(msg, [SUPPORT])
    verdict = classify(msg, own_addresses=[SUPPORT])
    assert verdict.kind is Kind.AUTOREPLY
    assert verdict.is_automatic


def test_our_address_with_a_verified_loop_token_is_a_loop() -> None:
    msg = make_email((LOOP_HEADER, GOOD_TOKEN), sender="support@handoff.example")
    assert classify(msg, own_addresses=[SUPPORT], verify_loop_token=verify).kind is Kind.LOOP


def test_verified_loop_header_is_a_loop_even_from_a_foreign_address() -> None:
    msg = make_email((LOOP_HEADER, GOOD_TOKEN), ("Auto-Submitted", "auto-replied"))
    assert is_loop(msg, verify)
    assert classify(msg, own_addresses=[SUPPORT], verify_loop_token=verify).kind is Kind.LOOP


# --- case 41: RFC 3464 DSN -----------------------------------------------------------------------

DSN = b"""\
Return-Path: <>
From: MAILER-DAEMON@mx.customer.example (Mail Delivery System)
To: bounces+out-42.tok@handoff.example
Subject: Undelivered Mail Returned to Sender
Message-ID: <dsn-1@mx.customer.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="BOUNDARY"

--BOUNDARY
Content-Type: text/plain; charset=us-ascii

I'm sorry to have to inform you that your message could not be delivered.

<bob@customer.example>: host mx.customer.example said: 550 5.1.1 <bob@customer.example>:
    Recipient address rejected: User unknown in local recipient table

--BOUNDARY
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.customer.example
Arrival-Date: Mon,  1 Jan 2024 10:00:00 +0000

Final-Recipient: rfc822; bob@customer.example
Original-Recipient: rfc822;bob@customer.example
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.customer.example
Diagnostic-Code: smtp; 550 5.1.1 <bob@customer.example>: Recipient address rejected:
    User unknown in local recipient table

--BOUNDARY
Content-Type: message/rfc822

From: Handoff Support <support@handoff.example>
To: bob@customer.example
Subject: [#42] Your printer
Message-ID: <out-42@handoff.example>

Hello Bob
--BOUNDARY--
"""


def _dsn_email() -> ParsedEmail:
    return make_email(
        ("Return-Path", "<>"),
        ("Content-Type", 'multipart/report; report-type=delivery-status; boundary="BOUNDARY"'),
        sender="mailer-daemon@mx.customer.example",
        name="Mail Delivery System",
        subject="Undelivered Mail Returned to Sender",
        content_type="multipart/report",
    )


def test_dsn_with_status_511_is_a_hard_bounce_linked_to_the_original() -> None:
    result = classify(_dsn_email(), own_addresses=[SUPPORT], verify_loop_token=verify, raw=DSN)
    assert result.kind is Kind.BOUNCE
    assert result.original_message_id == "out-42@handoff.example"
    (recipient,) = result.bounce_recipients
    assert recipient.email == "bob@customer.example"
    assert recipient.status == "5.1.1"
    assert recipient.is_hard
    assert "User unknown" in recipient.diagnostic


def test_dsn_with_a_4xx_status_is_a_soft_bounce() -> None:
    raw = DSN.replace(b"Action: failed", b"Action: delayed").replace(
        b"Status: 5.1.1", b"Status: 4.2.2"
    )
    raw = raw.replace(b"550 5.1.1", b"452 4.2.2")
    recipients, original = parse_dsn(raw)
    assert [(r.email, r.status, r.is_hard) for r in recipients] == [
        ("bob@customer.example", "4.2.2", False)
    ]
    assert original == "out-42@handoff.example"


def test_prose_only_bounce_falls_back_to_text_patterns() -> None:
    raw = b"""\
From: MAILER-DAEMON@qmail.example
To: support@handoff.example
Subject: failure notice

Hi. This is the qmail-send program at qmail.example.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<carol@customer.example>:
192.0.2.1 does not like recipient.
Remote host said: 550 5.1.1 <carol@customer.example>... User unknown
Giving up on 192.0.2.1.

--- Below this line is a copy of the message.

Message-ID: <out-7@handoff.example>
From: support@handoff.example
To: carol@customer.example
"""
    recipients, original = parse_dsn(raw)
    assert [(r.email, r.status, r.is_hard) for r in recipients] == [
        ("carol@customer.example", "5.1.1", True)
    ]
    assert original == "out-7@handoff.example"


@pytest.mark.parametrize(
    "raw", [b"", b"\x00\xff garbage", b"Content-Type: multipart/report\n\n--x", DSN[:300]]
)
def test_parse_dsn_never_raises(raw: bytes) -> None:
    recipients, original = parse_dsn(raw)
    assert isinstance(recipients, tuple)
    assert original is None or isinstance(original, str)
