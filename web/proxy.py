"""The remote-image proxy: `/proxy/image?u=<url>&s=<signature>` (security case 23).

An email's remote images reach the agent's browser only through here, and only after the agent
asked for them (the "Load remote images" button on the ticket page). The email view signs each
image URL it rewrites (`proxy_url`) with a key derived from SECRET_KEY, so this route fetches
only URLs our own pages produced: it is not an open relay. The fetch rules themselves (no
loopback/private targets, redirects re-checked, size and time limits, raster images only) live
in `mail.remote_images`.

Every failure answers with an empty 404 (bad or missing signature) or 502 (refused or failed
fetch): the response never says why, so the proxy cannot be used to probe a network.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from flask import Blueprint, Response, current_app, request, url_for

from mail import remote_images

log = logging.getLogger(__name__)

bp = Blueprint("proxy", __name__)

_PURPOSE = b"handoff/image-proxy"
_IMAGE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox; default-src 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "private, max-age=86400",
}


def _key() -> bytes:
    secret = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(secret, _PURPOSE, hashlib.sha256).digest()


def sign(url: str) -> str:
    """The signature `/proxy/image` expects for `url`."""
    return hmac.new(_key(), url.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def proxy_url(url: str) -> str:
    """Our proxy's URL for a remote image URL (relative, for use inside our pages)."""
    return url_for("proxy.image", u=url, s=sign(url))


def _empty(status: int) -> Response:
    response = Response(b"", status=status, mimetype="text/plain")
    response.headers.update(_IMAGE_HEADERS)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/proxy/image")
def image() -> Response:
    url = request.args.get("u", "")
    signature = request.args.get("s", "")
    expected = sign(url).encode()
    if not url or not hmac.compare_digest(expected, signature.encode("utf-8", "replace")):
        return _empty(404)
    try:
        fetched = remote_images.fetch_image(url)
    except remote_images.RemoteImageError as exc:
        log.info("image proxy refused or failed: %s", exc)
        return _empty(502)
    response = Response(fetched.data, mimetype=fetched.content_type)
    response.headers.update(_IMAGE_HEADERS)
    return response
