"""Remote images in email, fetched only when an agent asks, and never from our own network.

Place in the flow: `mail.html.sanitize_html` parks every remote `<img src>` in
`data-remote-src` at ingest; when an agent clicks "Load remote images", the web layer points
those images at its proxy with a signed URL, and the proxy calls `fetch_image` here (security
case 23; osTicket CVE-2020-24881, FreeScout GHSA-22wf-848c-c856).

Server-side request forgery is the danger: an email decides the URL, our server makes the
request. So `fetch_image`
- accepts only http and https URLs without credentials, and parses hosts the way browsers and
  `inet_aton` do (`2130706433`, `0x7f000001`, `0177.0.0.1`, `127.1` are all 127.0.0.1), so no
  spelling of a number slips past as a "host name";
- resolves the name itself, refuses it when any address is not public (loopback, private,
  link-local, shared, multicast, reserved, IPv4-mapped/6to4/NAT64 forms of those), connects to
  exactly the address it checked (the name goes in the Host header and TLS SNI), and checks the
  connected peer once more, so DNS rebinding between check and connect gains nothing;
- follows at most three redirects, each hop checked like the first;
- gives up after five seconds in all and five megabytes, and returns only PNG, JPEG, GIF or WebP
  recognised by their leading bytes (never SVG, whatever the Content-Type says).

The standard library's `http.client` does the talking: no proxy variables, no cookies, no
automatic redirects, nothing this module did not ask for.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[IPAddress]]
AddressPolicy = Callable[[IPAddress], bool]

MAX_BYTES = 5 * 1024 * 1024
TIMEOUT = 5.0
MAX_REDIRECTS = 3
MAX_URL_LENGTH = 2048
_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 64 * 1024
_USER_AGENT = "Handoff-image-proxy/1"

# IPv6 ranges that carry an IPv4 address inside: judge them by that address.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
# Not global, though Python 3.11 says otherwise for some of it (IETF protocol assignments).
_ALSO_REFUSED = (ipaddress.IPv4Network("192.0.0.0/24"),)


class RemoteImageError(Exception):
    """The image could not be served. The message is for logs, never for the response."""


class Refused(RemoteImageError):
    """The URL, an address on the way or the answer is not allowed."""


class Unavailable(RemoteImageError):
    """Network trouble: no answer in time, a refused connection, an error status."""


@dataclass(frozen=True)
class ImageTarget:
    """One parsed request target. `host` is lower-case ASCII (IDNA) or an IP literal."""

    scheme: str
    host: str
    port: int
    path: str  # path and query, never empty
    address: IPAddress | None  # set when the URL names an address rather than a name


@dataclass(frozen=True)
class RemoteImage:
    content_type: str
    data: bytes


# --- addresses --------------------------------------------------------------------------------


def is_public_address(ip: IPAddress) -> bool:
    """Whether `ip` is a globally routed unicast address our server may connect to."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return False
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_public_address(embedded)
        if ip.teredo is not None or int(ip) >> 32 == 0:
            # Teredo tunnels, and the deprecated IPv4-compatible ::a.b.c.d (and ::, ::1).
            return False
        if ip.is_site_local:
            return False
    if isinstance(ip, ipaddress.IPv4Address) and any(ip in net for net in _ALSO_REFUSED):
        return False
    return bool(
        ip.is_global
        and not ip.is_private
        and not ip.is_loopback
        and not ip.is_link_local
        and not ip.is_multicast
        and not ip.is_reserved
        and not ip.is_unspecified
    )


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    # Python 3.11 judges ::ffff:127.0.0.1 by its IPv6 range alone; the kernel connects it
    # to 127.0.0.1. Same idea for 6to4 and NAT64 prefixes.
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or ip in _NAT64_LOCAL:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def parse_ipv4_host(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a URL host spells, in any form browsers and `inet_aton` accept
    (WHATWG URL "IPv4 parser"): `127.0.0.1`, `2130706433`, `0x7f000001`, `0177.0.0.1`,
    `127.1`. None when the host is a name; `Refused` when it looks numeric but is not valid.
    """
    labels = host.split(".")
    if labels and labels[-1] == "" and len(labels) > 1:
        labels.pop()  # one trailing dot is allowed
    if not labels or not _is_number_label(labels[-1]):
        return None  # a name such as images.example.com (a name may not end in a number)
    if len(labels) > 4:
        raise Refused("malformed numeric host")
    numbers = [_parse_ipv4_number(label) for label in labels]
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        raise Refused("malformed numeric host")
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def _is_number_label(label: str) -> bool:
    if label.isascii() and label.isdigit():
        return True
    return label[:2].lower() == "0x" and all(c in "0123456789abcdefABCDEF" for c in label[2:])


def _parse_ipv4_number(label: str) -> int:
    try:
        if label[:2].lower() == "0x":
            return int(label[2:] or "0", 16)
        if len(label) > 1 and label.startswith("0"):
            return int(label[1:], 8)
        return int(label, 10)
    except ValueError:
        raise Refused("malformed numeric host") from None


# --- URLs -------------------------------------------------------------------------------------


def parse_image_url(url: str) -> ImageTarget:
    """Parse an image URL into a request target, or raise `Refused`."""
    if not url or len(url) > MAX_URL_LENGTH:
        raise Refused("empty or overlong URL")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise Refused("control characters or spaces in URL")
    if "\\" in url:
        raise Refused("backslash in URL")  # browsers read it as "/", urllib does not
    try:
        parts = urlsplit(url)
    except ValueError:
        raise Refused("malformed URL") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise Refused("not an http(s) URL")
    netloc = parts.netloc
    if not netloc or "@" in netloc:
        raise Refused("no host, or credentials in URL")
    try:
        port = parts.port
    except ValueError:
        raise Refused("bad port") from None
    if port is None:
        port = _DEFAULT_PORTS[scheme]
    if not 0 < port < 65536:
        raise Refused("bad port")
    raw_host = netloc.rsplit(":", 1)[0] if not netloc.endswith("]") else netloc
    address: IPAddress | None
    if raw_host.startswith("["):
        if not raw_host.endswith("]") or "%" in raw_host:
            raise Refused("bad IPv6 literal")
        try:
            address = ipaddress.IPv6Address(raw_host[1:-1])
        except ValueError:
            raise Refused("bad IPv6 literal") from None
        host = str(address)
    else:
        host = _ascii_host(raw_host)
        address = parse_ipv4_host(host)
        if address is not None:
            host = str(address)
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    if parts.query:
        path += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
    return ImageTarget(scheme=scheme, host=host, port=port, path=path, address=address)


def _ascii_host(host: str) -> str:
    host = host.rstrip(".").lower()
    if not host:
        raise Refused("no host")
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise Refused("bad host name") from None
    if not all(c.isalnum() or c in "-._" for c in ascii_host) or len(ascii_host) > 253:
        raise Refused("bad host name")
    return ascii_host


# --- resolving and connecting -----------------------------------------------------------------


def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Every address the system resolver gives for `host` (TCP)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def _resolve(target: ImageTarget, resolver: Resolver, deadline: float) -> list[IPAddress]:
    if target.address is not None:
        return [target.address]
    # getaddrinfo has no timeout of its own: wait for it only as long as the budget allows.
    result: list[IPAddress] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            result.extend(resolver(target.host, target.port))
        except Exception as exc:  # reported below; this thread must not die noisily
            failure.append(exc)

    worker = threading.Thread(target=work, name="image-proxy-resolve", daemon=True)
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    if worker.is_alive():
        raise Unavailable("name resolution timed out")
    if failure:
        raise Unavailable(f"name resolution failed: {failure[0]}")
    if not result:
        raise Unavailable("name has no addresses")
    return result


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise Unavailable("timed out")
    return left


def _open_socket(ip: IPAddress, port: int, deadline: float, allow: AddressPolicy) -> socket.socket:
    try:
        sock = socket.create_connection((str(ip), port), timeout=_remaining(deadline))
    except OSError as exc:
        raise Unavailable(f"connect failed: {exc}") from None
    try:
        peer = ipaddress.ip_address(str(sock.getpeername()[0]).split("%")[0])
    except (OSError, ValueError):
        sock.close()
        raise Unavailable("connection lost") from None
    if not allow(peer):
        sock.close()
        raise Refused(f"connected to a refused address {peer}")
    return sock


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to one checked address; `host` is used only for the Host header."""

    def __init__(self, target: ImageTarget, ip: IPAddress, deadline: float, allow: AddressPolicy):
        super().__init__(target.host, target.port, timeout=_remaining(deadline))
        self._ip, self._deadline, self._allow = ip, deadline, allow
        # http.client forgets `sock` once a `Connection: close` response is read; the
        # response still reads from this socket, whose timeout we keep adjusting.
        self.socket: socket.socket | None = None

    def connect(self) -> None:
        self.sock = self.socket = _open_socket(self._ip, self.port, self._deadline, self._allow)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to one checked address, with SNI and certificate checks against the name."""

    def __init__(self, target: ImageTarget, ip: IPAddress, deadline: float, allow: AddressPolicy):
        self._tls = ssl.create_default_context()
        super().__init__(target.host, target.port, timeout=_remaining(deadline), context=self._tls)
        self._ip, self._deadline, self._allow = ip, deadline, allow
        self.socket: socket.socket | None = None

    def connect(self) -> None:
        raw = _open_socket(self._ip, self.port, self._deadline, self._allow)
        try:
            self.sock = self.socket = self._tls.wrap_socket(raw, server_hostname=self.host)
        except (OSError, ssl.SSLError) as exc:
            raw.close()
            raise Unavailable(f"TLS failed: {exc}") from None


# --- fetching ---------------------------------------------------------------------------------

_SIGNATURES: list[tuple[bytes, str]] = [
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
]


def image_type(data: bytes) -> str | None:
    """The content type of PNG, JPEG, GIF or WebP bytes, judged by their leading bytes."""
    for magic, content_type in _SIGNATURES:
        if data.startswith(magic):
            return content_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def fetch_image(
    url: str,
    *,
    resolver: Resolver = system_resolver,
    allow: AddressPolicy = is_public_address,
    timeout: float = TIMEOUT,
    max_bytes: int = MAX_BYTES,
    max_redirects: int = MAX_REDIRECTS,
) -> RemoteImage:
    """Fetch a remote image under the rules in this module's docstring.

    Raises `Refused` for what is not allowed and `Unavailable` for network failures.
    `resolver` and `allow` are seams for tests; production uses the defaults.
    """
    deadline = time.monotonic() + timeout
    current = url
    for _hop in range(max_redirects + 1):
        target = parse_image_url(current)
        addresses = _resolve(target, resolver, deadline)
        refused = [ip for ip in addresses if not allow(ip)]
        if refused:
            # One private answer among public ones is how DNS rebinding starts: refuse all.
            raise Refused(f"{target.host} resolves to a refused address {refused[0]}")
        location = _request(target, addresses[0], deadline, max_bytes, allow)
        if isinstance(location, RemoteImage):
            return location
        current = urljoin(current, location)
    raise Refused("too many redirects")


def _request(
    target: ImageTarget, ip: IPAddress, deadline: float, max_bytes: int, allow: AddressPolicy
) -> RemoteImage | str:
    """One GET: the image, or the Location of a redirect."""
    factory = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    conn = factory(target, ip, deadline, allow)
    # Socket timeouts bound each wait, not the sum of them (a server may drip its headers a
    # byte at a time): at the deadline, cut the connection whatever it is doing.
    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _cut, args=(conn,))
    watchdog.daemon = True
    watchdog.start()
    response: http.client.HTTPResponse | None = None
    try:
        try:
            conn.request(
                "GET",
                target.path,
                headers={
                    "User-Agent": _USER_AGENT,
                    "Accept": "image/png,image/jpeg,image/gif,image/webp",
                    "Accept-Encoding": "identity",
                    "Connection": "close",
                },
            )
            _set_timeout(conn, deadline)
            response = conn.getresponse()
        except RemoteImageError:
            raise
        except (OSError, http.client.HTTPException) as exc:
            raise Unavailable(f"request failed: {exc}") from None
        if response.status in _REDIRECTS:
            location = response.getheader("Location")
            if not location:
                raise Unavailable("redirect without Location")
            return location
        if response.status != 200:
            raise Unavailable(f"status {response.status}")
        declared = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
        if "svg" in declared or "xml" in declared or "html" in declared:
            raise Refused(f"not a raster image: {declared}")
        length = response.getheader("Content-Length")
        if (
            length
            and length.strip().isascii()
            and length.strip().isdigit()
            and int(length) > max_bytes
        ):
            raise Refused("image too large")
        data = _read_limited(conn, response, deadline, max_bytes)
    finally:
        watchdog.cancel()
        if response is not None:
            response.close()
        conn.close()
    content_type = image_type(data)
    if content_type is None:
        raise Refused("not a PNG, JPEG, GIF or WebP image")
    return RemoteImage(content_type=content_type, data=data)


def _cut(conn: _PinnedHTTPConnection | _PinnedHTTPSConnection) -> None:
    if conn.socket is not None:
        with contextlib.suppress(OSError):  # already closed: nothing left to cut
            conn.socket.shutdown(socket.SHUT_RDWR)


def _set_timeout(conn: _PinnedHTTPConnection | _PinnedHTTPSConnection, deadline: float) -> None:
    left = _remaining(deadline)
    if conn.socket is not None:
        conn.socket.settimeout(left)


def _read_limited(
    conn: _PinnedHTTPConnection | _PinnedHTTPSConnection,
    response: http.client.HTTPResponse,
    deadline: float,
    max_bytes: int,
) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        # Each read gets only what is left of the budget: a server dripping a byte at a time
        # cannot stretch the fetch past the deadline.
        _set_timeout(conn, deadline)
        try:
            chunk = response.read1(_CHUNK)
        except (OSError, http.client.HTTPException) as exc:
            raise Unavailable(f"read failed: {exc}") from None
        if not chunk:
            # http.client's read1 does not report a short body; a cut one is short too.
            if response.length or time.monotonic() >= deadline:
                raise Unavailable("connection closed early")
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise Refused("image too large")
        chunks.append(chunk)
