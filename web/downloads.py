"""Responses that hand files to a browser without letting the browser render them."""

from __future__ import annotations

from urllib.parse import quote

from flask import Response

SAFE_INLINE_IMAGES = {"image/png", "image/jpeg", "image/gif", "image/webp"}


def attachment_response(
    data: bytes, *, filename: str, content_type: str, inline: bool = False
) -> Response:
    """Bytes as a download: `attachment` disposition (inline only for safe raster images),
    `nosniff`, and a sandbox CSP so even a mislabelled HTML/SVG file cannot run script."""
    is_inline = inline and content_type in SAFE_INLINE_IMAGES
    mimetype = content_type if is_inline else "application/octet-stream"
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_") or "download"
    ascii_name = "".join(c if 32 <= ord(c) < 127 else "_" for c in ascii_name)
    disposition = "inline" if is_inline else "attachment"
    response = Response(data, mimetype=mimetype)
    response.headers["Content-Disposition"] = (
        f"{disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    response.headers["Cache-Control"] = "private, no-store"
    return response
