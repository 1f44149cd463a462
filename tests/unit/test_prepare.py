"""The database-free half of the inbound pipeline, in a helper process and in-process."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mail.prepare
from mail.prepare import MIN_PARALLEL_BATCH, Prepared, Preparer, PrepareSettings, prepare
from mail.rules import Kind
from tests.support.mailfactory import make_email
from ticketing.storage import BlobStore

SETTINGS = PrepareSettings(
    secret_key="k" * 32,
    own_addresses=frozenset({"support@example.com"}),
    max_message_bytes=1024 * 1024,
)


def _batch(count: int) -> list[bytes]:
    return [
        make_email(
            subject=f"Question {i}",
            message_id=f"m{i}@example.org",
            body=f"Hello, this is message {i}.\n\nOn Monday Ann wrote:\n> the old text",
            attachments=[("a.txt", "text/plain", f"file {i}".encode())] if i % 5 == 0 else [],
        )
        for i in range(count)
    ]


def test_prepare_works_out_everything_but_the_database():
    raw = make_email(
        subject="Out of office",
        headers={"Auto-Submitted": "auto-replied"},
        body="New text\n\nOn Monday Ann wrote:\n> quoted",
        html="<p>New text</p><script>alert(1)</script>",
    )
    prepared = prepare(raw, SETTINGS)
    assert prepared.msg.subject == "Out of office"
    assert prepared.classification.kind == Kind.AUTOREPLY
    assert prepared.split.visible.strip() == "New text"
    assert "quoted" in prepared.split.trimmed
    assert "<script" not in (prepared.body_html or "")
    assert prepared.digest == mail.prepare.content_digest(raw)
    assert prepared.attachment_sha256 is None  # pure: nothing stored


def test_a_big_batch_goes_through_the_helper_process_in_order(tmp_path):
    blobs = BlobStore(tmp_path)
    raws = _batch(MIN_PARALLEL_BATCH + 9)
    with Preparer(SETTINGS, blobs, processes=1) as preparer:
        results = list(preparer.map(raws))
        assert preparer.helper_messages == len(raws)
        assert preparer.helper_cpu_seconds > 0
    assert [p.msg.message_id for _, p in results] == [f"m{i}@example.org" for i in range(len(raws))]
    for raw, (digest, prepared) in zip(raws, results, strict=True):
        assert digest == hashlib.sha256(raw).hexdigest()
        assert blobs.get(digest) == raw  # stored before the result came back
        assert isinstance(prepared, Prepared)
    # Attachments are stored by the helper and come back without their bytes.
    _, with_file = results[5]
    assert isinstance(with_file, Prepared)
    [(attachment, sha256)] = with_file.kept_attachments()
    assert attachment.data == b"" and blobs.get(sha256) == b"file 5"


def test_a_small_batch_is_prepared_here_with_the_raw_bytes_stored_first(tmp_path, monkeypatch):
    blobs = BlobStore(tmp_path)
    raws = _batch(3)
    seen: list[bool] = []
    real = mail.prepare.prepare

    def checking(raw, settings):
        seen.append(blobs.exists(hashlib.sha256(raw).hexdigest()))
        return real(raw, settings)

    monkeypatch.setattr(mail.prepare, "prepare", checking)
    with Preparer(SETTINGS, blobs, processes=1) as preparer:
        results = list(preparer.map(raws))
        assert preparer.helper_messages == 0  # not worth a process
    assert seen == [True, True, True]
    assert len(results) == 3
    # Prepared here, attachments are left to the pipeline (which stores them itself).
    assert results[0][1].attachment_sha256 is None  # type: ignore[union-attr]


def test_a_failing_preparation_comes_back_in_its_place(tmp_path, monkeypatch):
    raws = _batch(3)

    def exploding(raw, settings):
        if b"message 1." in raw:
            raise RuntimeError("parser exploded")
        return prepare(raw, settings)

    monkeypatch.setattr(mail.prepare, "prepare", exploding)
    with Preparer(SETTINGS, BlobStore(tmp_path), processes=0) as preparer:
        results = [p for _, p in preparer.map(raws)]
    assert isinstance(results[0], Prepared) and isinstance(results[2], Prepared)
    assert isinstance(results[1], RuntimeError)


def test_a_dead_helper_process_loses_nothing(tmp_path):
    """Killed mid-batch (out of memory, an operator): the rest is prepared in-process."""
    blobs = BlobStore(tmp_path)
    raws = _batch(MIN_PARALLEL_BATCH * 8)
    with Preparer(SETTINGS, blobs, processes=1) as preparer:
        results = preparer.map(raws)
        first = next(results)
        for process in list(preparer._pool._processes.values()):  # type: ignore[union-attr]
            os.kill(process.pid, signal.SIGKILL)
        rest = list(results)
    assert [p.msg.message_id for _, p in [first, *rest]] == [  # type: ignore[union-attr]
        f"m{i}@example.org" for i in range(len(raws))
    ]
    assert all(
        blobs.get(digest) == raw for raw, (digest, _) in zip(raws, [first, *rest], strict=True)
    )
    assert preparer.processes == 0  # the rest of this poll stays in-process


def test_a_helper_that_died_while_idle_is_replaced_by_in_process_work(tmp_path):
    """Killed between two batches: the next batch is prepared here instead of failing."""
    blobs = BlobStore(tmp_path)
    with Preparer(SETTINGS, blobs, processes=1) as preparer:
        assert len(list(preparer.map(_batch(MIN_PARALLEL_BATCH)))) == MIN_PARALLEL_BATCH
        for process in list(preparer._pool._processes.values()):  # type: ignore[union-attr]
            os.kill(process.pid, signal.SIGKILL)
        time.sleep(0.5)  # the pool notices, so the next submit itself is refused
        raws = _batch(MIN_PARALLEL_BATCH + 1)
        results = list(preparer.map(raws))
    assert [p.msg.message_id for _, p in results] == [  # type: ignore[union-attr]
        f"m{i}@example.org" for i in range(len(raws))
    ]
    assert preparer.processes == 0


def test_work_a_caller_did_not_consume_is_cancelled(tmp_path):
    """A poll told to stop closes the batch's results before reading any: the helper must not
    go on preparing (and storing) the rest of the batch."""
    with Preparer(SETTINGS, BlobStore(tmp_path), processes=1) as preparer:
        results = preparer.map(_batch(MIN_PARALLEL_BATCH * 16))
        futures = list(preparer._pending)
        results.close()  # never started: runs none of the generator's code
        preparer.cancel_pending()
        assert sum(f.cancelled() for f in futures) >= len(futures) - 4


@pytest.mark.parametrize("processes", [0, 1])
def test_a_storage_failure_raises_instead_of_recording(tmp_path, processes):
    """If the raw bytes cannot be kept, nothing of the batch may be recorded."""
    root = tmp_path / "blobs"
    root.write_text("not a directory")  # every write under it fails
    with Preparer(SETTINGS, BlobStore(root), processes=processes) as preparer:
        results = preparer.map(_batch(MIN_PARALLEL_BATCH))
        with pytest.raises(OSError):
            next(results)


_KILLED_POLLER = """
import sys, time
from mail.prepare import MIN_PARALLEL_BATCH, Preparer, PrepareSettings
from tests.support.mailfactory import make_email
from ticketing.storage import BlobStore

settings = PrepareSettings(secret_key="k" * 32, own_addresses=frozenset(), max_message_bytes=10**6)
preparer = Preparer(settings, BlobStore(sys.argv[1]), processes=1)
results = preparer.map([make_email(message_id=f"m{i}@x") for i in range(MIN_PARALLEL_BATCH)])
next(results)
print(" ".join(str(pid) for pid in preparer._pool._processes), flush=True)
time.sleep(60)
"""


def test_a_killed_poller_leaves_no_helper_process_behind(tmp_path):
    """SIGKILL (the OOM killer, a stop timeout) gives the poller no chance to stop its helpers:
    they notice on their own and exit, instead of waiting for work forever."""
    poller = subprocess.Popen(
        [sys.executable, "-c", _KILLED_POLLER, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        helpers = [int(pid) for pid in poller.stdout.readline().split()]  # type: ignore[union-attr]
        assert helpers and all(_running(pid) for pid in helpers)
    finally:
        poller.kill()
        poller.wait()
    deadline = time.monotonic() + 10
    while any(_running(pid) for pid in helpers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_running(pid) for pid in helpers)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; its parent has yet to reap it


def test_a_helper_logs_as_its_poller_does(tmp_path):
    """The helper process sets up logging with the function it is given (the web layer's
    `configure_logging`: format and secret redaction)."""
    marker = tmp_path / "helper-logging"
    setup = (_log_in_helper, (str(marker),))
    with Preparer(SETTINGS, BlobStore(tmp_path), processes=1, log_setup=setup) as preparer:
        list(preparer.map(_batch(MIN_PARALLEL_BATCH)))
        helpers = list(preparer._pool._processes)  # type: ignore[union-attr]
    assert marker.read_text().split() == [str(pid) for pid in helpers]


def _log_in_helper(path: str) -> None:
    with open(path, "a") as out:
        out.write(f"{os.getpid()}\n")
