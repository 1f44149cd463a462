"""`mail.compose`: the bytes we send — headers, MIME structure, encodings, and no injection."""

from __future__ import annotations

import datetime as dt
import email
import re
from dataclasses import replace
from email import policy
from email.message import EmailMessage

import pytest

from mail.compose import (
    MAX_REFERENCES,
    OutgoingAttachment,
    OutgoingMail,
    clean_address,
    compose,
    one_line,
)
from mail.message import Address
from mail.tokens import LOOP_HEADER

DATE = dt.datetime(2026, 11, 23, 9, 30, tzinfo=dt.UTC)
# security.md case 14: the subject as `mail.parse` would decode it before our fix.
INJECTED_SUBJECT = "Help me\nBcc: attacker@evil.example"


def make_mail(**overrides: object) -> OutgoingMail:
    mail = OutgoingMail(
        from_address="support@handoff.example",
        from_name="Dana at Handoff",
        to=(Address("ann@example.com", "Ann Customer"),),
        subject="Re: Card declined [#1234]",
        message_id="handoff.1234.0123456789abcdef.abcdefghijklmnop@handoff.example",
        text="Hi Ann,\n\nYour card works again.\n",
        date=DATE,
    )
    return replace(mail, **overrides)  # type: ignore[arg-type]


def parsed(raw: bytes) -> EmailMessage:
    # As a mail store would keep it: \n line ends, so get_content() gives ordinary strings.
    message = email.message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def header_names(raw: bytes) -> list[str]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    return [line.split(":", 1)[0] for line in head.split("\r\n") if line and line[0] not in " \t"]


# --- headers ---------------------------------------------------------------------------------


def test_reply_headers_are_written_as_given() -> None:
    raw = compose(
        make_mail(
            reply_to="support+t1234.abcdefghijklmnop@handoff.example",
            in_reply_to="customer-1@example.com",
            references=("root@example.com", "customer-1@example.com"),
            loop_token="0123456789abcdef.abcdefghijklmnop",
        )
    )
    message = parsed(raw)
    assert message["From"] == "Dana at Handoff <support@handoff.example>"
    assert message["To"] == "Ann Customer <ann@example.com>"
    assert message["Reply-To"] == "support+t1234.abcdefghijklmnop@handoff.example"
    assert message["Subject"] == "Re: Card declined [#1234]"
    assert message["Date"] == "Mon, 23 Nov 2026 09:30:00 +0000"
    assert message["Message-ID"] == (
        "<handoff.1234.0123456789abcdef.abcdefghijklmnop@handoff.example>"
    )
    assert message["In-Reply-To"] == "<customer-1@example.com>"
    assert message["References"] == "<root@example.com> <customer-1@example.com>"
    assert message[LOOP_HEADER] == "0123456789abcdef.abcdefghijklmnop"
    assert message["MIME-Version"] == "1.0"
    # A person's reply is not automatic mail.
    assert message["Auto-Submitted"] is None
    assert message["X-Auto-Response-Suppress"] is None
    assert message["Precedence"] is None
    assert message["Return-Path"] is None


def test_every_header_appears_once_in_a_sensible_order() -> None:
    raw = compose(
        make_mail(
            cc=(Address("bob@example.com", "Bob"),),
            in_reply_to="c@example.com",
            auto_submitted="auto-replied",
            loop_token="abc.def",
        )
    )
    names = header_names(raw)
    assert names[:10] == [
        "From",
        "To",
        "Cc",
        "Subject",
        "Date",
        "Message-ID",
        "In-Reply-To",
        "References",
        "Auto-Submitted",
        "X-Auto-Response-Suppress",
    ]
    assert len(names) == len({name.lower() for name in names})


def test_automatic_mail_says_so_without_precedence() -> None:
    message = parsed(compose(make_mail(auto_submitted="auto-replied")))
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["X-Auto-Response-Suppress"] == "All"
    assert message["Precedence"] is None  # RFC 3834 §3.1.8 discourages it


def test_unknown_auto_submitted_value_is_refused() -> None:
    with pytest.raises(ValueError, match="Auto-Submitted"):
        compose(make_mail(auto_submitted="auto-replied\nBcc: x@evil.example"))


def test_one_click_unsubscribe_url_stays_one_readable_header_however_long() -> None:
    url = "https://help.example.com/notices/unsubscribe/" + "A" * 150 + ".sig"
    raw = compose(make_mail(auto_submitted="auto-generated", list_unsubscribe=url))
    message = parsed(raw)
    # RFC 2369 + RFC 8058: a client offers one-click only for a plain <https://...> value,
    # never for RFC 2047 encoded words (what the email package makes of a long header).
    assert message["List-Unsubscribe"] == f"<{url}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert b"=?utf-8?" not in raw.split(b"\r\n\r\n", 1)[0]
    assert header_names(raw).count("List-Unsubscribe") == 1


@pytest.mark.parametrize(
    "url",
    ["https://x.example/u\r\nBcc: attacker@evil.example", "javascript:alert(1)", "https://x/>"],
)
def test_unsubscribe_url_that_could_break_the_header_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="unsubscribe URL"):
        compose(make_mail(list_unsubscribe=url))


def test_in_reply_to_is_added_to_references_when_missing() -> None:
    message = parsed(compose(make_mail(in_reply_to="parent@example.com", references=("root@x",))))
    assert message["References"] == "<root@x> <parent@example.com>"


def test_references_are_bounded_keeping_the_root_and_the_latest() -> None:
    ids = tuple(f"msg{i}@example.com" for i in range(200))
    message = parsed(compose(make_mail(references=ids, in_reply_to=ids[-1])))
    kept = re.findall(r"<([^>]+)>", message["References"])
    assert len(kept) == MAX_REFERENCES
    assert kept[0] == "msg0@example.com"
    assert kept[1:] == list(ids[-(MAX_REFERENCES - 1) :])


def test_bracketed_message_ids_are_accepted_and_garbage_refused() -> None:
    message = parsed(compose(make_mail(message_id="<abc@example.com>")))
    assert message["Message-ID"] == "<abc@example.com>"
    for bad in ("no-at-sign", "a b@example.com", "a@b>\r\nBcc: x@evil.example", ""):
        with pytest.raises(ValueError, match="Message-ID"):
            compose(make_mail(message_id=bad))
        with pytest.raises(ValueError, match="Message-ID"):
            compose(make_mail(references=(bad,)))


def test_date_defaults_to_now_and_must_be_timezone_aware() -> None:
    message = parsed(compose(make_mail(date=None)))
    sent = message["Date"].datetime
    assert abs(sent - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    with pytest.raises(ValueError, match="timezone"):
        compose(make_mail(date=dt.datetime(2026, 1, 1, 12, 0)))


def test_loop_token_must_be_one_printable_word() -> None:
    with pytest.raises(ValueError, match="loop token"):
        compose(make_mail(loop_token="abc\r\nBcc: x@evil.example"))


# --- structure and encodings -----------------------------------------------------------------


def test_text_only_mail_is_a_single_text_part_with_crlf_line_ends() -> None:
    raw = compose(make_mail())
    assert b"\n" not in raw.replace(b"\r\n", b"")
    message = parsed(raw)
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert message.get_content() == "Hi Ann,\n\nYour card works again.\n"
    assert raw.isascii()


def test_html_makes_multipart_alternative_text_first() -> None:
    message = parsed(compose(make_mail(html="<p>Hi Ann,</p><p>Your card works again.</p>")))
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert "<p>Your card works again.</p>" in parts[1].get_content()
    assert all(p["MIME-Version"] is None for p in parts)


def test_attachments_make_multipart_mixed_and_are_never_inline() -> None:
    pdf = b"%PDF-1.4 fake\x00\xff"
    raw = compose(
        make_mail(
            html="<p>Hi</p>",
            attachments=(
                OutgoingAttachment("receipt.pdf", "application/pdf", pdf),
                OutgoingAttachment("notes.txt", "text/plain; charset=utf-8", b"plain notes"),
            ),
        )
    )
    message = parsed(raw)
    assert message.get_content_type() == "multipart/mixed"
    body, first, second = message.iter_parts()
    assert body.get_content_type() == "multipart/alternative"
    assert first.get_content_type() == "application/pdf"
    assert first.get_content_disposition() == "attachment"
    assert first.get_filename() == "receipt.pdf"
    assert first.get_content() == pdf
    assert second.get_content_type() == "text/plain"
    assert second.get_content_disposition() == "attachment"
    assert second.get_payload(decode=True) == b"plain notes"
    assert raw.isascii()


def test_odd_attachment_types_travel_as_octet_stream() -> None:
    raw = compose(
        make_mail(
            attachments=(
                OutgoingAttachment("a.bin", "not a type\r\nX-Evil: 1", b"x"),
                OutgoingAttachment("b.eml", "message/rfc822", b"From: a@b\r\n\r\nhi\r\n"),
                OutgoingAttachment("c", "", b"y"),
            )
        )
    )
    message = parsed(raw)
    types = [p.get_content_type() for p in message.iter_attachments()]
    assert types == ["application/octet-stream"] * 3
    assert b"X-Evil" not in raw


def test_non_ascii_names_subject_body_and_filenames_round_trip() -> None:
    raw = compose(
        make_mail(
            from_name="Zoë from Ünïcode Support, Inc.",
            to=(Address("jorg@example.com", "Jörg Müller"), Address("li@example.cn", "李雷")),
            cc=(Address("ola@example.no", "Øla Nordmann"),),
            subject="Re: Grüße — 請求書 [#1234]",
            text="Grüße,\nalles gut. 👍\n" + "ä" * 200 + "\n",
            html="<p>Grüße 👍</p>",
            attachments=(OutgoingAttachment("résumé 請求書.pdf", "application/pdf", b"%PDF"),),
        )
    )
    assert raw.isascii()  # RFC 2047 / 2231 / quoted-printable: 7-bit clean
    message = parsed(raw)
    assert message["From"].addresses[0].display_name == "Zoë from Ünïcode Support, Inc."
    assert [(a.display_name, a.addr_spec) for a in message["To"].addresses] == [
        ("Jörg Müller", "jorg@example.com"),
        ("李雷", "li@example.cn"),
    ]
    assert message["Cc"].addresses[0].display_name == "Øla Nordmann"
    assert message["Subject"] == "Re: Grüße — 請求書 [#1234]"
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content() == "Grüße,\nalles gut. 👍\n" + "ä" * 200 + "\n"
    assert html.get_content() == "<p>Grüße 👍</p>\n"
    (attachment,) = message.iter_attachments()
    assert attachment.get_filename() == "résumé 請求書.pdf"
    assert b"filename*=utf-8''" in raw  # RFC 2231


def test_non_ascii_domain_is_written_as_its_a_label() -> None:
    message = parsed(compose(make_mail(to=(Address("kunde@bücher.example", "Kunde"),))))
    assert message["To"].addresses[0].addr_spec == "kunde@xn--bcher-kva.example"


def test_internationalised_local_part_makes_an_smtputf8_message() -> None:
    raw = compose(make_mail(to=(Address("jörg@example.com", "Jörg"),)))
    assert "To: Jörg <jörg@example.com>\r\n".encode() in raw  # raw UTF-8 (RFC 6532)
    # The stdlib's bytes parser reads headers as ASCII; an SMTPUTF8 reader decodes first.
    message = email.message_from_string(raw.decode().replace("\r\n", "\n"), policy=policy.default)
    assert message["To"].addresses[0].addr_spec == "jörg@example.com"


def test_long_lines_and_lone_carriage_returns_are_encoded_safely() -> None:
    text = "x" * 2000 + "\rsecond\n.\nthird"
    raw = compose(make_mail(text=text))
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")
    body = parsed(raw).get_content()
    assert body == "x" * 2000 + "\nsecond\n.\nthird\n"


# --- header injection (security.md case 14, CVE-2024-6923) ----------------------------------


def test_newline_in_subject_cannot_add_a_bcc_header() -> None:
    raw = compose(make_mail(subject=INJECTED_SUBJECT))
    names = [name.lower() for name in header_names(raw)]
    assert names.count("subject") == 1
    assert "bcc" not in names
    message = parsed(raw)
    assert message["Bcc"] is None
    assert message["Subject"] == "Help me Bcc: attacker@evil.example"
    assert [a.addr_spec for a in message["To"].addresses] == ["ann@example.com"]
    assert message.get_all("To") is not None and len(message.get_all("To")) == 1


@pytest.mark.parametrize(
    "evil",
    [
        INJECTED_SUBJECT,
        "Help me\r\nBcc: attacker@evil.example",
        "Help me\rBcc: attacker@evil.example",
        "Help me\x0bBcc: attacker@evil.example",
        "Help me\x0cBcc: attacker@evil.example",
        "Help me\x1cBcc: attacker@evil.example",
        "Help me\x85Bcc: attacker@evil.example",
        "Help me\u2028Bcc: attacker@evil.example",
        "Help me\u2029Bcc: attacker@evil.example",
        "Hélp mé\nBcc: attacker@evil.example",  # non-ASCII: goes through RFC 2047 folding
        "Help me\n\nBcc: attacker@evil.example",
        "Help me\x00\nBcc: attacker@evil.example",
        # Literal RFC 2047 encoded words (a double-encoded subject or name, kept as text by
        # the parser): the email package would decode them into a real line break.
        "Help me =?utf-8?q?=0D=0ABcc:_attacker@evil.example?=",
        "Help me =?utf-8?b?DQpCY2M6IGF0dGFja2VyQGV2aWwuZXhhbXBsZQ==?=",
        "Hélp mé =?utf-8?q?=0D=0ABcc:_attacker@evil.example?=",
    ],
)
def test_line_breaks_in_any_header_value_stay_inside_that_header(evil: str) -> None:
    raw = compose(
        make_mail(
            subject=evil,
            from_name=evil,
            to=(Address("ann@example.com", evil),),
            cc=(Address("bob@example.com", evil),),
            attachments=(OutgoingAttachment(evil + ".pdf", "application/pdf", b"x"),),
        )
    )
    names = [name.lower() for name in header_names(raw)]
    assert "bcc" not in names
    assert names.count("subject") == 1
    assert names.count("to") == 1
    message = parsed(raw)
    assert message["Bcc"] is None
    assert [a.addr_spec for a in message["To"].addresses] == ["ann@example.com"]
    assert [a.addr_spec for a in message["Cc"].addresses] == ["bob@example.com"]
    assert "\n" not in message["Subject"] and "\r" not in message["Subject"]
    # Kept as text, on one line (an encoded word stays as written: it is not decoded).
    assert "attacker@evil.example" in message["Subject"] or "DQpC" in message["Subject"]
    assert message["To"].addresses[0].display_name.startswith("H")
    for part in message.iter_attachments():
        assert "\n" not in (part.get_filename() or "")


@pytest.mark.parametrize(
    "bad",
    [
        "ann@example.com, attacker@evil.example",
        "Ann <ann@example.com>",
        "ann@example.com>\r\nBcc: attacker@evil.example",
        "ann@example.com\nBcc: attacker@evil.example",
        '"ann smith"@example.com',
        "ann smith@example.com",
        "ann@exa mple.com",
        "ann@example.com (comment)",
        "ann@@example.com",
        "ann",
        "@example.com",
        "ann@",
        "",
        "ann@example.com;bob@example.com",
        "ann\u00a0x@example.com",
        "ann\u202e@example.com",
        "ann@-example.com",
        "a" * 65 + "@example.com",
    ],
)
def test_invalid_addresses_are_refused_everywhere(bad: str) -> None:
    with pytest.raises(ValueError):
        clean_address(bad)
    with pytest.raises(ValueError):
        compose(make_mail(to=(Address(bad, "Ann"),)))
    with pytest.raises(ValueError):
        compose(make_mail(cc=(Address(bad, "Ann"),)))
    with pytest.raises(ValueError):
        compose(make_mail(from_address=bad))
    if bad:
        with pytest.raises(ValueError):
            compose(make_mail(reply_to=bad))


def test_clean_address_accepts_plain_and_bracketed_addr_specs() -> None:
    assert clean_address("  <ann.o'neil+tag@example.co.uk> ") == "ann.o'neil+tag@example.co.uk"
    assert clean_address("ANN@Example.COM") == "ANN@Example.COM"


def test_mail_without_recipients_is_refused() -> None:
    with pytest.raises(ValueError, match="To"):
        compose(make_mail(to=()))


def test_display_names_that_look_like_addresses_stay_display_names() -> None:
    raw = compose(
        make_mail(to=(Address("ann@example.com", "victim@corp.example, x@evil.example"),))
    )
    message = parsed(raw)
    (only,) = message["To"].addresses
    assert only.addr_spec == "ann@example.com"
    assert only.display_name == "victim@corp.example, x@evil.example"


def test_one_line_flattens_every_line_break_and_control_character() -> None:
    assert one_line("a\r\nb\x00c\u2028d\te  f ") == "a b c d e f"
