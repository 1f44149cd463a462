"""Corpus test for `mail.rules` against sisimai's hand-kept bounce expectations.

591 real-world bounces, auto-replies and feedback reports from sisimai/set-of-emails, with the
expectations of p5-sisimai's t/*.t (BSD-2-Clause). The key property is that none of this mail is
mistaken for a person's (it would get an auto-ack and start a loop); after that, that a bounce
names the recipient that failed and whether the failure is permanent.

The expectations carry no recipient addresses, so "recipient" is scored as "at least one
syntactically valid address extracted", and "count" as "as many recipients as sisimai".
Two notions are deliberately not compared one-to-one:
- sisimai's `hardbounce` means "the address does not exist" (user unknown, host unknown...), a
  narrower notion than ours (`is_hard`: permanent, 5.x.x). We score `is_hard` against the class
  of sisimai's status (5 vs 4) and only print agreement with `hardbounce` for information.
- sisimai invents private status codes X.0.9xx when a report gives none; those are not RFC 3463
  codes and are left out of the status score.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import json
import re
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from mail.message import Address, ParsedEmail, SenderStatus
from mail.rules import Classification, Kind, classify

CORPORA = Path(__file__).resolve().parents[2].parent / "shared" / "corpora"
CORPUS = CORPORA / "sisimai-bounces"

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpora not available")

# Floors actually reached (see the module docstring for what each score means); raise them when
# the classifier improves, never lower them to make a change pass.
FLOORS = {
    "automatic": 1.00,  # bounce/autoreply/report recognised as automatic mail of some kind
    "kind": 0.99,
    "recipient_found": 0.975,
    "recipient_count": 0.96,
    "permanence": 0.975,
    "status": 0.93,
    "original_message_id": 0.89,
}

_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")


def _header_value(msg: email.message.EmailMessage, name: str, value: Any) -> str:
    # policy.default decodes RFC 2047 but can raise on hostile headers; fall back to the raw text.
    try:
        text = str(msg.policy.header_fetch_parse(name, value))
    except Exception:
        text = str(value)
    return " ".join(text.split())


def to_parsed(raw: bytes) -> ParsedEmail:
    """A minimal stand-in for `mail.parse.parse`: just what the classifier reads."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    headers = tuple((name.lower(), _header_value(msg, name, value)) for name, value in msg._headers)
    first = {}
    for name, value in headers:
        first.setdefault(name, value)
    sender, status = None, SenderStatus.UNUSABLE
    addresses = [a for a in email.utils.getaddresses([first.get("from", "")]) if "@" in a[1]]
    if len(addresses) == 1:
        sender, status = Address(addresses[0][1].lower(), addresses[0][0]), SenderStatus.OK
    return ParsedEmail(
        message_id=None,
        in_reply_to=None,
        references=(),
        subject=first.get("subject", ""),
        sender=sender,
        sender_status=status,
        headers=headers,
        content_type=msg.get_content_type(),
    )


def _parse(raw: bytes) -> ParsedEmail:
    # Prefer the real parser once it exists; the local adapter keeps this test independent of it.
    try:
        from mail.parse import parse
    except ImportError:
        return to_parsed(raw)
    try:
        return parse(raw)
    except Exception:
        return to_parsed(raw)


def expected_kind(item: dict[str, Any]) -> Kind:
    if item["is_bounce"]:
        return Kind.BOUNCE
    if item["is_auto_reply"]:
        return Kind.AUTOREPLY
    if item.get("is_feedback_report"):
        return Kind.FEEDBACK_REPORT
    if item.get("is_delivery_success_notice"):
        return Kind.DELIVERY_NOTICE
    return Kind.NORMAL


@cache
def results() -> list[tuple[dict[str, Any], Classification]]:
    items = json.loads((CORPUS / "expected.json").read_text())["items"]
    out = []
    for item in items:
        raw = (CORPUS / item["eml"]).read_bytes()
        out.append((item, classify(_parse(raw), raw=raw)))
    return out


@cache
def scores() -> dict[str, tuple[int, int]]:
    hits: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    for item, result in results():
        kind = expected_kind(item)
        if kind is not Kind.NORMAL:
            totals["automatic"] += 1
            hits["automatic"] += result.is_automatic
        totals["kind"] += 1
        hits["kind"] += result.kind is kind
        if kind is not Kind.BOUNCE:
            continue
        ours = result.bounce_recipients
        expected = item["recipients"]
        totals["recipient_found"] += 1
        hits["recipient_found"] += bool(ours) and all(_ADDRESS.match(r.email) for r in ours)
        totals["recipient_count"] += 1
        hits["recipient_count"] += len(ours) == len(expected)
        totals["original_message_id"] += 1
        hits["original_message_id"] += bool(result.original_message_id)
        for index, want in enumerate(expected):
            if not ours:
                break
            got = ours[min(index, len(ours) - 1)]
            totals["sisimai_hardbounce (info)"] += 1
            hits["sisimai_hardbounce (info)"] += got.is_hard == want["hardbounce"]
            if not want["status"]:
                continue
            totals["permanence"] += 1
            hits["permanence"] += got.is_hard == want["status"].startswith("5")
            if int(want["status"].split(".")[2]) < 900:
                totals["status"] += 1
                hits["status"] += got.status == want["status"]
    return {name: (hits[name], totals[name]) for name in totals}


def test_print_scores() -> None:
    print()
    for name, (hit, total) in scores().items():
        print(f"sisimai {name:28} {hit:4}/{total:<4} {hit / total:7.2%}")


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_score_reaches_floor(name: str) -> None:
    hit, total = scores()[name]
    assert total > 0
    assert hit / total >= FLOORS[name], f"{name}: {hit}/{total}"


def test_no_bounce_or_autoreply_is_ever_classified_as_normal_mail() -> None:
    missed = [
        item["id"]
        for item, result in results()
        if expected_kind(item) is not Kind.NORMAL and not result.is_automatic
    ]
    assert missed == []


def test_plain_mail_in_the_corpus_stays_normal() -> None:
    wrong = [
        (item["id"], str(result.kind))
        for item, result in results()
        if expected_kind(item) is Kind.NORMAL and result.kind is not Kind.NORMAL
    ]
    assert wrong == []
