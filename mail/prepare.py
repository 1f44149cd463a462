"""The database-free half of the inbound pipeline, runnable in other processes.

Everything `mail.inbound.process` works out from a message's bytes alone — the parse, the
content digest, the classification (auto-reply, bounce, loop), the reply split and the
sanitized HTML — is `prepare()`, a pure function. `Preparer` runs it for the poller's batches
in a helper process, which first stores each message's raw bytes durably in the blob store,
while the poller records the previous messages in the database: on a machine with two cores
a backlog drains about twice as fast. The order of the messages is kept, so threading sees
them as they arrived, and no message is recorded before its raw bytes are stored.

A message whose preparation fails is not lost: the exception comes back in its place and
`process()` raises it, so the caller parks the message as it would have in-process. If the
helper process dies (killed, out of memory), the rest of the batch is prepared in-process.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import re
import resource
import select
import threading
import time
from collections.abc import Callable, Generator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from functools import partial

from mail.html import sanitize_html
from mail.message import ParsedAttachment, ParsedEmail
from mail.parse import parse
from mail.quotes import ReplySplit, split_reply
from mail.rules import Classification, classify
from mail.tokens import verify_loop_token
from ticketing.storage import BlobStore

log = logging.getLogger(__name__)

# Headers each relay adds on the way in: two copies of one message delivered by different
# routes (or to two of our mailboxes) differ only here.
_TRACE_HEADERS = {
    b"return-path",
    b"received",
    b"delivered-to",
    b"x-original-to",
    b"x-delivered-to",
    b"envelope-to",
    b"x-envelope-to",
    b"x-envelope-from",
    b"received-spf",
    b"authentication-results",
    b"arc-seal",
    b"arc-message-signature",
    b"arc-authentication-results",
    b"x-spam-status",
    b"x-spam-score",
    b"x-spam-flag",
    b"x-virus-scanned",
}
_HEADER_START = re.compile(rb"^([!-9;-~]+):")

# Below this many messages a helper process costs more than it saves (the steady state of a
# poll every minute is a handful of messages).
MIN_PARALLEL_BATCH = 16
# Messages per task sent to the helper: fewer round trips, still an early first result.
CHUNK = 8


@dataclass(frozen=True, slots=True)
class PrepareSettings:
    """What preparation needs from the configuration (picklable: it travels to the helper)."""

    secret_key: str
    own_addresses: frozenset[str]
    max_message_bytes: int


@dataclass(frozen=True, slots=True)
class Prepared:
    """One message worked out from its bytes; `process()` records it."""

    msg: ParsedEmail
    digest: str  # content_digest of the raw bytes (the dedupe key with the Message-ID)
    classification: Classification
    split: ReplySplit  # the new text and the trimmed quote/signature
    body_html: str | None  # the HTML body, sanitized for display
    # Set once the attachments kept (those not omitted) are in the blob store: their sha256s,
    # in order, and `msg` carries them without their bytes. None: not stored yet.
    attachment_sha256: tuple[str, ...] | None = None

    def kept_attachments(self) -> list[tuple[ParsedAttachment, str | None]]:
        """The attachments to link to the entry, each with its sha256 if already stored."""
        kept = [a for a in self.msg.attachments if not a.omitted]
        digests = self.attachment_sha256 or (None,) * len(kept)
        return list(zip(kept, digests, strict=True))


def content_digest(raw: bytes) -> str:
    """sha256 of the message without its leading trace headers and with normalised line ends."""
    head, sep, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    kept: list[bytes] = []
    skipping = False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        match = _HEADER_START.match(line)
        skipping = bool(match) and match.group(1).lower() in _TRACE_HEADERS  # type: ignore[union-attr]
        if not skipping:
            kept.append(line)
    return hashlib.sha256(b"\n".join(kept) + sep + body).hexdigest()


def prepare(raw: bytes, settings: PrepareSettings) -> Prepared:
    """Parse and classify one message. Pure: no database, no files, no network."""
    msg = parse(raw, max_part_bytes=settings.max_message_bytes)
    classification = classify(
        msg,
        own_addresses=settings.own_addresses,
        verify_loop_token=partial(verify_loop_token, secret_key=settings.secret_key),
        raw=raw,
    )
    return Prepared(
        msg=msg,
        digest=content_digest(raw),
        classification=classification,
        split=split_reply(msg.text, html=msg.html),
        body_html=sanitize_html(msg.html) if msg.html else None,
    )


Stored = tuple[str, "Prepared | Exception"]  # (raw bytes' sha256 in the blob store, preparation)


def _store_and_prepare(
    raws: list[bytes], blobs: BlobStore, settings: PrepareSettings
) -> list[Stored]:
    """Prepare each message, then store the raw bytes and the attachments kept (one group of
    fsyncs for the chunk). The results come back only once everything is stored.

    A storage failure raises (nothing of the chunk may be recorded); a preparation failure is
    returned in the message's place.
    """
    prepared = [_prepare_or_error(raw, settings) for raw in raws]
    attachments = [
        [a for a in p.msg.attachments if not a.omitted] if isinstance(p, Prepared) else []
        for p in prepared
    ]
    digests = blobs.put_many([*raws, *(a.data for kept in attachments for a in kept)])
    raw_digests, attachment_digests = digests[: len(raws)], iter(digests[len(raws) :])
    results: list[Stored] = []
    for raw_digest, p, kept in zip(raw_digests, prepared, attachments, strict=True):
        if isinstance(p, Prepared):
            p = replace(
                p,
                # The bytes are stored: no need to carry them back to the poller.
                msg=replace(
                    p.msg,
                    attachments=tuple(
                        a if a.omitted else replace(a, data=b"") for a in p.msg.attachments
                    ),
                ),
                attachment_sha256=tuple(next(attachment_digests) for _ in kept),
            )
        results.append((raw_digest, p))
    return results


def _prepare_or_error(raw: bytes, settings: PrepareSettings) -> Prepared | Exception:
    try:
        return prepare(raw, settings)
    except Exception as exc:  # boundary: handed back, and the message is parked
        return exc


def _in_helper(
    raws: list[bytes], blobs: BlobStore, settings: PrepareSettings
) -> tuple[list[Stored], float, int]:
    """`_store_and_prepare` in a helper process; also the CPU seconds it took and the
    helper's peak RSS (KiB)."""
    started = time.process_time()
    results = _store_and_prepare(raws, blobs, settings)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return results, time.process_time() - started, peak_rss


LogSetup = tuple[Callable[..., None], tuple[object, ...]]  # a function and its arguments


def _start_helper(poller_pid: int, log_setup: LogSetup | None) -> None:
    """A helper's initializer: log as the poller does (the same format and redaction), and
    exit when the poller that started it does."""
    if log_setup is not None:
        configure, args = log_setup
        configure(*args)
    _exit_with(poller_pid)


def _exit_with(poller_pid: int) -> None:
    """The helper exits when the poller that started it does.

    A poller that is killed (SIGKILL, the OOM killer) cannot stop its helpers, and a helper
    would otherwise wait for work forever: it holds both ends of its own task queue, so it
    never sees end-of-file.
    """
    threading.Thread(target=_watch, args=(poller_pid,), daemon=True, name="watch").start()


def _watch(pid: int) -> None:
    try:
        pidfd = os.pidfd_open(pid)  # Linux: readable once that process has exited
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
        select.select([pidfd], [], [])
    else:  # elsewhere: ask every second
        while _alive(pid):
            time.sleep(1)
    os._exit(0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Preparer:
    """Prepares batches of messages in a helper process, in order; a context manager.

    `processes=0` prepares everything in the calling process. The helper is started on the
    first batch big enough to be worth it, from a fork server (a clean process: nothing of
    the caller's threads, locks or database connections), and stopped by `close()`.
    """

    def __init__(
        self,
        settings: PrepareSettings,
        blobs: BlobStore,
        *,
        processes: int = 1,
        log_setup: LogSetup | None = None,
    ) -> None:
        self.settings = settings
        self.blobs = blobs
        # How a helper sets up logging: a module-level function (it is pickled by name) and
        # its arguments, e.g. the web layer's `configure_logging` and the log format.
        self.log_setup = log_setup
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None
        self._pending: list[Future[tuple[list[Stored], float, int]]] = []
        # What the helper processes did (their CPU is not this process's): for the logs.
        self.helper_messages = 0
        self.helper_cpu_seconds = 0.0
        self.helper_peak_rss_kib = 0

    def __enter__(self) -> Preparer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.cancel_pending()
        if self.helper_messages:
            log.info(
                "helper processes prepared %d messages using %.2f s of CPU (peak RSS %d MB)",
                self.helper_messages,
                self.helper_cpu_seconds,
                self.helper_peak_rss_kib // 1024,
            )
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def map(self, raws: list[bytes]) -> Generator[Stored, None, None]:
        """Store each message's raw bytes durably, then prepare it; in the order given.

        Yields (raw sha256, preparation or the exception it raised). Lazy: the helper works
        ahead while the caller consumes the results one by one. A storage failure raises.
        """
        self.cancel_pending()
        pool = self._pool_for(len(raws))
        if pool is None:
            return self._here(raws)
        chunks = [raws[start : start + CHUNK] for start in range(0, len(raws), CHUNK)]
        try:
            for chunk in chunks:
                self._pending.append(pool.submit(_in_helper, chunk, self.blobs, self.settings))
        except BrokenProcessPool:  # the helper died while idle (the OOM killer, say)
            self.cancel_pending()
            self._give_up_on_helpers()
            return self._here(raws)
        return self._results(chunks, list(self._pending))

    def cancel_pending(self) -> None:
        """Drop the helper's queued work for the last `map()` (its caller stopped early:
        closing a generator that never started runs none of its code)."""
        for future in self._pending:
            future.cancel()
        self._pending = []

    def _give_up_on_helpers(self) -> None:
        log.warning("the mail preparation process died; preparing in-process")
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = None
        self.processes = 0  # for the rest of this poll; the next poll starts a new helper

    def _here(self, raws: list[bytes]) -> Generator[Stored, None, None]:
        digests = self.blobs.put_many(raws)  # the whole batch: one group of fsyncs
        for digest, raw in zip(digests, raws, strict=True):
            yield digest, _prepare_or_error(raw, self.settings)

    def _results(
        self, chunks: list[list[bytes]], futures: list[Future[tuple[list[Stored], float, int]]]
    ) -> Generator[Stored, None, None]:
        try:
            for chunk, future in zip(chunks, futures, strict=True):
                try:
                    results, cpu_seconds, peak_rss = future.result()
                    self.helper_messages += len(results)
                    self.helper_cpu_seconds += cpu_seconds
                    self.helper_peak_rss_kib = max(self.helper_peak_rss_kib, peak_rss)
                except BrokenProcessPool:
                    if self._pool is not None:
                        self._give_up_on_helpers()
                    results = _store_and_prepare(chunk, self.blobs, self.settings)
                yield from results
        finally:
            for future in futures:  # a caller that stops early leaves no work queued
                future.cancel()

    def _pool_for(self, count: int) -> ProcessPoolExecutor | None:
        if self.processes < 1 or count < MIN_PARALLEL_BATCH:
            return None
        if self._pool is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__])
            self._pool = ProcessPoolExecutor(
                max_workers=self.processes,
                mp_context=context,
                initializer=_start_helper,
                initargs=(os.getpid(), self.log_setup),
            )
        return self._pool
