"""The imapclient adapter: the only module that speaks IMAP.

Place in the flow (design.md §1, §3): ``IMAP → raw bytes kept → parse → …``. The poller in
`mail.inbound` opens an `ImapSession` with `connect()`, calls `select()` to learn the folder's
UIDVALIDITY, asks for `new_uids()` after its bookmark, downloads them with `fetch()` (always
``BODY.PEEK[]``, so reading never sets ``\\Seen``), stores and commits each message, and only
then calls `mark_processed()` to flag (and optionally move) what is safely in the database.
Processed mail is never deleted or expunged here.

Every failure leaves this module as an `ImapError` whose message is plain words, safe to log
and show to an admin: it never contains the password or an AUTH payload (security.md case 45).
TLS is never downgraded: a STARTTLS mailbox whose server does not upgrade the connection is an
error, not a plaintext login (security.md case 11).
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import logging
import re
import socket
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, NoReturn, Self

from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from ticketing.models.mailboxes import MailboxSecurity

if TYPE_CHECKING:
    from ticketing.models.mailboxes import Mailbox

__all__ = [
    "CheckResult",
    "FetchedMessage",
    "FolderState",
    "ImapError",
    "ImapSession",
    "ImapSettings",
    "check_mailbox",
    "connect",
]

log = logging.getLogger(__name__)

SEEN = b"\\Seen"
# The largest UID RFC 3501 allows (nz-number is a 32-bit unsigned integer).
MAX_UID = 2**32 - 1
# Commands carry UID sets; keep each one well under the line lengths servers accept.
_SIZES_BATCH = 500
_BYTES_REPR = re.compile(r"\[?b(['\"])(.*?)\1\]?")

ErrorKind = Literal["connect", "tls", "auth", "folder", "protocol"]


@dataclass(frozen=True, slots=True)
class ImapSettings:
    """Where and how to reach one IMAP folder. `password` stays out of `repr()`."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    security: MailboxSecurity
    folder: str = "INBOX"
    timeout: float = 30.0
    # None means ssl.create_default_context(): certificates and host names are verified.
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)

    @classmethod
    def for_mailbox(
        cls,
        mailbox: Mailbox,
        *,
        password: str,
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> Self:
        """Settings for a stored mailbox; `password` is the decrypted IMAP password.

        (`ticketing.services.mailboxes.imap_password` decrypts it.)
        """
        return cls(
            host=mailbox.imap_host,
            port=mailbox.imap_port,
            user=mailbox.imap_user,
            password=password,
            security=MailboxSecurity(mailbox.imap_security),
            folder=mailbox.folder,
            timeout=timeout,
            ssl_context=ssl_context,
        )

    @property
    def where(self) -> str:
        """``host:port``, for messages."""
        return f"{self.host}:{self.port}"


class ImapError(Exception):
    """An IMAP failure described in plain words, safe to show and log.

    The message never contains the password or an AUTH payload. `kind` says what failed:
    ``connect`` (refused, unreachable, timed out, dropped), ``tls`` (handshake, certificate,
    STARTTLS refused), ``auth`` (login), ``folder`` (missing or not selectable) or
    ``protocol`` (any other command the server rejected).
    """

    def __init__(self, message: str, *, kind: ErrorKind = "protocol") -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind


@dataclass(frozen=True, slots=True)
class FolderState:
    """What SELECT reports. A new `uidvalidity` means every UID bookmark is void."""

    uidvalidity: int
    uidnext: int | None
    exists: int


@dataclass(frozen=True, slots=True)
class FetchedMessage:
    """One downloaded message: its exact bytes, or only its header when `is_truncated`."""

    uid: int
    size: int  # RFC822.SIZE as the server reports it
    raw: bytes = field(repr=False)
    is_truncated: bool  # only the header was downloaded because size > max_bytes


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What `check_mailbox` found: the folder and its counts."""

    folder: str
    uidvalidity: int
    exists: int
    unseen: int


def connect(settings: ImapSettings) -> ImapSession:
    """Connect and log in as `settings` describe; use the result as a context manager.

    TLS: implicit TLS. STARTTLS: a plain connection upgraded before login; a server that does
    not offer or complete the upgrade is an `ImapError`, never a plaintext login. PLAIN: no
    encryption at all (loopback and tests). Raises `ImapError` on any failure.
    """
    client: IMAPClient | None = None
    try:
        with _translate_errors(settings, "connecting"):
            client = IMAPClient(
                settings.host,
                port=settings.port,
                ssl=settings.security is MailboxSecurity.TLS,
                ssl_context=_context(settings),
                timeout=settings.timeout,
            )
        if settings.security is MailboxSecurity.STARTTLS:
            _starttls(client, settings)
        _login(client, settings)
    except ImapError as exc:
        if client is not None:
            _close_quietly(client, polite=exc.kind != "connect")
        raise
    except BaseException:
        if client is not None:
            _close_quietly(client)
        raise
    return ImapSession(client, settings)


def check_mailbox(settings: ImapSettings) -> CheckResult:
    """Log in and report the folder's UIDVALIDITY, message count and unseen count.

    Uses STATUS, which neither selects the folder nor changes any flag. Raises `ImapError`.
    """
    with connect(settings) as session:
        return session.status()


class ImapSession:
    """A logged-in IMAP connection to one account; obtain it from `connect()`.

    A context manager: on exit it logs out (or, if that fails, closes the socket), also after
    errors. Call `select()` before the message methods. Every method raises `ImapError`.
    """

    def __init__(self, client: IMAPClient, settings: ImapSettings) -> None:
        self._client = client
        self._settings = settings
        self._selected = False
        # After a timeout or a dropped connection, a LOGOUT would only wait in vain.
        self._is_broken = False

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Log out and close the connection; never raises."""
        _close_quietly(self._client, polite=not self._is_broken)

    @property
    def settings(self) -> ImapSettings:
        return self._settings

    def has_capability(self, name: str) -> bool:
        """True when the server advertises capability `name` (e.g. ``"MOVE"``)."""
        with self._errors("reading capabilities"):
            return bool(self._client.has_capability(name))

    def select(self) -> FolderState:
        """SELECT the configured folder read-write and return its UIDVALIDITY, UIDNEXT, EXISTS.

        Read-write, because `mark_processed` sets flags; fetching uses PEEK and changes
        nothing.
        """
        folder = self._settings.folder
        self._selected = False  # a failed SELECT leaves no folder selected (RFC 3501 6.3.1)
        with self._errors(f"selecting folder {folder!r}", folder=folder):
            info = self._client.select_folder(folder, readonly=False)
        self._selected = True
        uidvalidity = info.get(b"UIDVALIDITY")
        if uidvalidity is None:
            # RFC 3501 requires it; without it no UID could be trusted across sessions.
            raise ImapError(
                f"the server at {self._settings.where} did not report UIDVALIDITY for"
                f" folder {folder!r}",
                kind="protocol",
            )
        uidnext = info.get(b"UIDNEXT")
        return FolderState(
            uidvalidity=int(uidvalidity),
            uidnext=int(uidnext) if uidnext is not None else None,
            exists=int(info.get(b"EXISTS", 0)),
        )

    def status(self) -> CheckResult:
        """STATUS of the configured folder (no SELECT needed, no flags changed)."""
        folder = self._settings.folder
        with self._errors(f"reading the status of folder {folder!r}", folder=folder):
            info = self._client.folder_status(folder, [b"MESSAGES", b"UIDVALIDITY", b"UNSEEN"])
        return CheckResult(
            folder=folder,
            uidvalidity=int(info.get(b"UIDVALIDITY", 0)),
            exists=int(info.get(b"MESSAGES", 0)),
            unseen=int(info.get(b"UNSEEN", 0)),
        )

    def new_uids(self, after_uid: int) -> list[int]:
        """UIDs greater than `after_uid` in the selected folder, ascending.

        RFC 3501 §6.4.8: in ``UID SEARCH UID n:*`` the ``*`` stands for the highest UID in the
        folder, and ``n:*`` is the same set as ``*:n``; so when nothing is newer than
        ``n - 1`` the server still answers with the highest UID, which is ``<= after_uid``.
        Those are filtered out here so the poller never re-processes its bookmark
        (security.md case 7).
        """
        if after_uid < 0:
            raise ValueError("after_uid must be >= 0")
        if after_uid >= MAX_UID:
            return []
        self._require_selected()
        with self._errors("searching for new messages"):
            found = self._client.search(["UID", f"{after_uid + 1}:*"])
        return sorted({int(uid) for uid in found if int(uid) > after_uid})

    def all_uids(self) -> list[int]:
        """Every UID in the selected folder, ascending (for reconciliation)."""
        self._require_selected()
        with self._errors("listing messages"):
            found = self._client.search(["ALL"])
        return sorted({int(uid) for uid in found})

    def sizes(self, uids: Sequence[int]) -> dict[int, int]:
        """RFC822.SIZE of each UID that still exists, without downloading bodies."""
        self._require_selected()
        result: dict[int, int] = {}
        for chunk in _chunks(_unique_sorted(uids), _SIZES_BATCH):
            result.update(self._sizes(chunk))
        return result

    def fetch(
        self,
        uids: Sequence[int],
        *,
        max_bytes: int | None = None,
        batch_size: int = 50,
    ) -> Iterator[FetchedMessage]:
        """Download messages in UID order, `batch_size` at a time.

        A message whose RFC822.SIZE is at most `max_bytes` (or any message, when `max_bytes`
        is None) comes with its exact bytes from ``BODY.PEEK[]``; a larger one with only its
        header, from ``BODY.PEEK[HEADER]``, and ``is_truncated=True``. PEEK leaves ``\\Seen``
        alone: flags change only in `mark_processed`, after the database commit. Memory is
        bounded by one batch. A UID that no longer exists (expunged meanwhile) is skipped.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self._require_selected()
        for batch in _chunks(_unique_sorted(uids), batch_size):
            yield from self._fetch_batch(batch, max_bytes)

    def mark_processed(self, uids: Sequence[int], *, move_to: str | None = None) -> None:
        """Flag messages ``\\Seen`` and, given `move_to`, move them to that folder.

        The target folder is created if missing. With the MOVE capability (RFC 6851) this is
        ``UID MOVE``; without it, ``UID COPY`` and the original stays in place, flagged
        ``\\Seen``: processed mail is never deleted or expunged. A `move_to` equal to the
        polled folder only flags.
        """
        self._require_selected()
        targets = _unique_sorted(uids)
        if not targets:
            return
        with self._errors("flagging messages as seen"):
            self._client.add_flags(targets, [SEEN], silent=True)
        if move_to is None or move_to == self._settings.folder:
            return
        self._ensure_folder(move_to)
        if self.has_capability("MOVE"):
            with self._errors(f"moving messages to folder {move_to!r}", folder=move_to):
                self._client.move(targets, move_to)
        else:
            with self._errors(f"copying messages to folder {move_to!r}", folder=move_to):
                self._client.copy(targets, move_to)

    # -- internals -------------------------------------------------------------------------

    def _require_selected(self) -> None:
        if not self._selected:
            raise RuntimeError("call ImapSession.select() before working with messages")

    @contextlib.contextmanager
    def _errors(self, action: str, *, folder: str | None = None) -> Iterator[None]:
        try:
            with _translate_errors(self._settings, action, folder=folder):
                yield
        except ImapError as exc:
            if exc.kind == "connect":
                self._is_broken = True
            raise

    def _sizes(self, uids: list[int]) -> dict[int, int]:
        with self._errors("reading message sizes"):
            found = self._client.fetch(uids, ["RFC822.SIZE"])
        wanted = set(uids)
        return {
            int(uid): int(data[b"RFC822.SIZE"])
            for uid, data in found.items()
            # Unsolicited FETCH responses (flag changes by other clients) may ride along.
            if int(uid) in wanted and b"RFC822.SIZE" in data
        }

    def _fetch_batch(self, batch: list[int], max_bytes: int | None) -> Iterator[FetchedMessage]:
        if max_bytes is None:
            whole, headers_only = batch, []
        else:
            sizes = self._sizes(batch)
            whole = [uid for uid in batch if uid in sizes and sizes[uid] <= max_bytes]
            headers_only = [uid for uid in batch if uid in sizes and sizes[uid] > max_bytes]
        found: dict[int, tuple[int, bytes]] = {}
        if whole:
            found.update(self._fetch_part(whole, b"BODY.PEEK[]", b"BODY[]"))
        if headers_only:
            found.update(self._fetch_part(headers_only, b"BODY.PEEK[HEADER]", b"BODY[HEADER]"))
        truncated = set(headers_only)
        for uid in batch:
            item = found.pop(uid, None)
            if item is None:  # expunged between SEARCH and FETCH
                continue
            size, raw = item
            yield FetchedMessage(uid=uid, size=size, raw=raw, is_truncated=uid in truncated)

    def _fetch_part(self, uids: list[int], item: bytes, key: bytes) -> dict[int, tuple[int, bytes]]:
        """``{uid: (RFC822.SIZE, bytes of item)}`` for the UIDs that still exist."""
        with self._errors("downloading messages"):
            found = self._client.fetch(uids, [b"RFC822.SIZE", item])
        wanted = set(uids)
        result: dict[int, tuple[int, bytes]] = {}
        for uid, data in found.items():
            value, size = data.get(key), data.get(b"RFC822.SIZE")
            # Unsolicited FETCH responses (flag changes by other clients) may ride along.
            if int(uid) in wanted and value is not None and size is not None:
                result[int(uid)] = (int(size), bytes(value))
        return result

    def _ensure_folder(self, folder: str) -> None:
        with self._errors(f"looking up folder {folder!r}", folder=folder):
            if self._client.folder_exists(folder):
                return
        try:
            with self._errors(f"creating folder {folder!r}", folder=folder):
                self._client.create_folder(folder)
        except ImapError:
            # Another poller may have created it in between; only then is this fine.
            with self._errors(f"looking up folder {folder!r}", folder=folder):
                if self._client.folder_exists(folder):
                    return
            raise


# -- connection steps ----------------------------------------------------------------------


def _context(settings: ImapSettings) -> ssl.SSLContext | None:
    if settings.security is MailboxSecurity.PLAIN:
        return None
    return settings.ssl_context or ssl.create_default_context()


def _starttls(client: IMAPClient, settings: ImapSettings) -> None:
    """Upgrade to TLS before anything secret is sent; refuse to go on in plain text.

    django-helpdesk's anti-pattern was to fall back to a plaintext login when the upgrade
    failed; a network attacker who strips STARTTLS from the capabilities then reads the
    password. Here every failure to upgrade ends the connection.
    """
    refused = ImapError(
        f"server refused STARTTLS at {settings.where}: it does not offer an encrypted"
        " connection on this port, so no login was attempted",
        kind="tls",
    )
    with _translate_errors(settings, "checking capabilities"):
        offered = client.has_capability("STARTTLS")
    if not offered:
        raise refused
    try:
        client.starttls(ssl_context=_context(settings))
    except imaplib.IMAP4.error:
        raise refused from None
    except (ssl.SSLError, OSError, EOFError) as exc:
        _raise_translated(settings, "starting TLS", exc)


def _login(client: IMAPClient, settings: ImapSettings) -> None:
    with _translate_errors(settings, "checking capabilities"):
        login_disabled = client.has_capability("LOGINDISABLED")
    if login_disabled:
        # RFC 3501 §6.2.3: the server refuses LOGIN on this (unencrypted) connection.
        raise ImapError(
            f"the server at {settings.where} refuses to log in without encryption:"
            " choose TLS or STARTTLS security",
            kind="auth",
        )
    try:
        client.login(settings.user, settings.password)
    except LoginError:
        # The server's reply is dropped (`from None`): imaplib may echo the command.
        raise ImapError(
            f"login failed for user {settings.user}: check the user name and password",
            kind="auth",
        ) from None
    except UnicodeError:
        # imaplib sends LOGIN arguments as ASCII until UTF8=ACCEPT is enabled.
        raise ImapError(
            f"cannot log in user {settings.user}: IMAP LOGIN accepts only ASCII user names"
            " and passwords",
            kind="auth",
        ) from None
    except Exception as exc:
        # Any other failure during LOGIN (dropped connection, timeout, TLS alert): described
        # without the original message or traceback, which could quote the command.
        _raise_translated(settings, "logging in", exc, hide_detail=True)


# -- error translation ---------------------------------------------------------------------


@contextlib.contextmanager
def _translate_errors(
    settings: ImapSettings, action: str, *, folder: str | None = None
) -> Iterator[None]:
    """Turn whatever imapclient, imaplib, ssl and the socket raise into an `ImapError`."""
    try:
        yield
    except ImapError:
        raise
    except (imaplib.IMAP4.error, ssl.SSLError, OSError, EOFError) as exc:
        _raise_translated(settings, action, exc, folder=folder)


def _raise_translated(
    settings: ImapSettings,
    action: str,
    exc: BaseException,
    *,
    folder: str | None = None,
    hide_detail: bool = False,
) -> NoReturn:
    where = settings.where
    kind: ErrorKind
    if isinstance(exc, ssl.SSLCertVerificationError):
        kind = "tls"
        detail = exc.verify_message or exc.reason or "verification failed"
        message = f"the TLS certificate of {where} could not be verified: {detail}"
    elif isinstance(exc, ssl.SSLError):
        kind = "tls"
        reason = exc.reason or exc.__class__.__name__
        message = (
            f"TLS handshake with {where} failed while {action} ({reason}): check that the"
            " port speaks the chosen security (implicit TLS is usually 993, STARTTLS and"
            " plain 143)"
        )
    elif isinstance(exc, ConnectionRefusedError):
        kind = "connect"
        message = f"connection refused by {where}: is the IMAP server running on that port?"
    elif isinstance(exc, socket.gaierror):
        kind = "connect"
        message = f"cannot resolve the host name {settings.host!r}: {exc.strerror or exc}"
    elif isinstance(exc, TimeoutError):
        kind = "connect"
        message = f"timed out after {settings.timeout:g}s while {action} ({where})"
    elif isinstance(exc, imaplib.IMAP4.abort | EOFError | ConnectionError):
        kind = "connect"
        message = f"the connection to {where} was closed while {action}"
    elif isinstance(exc, OSError):
        kind = "connect"
        message = f"cannot reach {where} while {action}: {exc.strerror or exc.__class__.__name__}"
    elif folder is not None and _looks_like_missing_folder(exc):
        kind = "folder"
        message = f"folder {folder!r} does not exist for user {settings.user} on {where}"
    else:
        kind = "protocol"
        message = f"the server at {where} refused {action}"
        if not hide_detail:
            message += f": {_server_text(exc)}"
    raise ImapError(_redact(message, settings), kind=kind) from None


def _looks_like_missing_folder(exc: BaseException) -> bool:
    text = str(exc).lower()
    # RFC 5530 response code, and the wording of servers that do not send it.
    return (
        "nonexistent" in text
        or "doesn't exist" in text
        or "does not exist" in text
        or ("no such" in text)
    )


def _server_text(exc: BaseException) -> str:
    """The server's words from an imaplib error such as ``UID command error: BAD [b'…']``."""
    text = _BYTES_REPR.sub(r"\2", str(exc))
    return " ".join(text.split())[:300] or exc.__class__.__name__


def _redact(text: str, settings: ImapSettings) -> str:
    """Belt and braces: remove the password, and a SASL PLAIN payload, should one appear."""
    secrets = [settings.password]
    if settings.password:
        plain = f"\0{settings.user}\0{settings.password}".encode()
        secrets.append(base64.b64encode(plain).decode())
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "********")
    return text


def _close_quietly(client: IMAPClient, *, polite: bool = True) -> None:
    """Log out politely (when `polite`); if that fails, or not polite, close the socket."""
    if polite:
        try:
            client.logout()
            return
        except Exception as exc:  # closing after an error must never raise another
            log.debug("IMAP logout failed (%s); closing the socket", exc.__class__.__name__)
    with contextlib.suppress(Exception):
        client.shutdown()


# -- small helpers -------------------------------------------------------------------------


def _unique_sorted(uids: Sequence[int]) -> list[int]:
    return sorted({int(uid) for uid in uids})


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
