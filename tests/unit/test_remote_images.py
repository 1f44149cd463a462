"""The remote-image fetcher behind the proxy: which addresses it refuses, how it reads URLs,
and that no spelling, name or redirect gets a request to a loopback listener (security case 23).

Real sockets on loopback throughout. `fetch_image` refuses loopback by default, so the tests that
need a server to answer (redirects, sizes, types) allow exactly 127.0.0.2 and keep the listener
that must stay untouched on 127.0.0.1.
"""

from __future__ import annotations

import http.server
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from mail import remote_images
from mail.remote_images import (
    Refused,
    Unavailable,
    fetch_image,
    image_type,
    is_public_address,
    parse_image_url,
    parse_ipv4_host,
)

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\xdac\xfc\xff\x9f\xa1\x1e\x00\x07\x82\x02\x7f=\xc8H\xef"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><circle r="4"/></svg>'


# --- a loopback listener that counts what reaches it -----------------------------------------


Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


class CountingServer:
    """An HTTP server on a loopback address that records every request it receives."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.routes: dict[str, Handler] = {}
        server = self

        class _Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append((self.path, dict(self.headers.items())))
                handler = server.routes.get(self.path.split("?")[0])
                if handler is None:
                    send(self, 200, PNG, "image/png")
                else:
                    handler(self)

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer((host, 0), _Handler)
        self._httpd.daemon_threads = True
        self.host = host
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def hits(self) -> int:
        return len(self.requests)

    def url(self, path: str = "/pixel.png") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def send(
    handler: http.server.BaseHTTPRequestHandler,
    status: int,
    body: bytes = b"",
    content_type: str = "text/plain",
    headers: dict[str, str] | None = None,
) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


@contextmanager
def counting_server(host: str = "127.0.0.1") -> Iterator[CountingServer]:
    server = CountingServer(host)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def target() -> Iterator[CountingServer]:
    """The listener on 127.0.0.1 that must never be reached."""
    with counting_server() as server:
        yield server


@pytest.fixture
def origin() -> Iterator[CountingServer]:
    """A listener on 127.0.0.2 that tests allow, standing in for a public image host."""
    try:
        server = CountingServer("127.0.0.2")
    except OSError as exc:  # pragma: no cover - every Linux routes 127.0.0.0/8 to lo
        pytest.skip(f"cannot bind 127.0.0.2: {exc}")
    yield server
    server.close()


def only_origin(ip: remote_images.IPAddress) -> bool:
    return ip == ipaddress.IPv4Address("127.0.0.2")


def fixed_resolver(*addresses: str) -> remote_images.Resolver:
    def resolve(host: str, port: int) -> list[remote_images.IPAddress]:
        return [ipaddress.ip_address(a) for a in addresses]

    return resolve


# --- the address classifier --------------------------------------------------------------------

REFUSED_ADDRESSES = [
    "127.0.0.1",
    "127.255.255.254",
    "0.0.0.0",
    "0.1.2.3",
    "10.0.0.1",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # carrier-grade NAT
    "192.0.0.8",
    "192.0.2.1",
    "198.18.0.1",
    "198.51.100.7",
    "203.0.113.9",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "::127.0.0.1",  # deprecated IPv4-compatible
    "::ffff:127.0.0.1",
    "::ffff:7f00:1",
    "::ffff:10.1.2.3",
    "::ffff:169.254.169.254",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2001::1",  # Teredo
    "2001:db8::1",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "fec0::1",
    "ff02::1",
    "100::1",
]
PUBLIC_ADDRESSES = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
]


@pytest.mark.parametrize("address", REFUSED_ADDRESSES)
def test_loopback_private_link_local_and_reserved_addresses_are_refused(address):
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_public_unicast_addresses_are_allowed(address):
    assert is_public_address(ipaddress.ip_address(address))


# --- reading hosts and URLs --------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "2130706433",
        "0x7f000001",
        "0X7F000001",
        "017700000001",
        "0177.0.0.1",
        "0x7f.0.0.1",
        "0x7f.0x0.0x0.0x1",
        "127.1",
        "127.0.1",
        "127.0.0.1.",
    ],
)
def test_every_spelling_of_an_ipv4_address_is_read_as_that_address(host):
    assert parse_ipv4_host(host) == ipaddress.IPv4Address("127.0.0.1")


@pytest.mark.parametrize("host", ["images.example.com", "cdn1.example", "x", "a-1.b-2"])
def test_host_names_are_not_addresses(host):
    assert parse_ipv4_host(host) is None


@pytest.mark.parametrize("host", ["1.2.3.4.5", "256.0.0.1", "08.0.0.1", "1.2.3.256", "foo.123"])
def test_hosts_that_look_numeric_but_are_not_valid_are_refused(host):
    with pytest.raises(Refused):
        parse_ipv4_host(host)


def test_url_parsing_normalises_hosts_and_keeps_path_and_query():
    target = parse_image_url("HTTPS://Images.Example.COM./a/b.png?x=1&y=%20#frag")
    assert (target.scheme, target.host, target.port) == ("https", "images.example.com", 443)
    assert target.path == "/a/b.png?x=1&y=%20" and target.address is None

    assert parse_image_url("http://example.com").path == "/"
    assert parse_image_url("http://example.com:8080/p").port == 8080
    assert parse_image_url("http://bücher.example/").host == "xn--bcher-kva.example"
    assert parse_image_url("http://example.com/ü").path == "/%C3%BC"


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://2130706433:8080/x", "127.0.0.1"),
        ("http://0x7f000001/x", "127.0.0.1"),
        ("http://0177.0.0.1/x", "127.0.0.1"),
        ("http://127.1/x", "127.0.0.1"),
        ("http://[::ffff:127.0.0.1]/x", "::ffff:127.0.0.1"),
        ("http://[::1]:81/x", "::1"),
        ("http://\uff11\uff12\uff17.0.0.1/x", "127.0.0.1"),  # full-width digits
    ],
)
def test_numeric_hosts_in_urls_become_addresses(url, address):
    assert parse_image_url(url).address == ipaddress.ip_address(address)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "ftp://example.com/a.png",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
        "data:image/png;base64,AAAA",
        "javascript:alert(1)",
        "cid:logo@x",
        "//example.com/a.png",
        "/relative.png",
        "http://user:pass@example.com/a.png",
        "http://example.com@127.0.0.1/a.png",
        "http://127.0.0.1\\@example.com/a.png",
        "http://%31%32%37.0.0.1/a.png",
        "http://exa mple.com/a.png",
        "http://example.com/a b.png",
        "http://example.com/\r\nX-Injected: 1",
        "http://example.com:0/a.png",
        "http://example.com:99999/a.png",
        "http://example.com:80x/a.png",
        "http://[fe80::1%25eth0]/a.png",
        "http://[::1/a.png",
        "http:///a.png",
        "http://" + "a" * 2100 + ".example/",
    ],
)
def test_urls_that_are_not_plain_http_images_are_refused(url):
    with pytest.raises(Refused):
        parse_image_url(url)


def test_image_types_are_judged_by_their_bytes():
    assert image_type(PNG) == "image/png"
    assert image_type(GIF) == "image/gif"
    assert image_type(b"\xff\xd8\xff\xe0\x00\x10JFIF") == "image/jpeg"
    assert image_type(b"RIFF\x24\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert image_type(SVG) is None
    assert image_type(b"<html><script>alert(1)</script>") is None


# --- fetching: nothing reaches loopback --------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "http://127.0.0.1:{port}/pixel",
        "http://127.1:{port}/pixel",
        "http://[::ffff:127.0.0.1]:{port}/pixel",
        "http://[::ffff:7f00:1]:{port}/pixel",
        "http://2130706433:{port}/pixel",
        "http://0x7f000001:{port}/pixel",
        "http://0177.0.0.1:{port}/pixel",
        "http://localhost:{port}/pixel",
        "http://[::1]:{port}/pixel",
        "http://0.0.0.0:{port}/pixel",
    ],
)
def test_loopback_targets_in_any_spelling_are_refused_before_connecting(target, template):
    with pytest.raises(Refused):
        fetch_image(template.format(port=target.port))
    assert target.hits == 0


def test_a_public_looking_name_that_resolves_to_loopback_is_refused(target):
    with pytest.raises(Refused):
        fetch_image(
            f"http://images.example.com:{target.port}/pixel",
            resolver=fixed_resolver("127.0.0.1"),
        )
    # One loopback answer among public ones is refused too (a rebinding attempt).
    with pytest.raises(Refused):
        fetch_image(
            f"http://images.example.com:{target.port}/pixel",
            resolver=fixed_resolver("93.184.216.34", "127.0.0.1"),
        )
    assert target.hits == 0


def test_the_connected_address_is_checked_again(target, monkeypatch):
    """If the connection ends up somewhere else than the address checked, nothing is sent."""
    real = socket.create_connection

    def misrouted(address, *args, **kwargs):
        return real(("127.0.0.1", target.port), *args, **kwargs)

    monkeypatch.setattr(remote_images.socket, "create_connection", misrouted)
    with pytest.raises(Refused):
        fetch_image("http://images.example.com/pixel", resolver=fixed_resolver("93.184.216.34"))
    assert target.hits == 0


def test_a_redirect_to_loopback_is_refused(origin, target):
    for path, location in {
        "/to-loopback": target.url("/pixel"),
        "/to-decimal": f"http://2130706433:{target.port}/pixel",
        "/to-mapped": f"http://[::ffff:127.0.0.1]:{target.port}/pixel",
        "/to-name": f"http://images.example.com:{target.port}/pixel",
    }.items():
        origin.routes[path] = lambda h, loc=location: send(h, 302, headers={"Location": loc})

    def resolve(host: str, port: int) -> list[remote_images.IPAddress]:
        return [ipaddress.ip_address("127.0.0.1")]

    for path in ("/to-loopback", "/to-decimal", "/to-mapped", "/to-name"):
        with pytest.raises(Refused):
            fetch_image(origin.url(path), allow=only_origin, resolver=resolve)
    assert origin.hits == 4
    assert target.hits == 0


def test_redirects_are_followed_three_times_at_most(origin):
    for i in range(4):
        origin.routes[f"/r{i}"] = lambda h, i=i: send(
            h, 301 + (i % 2) * 6, headers={"Location": f"/r{i + 1}"}
        )
    origin.routes["/r4"] = lambda h: send(h, 200, PNG, "image/png")

    image = fetch_image(origin.url("/r1"), allow=only_origin)
    assert image.content_type == "image/png" and image.data == PNG
    with pytest.raises(Refused, match="too many redirects"):
        fetch_image(origin.url("/r0"), allow=only_origin)


def test_an_image_is_fetched_with_the_host_name_and_no_credentials(origin):
    image = fetch_image(
        f"http://images.example.com:{origin.port}/logo.png?v=2",
        allow=only_origin,
        resolver=fixed_resolver("127.0.0.2"),
    )
    assert image == remote_images.RemoteImage(content_type="image/png", data=PNG)
    [(path, headers)] = origin.requests
    assert path == "/logo.png?v=2"
    assert headers["Host"] == f"images.example.com:{origin.port}"
    assert "Cookie" not in headers and "Referer" not in headers and "Authorization" not in headers


def test_svg_html_and_mislabelled_answers_are_refused(origin):
    origin.routes["/svg"] = lambda h: send(h, 200, SVG, "image/svg+xml")
    origin.routes["/svg-as-png"] = lambda h: send(h, 200, SVG, "image/png")
    origin.routes["/html-as-gif"] = lambda h: send(h, 200, b"<script>x</script>", "image/gif")
    origin.routes["/gif-as-octets"] = lambda h: send(h, 200, GIF, "application/octet-stream")
    origin.routes["/404"] = lambda h: send(h, 404, PNG, "image/png")
    for path in ("/svg", "/svg-as-png", "/html-as-gif"):
        with pytest.raises(Refused):
            fetch_image(origin.url(path), allow=only_origin)
    with pytest.raises(Unavailable):
        fetch_image(origin.url("/404"), allow=only_origin)
    # The bytes decide the type served, not the label.
    assert fetch_image(origin.url("/gif-as-octets"), allow=only_origin).content_type == "image/gif"


def test_large_images_are_refused_with_or_without_a_content_length(origin):
    big = PNG + b"\x00" * 5000

    def chunked(h: http.server.BaseHTTPRequestHandler) -> None:
        h.protocol_version = "HTTP/1.1"
        h.send_response(200)
        h.send_header("Content-Type", "image/png")
        h.send_header("Transfer-Encoding", "chunked")
        h.send_header("Connection", "close")
        h.end_headers()
        for start in range(0, len(big), 1000):
            piece = big[start : start + 1000]
            h.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        h.wfile.write(b"0\r\n\r\n")

    origin.routes["/big"] = lambda h: send(h, 200, big, "image/png")
    origin.routes["/chunked"] = chunked
    for path in ("/big", "/chunked"):
        with pytest.raises(Refused, match="too large"):
            fetch_image(origin.url(path), allow=only_origin, max_bytes=4096)
    assert fetch_image(origin.url("/big"), allow=only_origin, max_bytes=10_000).data == big


def test_a_slow_server_cannot_hold_the_fetch_past_its_deadline(origin):
    def drip(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "image/png")
        h.send_header("Content-Length", "100000")
        h.end_headers()
        h.wfile.write(PNG)
        try:
            for _ in range(100):
                h.wfile.write(b"\x00")
                h.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass  # the fetcher hung up, as it should

    origin.routes["/drip"] = drip
    started = time.monotonic()
    with pytest.raises(Unavailable):
        fetch_image(origin.url("/drip"), allow=only_origin, timeout=1.0)
    assert time.monotonic() - started < 2.0


def test_a_server_dripping_its_headers_is_cut_at_the_deadline(origin):
    def drip_headers(h: http.server.BaseHTTPRequestHandler) -> None:
        try:
            for byte in b"HTTP/1.0 200 OK\r\nX-Slow: " + b"a" * 200:
                h.wfile.write(bytes([byte]))
                h.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass

    origin.routes["/drip-headers"] = drip_headers
    started = time.monotonic()
    with pytest.raises(Unavailable):
        fetch_image(origin.url("/drip-headers"), allow=only_origin, timeout=1.0)
    assert time.monotonic() - started < 2.0


def test_a_resolver_that_hangs_is_abandoned_at_the_deadline():
    def hanging(host: str, port: int) -> list[remote_images.IPAddress]:
        time.sleep(3)
        return []

    started = time.monotonic()
    with pytest.raises(Unavailable):
        fetch_image("http://images.example.com/a.png", resolver=hanging, timeout=0.5)
    assert time.monotonic() - started < 1.5
