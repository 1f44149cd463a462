"""Encryption of stored secrets (IMAP passwords) with a key derived from the app SECRET_KEY.

Mailbox passwords must be recoverable (the poller logs in with them), so they are encrypted,
not hashed: Fernet (AES-128-CBC with HMAC-SHA256, a random IV per token), keyed by HKDF-SHA256
over SECRET_KEY with a fixed salt and purpose label. The purpose label keeps this key apart
from every other use of SECRET_KEY (sessions, CSRF, reply tokens). Changing SECRET_KEY makes
stored passwords unreadable; `decrypt_secret` then says so instead of failing obscurely.
"""

from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ticketing.errors import Invalid

_SALT = b"handoff mailbox credentials"
_INFO = b"handoff mailbox credentials v1 fernet"


def encrypt_secret(plaintext: str, *, key: str) -> str:
    """Encrypt `plaintext` under a key derived from `key` (the SECRET_KEY); a text token.

    Each call gives a different token (random IV), so equal passwords do not look equal.
    """
    return _fernet(key).encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt_secret(token: str, *, key: str) -> str:
    """The plaintext behind `token`. Raises Invalid when `key` is not the one it was made with."""
    try:
        return _fernet(key).decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError, ValueError):
        raise Invalid(
            "the stored mailbox password cannot be decrypted: was SECRET_KEY changed?"
        ) from None


@functools.lru_cache(maxsize=8)
def _fernet(key: str) -> Fernet:
    if not key:
        raise ValueError("an empty SECRET_KEY cannot protect stored secrets")
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=_INFO).derive(
        key.encode("utf-8")
    )
    return Fernet(base64.urlsafe_b64encode(derived))
