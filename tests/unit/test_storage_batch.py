"""`put_batch`: a batch of blobs stored as durably as `put_many` (temp files synced before
they are renamed into place), with two filesystem syncs instead of an fsync per file."""

from __future__ import annotations

import hashlib

import pytest

from ticketing import storage
from ticketing.storage import BlobStore, put_batch


def test_a_batch_is_stored_where_put_many_would_store_it(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    data = [b"first", b"second", b"first", b""]
    digests = put_batch(store, data)
    assert digests == [hashlib.sha256(d).hexdigest() for d in data]
    assert [store.get(d) for d in digests] == data
    assert digests == BlobStore(tmp_path / "other").put_many(data)
    assert not list((tmp_path / "blobs").rglob(".tmp-*"))  # no temp file left behind
    # Stored again: nothing is rewritten, the digests are the same.
    assert put_batch(store, data) == digests


def test_it_syncs_the_filesystem_twice_per_batch(tmp_path, monkeypatch):
    if storage._syncfs() is None:
        pytest.skip("no syncfs here: put_batch is put_many")
    calls: list[int] = []
    real = storage._sync
    monkeypatch.setattr(storage, "_sync", lambda fn, fd: (calls.append(fd), real(fn, fd)))
    monkeypatch.setattr(storage, "_fsync_all", lambda fds: pytest.fail("fsync per file"))
    put_batch(BlobStore(tmp_path), [f"message {i}".encode() for i in range(50)])
    assert len(calls) == 2  # temp files synced, then their new names


def test_a_failed_sync_leaves_nothing_and_raises(tmp_path, monkeypatch):
    if storage._syncfs() is None:
        pytest.skip("no syncfs here: put_batch is put_many")

    def failing(fn, fd):
        raise OSError(5, "syncfs: Input/output error")

    monkeypatch.setattr(storage, "_sync", failing)
    store = BlobStore(tmp_path)
    with pytest.raises(OSError):
        put_batch(store, [b"a", b"b"])
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_without_syncfs_it_is_put_many(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "_syncfs", lambda: None)
    store = BlobStore(tmp_path)
    assert put_batch(store, [b"x", b"y"]) == [hashlib.sha256(d).hexdigest() for d in (b"x", b"y")]
    assert store.get(hashlib.sha256(b"y").hexdigest()) == b"y"
