"""ticketing.crypto: mailbox passwords encrypted under a key derived from SECRET_KEY."""

from __future__ import annotations

import pytest

from ticketing.crypto import decrypt_secret, encrypt_secret
from ticketing.errors import Invalid

KEY = "test-secret-key-" + "x" * 32


def test_a_secret_round_trips_and_the_token_does_not_contain_it() -> None:
    token = encrypt_secret("pässword with spaces & symbols", key=KEY)
    assert "pässword" not in token
    assert decrypt_secret(token, key=KEY) == "pässword with spaces & symbols"


def test_a_token_cannot_be_decrypted_with_another_secret_key() -> None:
    token = encrypt_secret("imap password", key=KEY)
    with pytest.raises(Invalid, match="was SECRET_KEY changed"):
        decrypt_secret(token, key=KEY + "-rotated")


def test_a_damaged_token_is_invalid_not_a_crash() -> None:
    token = encrypt_secret("imap password", key=KEY)
    for damaged in (
        token[:-4],
        "not a token",
        "",
        token.replace(token[10], "A" if token[10] != "A" else "B", 1),
    ):
        with pytest.raises(Invalid):
            decrypt_secret(damaged, key=KEY)


def test_encrypting_the_same_secret_twice_gives_different_tokens() -> None:
    first, second = encrypt_secret("same", key=KEY), encrypt_secret("same", key=KEY)
    assert first != second
    assert decrypt_secret(first, key=KEY) == decrypt_secret(second, key=KEY) == "same"
