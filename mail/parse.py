"""Raw RFC 5322 bytes -> `ParsedEmail`: the second step of the inbound pipeline.

`IMAP -> raw bytes kept -> parse -> classify -> thread -> ticketing`. The raw bytes are already
stored when `parse` runs, so it may be lossy but must never raise and must stay fast on hostile
input: every problem becomes a sentence in `ParsedEmail.defects` and a fallback value.

Division of labour:
- Top-level headers are read by our own small header lexer, not by `email`'s structured header
  parser: that parser misreads ambiguous From headers (CVE-2023-27043), is quadratic or recursive
  on nested comments (gh-134873), and gives up on raw 8-bit headers. Addresses are parsed here
  with a linear lexer that keeps every ambiguity as a defect.
- MIME structure comes from the stdlib (`BytesParser`, `policy.default`) with a policy that
  defuses oversized part headers before the structured parser sees them, and after a linear
  pre-scan that refuses nesting deeper than `MAX_MIME_DEPTH`.
- Body and attachment selection follows JMAP (RFC 8621 4.1.4), which is what modern clients do;
  text is decoded by `mail.charsets`, never by `get_content()`, which raises on unknown charsets.
"""

from __future__ import annotations

import binascii
import datetime as dt
import functools
import html as html_lib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy as email_policy
from email.generator import BytesGenerator
from email.message import Message
from email.parser import BytesParser
from email.policy import EmailPolicy
from email.utils import parsedate_to_datetime
from io import BytesIO
from typing import Any, TypeVar

from mail.charsets import (
    decode_bytes,
    decode_encoded_words,
    header_bytes_to_str,
    lookup_codec,
)
from mail.filenames import safe_filename
from mail.html import html_to_text
from mail.message import Address, ParsedAttachment, ParsedEmail, SenderStatus

MAX_MIME_DEPTH = 50
MAX_HEADER_VALUE = 64 * 1024  # kept per header in `ParsedEmail.headers`
MAX_ADDRESS_HEADER = 4096  # a From longer than this is not a mailbox, it is an attack
MAX_STRUCTURED_HEADER = 8192  # longest part header handed to email's structured parser
MAX_REFERENCES = 200
MAX_SUBJECT = 2000

_HEADER_LINE = re.compile(rb"^[\x21-\x39\x3b-\x7e]+:")
_HEADER_LINE_SPACED = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]+:")
_CHARSET_PARAM = re.compile(rb"""charset\s*=\s*["']?([A-Za-z0-9_.:+-]{1,40})""", re.IGNORECASE)
_BOUNDARY_PARAM = re.compile(
    rb"""boundary\*?0?\*?\s*=\s*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))""", re.I
)
_META_CHARSET = re.compile(r"""<meta[^>]{0,200}?charset\s*=\s*["']?([A-Za-z0-9_.:-]{1,40})""", re.I)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def parse(raw: bytes, *, max_part_bytes: int | None = None) -> ParsedEmail:
    """Parse one raw message. Never raises: failures become defects and fallback values.

    Parts larger than `max_part_bytes` (decoded) are kept as `omitted` attachments without data.
    """
    try:
        return _Parser(raw, max_part_bytes).run()
    except Exception as exc:  # boundary: a message must never take the pipeline down
        return _last_resort(raw, exc)


# --- headers ------------------------------------------------------------------------------------


@dataclass
class _HeaderBlock:
    fields: list[tuple[str, bytes]]  # (lower-cased name, unfolded raw value)
    repaired: bytes  # the whole message with the header block repaired for `email`
    defects: list[str]


def _read_header_block(raw: bytes) -> _HeaderBlock:
    """Split the top-level header block into fields, repairing what would derail `email`.

    An unindented continuation line (a wrapped Subject from a broken mailer) makes the stdlib
    parser end the headers there and treat every later header as body. A line that is not a
    header but is followed by real headers is therefore folded into the previous field.
    """
    defects: list[str] = []
    lines = raw.split(b"\n")
    end = len(lines)
    for index, line in enumerate(lines):
        if line in (b"", b"\r"):
            end = index
            break
    header_lines = lines[:end]
    kinds: list[str] = []
    for index, line in enumerate(header_lines):
        if index == 0 and line.startswith(b"From "):
            kinds.append("mbox")
        elif line[:1] in (b" ", b"\t"):
            kinds.append("cont")
        elif _HEADER_LINE.match(line):
            kinds.append("field")
        elif _HEADER_LINE_SPACED.match(line):
            kinds.append("spaced")
        else:
            kinds.append("garbled")
    # A garbled line with no header after it is where the body starts (no blank separator).
    last_field = max((i for i, k in enumerate(kinds) if k in ("field", "spaced")), default=-1)
    body_start = end
    for index, kind in enumerate(kinds):
        if kind == "garbled" and index > last_field:
            body_start = index
            defects.append("no blank line between headers and body")
            break
    fields: list[tuple[str, bytes]] = []
    out: list[bytes] = []
    for index in range(body_start):
        line, kind = header_lines[index], kinds[index]
        if kind == "garbled":
            defects.append("unindented header continuation line folded into the previous header")
            line = b" " + line
            kind = "cont"
        elif kind == "spaced":
            line = _HEADER_LINE_SPACED.sub(rb"\1:", line, count=1)
            kind = "field"
        out.append(line)
        if kind == "field":
            name, _, value = line.partition(b":")
            fields.append((name.decode("ascii").lower(), value.strip(b" \t\r")))
        elif kind == "cont" and fields:
            name, value = fields[-1]
            if len(value) < MAX_HEADER_VALUE * 2:
                fields[-1] = (name, value + b" " + line.strip(b" \t\r"))
    repaired = b"\n".join(out + lines[body_start:]) if defects else raw
    return _HeaderBlock(fields, repaired, defects)


def _header_text(value: bytes, hint: str | None) -> str:
    """A raw header value as display text: 8-bit bytes decoded, encoded words decoded."""
    return decode_encoded_words(header_bytes_to_str(value, hint=hint))


def one_line(text: str, limit: int = MAX_SUBJECT) -> str:
    """Control characters (CR/LF included) to spaces, whitespace collapsed, length capped.

    Anything reused in an outgoing header must pass through this (CPython CVE-2024-6923).
    """
    return re.sub(r"\s+", " ", _CONTROL.sub(" ", text)).strip()[:limit]


# --- addresses ----------------------------------------------------------------------------------


@dataclass
class _Mailbox:
    words: list[tuple[str, bool]] = field(default_factory=list)  # (text, was quoted) outside <>
    angle: str | None = None
    after_angle: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not self.words and self.angle is None and not self.after_angle


_ATEXT = r"[^\s\x00-\x1f\x7f()<>\[\]:;@\\,.\"]"
_ADDR_SPEC = re.compile(
    rf'^(?:{_ATEXT}+(?:\.{_ATEXT}+)*|"(?:[^"\\\r\n]|\\.)*")'
    rf"@(?:{_ATEXT}+(?:\.{_ATEXT}+)*|\[[^\[\]\\\s]*\])$"
)
_LOOKS_LIKE_ADDRESS = re.compile(r"[^\s<>()\"',;:@]+@[^\s<>()\"',;:@]+\.[^\s<>()\"',;:@]+")


def _lex_mailboxes(value: str) -> list[_Mailbox]:
    """Split an address-list header into mailboxes in one linear pass.

    Quoted strings, nested comments and escapes are honoured; everything unbalanced or stray is
    recorded on the mailbox it happened in, so the caller can refuse to trust it.
    """
    boxes: list[_Mailbox] = []
    box = _Mailbox()
    atom: list[str] = []
    i, n = 0, len(value)

    def end_atom() -> None:
        if atom:
            target = box.after_angle if box.angle is not None else None
            text = "".join(atom)
            if target is not None:
                target.append(text)
            else:
                box.words.append((text, False))
            atom.clear()

    while i < n:
        ch = value[i]
        if ch == '"':
            end_atom()
            j, buf = i + 1, []
            while j < n and value[j] != '"':
                if value[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(value[j])
                j += 1
            if j >= n:
                box.defects.append("unterminated quoted string")
            if box.angle is not None:
                box.after_angle.append("".join(buf))
            else:
                box.words.append(("".join(buf), True))
            i = j + 1
        elif ch == "(":
            end_atom()
            depth, j, buf = 1, i + 1, []
            while j < n and depth:
                c = value[j]
                if c == "\\" and j + 1 < n:
                    buf.append(value[j + 1])
                    j += 2
                    continue
                depth += c == "("
                depth -= c == ")"
                if depth:
                    buf.append(c)
                j += 1
            if depth:
                box.defects.append("unterminated comment")
            box.comments.append("".join(buf))
            i = j
        elif ch in ")>":
            end_atom()
            box.defects.append(f"stray '{ch}'")
            atom.append(ch)
            i += 1
        elif ch == "<":
            end_atom()
            j = value.find(">", i + 1)
            if j < 0:
                box.defects.append("unterminated '<'")
                j = n
            if box.angle is not None:
                box.defects.append("more than one <address>")
            else:
                box.angle = value[i + 1 : j]
            i = j + 1
        elif ch == ",":
            end_atom()
            boxes.append(box)
            box = _Mailbox()
            i += 1
        elif ch == ":" and box.angle is None and not any(w[0].count("@") for w in box.words):
            # Group syntax ("undisclosed-recipients:;"): the group name is not a mailbox. A
            # group is never a valid From (RFC 5322 3.6.2), so a sender found in one is suspect.
            end_atom()
            box.words.clear()
            box.defects.append("group syntax")
            i += 1
        elif ch == ";":
            end_atom()
            boxes.append(box)
            box = _Mailbox()
            i += 1
        elif ch in " \t\r\n":
            end_atom()
            i += 1
        else:
            atom.append(ch)
            i += 1
    end_atom()
    boxes.append(box)
    return [b for b in boxes if not b.is_empty()]


def _mailbox_address(box: _Mailbox) -> tuple[Address | None, list[str]]:
    """The Address of one lexed mailbox (None if it has no valid addr-spec) and its defects."""
    defects = list(box.defects)
    if box.angle is not None:
        spec = box.angle.strip()
        if spec.startswith("@") and ":" in spec:  # obsolete source route <@relay:user@host>
            spec = spec.split(":", 1)[1]
            defects.append("source route in address")
        name = _phrase(box.words)
        if box.after_angle:
            defects.append("text after <address>")
    else:
        spec = "".join(f'"{text}"' if quoted else text for text, quoted in box.words)
        # The old `addr (Full Name)` form: the comment is the display name.
        name = one_line(decode_encoded_words(" ".join(box.comments)), 300)
    spec = spec.strip()
    if not spec or _ADDR_SPEC.match(spec) is None:
        return None, [*defects, "no valid address"]
    email = spec.lower()
    for candidate in _LOOKS_LIKE_ADDRESS.findall(name):
        if candidate.lower().strip(".") != email:
            defects.append(f"display name {candidate!r} looks like another address")
            break
    if any(ch in name for ch in "<>"):
        defects.append("angle bracket in display name")
    return Address(email=email, name=name), defects


def _phrase(words: list[tuple[str, bool]]) -> str:
    # Encoded words are decoded only now, after the structure is known, so an encoded `<` or `,`
    # in a display name can never move the address boundary.
    text = " ".join(text for text, _ in words)
    return one_line(decode_encoded_words(text), 300)


def parse_addresses(value: str) -> tuple[Address, ...]:
    """Every valid mailbox in an address-list header value (invalid entries are skipped)."""
    if len(value) > MAX_HEADER_VALUE:
        value = value[:MAX_HEADER_VALUE]
    found: list[Address] = []
    for box in _lex_mailboxes(value)[:1000]:
        address, _ = _mailbox_address(box)
        if address is not None:
            found.append(address)
    return tuple(found)


def parse_sender(values: list[str]) -> tuple[Address | None, SenderStatus, list[str]]:
    """From's addr-spec and how far it can be trusted (security cases 15 and 16).

    `values` are the raw (8-bit decoded, not RFC 2047 decoded) values of every From header.
    """
    if not values:
        return None, SenderStatus.UNUSABLE, ["no From header"]
    if len(values) > 1:
        return None, SenderStatus.UNUSABLE, ["more than one From header"]
    value = values[0]
    if len(value) > MAX_ADDRESS_HEADER:
        return None, SenderStatus.UNUSABLE, [f"From header too long ({len(value)} characters)"]
    boxes = _lex_mailboxes(value)
    if not boxes:
        return None, SenderStatus.UNUSABLE, ["empty From header"]
    if len(boxes) > 1:
        return None, SenderStatus.UNUSABLE, [f"From header names {len(boxes)} mailboxes"]
    address, defects = _mailbox_address(boxes[0])
    defects = [f"From: {d}" for d in dict.fromkeys(defects)]
    if address is None:
        return None, SenderStatus.UNUSABLE, defects
    return address, (SenderStatus.UNVERIFIED if defects else SenderStatus.OK), defects


# --- ids and dates ------------------------------------------------------------------------------

_BRACKETED_ID = re.compile(r"<\s*([^<>\s]{1,900})\s*>")


def _ids(value: str) -> list[str]:
    """Message ids in a Message-ID/In-Reply-To/References value, bare and in order."""
    found = _BRACKETED_ID.findall(value)
    if not found:
        # Some clients drop the angle brackets; whitespace- or comma-separated tokens then.
        found = [t.strip("<>") for t in re.split(r"[\s,]+", value) if "@" in t]
    return [i for i in found if not _CONTROL.search(i)]


def _first_id(value: str | None) -> str | None:
    if value is None:
        return None
    ids = _ids(value)
    if ids:
        return ids[0]
    token = value.strip().strip("<>").strip()
    return token[:900] if token and not re.search(r"[\s\x00-\x1f]", token) else None


def _references(value: str | None, defects: list[str]) -> tuple[str, ...]:
    if not value:
        return ()
    ids = list(dict.fromkeys(_ids(value)))
    if len(ids) > MAX_REFERENCES:
        # The root and the most recent ancestors are what threading needs.
        defects.append(f"References lists {len(ids)} ids; kept the first and the last")
        ids = [ids[0], *ids[-(MAX_REFERENCES - 1) :]]
    return tuple(ids)


def _date(value: str | None, defects: list[str]) -> dt.datetime | None:
    if value is None:
        defects.append("no Date header")
        return None
    try:
        parsed = parsedate_to_datetime(value.strip()[:200])
    except (TypeError, ValueError, IndexError, OverflowError):
        defects.append(f"unparseable Date header {value[:80]!r}")
        return None
    if parsed.tzinfo is None:  # "-0000": the zone is unknown, and UTC is the honest default
        parsed = parsed.replace(tzinfo=dt.UTC)
    try:
        return parsed.astimezone(dt.UTC)
    except (OverflowError, ValueError):
        defects.append(f"Date header out of range {value[:80]!r}")
        return None


# --- MIME ---------------------------------------------------------------------------------------


class _BoundedPolicy(EmailPolicy):
    """`policy.default`, but part headers are defused before the structured parser sees them.

    The header value parser recurses per nested comment and rescans escapes (gh-134873), so a
    Content-Type with thousands of `(` raises RecursionError or takes seconds.
    """

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if (
            isinstance(value, str)
            and not hasattr(value, "name")  # not already a header object
            and name.lower() in _MEMOIZED_HEADERS
        ):
            return _parsed_header(self, name, value)
        return self._defused_fetch_parse(name, value)

    def _defused_fetch_parse(self, name: str, value: str) -> Any:
        if isinstance(value, str) and (
            len(value) > MAX_STRUCTURED_HEADER or value.count("(") > 32 or value.count("\\") > 64
        ):
            value = re.sub(r"[()\\]", "", value[:MAX_STRUCTURED_HEADER])
        return super().header_fetch_parse(name, value)


# `email` re-parses a part's Content-Type through the header registry on every
# `get_content_type()`, `get_param()`, `get_filename()`... — the feed parser alone asks about
# seven times per part, and the same few values recur across messages. The parsed header
# objects are immutable, so equal (name, value) pairs can share one. Bounded: at most
# MAX_STRUCTURED_HEADER characters are parsed per entry.
_MEMOIZED_HEADERS = frozenset({"content-type", "content-disposition", "content-transfer-encoding"})


@functools.lru_cache(maxsize=1024)
def _parsed_header(policy: _BoundedPolicy, name: str, value: str) -> Any:
    return policy._defused_fetch_parse(name, value)


_POLICY = _BoundedPolicy()
T = TypeVar("T")
D = TypeVar("D")
_COMPAT_POLICY = email_policy.compat32


def _mime_depth(raw: bytes) -> int:
    """Upper estimate of multipart nesting depth, in one linear pass over the lines."""
    stack: list[bytes] = []
    deepest = 0
    for line in raw.split(b"\n"):
        if b"oundary" in line or b"OUNDARY" in line:
            match = _BOUNDARY_PARAM.search(line)
            if match:
                stack.append(match.group(1) or match.group(2))
                deepest = max(deepest, len(stack))
        elif line.startswith(b"--") and stack:
            stripped = line.rstrip()
            if stripped.endswith(b"--") and stripped[2:-2] in stack:
                del stack[stack.index(stripped[2:-2]) :]
    return deepest


def _safe(call: Callable[[], T], default: D) -> T | D:
    """Call a `Message` accessor; `email` still raises on some malformed parameters."""
    try:
        return call()
    except Exception:  # one bad parameter must not lose the part
        return default


def _raw_header(part: Message, name: str) -> str | None:
    for key, value in part.raw_items():
        if key.lower() == name:
            return str(value)
    return None


def _restore_8bit(text: str, hint: str | None = None) -> str:
    """`email` keeps raw 8-bit header bytes as surrogate escapes; decode them properly."""
    if not any("\udc80" <= ch <= "\udcff" for ch in text):
        return text
    return header_bytes_to_str(text.encode("utf-8", "surrogateescape"), hint=hint)


_BASE64_JUNK = re.compile(rb"[^A-Za-z0-9+/=]")


def _transfer_decode(data: bytes, encoding: str) -> bytes:
    """Undo a Content-Transfer-Encoding on a part's source bytes, leniently.

    Also used for base64-encoded message/rfc822 parts (illegal per RFC 2046, sent anyway), which
    `email` parses as if they were plain text.
    """
    if encoding == "base64":
        cleaned = _BASE64_JUNK.sub(b"", data).split(b"=", 1)[0]
        if len(cleaned) % 4 == 1:
            cleaned = cleaned[:-1]
        try:
            return binascii.a2b_base64(cleaned + b"=" * (-len(cleaned) % 4))
        except binascii.Error:
            return data
    if encoding == "quoted-printable":
        return binascii.a2b_qp(data)
    return data


@dataclass
class _Leaf:
    part: Message
    content_type: str
    disposition: str | None
    filename: str | None
    raw: bytes | None  # the part's source bytes (headers + body), when they could be located


def _split_head(chunk: bytes) -> tuple[bytes, bytes]:
    """A part's source split into (headers, body) at the first empty line."""
    if chunk.startswith((b"\n", b"\r\n")):
        return b"", chunk[1 if chunk.startswith(b"\n") else 2 :]
    match = re.search(rb"\r?\n\r?\n", chunk)
    if match is None:
        return chunk, b""
    return chunk[: match.start()], chunk[match.end() :]


def _split_multipart(body: bytes, boundary: str) -> list[bytes] | None:
    """The source bytes of each subpart of a multipart body, or None if the boundary is absent.

    `email` does not keep byte offsets, and re-serializing an embedded message changes it (line
    endings, folding); an attached .eml must be what the sender attached.
    """
    try:
        delimiter = re.compile(
            rb"^--" + re.escape(boundary.encode("ascii")) + rb"(--)?[ \t]*\r?$", re.MULTILINE
        )
    except UnicodeEncodeError:
        return None
    chunks: list[bytes] = []
    start: int | None = None
    for match in delimiter.finditer(body):
        if start is not None:
            end = match.start()
            # The line break before a delimiter belongs to the delimiter (RFC 2046 5.1.1).
            if body[end - 2 : end] == b"\r\n":
                end -= 2
            elif body[end - 1 : end] == b"\n":
                end -= 1
            chunks.append(body[start:end])
        if match.group(1):
            return chunks
        start = match.end() + 1  # past the delimiter line's \n
    if start is not None and start <= len(body):
        chunks.append(body[start:])  # no close delimiter: the last part runs to the end
    return chunks or None


class _Parser:
    def __init__(self, raw: bytes, max_part_bytes: int | None) -> None:
        self.raw = raw
        self.limit = max_part_bytes
        self.defects: list[str] = []
        self.linesep = "\r\n" if b"\r\n" in raw[:4096] else "\n"

    def run(self) -> ParsedEmail:
        block = _read_header_block(self.raw)
        self.defects.extend(dict.fromkeys(block.defects))
        self.hint = self._charset_hint(block.fields)
        headers = self._headers(block.fields)
        raw_values: dict[str, list[str]] = {name: [] for name, _ in block.fields}
        for name, value in block.fields:
            raw_values[name].append(header_bytes_to_str(value, hint=self.hint))

        def first(name: str) -> str | None:
            return next((v for k, v in headers if k == name), None)

        sender, status, sender_defects = parse_sender(raw_values.get("from", []))
        self.defects.extend(sender_defects)
        self.repaired = block.repaired
        message = self._mime(block.repaired)
        text_parts, html_parts, leaves = self._structure(message)
        text, html = self._bodies(text_parts, html_parts)
        attachments = tuple(a for leaf in leaves if (a := self._attachment(leaf)) is not None)
        subject = one_line(first("subject") or "")
        return ParsedEmail(
            message_id=_first_id(first("message-id")),
            in_reply_to=_first_id(first("in-reply-to")),
            references=_references(first("references"), self.defects),
            subject=subject,
            sender=sender,
            sender_status=status,
            to=self._addresses(raw_values, "to"),
            cc=self._addresses(raw_values, "cc"),
            reply_to=self._addresses(raw_values, "reply-to"),
            date=_date(first("date"), self.defects),
            text=text,
            html=html,
            attachments=attachments,
            headers=headers,
            content_type=_safe(message.get_content_type, "text/plain"),
            defects=tuple(dict.fromkeys(self.defects)),
        )

    # headers

    def _charset_hint(self, fields: list[tuple[str, bytes]]) -> str | None:
        """The body's charset: the best guess for raw 8-bit bytes in headers (CJK mail)."""
        for name, value in fields:
            if name == "content-type":
                match = _CHARSET_PARAM.search(value)
                if match:
                    return match.group(1).decode("ascii")
        return None

    def _headers(self, fields: list[tuple[str, bytes]]) -> tuple[tuple[str, str], ...]:
        out: list[tuple[str, str]] = []
        truncated = False
        for name, value in fields:
            if len(value) > MAX_HEADER_VALUE:
                value = value[:MAX_HEADER_VALUE]
                truncated = True
            text = _header_text(value, self.hint).replace("\x00", " ")
            out.append((name, re.sub(r"[\r\n]+", " ", text)))
        if truncated:
            self.defects.append(f"header value over {MAX_HEADER_VALUE} bytes truncated")
        return tuple(out)

    def _addresses(self, raw_values: dict[str, list[str]], name: str) -> tuple[Address, ...]:
        found: list[Address] = []
        for value in raw_values.get(name, []):
            found.extend(parse_addresses(value))
        return tuple(found)

    # structure

    def _mime(self, raw: bytes) -> Message:
        depth = _mime_depth(raw)
        if depth > MAX_MIME_DEPTH:
            self.defects.append(
                f"MIME nesting about {depth} levels deep (limit {MAX_MIME_DEPTH}); "
                "body kept as one opaque attachment"
            )
            return self._opaque(raw)
        for policy in (_POLICY, _COMPAT_POLICY):
            try:
                return BytesParser(policy=policy).parsebytes(raw)
            except RecursionError:
                self.defects.append("MIME structure too deep to parse; body kept opaque")
                return self._opaque(raw)
            except Exception as exc:  # the stdlib parser still has crash bugs on odd headers
                self.defects.append(f"MIME parser failed ({type(exc).__name__}); retried")
        return self._opaque(raw)

    def _opaque(self, raw: bytes) -> Message:
        message = BytesParser(policy=_COMPAT_POLICY).parsebytes(raw, headersonly=True)
        del message["content-type"]
        del message["content-transfer-encoding"]
        message["Content-Type"] = "application/octet-stream"
        message["Content-Disposition"] = 'attachment; filename="message-body.bin"'
        return message

    def _structure(self, message: Message) -> tuple[list[_Leaf], list[_Leaf], list[_Leaf]]:
        """JMAP body selection (RFC 8621 4.1.4): text parts, HTML parts, attachments."""
        text: list[_Leaf] | None = []
        html: list[_Leaf] | None = []
        attachments: list[_Leaf] = []
        self._walk([message], [self.repaired], "mixed", False, html, text, attachments, 0)
        return text or [], html or [], attachments

    def _walk(  # transcribes the RFC's algorithm, branch for branch
        self,
        parts: list[Message],
        raws: list[bytes] | None,
        multipart_type: str,
        in_alternative: bool,
        html_body: list[_Leaf] | None,
        text_body: list[_Leaf] | None,
        attachments: list[_Leaf],
        depth: int,
    ) -> None:
        text_length = len(text_body) if text_body is not None else -1
        html_length = len(html_body) if html_body is not None else -1
        for index, part in enumerate(parts):
            if not isinstance(part, Message):
                continue
            raw = raws[index] if raws is not None else None
            content_type = _safe(part.get_content_type, "text/plain")
            if content_type.startswith("multipart/") and part.is_multipart():
                if depth >= MAX_MIME_DEPTH:
                    self.defects.append("MIME parts nested too deeply were left out")
                    continue
                subtype = content_type.split("/", 1)[1]
                subparts = [p for p in _safe(part.get_payload, []) if isinstance(p, Message)]
                boundary = _safe(part.get_boundary, None)
                subraws = None
                if raw is not None and boundary:
                    subraws = _split_multipart(_split_head(raw)[1], boundary)
                if subraws is not None and len(subraws) != len(subparts):
                    subraws = None  # we and `email` disagree; fall back to re-serializing
                self._walk(
                    subparts,
                    subraws,
                    subtype,
                    in_alternative or subtype == "alternative",
                    html_body,
                    text_body,
                    attachments,
                    depth + 1,
                )
                continue
            if content_type.startswith("multipart/"):
                # A multipart whose boundary never appears: the stdlib keeps the text as the
                # payload. Showing it as text beats losing it.
                self.defects.append(f"{content_type} without a usable boundary read as text")
                content_type = "text/plain"
            leaf = self._leaf(part, content_type, raw)
            is_media = content_type.split("/", 1)[0] in ("image", "audio", "video")
            is_inline = (
                leaf.disposition != "attachment"
                and (content_type in ("text/plain", "text/html") or is_media)
                and (
                    index == 0 or (multipart_type != "related" and (is_media or not leaf.filename))
                )
            )
            if not is_inline or is_media:
                # Inline images are attachments for us (JMAP lists them as body parts); the web
                # layer resolves `cid:` references to them.
                attachments.append(leaf)
                continue
            if multipart_type == "alternative":
                if content_type == "text/plain" and text_body is not None:
                    text_body.append(leaf)
                elif content_type == "text/html" and html_body is not None:
                    html_body.append(leaf)
                continue
            if in_alternative:
                if content_type == "text/plain":
                    html_body = None
                if content_type == "text/html":
                    text_body = None
            if text_body is not None:
                text_body.append(leaf)
            if html_body is not None:
                html_body.append(leaf)
        if multipart_type == "alternative" and text_body is not None and html_body is not None:
            if text_length == len(text_body) and html_length != len(html_body):
                text_body.extend(html_body[html_length:])
            if html_length == len(html_body) and text_length != len(text_body):
                html_body.extend(text_body[text_length:])

    def _leaf(self, part: Message, content_type: str, raw: bytes | None) -> _Leaf:
        disposition = _safe(part.get_content_disposition, None)
        filename = _safe(part.get_filename, None)
        if filename is not None:
            filename = decode_encoded_words(_restore_8bit(str(filename), self.hint))
        return _Leaf(part, content_type, disposition, filename, raw)

    # bodies

    def _bodies(self, text_parts: list[_Leaf], html_parts: list[_Leaf]) -> tuple[str, str | None]:
        decoded: dict[int, str] = {}

        def body(leaf: _Leaf) -> str:
            if id(leaf) not in decoded:
                decoded[id(leaf)] = self._decode_text(leaf)
            return decoded[id(leaf)]

        texts = [
            html_to_text(body(leaf)) if leaf.content_type == "text/html" else body(leaf)
            for leaf in text_parts
        ]
        # Surrounding blank lines carry nothing; indentation of the first line is kept.
        text = "\n".join(t.strip("\n").rstrip() for t in texts if t.strip())
        html: str | None = None
        if any(leaf.content_type == "text/html" and body(leaf).strip() for leaf in html_parts):
            html = "".join(
                body(leaf)
                if leaf.content_type == "text/html"
                else f'<div style="white-space:pre-wrap">{html_lib.escape(body(leaf))}</div>'
                for leaf in html_parts
            )
            if not text.strip():
                # Mailers that send an empty text/plain alternative next to real HTML.
                text = html_to_text(html)
        return text, html

    def _decode_text(self, leaf: _Leaf) -> str:
        data = self._payload(leaf)
        if self.limit is not None and len(data) > self.limit:
            self.defects.append(
                f"{leaf.content_type} body ({len(data)} bytes) cut at the {_size(self.limit)} limit"
            )
            data = data[: self.limit]
        charset = _safe(leaf.part.get_content_charset, None)
        if charset is None and leaf.content_type == "text/html":
            match = _META_CHARSET.search(data[:4096].decode("ascii", "replace"))
            charset = match.group(1) if match else None
        text, clean = decode_bytes(data, charset, hint=self.hint)
        if not clean:
            self.defects.append(
                f"{leaf.content_type} part: charset {charset or 'missing'!r} "
                f"{'unknown' if charset and lookup_codec(charset) is None else 'wrong'}; "
                "decoded with fallback"
            )
        return text.replace("\r\n", "\n").replace("\x00", "")

    def _payload(self, leaf: _Leaf) -> bytes:
        part = leaf.part
        encoding = (_raw_header(part, "content-transfer-encoding") or "").strip().lower()
        if part.is_multipart() or part.get_content_maintype() == "message":
            if leaf.raw is None:
                return self._serialized_body(part)
            return _transfer_decode(_split_head(leaf.raw)[1], encoding)
        if leaf.raw is not None and encoding in ("base64", "quoted-printable"):
            # From the source: `email`'s base64 decoder gives up on junk after the padding,
            # which broken mailers append ("...ZGZg==?=").
            return _transfer_decode(_split_head(leaf.raw)[1], encoding)
        raw_encoding = _raw_header(part, "content-transfer-encoding")
        if raw_encoding is not None and raw_encoding != encoding:
            # `get_payload(decode=True)` silently skips decoding when the header carries extra
            # whitespace or capitals ("quoted-printable   ", seen from real mailers).
            _safe(lambda: part.replace_header("Content-Transfer-Encoding", encoding), None)
        data = _safe(lambda: part.get_payload(decode=True), b"")
        return data if isinstance(data, bytes) else b""

    def _serialized_body(self, part: Message) -> bytes:
        """The bytes of an embedded message (message/rfc822 and friends), headers included."""
        buffer = BytesIO()
        generator_policy = part.policy.clone(linesep=self.linesep)
        if isinstance(generator_policy, EmailPolicy):
            # Never refold the embedded headers: the attachment should be what was sent.
            generator_policy = generator_policy.clone(refold_source="none", max_line_length=None)
        try:
            BytesGenerator(buffer, mangle_from_=False, policy=generator_policy).flatten(part)
        except Exception:
            self.defects.append("embedded message could not be re-serialized")
            return b""
        data = buffer.getvalue()
        separator = self.linesep.encode() * 2
        head_end = data.find(separator)
        return data[head_end + len(separator) :] if head_end >= 0 else b""

    # attachments

    def _attachment(self, leaf: _Leaf) -> ParsedAttachment | None:
        part = leaf.part
        data = self._payload(leaf)
        name = leaf.filename
        if not name and leaf.content_type in ("message/rfc822", "message/global"):
            name = self._embedded_subject(part)
            name = f"{name}.eml" if name else None
        filename = safe_filename(name, content_type=leaf.content_type)
        content_id = _raw_header(part, "content-id")
        if content_id is not None:
            content_id = one_line(content_id, 500).strip("<> ") or None
        is_inline = leaf.disposition == "inline" or (
            leaf.disposition is None and content_id is not None
        )
        if self.limit is not None and len(data) > self.limit:
            self.defects.append(
                f"attachment {filename!r} ({len(data)} bytes) left out: "
                f"over the {_size(self.limit)} limit"
            )
            return ParsedAttachment(
                filename=filename,
                content_type=leaf.content_type,
                data=b"",
                size=len(data),
                content_id=content_id,
                is_inline=is_inline,
                omitted=True,
            )
        return ParsedAttachment(
            filename=filename,
            content_type=leaf.content_type,
            data=data,
            size=len(data),
            content_id=content_id,
            is_inline=is_inline,
        )

    def _embedded_subject(self, part: Message) -> str:
        payload = _safe(part.get_payload, None)
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            subject = _raw_header(payload[0], "subject")
            if subject:
                return one_line(decode_encoded_words(_restore_8bit(subject, self.hint)), 120)
        return ""


def _size(limit: int) -> str:
    if limit >= 1024 * 1024 and limit % (1024 * 1024) == 0:
        return f"{limit // (1024 * 1024)} MB"
    if limit >= 1_000_000 and limit % 1_000_000 == 0:
        return f"{limit // 1_000_000} MB"
    return f"{limit} bytes"


def _last_resort(raw: bytes, exc: Exception) -> ParsedEmail:
    """What is left when parsing failed outright: headers if they can be read, no body."""
    defects = [f"parser failed ({type(exc).__name__}: {str(exc)[:200]}); raw message kept"]
    headers: tuple[tuple[str, str], ...] = ()
    subject = ""
    try:
        block = _read_header_block(raw[: 2 * 1024 * 1024])
        headers = tuple(
            (name, one_line(header_bytes_to_str(value[:MAX_HEADER_VALUE]), MAX_HEADER_VALUE))
            for name, value in block.fields
        )
        subject = one_line(next((v for k, v in headers if k == "subject"), ""))
    except Exception:  # even the header lexer failed: an empty message with the reason
        defects.append("headers unreadable")
    return ParsedEmail(
        message_id=None,
        in_reply_to=None,
        references=(),
        subject=subject,
        sender=None,
        sender_status=SenderStatus.UNUSABLE,
        headers=headers,
        defects=tuple(defects),
    )
