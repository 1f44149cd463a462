"""The plain case of `mail.compose.compose`, written without the email package.

Place in the flow: every outgoing message goes through `mail.outbound.store_composed` or
`compose_many` — `mail.notices` composes every notice of a scan (tens of thousands on the
first scan of a large billing export), email ingest an acknowledgement of each new ticket.
The email package's header registry, parser and generator take about 2 ms per message, while
most of these are the simplest messages there are: ASCII addresses and subject, one-line
headers, a text and an HTML body, no attachments (an acknowledgement adds In-Reply-To and
References).

`compose_plain(mail)` returns the bytes for such a message and None for anything else (a
non-ASCII name or subject, a header that would need folding, a Cc, attachments, a
Message-ID that is not a plain dot-atom, a value `compose` would refuse): the caller then uses
`compose()`, which handles everything and raises its usual `ValueError`s. Headers, their order
and the MIME structure are the ones `compose()` writes; bodies use the same
7bit-or-quoted-printable rule, encoded by `binascii.b2a_qp` (C) instead of
`email.quoprimime` (Python), so soft line breaks may sit elsewhere. Tests parse both outputs
and compare every header and decoded body.
"""

from __future__ import annotations

import binascii
import datetime as dt
import functools
import re
import secrets
import sys
from email.utils import format_datetime

from mail.compose import AUTO_SUBMITTED_VALUES, OutgoingMail, one_line, references
from mail.tokens import LOOP_HEADER

__all__ = ["compose_plain"]

MAX_LINE = 78  # RFC 5322 §2.1.1: what `compose` folds longer header lines at
_ATEXT_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\- ]+")
_PRINTABLE = re.compile(r"[\x20-\x7e]+")
# An addr-spec `clean_address` returns unchanged: dot-atom local part, LDH domain labels.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_PLAIN_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)*{_LABEL}")
# A bare Message-ID the email package writes back unchanged (a dot-atom on either side).
_PLAIN_MSG_ID = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-.]{1,200}@[A-Za-z0-9\-.]{1,200}")
_PLAIN_TOKEN = re.compile(r"[A-Za-z0-9._\-]{1,60}")
_UNSUBSCRIBE_URL = re.compile(r"https?://[\x21-\x3b\x3d\x3f-\x7e]{1,900}")  # as `compose`
# Controls other than tab and line feed: `compose`'s 7bit-or-QP rule splits lines on some of
# them (str.splitlines) and the email package on others (bytes.splitlines); leave those to it.
_ODD_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x85\u2028\u2029]")


def compose_plain(mail: OutgoingMail) -> bytes | None:
    """The message as `compose(mail)` would write it, or None when it is not a plain one."""
    if not mail.to or mail.cc or mail.attachments:
        return None
    headers = _headers(mail)
    if headers is None:
        return None
    text = _body_part(mail.text, "plain")
    if text is None:
        return None
    if mail.html is None:
        # A single part: the email package writes MIME-Version after the content headers.
        return b"".join((headers, text[0], b"MIME-Version: 1.0\r\n\r\n", text[1]))
    html = _body_part(mail.html, "html")
    if html is None:
        return None
    boundary = _boundary(text[1], html[1])
    delimiter = b"--" + boundary + b"\r\n"
    return b"".join(
        (
            headers,
            b"MIME-Version: 1.0\r\nContent-Type: multipart/alternative;\r\n",
            b' boundary="' + boundary + b'"\r\n\r\n',
            delimiter,
            text[0],
            b"\r\n",
            text[1],
            b"\r\n",
            delimiter,
            html[0],
            b"\r\n",
            html[1],
            b"\r\n--" + boundary + b"--\r\n",
        )
    )


def _headers(mail: OutgoingMail) -> bytes | None:
    lines: list[str] = []
    if mail.list_unsubscribe is not None:
        if not _UNSUBSCRIBE_URL.fullmatch(mail.list_unsubscribe):
            return None
        # As `compose`: raw lines, never folded or encoded (a URL must stay one token).
        lines.append(f"List-Unsubscribe: <{mail.list_unsubscribe}>")
        lines.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
    sender = _mailbox(mail.from_address, mail.from_name)
    to = [_mailbox(a.email, a.name) for a in mail.to]
    if sender is None or any(a is None for a in to):
        return None
    folded = [f"From: {sender}", "To: " + ", ".join(a for a in to if a is not None)]
    if mail.reply_to:
        reply_to = _mailbox(mail.reply_to, "")
        if reply_to is None:
            return None
        folded.append(f"Reply-To: {reply_to}")
    subject = _one_line(mail.subject)
    if not subject or "=?" in subject:
        return None  # empty, non-ASCII, or read as an RFC 2047 encoded word by the package
    folded.append(f"Subject: {subject}")
    date = _date(mail.date)
    if date is None:
        return None
    folded.append(f"Date: {_format_date(date)}")
    if not _PLAIN_MSG_ID.fullmatch(mail.message_id):
        return None
    folded.append(f"Message-ID: <{mail.message_id}>")
    if mail.in_reply_to or mail.references:
        ids = [*mail.references, *([mail.in_reply_to] if mail.in_reply_to else [])]
        if not all(_PLAIN_MSG_ID.fullmatch(mid) for mid in ids):
            return None  # brackets, spaces, odd characters: `compose` cleans or refuses them
        try:
            thread = references(ids)
        except ValueError:
            return None  # `compose` says what is wrong
        if mail.in_reply_to:
            folded.append(f"In-Reply-To: <{mail.in_reply_to}>")
        folded.append("References: " + " ".join(f"<{mid}>" for mid in thread))
    if mail.auto_submitted is not None:
        if mail.auto_submitted not in AUTO_SUBMITTED_VALUES:
            return None
        folded.append(f"Auto-Submitted: {mail.auto_submitted}")
        folded.append("X-Auto-Response-Suppress: All")
    if mail.loop_token is not None:
        if not _PLAIN_TOKEN.fullmatch(mail.loop_token):
            return None
        folded.append(f"{LOOP_HEADER}: {mail.loop_token}")
    if any(len(line) > MAX_LINE for line in folded):
        return None  # the email package would fold it: leave that to `compose`
    return "".join(line + "\r\n" for line in (*lines, *folded)).encode("ascii")


def _mailbox(email: str, name: str) -> str | None:
    """``Name <addr>`` / ``"Name, Inc." <addr>`` / ``addr``; None unless plain ASCII."""
    local = email.rpartition("@")[0]
    if len(email) > 254 or len(local) > 64 or not _PLAIN_ADDRESS.fullmatch(email):
        return None  # `clean_address` accepts more (and says what is wrong): leave it to it
    phrase = _one_line(name or "")
    if phrase is None or "=?" in phrase:
        return None  # read as an RFC 2047 encoded word: `compose` makes it inert
    if not phrase:
        return email
    if not _ATEXT_PHRASE.fullmatch(phrase):
        # RFC 5322 §3.2.4 quoted-string, as the email package writes a name with specials.
        phrase = '"' + phrase.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{phrase} <{email}>"


def _one_line(value: str) -> str | None:
    """`one_line(value)` if that is printable ASCII, else None (quick for what is already)."""
    if not value or _PRINTABLE.fullmatch(value):
        return " ".join(value.split())
    flat = one_line(value)
    return flat if not flat or _PRINTABLE.fullmatch(flat) else None


def _date(date: dt.datetime | None) -> dt.datetime | None:
    if date is None:
        return dt.datetime.now(dt.UTC).replace(microsecond=0)
    if date.tzinfo is None or date.utcoffset() is None:
        return None  # `compose` refuses a naive Date
    return date


@functools.lru_cache(maxsize=8)
def _format_date(date: dt.datetime) -> str:
    return format_datetime(date)  # a scan dates every notice alike: format it once


def _body_part(text: str, subtype: str) -> tuple[bytes, bytes] | None:
    """(content headers, encoded body with CRLF line ends), or None."""
    body = text.replace("\r\n", "\n").replace("\r", "\n")
    if not body.endswith("\n"):
        body += "\n"
    if _ODD_CONTROL.search(body):
        return None
    try:
        data = body.encode("utf-8")
    except UnicodeEncodeError:
        return None  # a lone surrogate: `compose` says what is wrong
    if body.isascii() and max(map(len, body.split("\n"))) <= MAX_LINE:
        cte, encoded = "7bit", data
    else:
        cte = "quoted-printable"
        encoded = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    head = f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n'
    return head.encode("ascii"), encoded.replace(b"\n", b"\r\n")


def _boundary(*parts: bytes) -> bytes:
    # The email package's form; quoted-printable cannot contain it (it writes = as =3D).
    while True:
        boundary = f"{'=' * 15}{secrets.randbelow(sys.maxsize):019d}==".encode("ascii")
        if not any(boundary in part for part in parts):
            return boundary
