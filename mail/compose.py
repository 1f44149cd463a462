"""Outgoing mail: one `OutgoingMail` (built from an outbox row) -> the exact bytes to send.

Place in the flow (design.md §1, §3): ``… → ticketing service → outbox row → compose → SMTP``.
`mail.outbound` builds an `OutgoingMail` from the row (bodies from `ticketing.emails`, the
signed Message-ID, reply address and loop token from `mail.tokens`), calls `compose()` and
hands the bytes to `mail.transport`. Pure: no I/O, no clock unless `date` is left out.

Every value that lands in a header may come from a customer (names, subjects, file names), so
each is flattened to one line before the email library sees it: CPython before 3.11.10/3.12.5
folds an encoded word that decodes to a newline into a real line break, turning a subject
like ``Help =?UTF-8?Q?me=0ABcc:_attacker@evil.example?=`` into a Bcc header (CVE-2024-6923,
security.md case 14). Addresses must be one plain addr-spec each; anything else is a
`ValueError`, never a guess.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from email import policy as email_policy
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.utils import format_datetime

from mail.message import Address
from mail.tokens import LOOP_HEADER

__all__ = [
    "AUTO_SUBMITTED_VALUES",
    "MAX_REFERENCES",
    "OutgoingAttachment",
    "OutgoingMail",
    "clean_address",
    "compose",
    "one_line",
]

# RFC 3834 §5: the values a responder may use (``no`` is the absence of the header).
AUTO_SUBMITTED_VALUES = frozenset({"auto-generated", "auto-replied", "auto-notified"})
# A long conversation must not grow the References header without bound; the first id (the
# thread root) and the most recent ones are what threading clients use (RFC 5322 §3.6.4).
MAX_REFERENCES = 20

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
_LOCAL_PART = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}")
_MSG_ID = re.compile(r"[\x21-\x7e]+@[\x21-\x7e]+")
_TOKEN = re.compile(r"[\x21-\x7e]{1,200}")
_UNSUBSCRIBE_URL = re.compile(r"https?://[\x21-\x3b\x3d\x3f-\x7e]{1,900}")  # no < or >
_MIME_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+\-]{0,126}"
_MIME_TYPE = re.compile(rf"({_MIME_NAME})/({_MIME_NAME})")


@dataclass(frozen=True, slots=True)
class OutgoingAttachment:
    """A file to attach (always as an attachment, never inline)."""

    filename: str
    content_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    """Everything one outgoing message says.

    - `message_id`, `in_reply_to`, `references` are bare ids (no angle brackets).
    - `auto_submitted`: ``"auto-replied"`` / ``"auto-generated"`` for automatic mail (adds
      ``Auto-Submitted`` and ``X-Auto-Response-Suppress: All``); None for a person's reply.
    - `loop_token`: the value for ``X-Handoff-Loop`` (`mail.tokens.make_loop_token`).
    - `list_unsubscribe`: an http(s) URL for ``List-Unsubscribe`` (RFC 2369), sent with
      ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058): the URL must unsubscribe
      on a POST without further steps.
    - `date`: timezone-aware; None means now.
    - `return_path_hint`: the bounce address the sender should use as the envelope sender.
      It is not written as a header: Return-Path is added by the final delivery server
      (RFC 5321 §4.4).
    """

    from_address: str
    from_name: str
    to: tuple[Address, ...]
    subject: str
    message_id: str
    text: str
    html: str | None = None
    cc: tuple[Address, ...] = ()
    reply_to: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    attachments: tuple[OutgoingAttachment, ...] = ()
    auto_submitted: str | None = None
    loop_token: str | None = None
    list_unsubscribe: str | None = None
    date: dt.datetime | None = None
    return_path_hint: str | None = None


def compose(mail: OutgoingMail) -> bytes:
    """The message as bytes with CRLF line ends, ready for `SmtpConnection.send(data=…)`.

    Structure: text/plain, or multipart/alternative (text, then HTML) when `html` is given,
    wrapped in multipart/mixed when there are attachments. Bodies are quoted-printable when
    not plain ASCII, so the message is 7-bit clean unless an address needs SMTPUTF8.
    Raises `ValueError` for an invalid address, Message-ID, loop token or Auto-Submitted
    value, or a naive `date`.
    """
    if not mail.to:
        raise ValueError("a message needs at least one To address")
    from_address = clean_address(mail.from_address)
    to = [_header_address(a.email, a.name) for a in mail.to]
    cc = [_header_address(a.email, a.name) for a in mail.cc]
    reply_to = clean_address(mail.reply_to) if mail.reply_to else None
    everyone = [from_address, *(a.addr_spec for a in to + cc), *([reply_to] if reply_to else [])]
    # An internationalised local part can only travel as raw UTF-8 (RFC 6532); such a message
    # needs SMTPUTF8 end to end, which the transport asks for when the envelope needs it.
    policy = email_policy.SMTP if all(a.isascii() for a in everyone) else email_policy.SMTPUTF8

    msg = EmailMessage(policy=policy)
    msg["From"] = _header_address(from_address, mail.from_name)
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    if reply_to:
        msg["Reply-To"] = _header_address(reply_to, "")
    msg["Subject"] = header_text(mail.subject)
    msg["Date"] = format_datetime(_utc(mail.date))
    msg["Message-ID"] = f"<{_message_id(mail.message_id)}>"
    if mail.in_reply_to:
        msg["In-Reply-To"] = f"<{_message_id(mail.in_reply_to)}>"
    thread = references([*mail.references, *([mail.in_reply_to] if mail.in_reply_to else [])])
    if thread:
        msg["References"] = " ".join(f"<{ref}>" for ref in thread)
    if mail.auto_submitted is not None:
        if mail.auto_submitted not in AUTO_SUBMITTED_VALUES:
            raise ValueError(f"Auto-Submitted must be one of {sorted(AUTO_SUBMITTED_VALUES)}")
        msg["Auto-Submitted"] = mail.auto_submitted
        # Exchange/Outlook ignore RFC 3834 but honour this; no Precedence header, which
        # RFC 3834 §3.1.8 discourages.
        msg["X-Auto-Response-Suppress"] = "All"
    if mail.loop_token is not None:
        if not _TOKEN.fullmatch(mail.loop_token):
            raise ValueError("the loop token must be printable ASCII without spaces")
        msg[LOOP_HEADER] = mail.loop_token
    if mail.list_unsubscribe is not None and not _UNSUBSCRIBE_URL.fullmatch(mail.list_unsubscribe):
        raise ValueError("the unsubscribe URL is not a plain http(s) URL")

    msg.set_content(_body(mail.text), subtype="plain", cte=_cte(mail.text))
    if mail.html is not None:
        msg.add_alternative(_body(mail.html), subtype="html", cte=_cte(mail.html))
    for attachment in mail.attachments:
        maintype, subtype = _attachment_type(attachment.content_type)
        msg.add_attachment(
            attachment.data,
            maintype=maintype,
            subtype=subtype,
            filename=_filename(attachment.filename),
        )
    # The email library copies MIME-Version into parts it wraps; only the top level has one.
    for part in msg.walk():
        if part is not msg:
            del part["MIME-Version"]
    data = msg.as_bytes(policy=policy)
    if mail.list_unsubscribe is not None:
        # Written as raw lines: the email package would turn a URL longer than a header line
        # into RFC 2047 encoded words, which no mail client reads as a URL. Header order
        # carries no meaning, and the URL is validated printable ASCII without < or >.
        data = (
            f"List-Unsubscribe: <{mail.list_unsubscribe}>\r\n"
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        ).encode("ascii") + data
    return data


def clean_address(value: str) -> str:
    """One addr-spec, validated: the form `compose` writes (and the envelope should use).

    Accepts ``local@domain`` (surrounding spaces and one pair of angle brackets are dropped);
    a non-ASCII domain becomes its IDNA A-label form. Raises `ValueError` for anything else:
    display names, several addresses, quoted local parts, comments, control characters.
    """
    if not isinstance(value, str):
        raise ValueError("an email address must be a string")
    address = value.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    shown = _shown(address)
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or len(address) > 254 or len(local) > 64:
        raise ValueError(f"not a single email address: {shown}")
    if not _LOCAL_PART.fullmatch(local) or any(_is_odd_in_address(ch) for ch in local):
        raise ValueError(f"not a single email address: {shown}")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(f"not a valid email domain: {shown}") from None
    if not _DOMAIN.fullmatch(domain) or len(domain) > 253:
        raise ValueError(f"not a valid email domain: {shown}")
    return f"{local}@{domain}"


def one_line(value: str) -> str:
    """`value` as one header-safe line: control and line-break characters become spaces.

    Every character `str.splitlines()` splits on is included (CR, LF, VT, FF, FS, GS, RS,
    NEL, LINE SEPARATOR, PARAGRAPH SEPARATOR), as the email library splits on them too; runs
    of whitespace collapse to one space, because a line that is only whitespace would end a
    folded header early in some parsers.
    """
    text = "".join(" " if _is_unsafe(ch) else ch for ch in value)
    return " ".join(text.split())


def header_text(value: str) -> str:
    """`one_line(value)`, and inert for the email package: a Subject or display name.

    The email package decodes RFC 2047 encoded words it finds in a value it is given, and
    before Python 3.11.10 writes what they decode to without re-encoding line breaks
    (CVE-2024-6923): a subject holding the literal text ``=?utf-8?q?=0D=0ABcc:...?=`` — a
    customer's double-encoded subject, say — became a header of its own. A word joiner
    (U+2060, invisible) after each ``=`` that opens such a word keeps the text as written.
    """
    return one_line(value).replace("=?", "=\u2060?")


# -- helpers ------------------------------------------------------------------------------


def _is_unsafe(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Zl", "Zp")


def _is_odd_in_address(ch: str) -> bool:
    # Spaces (also NO-BREAK SPACE), controls, format characters (bidi overrides, zero-width)
    # and unassigned code points have no place in an addr-spec we send to.
    return unicodedata.category(ch)[0] in ("Z", "C")


def _shown(value: str) -> str:
    return repr(one_line(value)[:100])


def _header_address(email: str, name: str) -> HeaderAddress:
    addr_spec = clean_address(email)
    local, _, domain = addr_spec.rpartition("@")
    # username/domain rather than addr_spec=: the library's parser refuses a non-ASCII local
    # part even under the SMTPUTF8 policy; `clean_address` has validated both halves.
    return HeaderAddress(display_name=header_text(name or ""), username=local, domain=domain)


def _message_id(value: str) -> str:
    bare = value.strip().removeprefix("<").removesuffix(">")
    if not _MSG_ID.fullmatch(bare) or any(ch in bare for ch in "<>") or len(bare) > 250:
        raise ValueError(f"not a valid Message-ID: {_shown(value)}")
    return bare


def references(ids: Iterable[str]) -> list[str]:
    """The References header's ids (bare, checked, each once), bounded: the thread's root and
    the most recent ones. Raises `ValueError` for an id that is not a Message-ID."""
    bare_ids: list[str] = []
    for ref in ids:
        bare = _message_id(ref)
        if bare not in bare_ids:
            bare_ids.append(bare)
    if len(bare_ids) > MAX_REFERENCES:
        bare_ids = [bare_ids[0], *bare_ids[-(MAX_REFERENCES - 1) :]]
    return bare_ids


def _utc(date: dt.datetime | None) -> dt.datetime:
    if date is None:
        return dt.datetime.now(dt.UTC).replace(microsecond=0)
    if date.tzinfo is None or date.utcoffset() is None:
        raise ValueError("the Date must be timezone-aware")
    return date


def _body(text: str) -> str:
    # A body must end with a line break; lone CRs would be read as line ends by some
    # clients and not by others, so they become ordinary line breaks here.
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text if text.endswith("\n") else text + "\n"


def _cte(text: str) -> str | None:
    # None lets the library choose 7bit for short-lined ASCII; anything else is
    # quoted-printable, readable in the raw source and 7-bit clean (no 8BITMIME needed).
    if text.isascii() and all(len(line) <= 78 for line in text.splitlines()):
        return None
    return "quoted-printable"


def _attachment_type(content_type: str) -> tuple[str, str]:
    match = _MIME_TYPE.fullmatch((content_type or "").split(";", 1)[0].strip())
    if not match:
        return "application", "octet-stream"
    maintype, subtype = match.group(1).lower(), match.group(2).lower()
    if maintype in ("multipart", "message"):
        # These may not be base64-encoded (RFC 2046 §5); the bytes travel as an opaque file.
        return "application", "octet-stream"
    return maintype, subtype


def _filename(name: str) -> str:
    # Non-ASCII names are written as RFC 2231 ``filename*=utf-8''…`` by the library.
    cleaned = one_line(name).replace("/", "_").replace("\\", "_")
    return cleaned[:255] or "attachment"
