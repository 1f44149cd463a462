"""Content-addressed blob store in the data dir: attachments and raw emails, keyed by sha256.

A blob's path is derived from its digest alone (`ab/cd/abcd…`), so nothing a sender controls
(a filename, a header) can choose where bytes land. Writes are atomic (temp file + rename) and
idempotent: the same bytes stored twice are one file.

Durability: when `put` or `put_many` returns, the blobs survive a crash (power loss included):
each temp file is fsynced *before* it is renamed into place — so a blob's name never points at
bytes that a crash could still lose or truncate, which matters because a blob that exists is
never written again — and the directories holding the new names are fsynced after. Callers
commit rows that reference a blob only after that, so a committed row never names lost bytes.

`put_many` is how the mail poller stores a fetched batch: the fsyncs of the whole batch are
issued together from a few threads (fsync releases the GIL), and the filesystem's journal
commits concurrent fsyncs as a group — one flush for the batch instead of one per message,
with the same guarantee for every blob in it. `put_batch` (at the end) gives the same guarantee
for a large batch with two syncfs(2) calls instead of an fsync per file and directory.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import functools
import hashlib
import os
import platform
import re
import secrets
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SYNC_THREADS = 8


class BlobStore:
    """Blobs under `root`; `put` returns the sha256 hex digest that names them."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        """Where the blob with this digest lives. Rejects anything that is not a digest."""
        if not _SHA256.match(sha256):
            raise ValueError("not a sha256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> str:
        """Store `data` (if not already there), durably, and return its sha256."""
        return self.put_many([data])[0]

    def put_many(self, blobs: Sequence[bytes]) -> list[str]:
        """Store each of `blobs` (if not already there), durably; their sha256s, in order."""
        digests = [hashlib.sha256(data).hexdigest() for data in blobs]
        pending: dict[Path, bytes] = {}
        for digest, data in zip(digests, blobs, strict=True):
            target = self.path(digest)
            if target not in pending and not target.exists():
                pending[target] = data
        if pending:
            self._write(pending)
        return digests

    def get(self, sha256: str) -> bytes:
        """The blob's bytes; FileNotFoundError if it is missing."""
        return self.path(sha256).read_bytes()

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    # -- internals -----------------------------------------------------------------------

    def _write(self, pending: dict[Path, bytes]) -> None:
        """Temp files written and fsynced, renamed into place, their directories fsynced."""
        new_dirs: set[Path] = set()
        temps: list[tuple[str, Path]] = []  # (temp path, target)
        fds: list[int] = []
        try:
            for target, data in pending.items():
                fd, tmp = self._temp_file(target.parent, new_dirs)
                fds.append(fd)
                temps.append((tmp, target))
                with memoryview(data) as view:
                    while view:  # os.write may write less than asked
                        view = view[os.write(fd, view) :]
            _fsync_all(fds)
            _close_all(fds)
            for tmp, target in temps:
                os.replace(tmp, target)
        except BaseException:
            _close_all(fds)
            for tmp, _ in temps:
                Path(tmp).unlink(missing_ok=True)  # those already renamed are gone: no-op
            raise
        # New names live in their directory; a directory created here lives in its parent.
        _fsync_directories({target.parent for target in pending} | {d.parent for d in new_dirs})

    def _temp_file(self, directory: Path, new_dirs: set[Path]) -> tuple[int, str]:
        try:
            return tempfile.mkstemp(dir=directory, prefix=".tmp-")
        except FileNotFoundError:
            # First blob under this prefix. Checked this way round because the directory
            # nearly always exists, and a mkdir per blob costs syscalls for nothing.
            missing = [d for d in (directory, *directory.parents) if not d.exists()]
            directory.mkdir(parents=True, exist_ok=True)
            new_dirs.update(missing)
            return tempfile.mkstemp(dir=directory, prefix=".tmp-")


def _fsync_all(fds: Iterable[int]) -> None:
    fds = list(fds)
    if len(fds) <= 1:
        for fd in fds:
            os.fsync(fd)
        return
    pool = _sync_pool()
    syncs = [pool.submit(os.fsync, fd) for fd in fds]
    # Every fsync is over before any error is raised: the caller closes these descriptors
    # then, and a number closed under a still-running fsync could already name another file.
    concurrent.futures.wait(syncs)
    for sync in syncs:
        sync.result()  # the first OSError: the caller then commits nothing


_pool: tuple[int, ThreadPoolExecutor] | None = None


def _sync_pool() -> ThreadPoolExecutor:
    """The threads that issue fsyncs together, started once per process (starting them per
    batch cost more CPU than the writes); a forked child starts its own."""
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), ThreadPoolExecutor(_SYNC_THREADS, thread_name_prefix="fsync"))
    return _pool[1]


def _fsync_directories(directories: set[Path]) -> None:
    fds: list[int] = []
    try:
        for directory in sorted(directories):
            fds.append(os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)))
        _fsync_all(fds)
    finally:
        _close_all(fds)


def _close_all(fds: list[int]) -> None:
    while fds:
        os.close(fds.pop())


# -- a large batch of new blobs ----------------------------------------------------------------


def put_batch(store: BlobStore, blobs: Sequence[bytes]) -> list[str]:
    """`store.put_many(blobs)` for a large batch of new blobs (a notice scan's messages),
    syncing the filesystem twice instead of fsyncing every file and directory.

    Same guarantee when it returns: the temp files are written, the whole filesystem is
    synced (syncfs(2): data, inodes and new directories), they are renamed into place, and
    it is synced again. Hundreds of fsyncs become two calls — on ext4 the per-file fsyncs
    cost more than writing the files. The trade is PostgreSQL's `recovery_init_sync_method
    = syncfs`: other files' unsynced data on the same filesystem is flushed too. Linux 5.8 or
    later only, where syncfs reports writeback errors; elsewhere this is `put_many`.
    """
    syncfs = _syncfs()
    if syncfs is None or len(blobs) < 2:
        return store.put_many(blobs)
    digests = [hashlib.sha256(data).hexdigest() for data in blobs]
    root = os.fspath(store.root)
    os.makedirs(root, exist_ok=True)
    # Opened before anything is written: syncfs reports writeback errors seen since then.
    root_fd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    temps: list[tuple[str, str]] = []  # (temp path, target), until renamed
    try:
        pending: dict[str, bytes] = {}
        for digest, data in zip(digests, blobs, strict=True):
            target = os.fspath(store.path(digest))
            if target not in pending and not os.path.exists(target):
                pending[target] = data
        if not pending:
            return digests
        for target, data in pending.items():
            fd, tmp = _new_temp(os.path.dirname(target))
            temps.append((tmp, target))
            try:
                with memoryview(data) as view:
                    while view:  # os.write may write less than asked
                        view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
        _sync(syncfs, root_fd)
        while temps:
            tmp, target = temps[-1]
            os.replace(tmp, target)
            temps.pop()
        _sync(syncfs, root_fd)
    except BaseException:
        for tmp, _ in temps:
            Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        os.close(root_fd)
    return digests


def _new_temp(directory: str) -> tuple[int, str]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = f"{directory}/.tmp-{secrets.token_hex(8)}"
        try:
            return os.open(tmp, flags, 0o600), tmp  # mkstemp's mode, as `put_many` writes
        except FileNotFoundError:
            os.makedirs(directory, exist_ok=True)  # the first blob under this prefix
        except FileExistsError:
            continue


@functools.cache
def _syncfs() -> Callable[[int], int] | None:
    """libc's syncfs where it reports writeback errors (Linux 5.8+), else None."""
    if not sys.platform.startswith("linux"):
        return None
    match = re.match(r"(\d+)\.(\d+)", platform.release())
    if match is None or (int(match.group(1)), int(match.group(2))) < (5, 8):
        return None
    try:
        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    syncfs.argtypes = [ctypes.c_int]
    syncfs.restype = ctypes.c_int
    return syncfs  # type: ignore[no-any-return]


def _sync(syncfs: Callable[[int], int], fd: int) -> None:
    if syncfs(fd) != 0:  # ctypes releases the GIL for the call
        errno = ctypes.get_errno()
        raise OSError(errno, f"syncfs: {os.strerror(errno)}")
