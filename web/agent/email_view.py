"""An email's HTML body, served on its own URL for the ticket page's sandboxed iframe.

Security section C, cases 21, 23, 24 and 25. Three layers, each enough on its own for script:
1. the HTML was sanitized with nh3 at ingest (`mail.inbound`) and is sanitized again here, so a
   stricter sanitizer applies to old mail too;
2. the response carries `Content-Security-Policy: sandbox` (no script, an opaque origin, no
   forms, no top navigation) with `default-src 'none'`, so nothing loads from outside;
3. the ticket page frames it in `<iframe sandbox>` without `allow-scripts`/`allow-same-origin`.

Images: `cid:` references resolve only to a Content-ID of this entry's own attachments (a safe
raster type); any other is dropped. Remote images stay inert in `data-remote-src` until the
agent asks (`?images=1`), then point at the signing proxy (`web.proxy`), never at the remote
host.

Requests made from inside the sandboxed document carry no session cookie (its origin is opaque,
so to the browser they are cross-site and `SameSite=Lax` holds the cookie back). The image URLs
written into it are therefore capabilities: `/entries/<entry>/images/<attachment>` carries an
HMAC over entry, attachment and an expiry time, issued only inside this signed-in response; the
proxy's URLs carry an HMAC over the remote URL.
"""

from __future__ import annotations

import hashlib
import hmac
import html as html_lib
import re
import time
from urllib.parse import unquote

from flask import Blueprint, Response, abort, current_app, request, url_for
from flask_login import login_required

from mail.html import sanitize_html
from ticketing.models import Attachment, Entry
from web.downloads import SAFE_INLINE_IMAGES, attachment_response
from web.extensions import db
from web.proxy import proxy_url

bp = Blueprint("email_view", __name__)

# `sandbox` with popups only: a link the agent clicks opens in a new tab (see `<base
# target="_blank">` below) as an ordinary page, never inside our frame or over our page.
SANDBOX = "allow-popups allow-popups-to-escape-sandbox"
CONTENT_SECURITY_POLICY = (
    f"sandbox {SANDBOX}; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)

_DOCUMENT = """<!doctype html>
<html><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">
<base target="_blank"><title>Email</title>
<style>
body{{margin:8px;font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d2330;
overflow-wrap:anywhere;background:#fff}}
img{{max-width:100%;height:auto}}
pre{{white-space:pre-wrap}}
blockquote{{margin:0 0 0 4px;padding-left:10px;border-left:3px solid #d6dae1;color:#4b5563}}
table{{max-width:100%}}
</style></head>
<body>{body}</body></html>
"""

# After nh3, every attribute is serialized as name="value" with `"` escaped, so these match
# exactly the attributes of one <img> (the same reasoning as in mail.html).
_IMG_TAG = re.compile(r'<img((?:\s+[^\s="/>]+(?:="[^"]*")?)*)\s*/?>')
_ATTRIBUTE = re.compile(r'\s+([^\s="/>]+)(?:="([^"]*)")?')


# How long an inline-image URL written into a body stays valid: the iframe asks for its images
# right after the body, and every reload of the body issues fresh URLs.
IMAGE_URL_LIFETIME = 3600


@bp.get("/entries/<int:entry_id>/html")
@login_required
def entry_html(entry_id: int) -> Response:
    """The entry's sanitized HTML as a sandboxed document (frameable by our pages only)."""
    entry = db.session.get(Entry, entry_id)
    if entry is None or entry.body_html is None:
        abort(404)
    body = render_email_html(entry, load_remote_images=request.args.get("images") == "1")
    response = Response(_DOCUMENT.format(body=body), mimetype="text/html")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Cache-Control"] = "private, no-store"
    return response


def render_email_html(entry: Entry, *, load_remote_images: bool) -> str:
    """The entry's HTML, sanitized again, with its images resolved as the module says."""
    assert entry.body_html is not None
    # The stored HTML holds remote images as data-remote-src, which the sanitizer (rightly)
    # does not know; hand them back as src so sanitizing again parks them again.
    cleaned = sanitize_html(_IMG_TAG.sub(_unpark_remote_src, entry.body_html))
    expires = int(time.time()) + IMAGE_URL_LIFETIME
    inline = {
        a.content_id: url_for(
            "email_view.inline_image",
            entry_id=entry.id,
            attachment_id=a.id,
            e=expires,
            s=_image_signature(entry.id, a.id, expires),
        )
        for a in entry.attachments
        if a.content_id and a.content_type in SAFE_INLINE_IMAGES
    }

    def resolve(match: re.Match[str]) -> str:
        attributes: list[str] = []
        for attr in _ATTRIBUTE.finditer(match.group(1)):
            name, value = attr.group(1).lower(), attr.group(2)
            if name == "src":
                url = _cid_url(html_lib.unescape(value or ""), inline)
                if url:
                    attributes.append(f' src="{html_lib.escape(url)}"')
            elif name == "data-remote-src":
                if load_remote_images and value:
                    url = proxy_url(html_lib.unescape(value).strip())
                    attributes.append(f' src="{html_lib.escape(url)}"')
                else:
                    attributes.append(attr.group(0))
            else:
                attributes.append(attr.group(0))
        return "<img" + "".join(attributes) + ">"

    return _IMG_TAG.sub(resolve, cleaned)


@bp.get("/entries/<int:entry_id>/images/<int:attachment_id>")
def inline_image(entry_id: int, attachment_id: int) -> Response:
    """One of an email's own `cid:` images, for the sandboxed body (no session; see above)."""
    expires = request.args.get("e", "")
    signature = request.args.get("s", "")
    if (
        not (expires.isascii() and expires.isdigit())
        or len(expires) > 12
        or int(expires) < time.time()
    ):
        abort(404)
    expected = _image_signature(entry_id, attachment_id, int(expires)).encode()
    if not hmac.compare_digest(expected, signature.encode("utf-8", "replace")):
        abort(404)
    att = db.session.get(Attachment, attachment_id)
    if att is None or att.entry_id != entry_id or att.content_type not in SAFE_INLINE_IMAGES:
        abort(404)
    try:
        data = current_app.extensions["handoff_blobs"].get(att.sha256)
    except FileNotFoundError:
        abort(404)
    response = attachment_response(
        data, filename=att.filename, content_type=att.content_type, inline=True
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _image_signature(entry_id: int, attachment_id: int, expires: int) -> str:
    secret = str(current_app.config["SECRET_KEY"]).encode()
    key = hmac.new(secret, b"handoff/email-inline-image", hashlib.sha256).digest()
    payload = f"{entry_id}.{attachment_id}.{expires}".encode()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def _unpark_remote_src(match: re.Match[str]) -> str:
    return "<img" + re.sub(r'(\s)data-remote-src="', r'\1src="', match.group(1)) + ">"


def _cid_url(src: str, inline: dict[str, str]) -> str | None:
    """Our URL for a `cid:` reference to one of this entry's own images; None otherwise."""
    if src[:4].lower() != "cid:":
        return None  # the sanitizer leaves only cid: and parked remote images; drop the rest
    content_id = unquote(src[4:]).strip().strip("<>")
    return inline.get(content_id)


def frame_height(entry: Entry) -> int:
    """A fixed iframe height in pixels guessed from the text (no script may measure it)."""
    text = entry.body_text + "\n" + entry.quoted_text
    lines = sum(1 + len(line) // 90 for line in text.splitlines())
    images = entry.body_html.count("<img") if entry.body_html else 0
    return max(120, min(560, 40 + 24 * lines + 60 * images))


@bp.app_template_global("email_frame_height")
def _email_frame_height(entry: Entry) -> int:
    return frame_height(entry)


@bp.app_template_global("email_has_remote_images")
def _email_has_remote_images(entry: Entry) -> bool:
    return bool(entry.body_html and "data-remote-src=" in entry.body_html)
