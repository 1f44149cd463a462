"""The test-support policy and guards: missing services and outside SMTP hosts."""

from __future__ import annotations

import smtplib
import socket

import pytest

from tests.support.services import (
    REQUIRE_SERVICES_ENV,
    OutsideAttempts,
    OutsideHostBlocked,
    free_port,
    is_loopback_host,
    require_service,
)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST.", True),
        ("127.0.0.1", True),
        ("127.12.0.9", True),
        ("::1", True),
        ("[::1]", True),
        ("", True),  # smtplib's default host is localhost
        ("smtp.example.com", False),
        ("10.0.0.1", False),
        ("192.168.1.10", False),
        ("::ffff:8.8.8.8", False),
        ("localhost.example.com", False),
        ("128.0.0.1", False),
    ],
)
def test_is_loopback_host_accepts_only_loopback(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_smtp_to_outside_host_is_blocked_and_recorded(no_outside_smtp: OutsideAttempts) -> None:
    with pytest.raises(OutsideHostBlocked):
        smtplib.SMTP("smtp.example.com", 25, timeout=1)

    assert no_outside_smtp.take() == ["smtp.example.com:25"]


def test_smtp_ssl_and_host_port_string_are_blocked(no_outside_smtp: OutsideAttempts) -> None:
    with pytest.raises(OutsideHostBlocked):
        smtplib.SMTP_SSL("mail.example.org", 465, timeout=1)
    with pytest.raises(OutsideHostBlocked):
        smtplib.SMTP("mail.example.org:587", timeout=1)

    assert no_outside_smtp.take() == ["mail.example.org:465", "mail.example.org:587"]


def test_swallowed_outside_attempt_still_fails_the_test(no_outside_smtp: OutsideAttempts) -> None:
    def sender_that_swallows_errors() -> bool:
        try:
            with smtplib.SMTP("relay.example.net", 587, timeout=1):
                return True
        except Exception:
            return False

    assert sender_that_swallows_errors() is False
    # What the fixture's teardown does: the recorded attempt fails the test.
    with pytest.raises(pytest.fail.Exception, match=r"relay\.example\.net:587"):
        no_outside_smtp.check()
    no_outside_smtp.take()


def test_smtp_to_loopback_reaches_the_real_connect(no_outside_smtp: OutsideAttempts) -> None:
    closed_port = free_port()  # nothing listens there, so the real connect is refused
    with pytest.raises(ConnectionRefusedError):
        smtplib.SMTP("127.0.0.1", closed_port, timeout=1)

    assert no_outside_smtp.attempts == []


def test_outside_attempts_check_passes_when_nothing_was_attempted() -> None:
    record = OutsideAttempts(kind="SMTP")
    record.check()
    record.record("smtp.example.com:25")
    assert record.take() == ["smtp.example.com:25"]
    record.check()


def test_require_service_fails_when_services_are_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(REQUIRE_SERVICES_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="dovecot"):
        require_service("dovecot", "not installed")


def test_require_service_skips_on_a_developer_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_SERVICES_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium"):
        require_service("chromium", "not installed")


def test_free_port_is_bindable_on_loopback() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        assert sock.getsockname() == ("127.0.0.1", port)
