"""Signed tokens we put in outgoing mail so replies can be trusted when they come back.

- Message-IDs: `<handoff.<ticket>.<nonce>.<sig>@<domain>>`. A reply's In-Reply-To/References
  naming one proves the writer saw our mail about that ticket (the HMAC cannot be forged).
- Reply addresses: `support+t<ticket>.<sig>@example.com`, bound to one ticket.
- Loop header `X-Handoff-Loop: <nonce>.<sig>`: our own mail coming back is recognised; a forged
  header does not verify and is ignored.

Each kind of token has its own derived key, so one can never be replayed as another.
Comparisons are constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

LOOP_HEADER = "X-Handoff-Loop"
_SIG_LEN = 16  # base32 characters: 80 bits


def _key(secret_key: str, purpose: str) -> bytes:
    return hmac.new(secret_key.encode(), f"handoff/{purpose}".encode(), hashlib.sha256).digest()


def _sign(secret_key: str, purpose: str, payload: str) -> str:
    digest = hmac.new(_key(secret_key, purpose), payload.encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode()[:_SIG_LEN].lower()


def _check(secret_key: str, purpose: str, payload: str, signature: str) -> bool:
    return hmac.compare_digest(_sign(secret_key, purpose, payload), signature.lower())


def make_message_id(ticket_number: int, *, secret_key: str, domain: str) -> str:
    """A new signed Message-ID (bare, without angle brackets) for mail about this ticket."""
    nonce = secrets.token_hex(8)
    payload = f"{ticket_number}.{nonce}"
    return f"handoff.{payload}.{_sign(secret_key, 'message-id', payload)}@{domain}"


_MESSAGE_ID = re.compile(r"^handoff\.(\d{1,12})\.([0-9a-f]{16})\.([a-z2-7]{16})@", re.IGNORECASE)


def ticket_from_message_id(message_id: str, *, secret_key: str) -> int | None:
    """The ticket number a Message-ID of ours names, or None if it is not ours or not valid."""
    match = _MESSAGE_ID.match(message_id.strip().strip("<>"))
    if not match:
        return None
    number, nonce, signature = match.groups()
    if not _check(secret_key, "message-id", f"{number}.{nonce.lower()}", signature):
        return None
    return int(number)


def reply_address(mailbox_address: str, ticket_number: int, *, secret_key: str) -> str:
    """The mailbox address with a signed plus-tag for this ticket."""
    local, _, domain = mailbox_address.partition("@")
    signature = _sign(secret_key, "reply-address", str(ticket_number))
    return f"{local}+t{ticket_number}.{signature}@{domain}"


_PLUS_TAG = re.compile(r"\+t(\d{1,12})\.([a-z2-7]{16})@", re.IGNORECASE)


def ticket_from_reply_address(address: str, *, secret_key: str) -> int | None:
    """The ticket number a signed reply address names, or None."""
    match = _PLUS_TAG.search(address)
    if not match:
        return None
    number, signature = match.groups()
    if not _check(secret_key, "reply-address", number, signature):
        return None
    return int(number)


def make_loop_token(*, secret_key: str) -> str:
    nonce = secrets.token_hex(8)
    return f"{nonce}.{_sign(secret_key, 'loop', nonce)}"


def verify_loop_token(value: str, *, secret_key: str) -> bool:
    nonce, _, signature = value.strip().partition(".")
    if not re.fullmatch(r"[0-9a-f]{16}", nonce) or not signature:
        return False
    return _check(secret_key, "loop", nonce, signature)
