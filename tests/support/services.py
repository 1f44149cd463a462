"""Service policy and network guards shared by every test.

Provides:

- ``require_service(name, reason)``: the policy "a missing service fails CI; it is never
  silently skipped". With ``HANDOFF_REQUIRE_SERVICES=1`` (set in CI) it calls ``pytest.fail``;
  on a developer machine it calls ``pytest.skip`` so the rest of the suite still runs.
- ``free_port(host="127.0.0.1")``: a free TCP port on a loopback address.
- ``is_loopback_host(host)``: True for 127.0.0.0/8, ``::1`` and ``localhost``.
- ``OutsideHostBlocked`` / ``OutsideAttempts``: the exception raised and the record kept when
  a test tries to reach a non-loopback host; ``OutsideAttempts.check()`` fails the test.
- autouse fixture ``no_outside_smtp``: patches ``smtplib.SMTP.connect`` (inherited by
  ``SMTP_SSL`` and used by ``LMTP``) so a connection to a non-loopback host is refused, and
  fails the test at teardown if one was attempted. A test that provokes such an attempt on
  purpose requests the fixture and consumes the record with ``no_outside_smtp.take()``.
"""

from __future__ import annotations

import ipaddress
import os
import smtplib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NoReturn

import pytest

REQUIRE_SERVICES_ENV = "HANDOFF_REQUIRE_SERVICES"


def services_required() -> bool:
    """True when a missing service must fail the run (CI) rather than skip."""
    return os.environ.get(REQUIRE_SERVICES_ENV, "") == "1"


def require_service(name: str, reason: str) -> NoReturn:
    """Fail (CI, ``HANDOFF_REQUIRE_SERVICES=1``) or skip (elsewhere) for a missing service."""
    message = f"service {name!r} unavailable: {reason}"
    if services_required():
        pytest.fail(f"{message} ({REQUIRE_SERVICES_ENV}=1, so this is an error)", pytrace=False)
    pytest.skip(f"{message} (set {REQUIRE_SERVICES_ENV}=1 to make this an error)")


def free_port(host: str = "127.0.0.1") -> int:
    """Return a currently free TCP port on ``host`` (a loopback address).

    The port is released before returning, so another process could take it in between; for
    loopback test servers started right away that race is acceptable.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1`` (with or without brackets)."""
    if not host:
        # smtplib treats an empty host as "localhost".
        return True
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class OutsideHostBlocked(RuntimeError):
    """A test tried to reach a non-loopback host.

    Deliberately not an ``OSError``/``SMTPException``: code under test that maps those to
    "retry later" must not mistake the guard for an ordinary network failure. Because code
    may still swallow it with ``except Exception``, the guard also records every attempt and
    fails the test at teardown.
    """


@dataclass
class OutsideAttempts:
    """Thread-safe record of blocked attempts to reach outside hosts."""

    kind: str
    attempts: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, target: str) -> None:
        with self._lock:
            self.attempts.append(target)

    def take(self) -> list[str]:
        """Return the recorded attempts and forget them (a test expecting them consumes them)."""
        with self._lock:
            taken, self.attempts[:] = list(self.attempts), []
        return taken

    def check(self) -> None:
        """Fail the current test if any attempt was recorded and not taken."""
        with self._lock:
            pending = list(self.attempts)
        if pending:
            pytest.fail(
                f"test tried to reach non-loopback {self.kind} host(s): {', '.join(pending)}",
                pytrace=False,
            )


@pytest.fixture(autouse=True)
def no_outside_smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[OutsideAttempts]:
    """Refuse SMTP connections to non-loopback hosts; fail the test if one was attempted."""
    record = OutsideAttempts(kind="SMTP")
    original_connect = smtplib.SMTP.connect

    def guarded_connect(
        self: smtplib.SMTP,
        host: str = "localhost",
        port: int = 0,
        source_address: tuple[str, int] | None = None,
    ) -> tuple[int, bytes]:
        # Mirror smtplib's own parsing: without a port, "host:port" is accepted in one string.
        bare = host
        if not port and host.find(":") == host.rfind(":") and ":" in host:
            bare = host.rsplit(":", 1)[0]
        if not is_loopback_host(bare):
            record.record(f"{host}:{port}" if port else host)
            raise OutsideHostBlocked(f"SMTP connection to non-loopback host {host!r} blocked")
        return original_connect(self, host, port, source_address)

    # SMTP_SSL inherits connect() from SMTP (it only overrides _get_socket), and LMTP's
    # connect() calls super().connect() for TCP hosts, so patching SMTP covers all three;
    # patch SMTP_SSL too should a future Python give it its own connect().
    monkeypatch.setattr(smtplib.SMTP, "connect", guarded_connect)
    if "connect" in vars(smtplib.SMTP_SSL):
        monkeypatch.setattr(smtplib.SMTP_SSL, "connect", guarded_connect)
    yield record
    record.check()
