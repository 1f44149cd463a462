"""Charset handling for `mail.parse`: bytes of unknown honesty -> str, never raising.

Mail in the wild lies about its charset: Outlook sends `ks_c_5601-1987`, Chinese webmail sends
`X-GBK`, gateways send `unknown-8bit`, and plenty of clients put raw UTF-8 or cp1252 bytes into
headers with no charset at all. Everything here decodes with `errors="replace"` as the last resort,
so the worst outcome is U+FFFD in the text, never an exception; the raw bytes stay untouched in
storage.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re

# Names mail clients use that Python's codec registry does not know, or knows as a narrower
# charset than the one actually sent. Supersets are chosen on purpose: a message labelled
# gb2312 is almost always GBK/GB18030, shift_jis is cp932 (Windows), euc-kr is cp949.
_ALIASES: dict[str, str] = {
    "x-gbk": "gb18030",
    "gbk": "gb18030",
    "gb2312": "gb18030",
    "x-gb2312": "gb18030",
    "csgb2312": "gb18030",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "ksc5601": "cp949",
    "euc-kr": "cp949",
    "x-euc-kr": "cp949",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "x-sjis": "cp932",
    "sjis": "cp932",
    "ms932": "cp932",
    "windows-31j": "cp932",
    # ISO-2022-JP as sent by Windows mailers carries NEC/IBM extensions; the _ext codec is a
    # strict superset of plain iso2022_jp.
    "iso-2022-jp": "iso2022_jp_ext",
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-6-i": "iso-8859-6",
    "x-mac-roman": "mac_roman",
    "macintosh": "mac_roman",
    "utf8": "utf-8",
    "x-utf8": "utf-8",
    "unicode-1-1-utf-8": "utf-8",
    "x-user-defined": "cp1252",
    "ansi_x3.4-1968": "ascii",
    "us-ascii": "ascii",
    "ascii": "ascii",
    "latin1": "cp1252",
    # Browsers and most mail clients treat a latin-1 label as windows-1252 (WHATWG encoding
    # standard); Outlook relies on it for curly quotes.
    "iso-8859-1": "cp1252",
    "iso_8859-1": "cp1252",
}

# Labels that mean "we do not know": fall through to detection.
_UNKNOWN = frozenset({"unknown-8bit", "unknown", "x-unknown", "8bit", "default", "none", ""})

FALLBACK_CODEC = "cp1252"


def lookup_codec(charset: str | None) -> str | None:
    """Python codec name for a MIME charset label, or None when unknown or meaningless."""
    if not charset:
        return None
    label = charset.strip().strip("\"'").lower()
    if len(label) > 40 or label in _UNKNOWN:
        return None
    name = _ALIASES.get(label, label)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    # Codecs like rot13/base64/zlib are bytes<->bytes transforms that a hostile charset label
    # could name; only real text encodings are acceptable.
    if not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


def decode_bytes(data: bytes, charset: str | None, *, hint: str | None = None) -> tuple[str, bool]:
    """Decode `data` labelled `charset`; returns (text, clean).

    `clean` is False when the label was unknown or lying and a fallback or replacement characters
    were needed, so the caller can record a defect. `hint` is a second guess (the message's
    charset for raw 8-bit headers).
    """
    codec = lookup_codec(charset)
    if codec == "ascii" and not data.isascii():
        # "us-ascii" with 8-bit bytes: the label is a default the client never thought about.
        codec = None
    if codec is not None:
        try:
            return data.decode(codec), True
        except UnicodeDecodeError:
            return data.decode(codec, errors="replace"), False
    if data.isascii():
        return data.decode("ascii"), charset is None or lookup_codec(charset) is not None
    return _guess(data, hint), False


def _guess(data: bytes, hint: str | None) -> str:
    """Unlabelled 8-bit text: UTF-8 if it is valid UTF-8, else the hint, else cp1252."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    hinted = lookup_codec(hint)
    if hinted and hinted not in ("ascii", "utf-8"):
        try:
            return data.decode(hinted)
        except UnicodeDecodeError:
            pass
    return data.decode(FALLBACK_CODEC, errors="replace")


def header_bytes_to_str(value: bytes, *, hint: str | None = None) -> str:
    """Raw header bytes (RFC 6532 UTF-8, or a legacy 8-bit charset) to str."""
    if value.isascii():
        return value.decode("ascii")
    return _guess(value, hint)


# An RFC 2047 encoded word. The charset may carry an RFC 2231 language suffix (`utf-8*en`).
# The encoded text excludes `?` and whitespace per the RFC; being lenient about whitespace would
# let one malformed word swallow the rest of the header.
_ENCODED_WORD = re.compile(r"=\?([^?\s*]{1,40})(?:\*[^?\s]*)?\?([QqBb])\?([^?\s]*)\?=")
_BETWEEN_WORDS = re.compile(r"[ \t\r\n]*")


def decode_encoded_words(value: str) -> str:
    """Decode RFC 2047 encoded words in `value`; undecodable words degrade, never raise.

    Whitespace between adjacent encoded words is dropped (RFC 2047 6.2), and adjacent words in the
    same charset are joined as bytes before decoding, because encoders (Outlook, Gmail) split a
    multi-byte character across two words.
    """
    if "=?" not in value:
        return value
    out: list[str] = []
    pending: list[tuple[str, bytes]] = []  # adjacent words: (charset, decoded bytes)
    pos = 0
    for match in _ENCODED_WORD.finditer(value):
        gap = value[pos : match.start()]
        if pending and _BETWEEN_WORDS.fullmatch(gap) is None:
            out.append(_flush(pending))
            pending = []
            out.append(gap)
        elif not pending:
            out.append(gap)
        charset, encoding, text = match.groups()
        payload = _decode_word_payload(encoding, text, charset)
        if payload is None:
            # Broken base64: keep the word verbatim rather than invent text.
            if pending:
                out.append(_flush(pending))
                pending = []
            out.append(match.group(0))
        else:
            pending.append((charset, payload))
        pos = match.end()
    if pending:
        out.append(_flush(pending))
    out.append(value[pos:])
    return "".join(out)


def _decode_word_payload(encoding: str, text: str, charset: str) -> bytes | None:
    if encoding in "Qq":
        # Old mailers put raw 8-bit bytes inside Q words; by now they are characters (decoded
        # with the header's guess), so encode them back with the word's own charset.
        codec = lookup_codec(charset) or "utf-8"
        raw = b"".join(
            chunk.encode("ascii") if chunk.isascii() else chunk.encode(codec, errors="replace")
            for chunk in _NON_ASCII.split(text.replace("_", " "))
        )
        return _unquote_q(raw)
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded.encode("ascii", errors="replace"))
    except (binascii.Error, ValueError):
        return None


_NON_ASCII = re.compile(r"([^\x00-\x7f]+)")
_Q_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")


def _unquote_q(raw: bytes) -> bytes:
    return _Q_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), raw)


def _flush(pending: list[tuple[str, bytes]]) -> str:
    parts: list[str] = []
    charset, buf = pending[0][0], bytearray(pending[0][1])
    for next_charset, data in pending[1:]:
        if next_charset.lower() == charset.lower():
            buf += data
        else:
            parts.append(decode_bytes(bytes(buf), charset)[0])
            charset, buf = next_charset, bytearray(data)
    parts.append(decode_bytes(bytes(buf), charset)[0])
    return "".join(parts)
