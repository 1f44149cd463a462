"""A real SMTP server (aiosmtpd) on loopback that records mail and can be told to refuse it.

Provides:

- fixture ``smtp_server`` -> ``SmtpServer``: no authentication. The server runs for the
  whole session; the fixture clears received messages and pending faults before and after
  each test.
- fixture ``smtp_server_auth`` -> ``SmtpServer`` on another port that requires AUTH PLAIN or
  LOGIN with ``username``/``password`` (``handoff`` / ``secret``) before MAIL FROM. AUTH is
  allowed without TLS because the server is on loopback only.

``SmtpServer`` API:

- ``host``, ``port``, ``username``/``password`` (``None`` without AUTH)
- ``messages``: accepted ``ReceivedMessage`` objects (``mail_from``, ``rcpt_tos``, raw
  ``content`` bytes exactly as received (CRLF), ``message`` parsed with
  ``email.policy.default`` after CRLF -> LF, ``auth_user``)
- ``rejections``: ``Rejection`` objects for every fault answered (stage, address, code, text)
- ``fail_next(code, message, times=1, rcpt=None, stage=None)``: answer the next ``times``
  matching commands with ``"<code> <message>"``. With ``rcpt`` the fault hits RCPT TO for that
  address only; without, it hits DATA (the whole message). ``stage`` ("mail", "rcpt", "data")
  overrides that choice.
- ``wait_for(count, timeout=5)``, ``clear()``

smtplib maps the faults to: MAIL -> ``SMTPSenderRefused``; RCPT -> ``SMTPRecipientsRefused``
when every recipient is refused (otherwise ``sendmail`` returns the refused ones); DATA ->
``SMTPDataError``. All carry ``smtp_code``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any, Literal

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from tests.support.services import free_port

Stage = Literal["mail", "rcpt", "data"]
AUTH_USERNAME = "handoff"
AUTH_PASSWORD = "secret"  # a loopback-only test server


@dataclass(frozen=True)
class ReceivedMessage:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    message: EmailMessage
    auth_user: str | None = None


@dataclass(frozen=True)
class Rejection:
    stage: Stage
    address: str | None
    code: int
    text: str


@dataclass
class _Fault:
    code: int
    message: str
    remaining: int
    stage: Stage
    rcpt: str | None


class _Handler:
    """aiosmtpd handler: runs on the controller's event-loop thread, so state is locked."""

    def __init__(self, server: SmtpServer) -> None:
        self._server = server

    async def handle_MAIL(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        fault = self._server._take_fault("mail", address)
        if fault is not None:
            return fault
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        fault = self._server._take_fault("rcpt", address)
        if fault is not None:
            return fault
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        fault = self._server._take_fault("data", None)
        if fault is not None:
            return fault
        content = envelope.original_content or b""
        if isinstance(envelope.content, bytes) and not content:
            content = envelope.content
        # `content` stays exactly as received (CRLF); the parsed view uses \n line ends, as
        # a local mail store would, so get_content() compares with ordinary Python strings.
        parsed = BytesParser(policy=policy.default).parsebytes(content.replace(b"\r\n", b"\n"))
        auth_user = session.auth_data if isinstance(session.auth_data, str) else None
        received = ReceivedMessage(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            content=content,
            message=parsed,  # type: ignore[arg-type]  # policy.default yields EmailMessage
            auth_user=auth_user,
        )
        self._server._add(received)
        return "250 Message accepted for delivery"


@dataclass(eq=False)
class SmtpServer:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    messages: list[ReceivedMessage] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    _faults: list[_Fault] = field(default_factory=list, repr=False)
    _lock: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def fail_next(
        self,
        code: int,
        message: str,
        times: int = 1,
        rcpt: str | None = None,
        stage: Stage | None = None,
    ) -> None:
        """Answer the next ``times`` matching commands with ``"<code> <message>"``.

        E.g. ``fail_next(451, "4.3.0 Try again later", times=2)`` refuses the next two
        messages at DATA; ``fail_next(550, "5.1.1 No such user", rcpt="x@example.com")``
        refuses that recipient once. Faults are consumed in the order they were queued.
        """
        if not 400 <= code <= 599:
            raise ValueError("a fault needs a 4xx or 5xx code")
        if times < 1:
            raise ValueError("times must be >= 1")
        chosen: Stage = stage or ("rcpt" if rcpt is not None else "data")
        with self._lock:
            self._faults.append(_Fault(code, message, times, chosen, rcpt))

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Wait until at least ``count`` messages arrived (for senders on other threads)."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.messages) >= count, timeout=timeout):
                raise AssertionError(
                    f"expected {count} message(s) within {timeout}s, got {len(self.messages)}"
                )
            return list(self.messages)

    def clear(self) -> None:
        """Forget received messages, rejections and pending faults."""
        with self._lock:
            self.messages.clear()
            self.rejections.clear()
            self._faults.clear()

    def _add(self, received: ReceivedMessage) -> None:
        with self._lock:
            self.messages.append(received)
            self._lock.notify_all()

    def _take_fault(self, stage: Stage, address: str | None) -> str | None:
        with self._lock:
            for fault in self._faults:
                if fault.stage != stage:
                    continue
                if fault.rcpt is not None and (address or "").lower() != fault.rcpt.lower():
                    continue
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                self.rejections.append(Rejection(stage, address, fault.code, fault.message))
                return f"{fault.code} {fault.message}"
        return None


def _authenticator(username: str, password: str) -> Callable[..., AuthResult]:
    def authenticate(
        server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == username
            and auth_data.password.decode() == password
        ):
            # auth_data becomes session.auth_data; the handler records it per message.
            return AuthResult(success=True, auth_data=username)
        return AuthResult(success=False, handled=False)

    return authenticate


def _run(*, auth: bool) -> Iterator[SmtpServer]:
    host = "127.0.0.1"
    server = SmtpServer(
        host=host,
        port=free_port(host),
        username=AUTH_USERNAME if auth else None,
        password=AUTH_PASSWORD if auth else None,
    )
    options: dict[str, Any] = {}
    if auth:
        options = {
            "authenticator": _authenticator(AUTH_USERNAME, AUTH_PASSWORD),
            "auth_required": True,
            # aiosmtpd refuses AUTH over plain text by default; this server is loopback-only.
            "auth_require_tls": False,
        }
    controller = Controller(
        _Handler(server),
        hostname=host,
        port=server.port,
        server_hostname="smtp.test",
        ready_timeout=5.0,
        # Keep the bytes exactly as received: tests assert on delivered bytes.
        decode_data=False,
        enable_SMTPUTF8=True,
        **options,
    )
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


def pytest_configure(config: pytest.Config) -> None:
    # aiosmtpd warns on every connection when AUTH is allowed without TLS; on a
    # loopback-only test server that is intended, and the warning would drown real ones.
    config.addinivalue_line(
        "filterwarnings", "ignore:Requiring AUTH while not requiring TLS:UserWarning"
    )


@pytest.fixture(scope="session")
def _smtp_session_server() -> Iterator[SmtpServer]:
    yield from _run(auth=False)


@pytest.fixture(scope="session")
def _smtp_session_server_auth() -> Iterator[SmtpServer]:
    yield from _run(auth=True)


@pytest.fixture
def smtp_server(_smtp_session_server: SmtpServer) -> Iterator[SmtpServer]:
    """The loopback SMTP server, empty and without pending faults."""
    _smtp_session_server.clear()
    yield _smtp_session_server
    _smtp_session_server.clear()


@pytest.fixture
def smtp_server_auth(_smtp_session_server_auth: SmtpServer) -> Iterator[SmtpServer]:
    """Like ``smtp_server`` but AUTH PLAIN/LOGIN with ``username``/``password`` is required."""
    _smtp_session_server_auth.clear()
    yield _smtp_session_server_auth
    _smtp_session_server_auth.clear()
