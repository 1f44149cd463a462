"""The SMTP transport: the only module that speaks SMTP.

Place in the flow (design.md §1, §3): ``… → outbox row → SMTP``. The sender in `mail.outbound`
opens one `SmtpConnection` with `open_connection()` per batch of outbox rows, hands each row's
composed bytes (`mail.compose`) to `SmtpConnection.send()`, and records the outcome on the row:
a `DeliveryResult` (possibly with some recipients refused), or an `SmtpError` whose
`is_permanent` says whether trying the same message again later could ever succeed. The
transport never retries on its own, except for one transparent reconnect when the server
dropped an idle connection between two messages (nothing had been handed over yet).

Every failure leaves this module as an `SmtpError` in plain words, safe to store in
``outbound_email.last_error``, log and show to an admin: it never contains the password or a
base64 AUTH payload (security.md case 45, FreeScout GHSA-7wcq-2qmv-mvcm). TLS is never
downgraded: STARTTLS that the server does not offer is an error, not a plaintext session, and
a password is sent unencrypted only to a loopback host.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import logging
import smtplib
import socket
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Literal, NoReturn, Self
from urllib.parse import unquote, urlsplit

__all__ = [
    "DeliveryResult",
    "SmtpConnection",
    "SmtpError",
    "SmtpSecurity",
    "SmtpSettings",
    "open_connection",
    "parse_smtp_url",
]

log = logging.getLogger(__name__)

# Server words quoted in an error are cut to this length: enough for an enhanced status code
# and a sentence, never a whole multi-line banner.
_MAX_SERVER_TEXT = 300
_SERVICE_CLOSING = 421  # RFC 5321 §3.8: the server is about to close the connection
_AUTH_REQUIRED = 530  # RFC 4954 §6

ErrorKind = Literal["connect", "tls", "auth", "config", "refused", "protocol"]


class SmtpSecurity(StrEnum):
    """How the connection is protected."""

    PLAIN = "plain"  # no encryption (loopback and tests; AUTH refused to other hosts)
    STARTTLS = "starttls"  # plain connection upgraded before anything else (usually port 587)
    TLS = "tls"  # implicit TLS from the first byte (usually port 465)


_DEFAULT_PORTS = {SmtpSecurity.PLAIN: 25, SmtpSecurity.STARTTLS: 587, SmtpSecurity.TLS: 465}
_SCHEMES = {
    "smtp": SmtpSecurity.PLAIN,
    "smtp+starttls": SmtpSecurity.STARTTLS,
    "smtps": SmtpSecurity.TLS,
}


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """Where and how to reach the outgoing mail server. Secrets stay out of `repr()`."""

    host: str
    port: int
    security: SmtpSecurity
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    # None means ssl.create_default_context(): certificates and host names are verified.
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)
    # The name we give in EHLO; None lets smtplib use this machine's FQDN.
    local_hostname: str | None = None

    @property
    def where(self) -> str:
        """``host:port``, for messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_smtp_url(url: str) -> SmtpSettings:
    """Settings from ``HANDOFF_SMTP_URL``.

    ``smtp://user:pass@host:port`` (no encryption, default port 25),
    ``smtp+starttls://…`` (STARTTLS, default 587) or ``smtps://…`` (implicit TLS, default 465).
    User name and password are percent-decoded, so ``p%40ss`` is ``p@ss``. Raises `ValueError`
    for anything else; the message never repeats the URL, which may hold the password.
    """
    hint = (
        "HANDOFF_SMTP_URL must look like smtp://user:password@host:port, smtp+starttls://… or"
        " smtps://… (percent-encode @ : / # ? % in the user name and password)"
    )
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(hint)
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        # urlsplit's own messages quote parts of the URL; ours must not.
        raise ValueError(f"{hint}: the host or port is not valid") from None
    security = _SCHEMES.get(parts.scheme.lower())
    if security is None:
        raise ValueError(f"{hint}: unknown scheme")
    host = parts.hostname
    if not host:
        raise ValueError(f"{hint}: the host is missing")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{hint}: unexpected text after the host and port")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is not None and not username:
        raise ValueError(f"{hint}: a password needs a user name")
    return SmtpSettings(
        host=host,
        port=port or _DEFAULT_PORTS[security],
        security=security,
        username=username,
        password=password or None,
    )


class SmtpError(Exception):
    """An SMTP failure described in plain words, safe to store, log and show.

    - `code`: the server's reply code when the server answered (e.g. 451, 550), else None.
    - `is_permanent`: True when sending *this message* again cannot succeed (5xx at MAIL or
      DATA, every recipient refused with 5xx); False for everything worth retrying later,
      including failures of the connection or of our own configuration (login, TLS), which
      an admin can fix without the message being at fault.
    - `kind`: ``connect`` (refused, unreachable, timed out, dropped), ``tls`` (handshake,
      certificate, STARTTLS missing), ``auth`` (login), ``config`` (settings we refuse to
      use), ``refused`` (the server refused the message or its recipients) or ``protocol``.
    - `message`: the text, without the password or any AUTH payload.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        is_permanent: bool = False,
        kind: ErrorKind = "protocol",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.is_permanent = is_permanent
        self.kind: ErrorKind = kind

    def __repr__(self) -> str:
        return (
            f"SmtpError({self.message!r}, code={self.code!r},"
            f" is_permanent={self.is_permanent!r}, kind={self.kind!r})"
        )


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What the server took: `accepted` recipients, and those `refused` at RCPT.

    `refused` maps each refused recipient to the server's (code, words); a 4xx code is worth
    retrying for that recipient later, a 5xx code is not.
    """

    accepted: tuple[str, ...]
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)


def open_connection(settings: SmtpSettings) -> SmtpConnection:
    """Connect (and log in, when `settings.username` is set); use the result as a context manager.

    TLS: implicit TLS. STARTTLS: a plain connection upgraded before EHLO's answers are trusted
    and before AUTH; a server that does not offer or complete the upgrade is an `SmtpError`,
    never a plaintext session. PLAIN: no encryption; AUTH is then allowed only to a loopback
    host. Raises `SmtpError` on any failure (``is_permanent=False``).
    """
    connection = SmtpConnection(settings)
    connection.connect()
    return connection


class SmtpConnection:
    """One SMTP session, reused for many messages; obtain it from `open_connection()`.

    A context manager: on exit it sends QUIT (or, if that fails, closes the socket), also
    after errors. Not thread-safe: one connection per sending thread.
    """

    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings
        self._smtp: smtplib.SMTP | None = None
        # True once a transaction completed on the current session: a drop noticed at the
        # next MAIL FROM is then an idle timeout, safe to repair by reconnecting.
        self._has_sent = False

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def settings(self) -> SmtpSettings:
        return self._settings

    def connect(self) -> None:
        """(Re)open the session: connect, TLS as configured, EHLO, AUTH. Raises `SmtpError`."""
        self._discard()
        self._smtp = _open(self._settings)
        self._has_sent = False

    def close(self) -> None:
        """Say QUIT and close the connection; never raises."""
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except Exception as exc:  # closing after an error must never raise another
            log.debug("SMTP QUIT failed (%s); closing the socket", exc.__class__.__name__)
            with contextlib.suppress(Exception):
                smtp.close()

    def send(self, *, envelope_from: str, recipients: Sequence[str], data: bytes) -> DeliveryResult:
        """Hand one message to the server: MAIL FROM, RCPT TO each recipient, DATA.

        `data` is the complete message with CRLF line ends (`mail.compose.compose`);
        `envelope_from` may be ``""`` (the null reverse-path). Returns the accepted recipients
        and those refused at RCPT while others were accepted (the message went to the rest).

        Raises `SmtpError`: temporary (``is_permanent=False``) when the connection fails or
        drops, or the server answers 4xx at MAIL, DATA or for every recipient; permanent for
        5xx at MAIL or DATA, or when every recipient was refused with 5xx. After a refused
        transaction the session is RSET so the connection stays usable; after a 421 or a
        dropped connection the next `send()` reconnects. The caller decides about retries.
        """
        envelope_from = _envelope_address(envelope_from, allow_empty=True)
        rcpts = [_envelope_address(r, allow_empty=False) for r in recipients]
        if not rcpts:
            raise ValueError("a message needs at least one recipient")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError("data must be bytes (the composed message)")
        payload = bytes(data)
        if self._smtp is None:
            self.connect()
        try:
            return self._transaction(envelope_from, rcpts, payload)
        except _IdleDrop:
            # The server closed the session since the last message (idle timeout, restart).
            # Nothing of this message was handed over, so one fresh session is safe; a drop on
            # the fresh session is an ordinary (temporary) `SmtpError`.
            log.info("SMTP server %s had closed the idle connection; reconnecting", self._where)
            self.connect()
            return self._transaction(envelope_from, rcpts, payload)

    # -- internals -------------------------------------------------------------------------

    @property
    def _where(self) -> str:
        return self._settings.where

    def _transaction(self, envelope_from: str, rcpts: list[str], data: bytes) -> DeliveryResult:
        smtp = self._smtp
        assert smtp is not None  # callers connect first
        options = self._mail_options(smtp, envelope_from, rcpts, data)

        with self._errors("sending MAIL FROM", idle_drop_possible=self._has_sent):
            code, reply = smtp.mail(envelope_from, options)
        if code != 250:
            if code == _SERVICE_CLOSING and self._has_sent:
                self._discard()
                raise _IdleDrop(code)
            if code == _AUTH_REQUIRED:
                # RFC 4954 §6: our configuration lacks a login; the message is not at fault.
                self._reset_after_failure(code)
                raise SmtpError(
                    self._redact(
                        f"SMTP server {self._where} requires a login before sending:"
                        f" {code} {self._server_text(reply)} (set a user name and password)"
                    ),
                    code=code,
                    kind="auth",
                )
            self._fail_transaction(
                code, f"SMTP server {self._where} refused the sender {envelope_from or '<>'}", reply
            )

        accepted: list[str] = []
        refused: dict[str, tuple[int, str]] = {}
        for rcpt in rcpts:
            with self._errors(f"sending RCPT TO for {rcpt}"):
                code, reply = smtp.rcpt(rcpt)
            if code in (250, 251):
                accepted.append(rcpt)
                continue
            refused[rcpt] = (code, self._server_text(reply))
            if code == _SERVICE_CLOSING:
                self._fail_transaction(
                    code, f"SMTP server {self._where} closed the session at recipient {rcpt}", reply
                )
        if not accepted:
            self._all_refused(refused)

        with self._errors("sending the message (DATA)"):
            try:
                code, reply = smtp.data(data)
            except smtplib.SMTPDataError as exc:
                # smtplib raises (rather than returns) when the DATA command itself is
                # refused, before any content was sent.
                code, reply = exc.smtp_code, exc.smtp_error
        if code != 250:
            self._fail_transaction(code, f"SMTP server {self._where} refused the message", reply)
        self._has_sent = True
        if refused:
            log.info(
                "SMTP server %s accepted %d recipient(s) and refused %d",
                self._where,
                len(accepted),
                len(refused),
            )
        return DeliveryResult(accepted=tuple(accepted), refused=refused)

    def _mail_options(
        self, smtp: smtplib.SMTP, envelope_from: str, rcpts: list[str], data: bytes
    ) -> list[str]:
        options: list[str] = []
        if smtp.has_extn("size"):
            options.append(f"SIZE={len(data)}")
        if smtp.has_extn("8bitmime") and not data.isascii():
            options.append("BODY=8BITMIME")
        if not all(address.isascii() for address in [envelope_from, *rcpts]):
            # Only an internationalised address needs SMTPUTF8 (RFC 6531); asking for it
            # otherwise would make servers without the extension refuse ordinary mail.
            if not smtp.has_extn("smtputf8"):
                raise SmtpError(
                    f"SMTP server {self._where} does not support SMTPUTF8, which a non-ASCII"
                    " address needs",
                    is_permanent=True,
                    kind="refused",
                )
            options.append("SMTPUTF8")
        return options

    def _fail_transaction(self, code: int, what: str, reply: bytes) -> NoReturn:
        """Raise for a refused MAIL/DATA (or 421 anywhere), leaving the session usable."""
        self._reset_after_failure(code)
        raise SmtpError(
            self._redact(f"{what}: {code} {self._server_text(reply)}"),
            code=code,
            is_permanent=500 <= code <= 599,
            kind="refused",
        )

    def _all_refused(self, refused: dict[str, tuple[int, str]]) -> NoReturn:
        codes = [code for code, _ in refused.values()]
        is_permanent = all(500 <= code <= 599 for code in codes)
        # The code reported is the first one that decides: a 4xx makes the whole temporary.
        code = next((c for c in codes if c < 500), codes[0])
        self._reset_after_failure(code)
        details = "; ".join(f"{rcpt}: {c} {t}" for rcpt, (c, t) in refused.items())
        raise SmtpError(
            self._redact(f"SMTP server {self._where} refused every recipient ({details})"),
            code=code,
            is_permanent=is_permanent,
            kind="refused",
        )

    def _reset_after_failure(self, code: int) -> None:
        if code == _SERVICE_CLOSING:
            # The server is closing the session; the next send() opens a new one.
            self._discard()
            return
        smtp = self._smtp
        if smtp is None:
            return
        try:
            smtp.rset()
        except (smtplib.SMTPException, OSError):
            self._discard()

    @contextlib.contextmanager
    def _errors(self, action: str, *, idle_drop_possible: bool = False) -> Iterator[None]:
        try:
            yield
        except SmtpError:
            raise
        except smtplib.SMTPNotSupportedError as exc:
            self._reset_after_failure(0)
            raise SmtpError(
                self._redact(f"SMTP server {self._where} cannot take this message: {exc}"),
                is_permanent=True,
                kind="refused",
            ) from None
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._discard()
            if idle_drop_possible and not _is_timeout(exc):
                raise _IdleDrop(None) from None
            _raise_connection_error(self._settings, action, exc)
        except smtplib.SMTPException as exc:
            self._discard()
            _raise_connection_error(self._settings, action, exc)

    def _discard(self) -> None:
        """Forget a session that is closed or unusable (no QUIT: it would only wait)."""
        smtp, self._smtp = self._smtp, None
        self._has_sent = False
        if smtp is not None:
            with contextlib.suppress(Exception):
                smtp.close()

    def _server_text(self, reply: bytes | str) -> str:
        return _server_text(reply)

    def _redact(self, text: str) -> str:
        return _redact(text, self._settings)


class _IdleDrop(Exception):
    """The server had closed the session before MAIL FROM of this message was answered."""

    def __init__(self, code: int | None) -> None:
        super().__init__(code)
        self.code = code


# -- connection steps ----------------------------------------------------------------------


def _open(settings: SmtpSettings) -> smtplib.SMTP:
    where = settings.where
    needs_tls_for_auth = settings.username and settings.security is SmtpSecurity.PLAIN
    if needs_tls_for_auth and not _is_loopback(settings.host):
        raise SmtpError(
            f"refusing to send the password for user {settings.username} unencrypted to"
            f" SMTP server {where}: use smtp+starttls:// or smtps://",
            kind="config",
        )
    smtp: smtplib.SMTP | None = None
    try:
        try:
            if settings.security is SmtpSecurity.TLS:
                smtp = smtplib.SMTP_SSL(
                    settings.host,
                    settings.port,
                    local_hostname=settings.local_hostname,
                    timeout=settings.timeout,
                    context=settings.ssl_context or ssl.create_default_context(),
                )
            else:
                smtp = smtplib.SMTP(
                    settings.host,
                    settings.port,
                    local_hostname=settings.local_hostname,
                    timeout=settings.timeout,
                )
            smtp.ehlo_or_helo_if_needed()
        except (smtplib.SMTPException, OSError) as exc:
            _raise_connection_error(settings, "connecting", exc)
        if settings.security is SmtpSecurity.STARTTLS:
            _starttls(smtp, settings)
        if settings.username:
            _login(smtp, settings)
    except BaseException:
        if smtp is not None:
            with contextlib.suppress(Exception):
                smtp.close()
        raise
    log.debug("connected to SMTP server %s (%s)", where, settings.security.value)
    return smtp


def _starttls(smtp: smtplib.SMTP, settings: SmtpSettings) -> None:
    """Upgrade before anything is trusted or sent; never go on in plain text.

    A network attacker can strip STARTTLS from the EHLO answer; falling back to a plaintext
    session would then hand over the password and the mail. Every failure ends the session.
    """
    where = settings.where
    if not smtp.has_extn("starttls"):
        raise SmtpError(
            f"SMTP server {where} does not offer STARTTLS, so nothing was sent: check the"
            " port (STARTTLS is usually 587) or use smtps:// for implicit TLS",
            kind="tls",
        )
    try:
        code, reply = smtp.starttls(context=settings.ssl_context or ssl.create_default_context())
    except smtplib.SMTPResponseException as exc:
        code, reply = exc.smtp_code, exc.smtp_error
    except (smtplib.SMTPException, OSError) as exc:
        _raise_connection_error(settings, "starting TLS", exc)
    if code != 220:
        raise SmtpError(
            _redact(
                f"SMTP server {where} refused STARTTLS ({code} {_server_text(reply)}), so"
                " nothing was sent",
                settings,
            ),
            code=code,
            kind="tls",
        )
    try:
        # RFC 3207 §4.2: forget what the server said before TLS and ask again.
        smtp.ehlo_or_helo_if_needed()
    except (smtplib.SMTPException, OSError) as exc:
        _raise_connection_error(settings, "greeting the server after STARTTLS", exc)


def _login(smtp: smtplib.SMTP, settings: SmtpSettings) -> None:
    """AUTH with the configured user. Every error is raised *after* the ``except`` block, so
    it carries no ``__context__``: smtplib's exceptions may hold the AUTH payload (a
    UnicodeEncodeError keeps the whole ``\\0user\\0password`` string), and error reporters
    that walk the context chain would otherwise find it."""
    where, user = settings.where, settings.username
    failed = f"SMTP server {where} refused the login for user {user}"
    error: SmtpError
    try:
        smtp.login(user or "", settings.password or "")
        return
    except smtplib.SMTPAuthenticationError as exc:
        # The server's words are kept (they say "invalid credentials" or "too many
        # attempts"), but redacted: a server may echo the AUTH line it received.
        error = SmtpError(
            _redact(f"{failed}: {exc.smtp_code} {_server_text(exc.smtp_error)}", settings),
            code=exc.smtp_code,
            kind="auth",
        )
    except smtplib.SMTPNotSupportedError:
        error = SmtpError(
            f"SMTP server {where} does not offer AUTH on this connection, so user {user}"
            " cannot log in",
            kind="auth",
        )
    except UnicodeError:
        error = SmtpError(
            f"{failed}: SMTP AUTH accepts only ASCII user names and passwords here",
            kind="auth",
        )
    except (smtplib.SMTPServerDisconnected, OSError) as exc:
        error = _connection_error(settings, "logging in", exc, hide_detail=True)
    except smtplib.SMTPException:
        # "No suitable authentication method found", or a mechanism loop: described without
        # the original text, which may quote a challenge response.
        error = SmtpError(
            f"{failed}: no authentication method both sides support worked", kind="auth"
        )
    raise error


# -- error translation ---------------------------------------------------------------------


def _raise_connection_error(
    settings: SmtpSettings, action: str, exc: BaseException, *, hide_detail: bool = False
) -> NoReturn:
    raise _connection_error(settings, action, exc, hide_detail=hide_detail) from None


def _connection_error(
    settings: SmtpSettings, action: str, exc: BaseException, *, hide_detail: bool = False
) -> SmtpError:
    """Describe what smtplib, ssl and the socket raised as a temporary `SmtpError`."""
    where = settings.where
    kind: ErrorKind = "connect"
    code: int | None = None
    if isinstance(exc, ssl.SSLCertVerificationError):
        kind = "tls"
        detail = exc.verify_message or exc.reason or "verification failed"
        message = f"the TLS certificate of SMTP server {where} could not be verified: {detail}"
    elif isinstance(exc, ssl.SSLError):
        kind = "tls"
        reason = exc.reason or exc.__class__.__name__
        message = (
            f"TLS handshake with SMTP server {where} failed while {action} ({reason}): check"
            " that the port speaks the chosen security (implicit TLS is usually 465, STARTTLS"
            " 587)"
        )
    elif isinstance(exc, ConnectionRefusedError):
        message = f"connection refused by SMTP server {where}: is it running on that port?"
    elif isinstance(exc, socket.gaierror):
        message = f"cannot resolve the SMTP host name {settings.host!r}: {exc.strerror or exc}"
    elif _is_timeout(exc):
        message = f"timed out after {settings.timeout:g}s while {action} (SMTP server {where})"
    elif isinstance(exc, smtplib.SMTPServerDisconnected | ConnectionError | EOFError):
        message = f"the connection to SMTP server {where} was closed while {action}"
    elif isinstance(exc, OSError):
        message = (
            f"cannot reach SMTP server {where} while {action}:"
            f" {exc.strerror or exc.__class__.__name__}"
        )
    elif isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
        kind = "protocol"
        message = f"SMTP server {where} answered {code} while {action}"
        if not hide_detail:
            message += f": {_server_text(exc.smtp_error)}"
    else:
        kind = "protocol"
        message = f"SMTP server {where} failed while {action}"
        if not hide_detail:
            message += f": {_server_text(str(exc))}"
    return SmtpError(_redact(message, settings), code=code, kind=kind)


def _is_timeout(exc: BaseException) -> bool:
    # smtplib reports a read that timed out as SMTPServerDisconnected("Connection unexpectedly
    # closed: timed out"), raised while handling the TimeoutError.
    return isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError)


def _server_text(reply: bytes | str) -> str:
    """The server's words on one line, bounded, control characters removed."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(text.split())[:_MAX_SERVER_TEXT] or "(no text)"


def _redact(text: str, settings: SmtpSettings) -> str:
    """Belt and braces: remove the password and the AUTH payloads carrying it."""
    password = settings.password
    if not password:
        return text
    user = settings.username or ""
    secrets = [password]
    for raw in (
        password,  # AUTH LOGIN sends the password alone
        f"\0{user}\0{password}",  # AUTH PLAIN
        f"{user}\0{user}\0{password}",  # AUTH PLAIN with an authorisation identity
    ):
        with contextlib.suppress(UnicodeError):
            secrets.append(base64.b64encode(raw.encode("utf-8")).decode("ascii"))
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 3:
            text = text.replace(secret, "********")
    return text


# -- small helpers -------------------------------------------------------------------------


def _envelope_address(address: str, *, allow_empty: bool) -> str:
    """An addr-spec for MAIL FROM / RCPT TO; refuses anything that could smuggle a command."""
    if not isinstance(address, str):
        raise TypeError("envelope addresses must be strings")
    value = address.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1].strip()
    if not value:
        if allow_empty:
            return ""
        raise ValueError("an empty recipient address")
    if (
        any(not ch.isprintable() or ch.isspace() for ch in value)
        or any(ch in value for ch in "<>,;")
        or value.count("@") != 1
        or value.startswith("@")
        or value.endswith("@")
    ):
        raise ValueError(f"not a single email address: {value[:100]!r}")
    return value


def _is_loopback(host: str) -> bool:
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
