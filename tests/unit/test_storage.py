"""The content-addressed blob store: where bytes land is decided by their digest alone."""

import hashlib

import pytest

from ticketing.storage import BlobStore


def test_put_returns_digest_and_is_idempotent(tmp_path):
    store = BlobStore(tmp_path)
    digest = store.put(b"hello")
    assert digest == hashlib.sha256(b"hello").hexdigest()
    assert store.put(b"hello") == digest
    assert store.get(digest) == b"hello"
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files == [tmp_path / digest[:2] / digest[2:4] / digest]


@pytest.mark.parametrize("key", ["../../etc/passwd", "A" * 64, "abc", "", "/" + "a" * 63])
def test_only_digests_name_blobs(tmp_path, key):
    with pytest.raises(ValueError, match="sha256"):
        BlobStore(tmp_path).path(key)
