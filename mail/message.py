"""The parsed form of one inbound email: what `mail.parse` hands to the rest of the pipeline.

Frozen dataclasses only; nothing here does I/O. The raw bytes stay the source of truth (they are
stored before parsing), so a `ParsedEmail` may be lossy, but it must never raise on access.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum


class SenderStatus(StrEnum):
    """How far the From header can be trusted as the sender's identity."""

    OK = "ok"  # exactly one well-formed addr-spec
    UNVERIFIED = "unverified"  # parseable, but with defects (display name posing as an address...)
    UNUSABLE = "unusable"  # missing, empty, `<>`, several addresses, garbage


@dataclass(frozen=True, slots=True)
class Address:
    """One mailbox: the addr-spec (lower-cased domain and local part) and its display name."""

    email: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class ParsedAttachment:
    """One attachment or inline part, decoded.

    `filename` is display-only and already made safe (no path separators, control, bidi or
    zero-width characters, bounded length); it never decides where bytes are stored.
    `omitted` is True when the part was over the size limit: `data` is then empty and `size`
    is the size the sender declared or we measured.
    """

    filename: str
    content_type: str
    data: bytes
    size: int
    content_id: str | None = None  # without angle brackets
    is_inline: bool = False
    omitted: bool = False


@dataclass(frozen=True, slots=True)
class ParsedEmail:
    """Everything the pipeline needs from one message.

    - `message_id`, `in_reply_to` and `references` are bare ids without angle brackets.
    - `subject` never contains CR or LF (CPython CVE-2024-6923).
    - `sender` is From's addr-spec when `sender_status` is OK or UNVERIFIED, else None.
    - `text` is the plain-text body (derived from HTML for HTML-only mail); `html` is the raw,
      unsanitized HTML body or None. Sanitizing happens at display time (`mail.html`).
    - `headers` keeps every header as (lower-cased name, decoded value) in order, for rules.
    - `defects` lists what was wrong and how it was worked around, in words.
    """

    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    subject: str
    sender: Address | None
    sender_status: SenderStatus
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    reply_to: tuple[Address, ...] = ()
    date: dt.datetime | None = None  # timezone-aware UTC
    text: str = ""
    html: str | None = None
    attachments: tuple[ParsedAttachment, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "text/plain"
    defects: tuple[str, ...] = field(default_factory=tuple)

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        """Every value of header `name` (case-insensitive), in order."""
        name = name.lower()
        return [value for key, value in self.headers if key == name]
