"""`compose_plain` writes what `compose` would (every header and decoded body the same) for
plain messages, and declines everything else so that `compose` handles it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy

import pytest

from mail.compose import OutgoingAttachment, OutgoingMail, compose
from mail.compose_plain import compose_plain
from mail.message import Address

NOTICE = OutgoingMail(
    from_address="support@example.com",
    from_name="Support",
    to=(Address("ann@example.com", "Ann's shop"),),
    subject="[#1234] Your card ending 4242 expires on 30 November 2026",
    message_id="handoff.1234.0123456789abcdef.abcdefghijklmnop@example.com",
    text="Hello Ann,\n\nThe Visa card ending 4242 that pays for your Pro expires on 30 November "
    "2026 (20 days from now).\n\n-- \nSupport.\n",
    html='<p style="margin:0">Hello <strong>Ann</strong>,</p>\n' + "<p>" + "word " * 40 + "</p>\n",
    reply_to="support+t1234.abcdefghijklmnop@example.com",
    auto_submitted="auto-generated",
    loop_token="0123456789abcdef.abcdefghijklmnop",
    date=dt.datetime(2026, 11, 10, 12, 0, tzinfo=dt.UTC),
    list_unsubscribe="https://help.example.com/notices/unsubscribe/5.abcdefghijklmnopqrstuvwxyz",
)


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def assert_same_message(fast: bytes, slow: bytes) -> None:
    a, b = parse(fast), parse(slow)
    assert not a.defects and all(not part.defects for part in a.walk())

    def headers(message):  # the boundary is random in both
        return [(k, str(v)) for k, v in message.items() if k != "Content-Type"]

    assert headers(a) == headers(b)
    assert a.get_content_type() == b.get_content_type()
    assert [p.get_content_type() for p in a.walk()] == [p.get_content_type() for p in b.walk()]
    for kind in ("plain", "html"):
        x, y = a.get_body((kind,)), b.get_body((kind,))
        assert (x is None) == (y is None)
        if x is not None:
            assert x.get_content() == y.get_content()
            assert x["Content-Transfer-Encoding"] == y["Content-Transfer-Encoding"]
    assert all(len(line) <= 78 for line in fast.split(b"\r\n")[2:])  # past List-Unsubscribe
    assert b"\n" not in fast.replace(b"\r\n", b"")


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"html": None},
        {"from_name": "Acme, Inc."},
        {"from_name": ""},
        {"to": (Address("ann@example.com", 'Q "x" \\ y'),)},
        {"to": (Address("ann@example.com", ""), Address("bob@example.com", "Bob"))},
        {"text": "short ascii lines\n.\n..\nFrom me\ttab\n"},
        {"text": "x" * 100 + "\nnon-ASCII: é, 😀\n-- \ntrailing spaces   \n"},
        {"text": "CRLF\r\nand CR\rline ends, no final newline"},
        {"text": "=" * 40 + "\n" + "a=b\n"},
        {"text": ""},
        {"list_unsubscribe": None, "auto_submitted": None, "loop_token": None, "reply_to": None},
        {"date": dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=2)))},
        {"from_name": "A (comment) <b@c>"},
        {"subject": "Hello   there\tagain"},
        # An acknowledgement or a reply: threading headers that fit on one line.
        {"in_reply_to": "CAF1x.2@mail.gmail.com", "list_unsubscribe": None},
        {"in_reply_to": "b@x.example", "references": ("a@x.example", "b@x.example")},
        {"references": ("a@x.example",)},
    ],
)
def test_plain_messages_are_what_compose_writes(change):
    mail = dataclasses.replace(NOTICE, **change)
    fast = compose_plain(mail)
    assert fast is not None
    assert_same_message(fast, compose(mail))


@pytest.mark.parametrize(
    "change",
    [
        {"subject": "x" * 80},  # would be folded
        {"subject": "Zoë"},  # RFC 2047 encoded word
        {"subject": "=?utf-8?q?looks_encoded?="},
        {"to": (Address("ann@example.com", "Zoë"),)},
        {"to": (Address("zoë@example.com", "Zoe"),)},  # SMTPUTF8
        {"to": (Address("not an address", ""),)},  # compose says what is wrong
        {"to": (Address("ann@example.com", "A" * 80),)},
        {"from_name": "=?utf-8?q?=0D=0ABcc:_x@evil.example?="},  # compose makes it inert
        {"text": "form\x0cfeed"},
        {"date": dt.datetime(2026, 1, 1)},  # naive: compose refuses it
        {"message_id": "not-an-id"},
        {"list_unsubscribe": "javascript:alert(1)"},
        {"auto_submitted": "yes"},
        {"cc": (Address("cc@example.com", ""),)},
        {"in_reply_to": "<x@example.com>"},  # compose strips the brackets
        {"in_reply_to": "not an id"},
        {"references": tuple(f"ref{i}.abcdefghij@example.com" for i in range(3))},  # folded
        {"attachments": (OutgoingAttachment("a.txt", "text/plain", b"x"),)},
    ],
)
def test_anything_else_is_left_to_compose(change):
    assert compose_plain(dataclasses.replace(NOTICE, **change)) is None


def test_a_notice_is_plain():
    data = compose_plain(NOTICE)
    assert data is not None
    assert data.startswith(
        b"List-Unsubscribe: <https://help.example.com/notices/unsubscribe/5.abcdefghijklmnopqrstuvwxyz>"
        b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\nFrom: Support <support@example.com>"
        b"\r\nTo: Ann's shop <ann@example.com>\r\n"
    )
