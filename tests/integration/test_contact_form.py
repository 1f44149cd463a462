"""The contact form: one ticket per submission, an acknowledgement that repeats nothing the
submitter wrote, errors in words that keep what was typed, and abuse that cannot get through
(honeypot, rate limit, daily cap, oversized and malformed posts, hostile strings)."""

from __future__ import annotations

import base64
import email
import http.cookiejar
import io
import json
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from email import policy
from pathlib import Path

import sqlalchemy as sa

from tests.conftest import SHARED
from ticketing.db import utcnow
from ticketing.models import (
    Channel,
    Entry,
    EntryKind,
    JourneyEvent,
    JourneyEventKind,
    JourneyOutcome,
    OutboxKind,
    OutboxMessage,
    SelfServiceSession,
    Ticket,
)
from ticketing.services import kb

ATTACKER_SUBJECT = "Cheap meds at https://evil.example/buy"
ATTACKER_BODY = "Visit https://evil.example/offer now! <a href='https://evil.example'>click</a>"


def publish(db_session, title: str, body: str):
    article = kb.create_article(
        db_session, title=title, body=body, actor=None, now=utcnow(), publish=True
    )
    db_session.commit()
    return article


def form_fields(client, path: str = "/contact") -> dict[str, str]:
    html = client.get(path).get_data(as_text=True)
    fields = {}
    for name in ("csrf_token", "token"):
        match = re.search(rf'name="{name}" type="hidden" value="([^"]*)"', html) or re.search(
            rf'id="{name}" name="{name}" type="hidden" value="([^"]*)"', html
        )
        assert match, f"no {name} on {path}"
        fields[name] = match.group(1)
    return fields


def submit(client, fields: dict[str, str], **values):
    data = {
        **fields,
        "name": "Ann Customer",
        "email": "ann@example.org",
        "subject": "Card declined",
        "body": "My card was declined when I paid.",
        "confirmed": "1",
        **values,
    }
    return client.post("/contact", data=data, content_type="multipart/form-data")


def tickets(db_session) -> list[Ticket]:
    db_session.rollback()
    return list(db_session.scalars(sa.select(Ticket).order_by(Ticket.id)))


def acks(db_session) -> list[OutboxMessage]:
    db_session.rollback()
    return list(
        db_session.scalars(
            sa.select(OutboxMessage).where(OutboxMessage.kind == OutboxKind.ACKNOWLEDGEMENT)
        )
    )


def delivered(app, row: OutboxMessage) -> email.message.EmailMessage:
    raw = app.extensions["handoff_blobs"].get(row.raw_sha256)
    return email.message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


def test_form_prefills_the_subject_from_the_help_center_search(client):
    html = client.get("/contact?q=card+declined").get_data(as_text=True)
    assert 'value="card declined"' in html
    assert client.get_cookie("handoff_ss") is not None  # the visit's self-service session


def test_submission_opens_one_web_ticket_and_queues_an_acknowledgement(app, client, db_session):
    fields = form_fields(client)
    response = submit(client, fields)
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/contact/sent")

    [ticket] = tickets(db_session)
    assert ticket.channel == Channel.WEB
    assert ticket.customer.email == "ann@example.org"
    [entry] = db_session.scalars(sa.select(Entry).where(Entry.ticket_id == ticket.id))
    assert entry.kind == EntryKind.CUSTOMER_WEB
    assert entry.body_text == "My card was declined when I paid."
    [ack] = acks(db_session)
    assert ack.recipient == "ann@example.org"

    page = client.get("/contact/sent").get_data(as_text=True)
    assert f"#{ticket.number}" in page
    assert "within one business day" in page


def test_double_submit_and_refresh_make_one_ticket(app, client, db_session):
    fields = form_fields(client)
    first = submit(client, fields)
    second = submit(client, fields)  # a double click posts the same token again
    assert first.status_code == second.status_code == 303
    for _ in range(2):  # refreshing the confirmation page
        assert client.get("/contact/sent").status_code == 200
    assert len(tickets(db_session)) == 1
    assert len(acks(db_session)) == 1


def test_racing_double_submits_make_one_ticket(app, live_server, db_session):
    """Two requests with the same token at the same moment (a double click that the browser
    did not suppress): the unique key makes the loser return the winner's ticket."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirect())
    html = opener.open(f"{live_server}/contact").read().decode()
    fields = {
        name: re.search(rf'name="{name}" type="hidden" value="([^"]*)"', html).group(1)
        for name in ("csrf_token", "token")
    }
    data = urllib.parse.urlencode(
        {
            **fields,
            "confirmed": "1",
            "name": "Ann",
            "email": "ann@example.org",
            "subject": "Card declined",
            "body": "Declined twice.",
        }
    ).encode()
    statuses: list[int] = []
    start = threading.Barrier(4)

    def post() -> None:
        start.wait()
        try:
            statuses.append(opener.open(f"{live_server}/contact", data=data).status)
        except urllib.error.HTTPError as exc:
            statuses.append(exc.code)

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert statuses == [303] * 4
    assert len(tickets(db_session)) == 1
    assert len(acks(db_session)) == 1


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


def test_submission_carries_the_visitors_journey(app, client, db_session):
    article = publish(db_session, "Update your payment card", "Go to Billing and add a new card.")
    fields = form_fields(client)  # starts the self-service session (cookie)
    assert client.get(f"/contact/articles/{article.id}").status_code == 200
    read = client.post(
        f"/contact/articles/{article.id}/read",
        data={"csrf_token": fields["csrf_token"], "seconds": "40"},
    )
    assert read.status_code == 204
    assert submit(client, fields).status_code == 303

    [ticket] = tickets(db_session)
    journey = db_session.scalar(sa.select(SelfServiceSession))
    assert journey.ticket_id == ticket.id
    assert journey.outcome == JourneyOutcome.SUBMITTED
    assert journey.customer_email == "ann@example.org"
    kinds = [e.kind for e in db_session.scalars(sa.select(JourneyEvent).order_by(JourneyEvent.id))]
    assert kinds == [
        JourneyEventKind.ARTICLE_OPENED,
        JourneyEventKind.ARTICLE_READ,
        JourneyEventKind.SUBMITTED,
    ]


def test_acknowledgement_to_a_new_address_carries_none_of_the_submitters_text(
    app, client, db_session
):
    publish(db_session, "Update your payment card", "When a card is declined, add a new card.")
    fields = form_fields(client)
    response = submit(
        client,
        fields,
        name="Win a prize at evil.example",
        email="victim@third-party.example",
        subject=ATTACKER_SUBJECT,
        body=ATTACKER_BODY + " card declined",
    )
    assert response.status_code == 303
    [ack] = acks(db_session)
    msg = delivered(app, ack)
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    whole = str(msg["Subject"]) + str(msg["To"]) + text + html
    assert "evil.example" not in whole
    assert "prize" not in whole and "Cheap meds" not in whole
    # Our own article is there, with its one-click link.
    assert "Update your payment card" in text
    assert re.search(r"http://127\.0\.0\.1:5000/contact/solved/[A-Za-z0-9_-]{40,}", text)


def test_honeypot_submission_creates_nothing(client, db_session):
    fields = form_fields(client)
    response = submit(client, fields, website="http://spam.example")
    assert response.status_code == 200
    assert "Thank you" in response.get_data(as_text=True)
    assert tickets(db_session) == []
    assert acks(db_session) == []


def test_too_many_posts_from_one_address_get_429_with_a_clear_message(app, client, db_session):
    app.config["HANDOFF_CONTACT_LIMIT"] = "2/minute"
    fields = form_fields(client)
    for i in range(2):
        assert submit(client, fields, token=f"tok-{i}-" + "x" * 20).status_code == 303
    refused = submit(client, fields, token="tok-3-" + "x" * 20)
    assert refused.status_code == 429
    assert "Too many attempts" in refused.get_data(as_text=True)
    assert refused.headers.get("Retry-After")
    assert len(tickets(db_session)) == 2


def test_global_daily_cap_refuses_more_web_tickets(app, client, db_session):
    app.config["HANDOFF_WEB_TICKETS_PER_DAY"] = 1
    fields = form_fields(client)
    assert submit(client, fields).status_code == 303
    refused = submit(client, fields, token="another-token-" + "y" * 20)
    assert refused.status_code == 429
    assert "unusual number of requests" in refused.get_data(as_text=True)
    assert len(tickets(db_session)) == 1


def test_invalid_email_is_explained_next_to_the_field_and_nothing_typed_is_lost(client, db_session):
    fields = form_fields(client)
    response = submit(
        client,
        fields,
        email="ann at example",
        subject="Refund <please>",
        body="Line one\nLine <two> & three",
    )
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "Enter an email address like name@example.com." in html
    assert 'aria-invalid="true"' in html
    assert 'value="ann at example"' in html
    assert 'value="Refund &lt;please&gt;"' in html
    assert "Line one\nLine &lt;two&gt; &amp; three</textarea>" in html
    assert tickets(db_session) == []


def test_missing_fields_each_say_what_to_do(client):
    fields = form_fields(client)
    html = submit(client, fields, name="", email="", subject="", body="  ").get_data(as_text=True)
    for message in (
        "Enter your name.",
        "Enter your email address.",
        "Enter a subject",
        "Tell us how we can help.",
    ):
        assert message in html


def test_without_javascript_suggestions_come_on_a_second_step(app, client, db_session):
    article = publish(db_session, "Card declined at checkout", "A declined card: update it.")
    fields = form_fields(client)
    step = submit(client, fields, confirmed="", attachments=[(io.BytesIO(b"pdf"), "receipt.pdf")])
    assert step.status_code == 200
    html = step.get_data(as_text=True)
    assert "Did one of these answer it?" in html
    assert "Card declined at checkout" in html
    assert tickets(db_session) == []

    # "No, send my request" posts everything again, confirmed.
    hidden = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"', html))
    assert hidden["confirmed"] == "1" and hidden["body"] == "My card was declined when I paid."
    sent = client.post("/contact", data={**hidden, "csrf_token": fields["csrf_token"]})
    assert sent.status_code == 303
    [ticket] = tickets(db_session)
    assert ticket.subject == "Card declined"
    # The file attached on the first step came along without being attached again.
    [entry] = db_session.scalars(sa.select(Entry).where(Entry.ticket_id == ticket.id))
    assert [a.filename for a in entry.attachments] == ["receipt.pdf"]

    # The suggestions shown were recorded on the journey.
    shown = db_session.scalar(
        sa.select(JourneyEvent).where(JourneyEvent.kind == JourneyEventKind.SUGGESTIONS_SHOWN)
    )
    assert shown.article_ids == [article.id]


def test_without_javascript_this_answers_my_question_deflects(app, client, db_session):
    article = publish(db_session, "Card declined at checkout", "A declined card: update it.")
    fields = form_fields(client)
    submit(client, fields, confirmed="")
    response = client.post(
        "/contact/deflect",
        data={
            "csrf_token": fields["csrf_token"],
            "article_id": str(article.id),
            "email": "ann@example.org",
        },
    )
    assert response.status_code == 200
    assert "Glad that helped" in response.get_data(as_text=True)
    assert tickets(db_session) == []
    journey = db_session.scalar(sa.select(SelfServiceSession))
    assert journey.outcome == JourneyOutcome.DEFLECTED
    assert journey.customer_email == "ann@example.org"


def test_deflect_without_csrf_token_changes_nothing(client, db_session):
    client.get("/contact")
    response = client.post("/contact/deflect", data={"article_id": "1"})
    assert response.status_code == 400
    db_session.rollback()
    journey = db_session.scalar(sa.select(SelfServiceSession))
    assert journey.outcome == JourneyOutcome.NONE


def test_attachment_errors_keep_the_text_and_valid_files_are_kept(app, client, db_session):
    fields = form_fields(client)
    files = [(io.BytesIO(b"x"), f"f{i}.txt") for i in range(11)]
    response = submit(client, fields, email="bad", attachments=files)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "Attach at most 10 files." in html
    assert "My card was declined when I paid." in html

    one = submit(client, fields, attachments=[(io.BytesIO(b"receipt"), "receipt.txt")])
    assert one.status_code == 303
    [ticket] = tickets(db_session)
    [entry] = db_session.scalars(sa.select(Entry).where(Entry.ticket_id == ticket.id))
    assert [a.filename for a in entry.attachments] == ["receipt.txt"]


def test_oversized_text_field_is_a_clear_413(client, db_session):
    fields = form_fields(client)
    response = client.post(
        "/contact",
        data={
            **fields,
            "name": "A",
            "email": "a@example.org",
            "subject": "s",
            "body": "x" * 10_000_000,
        },
    )
    assert response.status_code == 413
    assert "That request is too large" in response.get_data(as_text=True)
    assert tickets(db_session) == []


def test_oversized_multipart_field_and_upload_are_clear_413s(client, db_session):
    fields = form_fields(client)
    big_field = submit(client, fields, body="x" * 10_000_000)
    assert big_field.status_code == 413
    assert "That request is too large" in big_field.get_data(as_text=True)
    big_upload = submit(client, fields, attachments=[(io.BytesIO(b"0" * 30_000_000), "big.bin")])
    assert big_upload.status_code == 413
    assert tickets(db_session) == []


def test_long_message_is_an_error_next_to_the_field(client, db_session):
    fields = form_fields(client)
    response = submit(client, fields, body="y" * 30_000)
    assert response.status_code == 400
    assert "Your message must be 20,000 characters or fewer" in response.get_data(as_text=True)


def test_malformed_posts_never_500(client, db_session):
    fields = form_fields(client)
    bad_boundary = client.post(
        "/contact",
        data=b'--nope\r\nContent-Disposition: form-data; name="x"\r\n\r\ny\r\n',
        content_type="multipart/form-data; boundary=other",
    )
    assert bad_boundary.status_code == 400
    invalid_utf8 = client.post(
        "/contact",
        data=(
            f"csrf_token={fields['csrf_token']}&token={fields['token']}&confirmed=1"
            "&name=%FF%FEAnn&email=ann%40example.org&subject=%C3%28&body=%ED%A0%80%00hi"
        ).encode(),
        content_type="application/x-www-form-urlencoded",
    )
    assert invalid_utf8.status_code in (303, 400)
    assert tickets(db_session) is not None


# A sample in the spirit of the Big List of Naughty Strings, used when the full list
# (`blns.base64.json`, security.md case 53) is not in ../shared.
NAUGHTY_SAMPLE = [
    "undefined",
    "null",
    "\\",
    "0xffffffffffffffff",
    "1'; DROP TABLE tickets; --",
    "' OR '1'='1",
    "%s%s%s%n",
    "{{7*7}} ${7*7} <%= 7*7 %>",
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "javascript:alert(1)",
    "\u0000 nul \x00 in the middle",
    "\x01\x02\x03\x1b[31mred\x7f",
    "line\r\nBcc: victim@example.com",
    "\u202etxt.exe",
    "\u200b\u200c\u200d\ufeff",
    "Ṱ̺̺̕o͞ ̷i̲̬͇̪͙n̝̗͕v̟̜̘̦͟o̶̙̰̠kè͚̮̺̪̹̱̤ ̖t̝͕̳̣̻̪͞h̼͓̲̦̳̘̲e͇̣̰̦̬͎ ̢̼̻̱̘h͚͎͙̜̣̲ͅi̦̲̣̰̤v̻͍e̺̭̳̪̰-m̢iͅn̖̺̞̲̯̰d̵̼̟͙̩̼̘̳",
    "田中さんにあげて下さい",
    "مرحبا بالعالم",
    "👾 🙇 💁 🙅 🙆 🙋 🙎 🙍",
    "🏳️‍🌈 👨‍👩‍👦",
    "ЁЂЃЄЅІЇЈЉЊЋЌЍЎЏ",
    "Ω≈ç√∫\u02dcµ≤≥÷",
    "../../../../etc/passwd",
    "%00%0d%0a",
    "$HOME `id` $(id)",
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>',
    "1.7976931348623157e+308",
    "-0",
    "NaN",
]


def _blns() -> list[str]:
    found = list(Path(SHARED).rglob("blns.base64.json"))
    if not found:
        return NAUGHTY_SAMPLE
    strings = json.loads(found[0].read_text())
    return [base64.b64decode(s).decode("utf-8", "replace") for s in strings]


def test_big_list_of_naughty_strings_never_500_and_shows_escaped(app, client, db_session):
    app.config["HANDOFF_CONTACT_LIMIT"] = "10000/minute"
    fields = form_fields(client)
    strings = [s for s in _blns() if s.strip()]
    for i, naughty in enumerate(strings):
        response = submit(
            client,
            fields,
            token=f"blns-{i:05d}-" + "z" * 16,
            name=naughty[:200],
            subject=naughty[:250],
            body=naughty,
            email="bad address",  # every field re-displayed with the error; nothing stored
        )
        assert response.status_code == 400, naughty
    # A few stored for real: the text comes back exactly.
    for i, naughty in enumerate(strings[:40]):
        response = submit(client, fields, token=f"keep-{i:05d}-" + "z" * 16, body=naughty)
        assert response.status_code == 303, naughty
    stored = db_session.scalars(
        sa.select(Entry.body_text).where(Entry.kind == EntryKind.CUSTOMER_WEB).order_by(Entry.id)
    ).all()
    assert stored == [s.replace("\x00", "") for s in strings[:40]]
