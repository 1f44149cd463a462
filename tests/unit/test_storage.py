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


def test_a_failed_fsync_is_raised_only_once_every_other_fsync_is_over(tmp_path, monkeypatch):
    """A disk error on one blob fails the batch (nothing gets committed); the others' fsyncs
    must be over by then, as the caller closes their descriptors next."""
    import os
    import threading
    import time

    real_fsync = os.fsync
    finished: list[int] = []
    first = threading.Event()

    def flaky_fsync(fd):
        if not first.is_set():
            first.set()
            raise OSError(5, "Input/output error")
        time.sleep(0.05)
        real_fsync(fd)
        finished.append(fd)

    monkeypatch.setattr(os, "fsync", flaky_fsync)
    with pytest.raises(OSError, match="Input/output"):
        BlobStore(tmp_path).put_many([f"blob {i}".encode() for i in range(4)])
    assert len(finished) == 3  # the other three completed before the error surfaced
    assert not any(p.is_file() and not p.name.startswith(".tmp") for p in tmp_path.rglob("*"))
