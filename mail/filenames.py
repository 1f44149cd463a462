"""Display names for attachments: whatever a sender wrote -> one harmless file name.

Used by `mail.parse` for every attachment. The result is for display and for the
`Content-Disposition` of downloads only; storage keys are random and never derived from it
(security case 18, FreeScout CVE-2026-28289).
"""

from __future__ import annotations

import re
import unicodedata

MAX_LENGTH = 255
MAX_EXTENSION = 16

# Bidi embeddings/overrides/isolates and marks: U+202E turns "gnp.exe" into "exe.png" on screen.
_BIDI = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u061c"
# Zero-width characters hide a leading dot ("\u200b.htaccess") or pad look-alike names.
_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff\u180e"
_INVISIBLE = dict.fromkeys(map(ord, _BIDI + _ZERO_WIDTH))

# Extensions for parts that arrive without a name, so a download opens in the right program.
# A fixed table rather than `mimetypes`, whose answers depend on the host's /etc/mime.types.
_EXTENSIONS: dict[str, str] = {
    "message/rfc822": "eml",
    "message/global": "eml",
    "message/delivery-status": "txt",
    "message/disposition-notification": "txt",
    "text/rfc822-headers": "txt",
    "text/plain": "txt",
    "text/html": "html",
    "text/calendar": "ics",
    "text/csv": "csv",
    "text/xml": "xml",
    "application/xml": "xml",
    "application/pdf": "pdf",
    "application/zip": "zip",
    "application/json": "json",
    "application/ms-tnef": "dat",
    "application/vnd.ms-tnef": "dat",
    "application/pkcs7-signature": "p7s",
    "application/x-pkcs7-signature": "p7s",
    "application/pgp-signature": "asc",
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/gif": "gif",
    "image/webp": "webp",
    "image/bmp": "bmp",
    "image/tiff": "tif",
    "image/svg+xml": "svg",
    "audio/mpeg": "mp3",
    "video/mp4": "mp4",
}


def extension_for(content_type: str) -> str:
    """A file extension (without dot) for a MIME type; "bin" when unknown."""
    return _EXTENSIONS.get(content_type.lower().strip(), "bin")


def safe_filename(name: str | None, *, content_type: str) -> str:
    """Make `name` safe to show and to offer as a download name.

    Keeps only the last path component (both `/` and `\\` count, since Windows clients send
    either), removes control, bidi and zero-width characters, strips leading dots and spaces
    (no hidden or dot-dot names), NFC-normalizes, and caps the length at 255 characters while
    keeping the extension. Falls back to `attachment.<ext>` derived from `content_type`.
    """
    cleaned = _clean(name or "")
    if not cleaned:
        return f"attachment.{extension_for(content_type)}"
    return _cap(cleaned)


def _clean(name: str) -> str:
    name = unicodedata.normalize("NFC", name)
    name = name.translate(_INVISIBLE)
    # Control characters (NUL included) and lone surrogates from undecodable bytes.
    name = "".join(
        " " if ch in "\t\r\n" else ch
        for ch in name
        if ch in "\t\r\n" or unicodedata.category(ch) not in ("Cc", "Cs", "Cf")
    )
    name = re.split(r"[/\\]", name)[-1]
    # Windows drive prefix ("C:evil.txt") and characters Windows refuses in file names.
    name = re.sub(r"^[A-Za-z]:", "", name)
    name = re.sub(r'[<>:"|?*]', "_", name)
    name = re.sub(r"\s+", " ", name)
    # Leading dots make hidden files (.htaccess) and trailing dots/spaces are dropped by Windows.
    return name.strip(" .")


def _cap(name: str) -> str:
    if len(name) <= MAX_LENGTH:
        return name
    stem, dot, ext = name.rpartition(".")
    if dot and stem and 0 < len(ext) <= MAX_EXTENSION:
        return stem[: MAX_LENGTH - len(ext) - 1].rstrip(" .") + "." + ext
    return name[:MAX_LENGTH].rstrip(" .")
