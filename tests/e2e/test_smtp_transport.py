"""mail.transport against a real SMTP server (aiosmtpd): delivery, reuse, faults, secrets.

Most tests use the shared `smtp_server` fixtures. Dropped connections need a server that
misbehaves on cue, which aiosmtpd cannot be told to do; `ScriptedServer` below speaks just
enough SMTP for that and records every command and connection.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import smtplib
import socketserver
import ssl
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from aiosmtpd.controller import Controller

from mail.compose import OutgoingMail, compose
from mail.message import Address
from mail.transport import (
    DeliveryResult,
    SmtpConnection,
    SmtpError,
    SmtpSecurity,
    SmtpSettings,
    open_connection,
    parse_smtp_url,
)
from tests.support.dovecot import _self_signed_cert
from tests.support.services import OutsideAttempts, free_port
from tests.support.smtp import SmtpServer, _authenticator, _Handler

pytestmark = pytest.mark.e2e

SENDER = "support@handoff.example"
ANN = "ann@example.com"
BOB = "bob@example.com"
WRONG_PASSWORD = "Tr0ub4dor&3-not-the-password"


def settings_for(server: SmtpServer | ScriptedServer, **overrides: object) -> SmtpSettings:
    values: dict[str, object] = {
        "host": server.host,
        "port": server.port,
        "security": SmtpSecurity.PLAIN,
        "timeout": 5.0,
        "local_hostname": "handoff.test",
    }
    values.update(overrides)
    return SmtpSettings(**values)  # type: ignore[arg-type]


def message_bytes(n: int = 1, to: tuple[str, ...] = (ANN,)) -> bytes:
    return compose(
        OutgoingMail(
            from_address=SENDER,
            from_name="Dana at Handoff",
            to=tuple(Address(a, "") for a in to),
            subject=f"Re: Card declined [#{1000 + n}]",
            message_id=f"handoff.{1000 + n}.0123456789abcdef.abcdefghijklmnop@handoff.example",
            text=f"Message {n}.\n.\nA line with only a dot above: dot-stuffing must survive.\n",
            html=f"<p>Message {n}.</p>",
            loop_token="0123456789abcdef.abcdefghijklmnop",
            date=dt.datetime(2026, 11, 23, 9, 30, tzinfo=dt.UTC),
        )
    )


@pytest.fixture
def connect_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every TCP connection smtplib opens (wrapping the loopback guard, which stays active)."""
    calls: list[tuple[str, int]] = []
    original = smtplib.SMTP.connect

    def counting_connect(self: smtplib.SMTP, host: str = "localhost", port: int = 0, *a, **kw):
        calls.append((host, port))
        return original(self, host, port, *a, **kw)

    monkeypatch.setattr(smtplib.SMTP, "connect", counting_connect)
    return calls


# --- delivery -----------------------------------------------------------------------------


def test_message_arrives_byte_for_byte_with_its_envelope(smtp_server: SmtpServer) -> None:
    data = message_bytes()
    with open_connection(settings_for(smtp_server)) as connection:
        result = connection.send(envelope_from=SENDER, recipients=[ANN], data=data)
    assert result == DeliveryResult(accepted=(ANN,), refused={})
    (received,) = smtp_server.wait_for(1)
    assert received.mail_from == SENDER
    assert received.rcpt_tos == [ANN]
    assert received.content == data
    assert received.message["Subject"] == "Re: Card declined [#1001]"
    assert received.message["X-Handoff-Loop"] == "0123456789abcdef.abcdefghijklmnop"
    assert received.message["Message-ID"] == (
        "<handoff.1001.0123456789abcdef.abcdefghijklmnop@handoff.example>"
    )
    text = received.message.get_body(("plain",))
    assert text is not None and "\n.\nA line with only a dot" in text.get_content()


def test_one_connection_serves_many_messages(
    smtp_server: SmtpServer, connect_calls: list[tuple[str, int]]
) -> None:
    with open_connection(settings_for(smtp_server)) as connection:
        for n in range(5):
            connection.send(envelope_from=SENDER, recipients=[ANN], data=message_bytes(n))
    assert len(smtp_server.wait_for(5)) == 5
    assert connect_calls == [(smtp_server.host, smtp_server.port)]


def test_null_reverse_path_is_sent_as_empty_envelope_sender(smtp_server: SmtpServer) -> None:
    with open_connection(settings_for(smtp_server)) as connection:
        connection.send(envelope_from="", recipients=[ANN], data=message_bytes())
    (received,) = smtp_server.wait_for(1)
    assert received.mail_from in ("", "<>")


def test_internationalised_recipient_is_sent_with_smtputf8(smtp_server: SmtpServer) -> None:
    data = message_bytes(to=("jörg@example.com",))
    with open_connection(settings_for(smtp_server)) as connection:
        result = connection.send(envelope_from=SENDER, recipients=["jörg@example.com"], data=data)
    assert result.accepted == ("jörg@example.com",)
    (received,) = smtp_server.wait_for(1)
    assert received.rcpt_tos == ["jörg@example.com"]
    assert received.content == data


def test_envelope_addresses_that_could_smuggle_commands_are_refused(
    smtp_server: SmtpServer,
) -> None:
    with open_connection(settings_for(smtp_server)) as connection:
        for bad in (f"{ANN}>\r\nRCPT TO:<x@evil.example", f"{ANN}, {BOB}", "Ann <ann@x>", ""):
            with pytest.raises(ValueError):
                connection.send(envelope_from=SENDER, recipients=[bad], data=message_bytes())
        with pytest.raises(ValueError):
            connection.send(envelope_from=SENDER, recipients=[], data=message_bytes())
        with pytest.raises(ValueError):
            connection.send(envelope_from="a@b\r\nDATA", recipients=[ANN], data=message_bytes())
        connection.send(envelope_from=SENDER, recipients=[ANN], data=message_bytes())
    assert len(smtp_server.wait_for(1)) == 1
    assert smtp_server.messages[0].rcpt_tos == [ANN]


# --- refusals -----------------------------------------------------------------------------


def test_temporary_refusals_are_errors_and_a_later_attempt_succeeds(
    smtp_server: SmtpServer, connect_calls: list[tuple[str, int]]
) -> None:
    smtp_server.fail_next(451, "4.3.0 Try again later", times=2)
    with open_connection(settings_for(smtp_server)) as connection:
        for _attempt in range(2):
            with pytest.raises(SmtpError) as caught:
                connection.send(envelope_from=SENDER, recipients=[ANN], data=message_bytes())
            assert caught.value.code == 451
            assert caught.value.is_permanent is False
            assert "4.3.0 Try again later" in caught.value.message
        result = connection.send(envelope_from=SENDER, recipients=[ANN], data=message_bytes())
    assert result.accepted == (ANN,)
    assert len(smtp_server.wait_for(1)) == 1
    assert len(connect_calls) == 1  # RSET kept the session usable


def test_a_refused_recipient_is_reported_and_the_others_get_the_message(
    smtp_server: SmtpServer,
) -> None:
    refused = "x@example.com"
    smtp_server.fail_next(550, "5.1.1 No such user", rcpt=refused)
    with open_connection(settings_for(smtp_server)) as connection:
        result = connection.send(
            envelope_from=SENDER, recipients=[ANN, refused, BOB], data=message_bytes()
        )
    assert result.accepted == (ANN, BOB)
    assert result.refused == {refused: (550, "5.1.1 No such user")}
    (received,) = smtp_server.wait_for(1)
    assert received.rcpt_tos == [ANN, BOB]


def test_a_temporarily_refused_recipient_keeps_its_4xx_code(smtp_server: SmtpServer) -> None:
    smtp_server.fail_next(452, "4.2.2 Mailbox full", rcpt=BOB)
    with open_connection(settings_for(smtp_server)) as connection:
        result = connection.send(envelope_from=SENDER, recipients=[ANN, BOB], data=message_bytes())
    assert result.refused == {BOB: (452, "4.2.2 Mailbox full")}
    assert smtp_server.wait_for(1)[0].rcpt_tos == [ANN]


def test_every_recipient_refused_permanently_is_a_permanent_error(
    smtp_server: SmtpServer, connect_calls: list[tuple[str, int]]
) -> None:
    smtp_server.fail_next(550, "5.1.1 No such user", rcpt=ANN)
    smtp_server.fail_next(553, "5.1.3 Bad address", rcpt=BOB)
    with open_connection(settings_for(smtp_server)) as connection:
        with pytest.raises(SmtpError) as caught:
            connection.send(envelope_from=SENDER, recipients=[ANN, BOB], data=message_bytes())
        assert caught.value.is_permanent is True
        assert caught.value.code == 550
        assert ANN in caught.value.message and "5.1.3 Bad address" in caught.value.message
        # The transaction was reset: the same session takes the next message.
        connection.send(envelope_from=SENDER, recipients=[ANN], data=message_bytes())
    assert [m.rcpt_tos for m in smtp_server.wait_for(1)] == [[ANN]]
    assert len(connect_calls) == 1


def test_every_recipient_refused_but_one_temporarily_is_a_temporary_error(
    smtp_server: SmtpServer,
) -> None:
    smtp_server.fail_next(550, "5.1.1 No such user", rcpt=ANN)
    smtp_server.fail_next(450, "4.2.1 Try later", rcpt=BOB)
    with (
        open_connection(settings_for(smtp_server)) as connection,
        pytest.raises(SmtpError) as caught,
    ):
        connection.send(envelope_from=SENDER, recipients=[ANN, BOB], data=message_bytes())
    assert caught.value.is_permanent is False
    assert caught.value.code == 450
    assert smtp_server.messages == []


@pytest.mark.parametrize(
    ("stage", "code", "is_permanent"),
    [("mail", 451, False), ("mail", 550, True), ("data", 452, False), ("data", 554, True)],
)
def test_refusal_at_mail_or_data_is_permanent_only_for_5xx(
    smtp_server: SmtpServer, stage: str, code: int, is_permanent: bool
) -> None:
    smtp_server.fail_next(code, "refused for the test", stage=stage)  # type: ignore[arg-type]
    with open_connection(settings_for(smtp_server)) as connection:
        with pytest.raises(SmtpError) as caught:
            connection.send(envelope_from=SENDER, recipients=[ANN], data=message_bytes())
        assert (caught.value.code, caught.value.is_permanent) == (code, is_permanent)
        assert caught.value.kind == "refused"
        assert f"{code} refused for the test" in caught.value.message
        connection.send(envelope_from=SENDER, recipients=[ANN], data=message_bytes())
    assert len(smtp_server.wait_for(1)) == 1


def test_421_at_data_is_temporary_and_the_next_send_reconnects(
    smtp_server: SmtpServer, connect_calls: list[tuple[str, int]]
) -> None:
    smtp_server.fail_next(421, "4.3.2 Shutting down")
    with open_connection(settings_for(smtp_server)) as connection:
        with pytest.raises(SmtpError) as caught:
            connection.send(envelope_from=SENDER, recipients=[ANN], data=message_bytes())
        assert (caught.value.code, caught.value.is_permanent) == (421, False)
        connection.send(envelope_from=SENDER, recipients=[ANN], data=message_bytes())
    assert len(smtp_server.wait_for(1)) == 1
    assert len(connect_calls) == 2


def test_login_required_by_the_server_is_not_the_messages_fault(
    smtp_server_auth: SmtpServer,
) -> None:
    with (
        open_connection(settings_for(smtp_server_auth)) as connection,
        pytest.raises(SmtpError) as caught,
    ):
        connection.send(envelope_from=SENDER, recipients=[ANN], data=message_bytes())
    assert caught.value.code == 530
    assert caught.value.kind == "auth"
    assert caught.value.is_permanent is False
    assert "requires a login" in caught.value.message


def test_421_at_mail_on_a_used_connection_reconnects_transparently(
    smtp_server: SmtpServer, connect_calls: list[tuple[str, int]]
) -> None:
    # What a server that timed out an idle session answers before it hangs up.
    with open_connection(settings_for(smtp_server)) as connection:
        connection.send(envelope_from=SENDER, recipients=[ANN], data=message_bytes(1))
        smtp_server.fail_next(421, "4.4.2 Idle timeout", stage="mail")
        result = connection.send(envelope_from=SENDER, recipients=[ANN], data=message_bytes(2))
    assert result.accepted == (ANN,)
    assert len(smtp_server.wait_for(2)) == 2
    assert len(connect_calls) == 2


def test_421_at_mail_on_a_fresh_connection_is_a_temporary_error(
    smtp_server: SmtpServer, connect_calls: list[tuple[str, int]]
) -> None:
    smtp_server.fail_next(421, "4.3.2 Busy", stage="mail", times=2)
    with open_connection(settings_for(smtp_server)) as connection:
        with pytest.raises(SmtpError) as caught:
            connection.send(envelope_from=SENDER, recipients=[ANN], data=message_bytes())
        assert (caught.value.code, caught.value.is_permanent) == (421, False)
        assert len(connect_calls) == 1  # no reconnect: nothing had been sent on this session
        with pytest.raises(SmtpError):
            connection.send(envelope_from=SENDER, recipients=[ANN], data=message_bytes())
        connection.send(envelope_from=SENDER, recipients=[ANN], data=message_bytes())
    assert len(smtp_server.wait_for(1)) == 1
    assert len(connect_calls) == 3


# --- dropped connections --------------------------------------------------------------------


@dataclass
class ScriptedServer:
    """A loopback SMTP server that drops connections on cue (aiosmtpd cannot).

    - `close_after_message`: hang up right after accepting each message (an idle timeout).
    - `drop_in_data`: this many upcoming messages are cut off after their data, unanswered.
    - `greet`: False accepts connections but never says hello (a hung server).
    - `data_command_replies`: answers to the next DATA commands instead of 354.
    """

    host: str = "127.0.0.1"
    port: int = 0
    close_after_message: bool = False
    drop_in_data: int = 0
    greet: bool = True
    data_command_replies: list[str] = field(default_factory=list)
    connections: int = 0
    commands: list[str] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _ScriptedHandler(socketserver.StreamRequestHandler):
    server: _ScriptedTCPServer

    def handle(self) -> None:
        script = self.server.script
        with script.lock:
            script.connections += 1
        if not script.greet:
            self.rfile.read()  # until the client gives up
            return
        self.reply("220 scripted.test ESMTP")
        while line := self.rfile.readline():
            command = line.decode("utf-8", "replace").rstrip("\r\n")
            with script.lock:
                script.commands.append(command)
            verb = command.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self.reply("250-scripted.test\r\n250-SIZE 10000000\r\n250 8BITMIME")
            elif verb in ("HELO", "MAIL", "RCPT", "RSET", "NOOP"):
                self.reply("250 OK")
            elif verb == "DATA":
                with script.lock:
                    refusal = (
                        script.data_command_replies.pop(0) if script.data_command_replies else None
                    )
                if refusal:
                    self.reply(refusal)
                    continue
                self.reply("354 Go ahead")
                data = b"".join(iter(self.rfile.readline, b".\r\n"))
                with script.lock:
                    drop = script.drop_in_data > 0
                    script.drop_in_data -= drop
                if drop:
                    return  # hang up without answering: did the message arrive? unknown
                with script.lock:
                    script.messages.append(data)
                self.reply("250 Queued")
                if script.close_after_message:
                    return
            elif verb == "QUIT":
                self.reply("221 Bye")
                return
            else:
                self.reply("502 Not implemented")

    def reply(self, text: str) -> None:
        self.wfile.write(text.encode() + b"\r\n")


class _ScriptedTCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    script: ScriptedServer


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    script = ScriptedServer()
    server = _ScriptedTCPServer((script.host, 0), _ScriptedHandler)
    server.script = script
    script.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield script
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_an_idle_connection_the_server_closed_is_reopened_transparently(
    scripted_server: ScriptedServer,
) -> None:
    scripted_server.close_after_message = True
    with open_connection(settings_for(scripted_server)) as connection:
        for n in range(3):
            result = connection.send(envelope_from=SENDER, recipients=[ANN], data=message_bytes(n))
            assert result.accepted == (ANN,)
    assert len(scripted_server.messages) == 3
    assert scripted_server.connections == 3


def test_a_connection_dropped_during_data_is_a_temporary_error(
    scripted_server: ScriptedServer,
) -> None:
    scripted_server.drop_in_data = 1
    with open_connection(settings_for(scripted_server)) as connection:
        with pytest.raises(SmtpError) as caught:
            connection.send(envelope_from=SENDER, recipients=[ANN], data=message_bytes())
        assert caught.value.is_permanent is False
        assert caught.value.kind == "connect"
        assert caught.value.code is None
        assert "was closed while sending the message" in caught.value.message
        # Not retried behind the caller's back (the server may have kept it): one attempt
        # so far; the caller's next send opens a new session.
        assert scripted_server.connections == 1
        connection.send(envelope_from=SENDER, recipients=[ANN], data=message_bytes())
    assert scripted_server.connections == 2
    assert len(scripted_server.messages) == 1


@pytest.mark.parametrize(
    ("reply", "is_permanent"), [("554 5.5.1 No valid recipients", True), ("451 4.3.0 Busy", False)]
)
def test_a_refused_data_command_is_classified_and_the_session_reset(
    scripted_server: ScriptedServer, reply: str, is_permanent: bool
) -> None:
    scripted_server.data_command_replies.append(reply)
    with open_connection(settings_for(scripted_server)) as connection:
        with pytest.raises(SmtpError) as caught:
            connection.send(envelope_from=SENDER, recipients=[ANN], data=message_bytes())
        assert caught.value.code == int(reply[:3])
        assert caught.value.is_permanent is is_permanent
        assert reply in caught.value.message
        connection.send(envelope_from=SENDER, recipients=[ANN], data=message_bytes())
    assert "RSET" in [c.upper() for c in scripted_server.commands]
    assert scripted_server.connections == 1
    assert len(scripted_server.messages) == 1


def test_plain_ascii_mail_does_not_ask_for_smtputf8(scripted_server: ScriptedServer) -> None:
    data = message_bytes()
    with open_connection(settings_for(scripted_server)) as connection:
        connection.send(envelope_from=SENDER, recipients=[ANN], data=data)
    mail_from = next(c for c in scripted_server.commands if c.upper().startswith("MAIL"))
    # smtplib spells the verb in lower case; SMTP verbs are case-insensitive.
    assert mail_from.upper() == f"MAIL FROM:<{SENDER}> SIZE={len(data)}".upper()
    assert "SMTPUTF8" not in mail_from.upper() and "8BITMIME" not in mail_from.upper()


def test_a_server_that_never_greets_times_out_as_a_temporary_error(
    scripted_server: ScriptedServer,
) -> None:
    scripted_server.greet = False
    with pytest.raises(SmtpError) as caught:
        open_connection(settings_for(scripted_server, timeout=0.5))
    assert caught.value.is_permanent is False
    assert caught.value.kind == "connect"
    assert "timed out after 0.5s" in caught.value.message


def test_nothing_listening_is_a_temporary_error() -> None:
    port = free_port()
    settings = SmtpSettings(host="127.0.0.1", port=port, security=SmtpSecurity.PLAIN, timeout=5)
    with pytest.raises(SmtpError) as caught:
        open_connection(settings)
    assert caught.value.is_permanent is False
    assert caught.value.kind == "connect"
    assert caught.value.message == (
        f"connection refused by SMTP server 127.0.0.1:{port}: is it running on that port?"
    )


# --- login and TLS ------------------------------------------------------------------------


def test_login_with_the_right_password_delivers_as_that_user(smtp_server_auth: SmtpServer) -> None:
    settings = settings_for(
        smtp_server_auth, username=smtp_server_auth.username, password=smtp_server_auth.password
    )
    with open_connection(settings) as connection:
        connection.send(envelope_from=SENDER, recipients=[ANN], data=message_bytes())
    (received,) = smtp_server_auth.wait_for(1)
    assert received.auth_user == "handoff"


def test_a_refused_login_is_explained_without_the_password(
    smtp_server_auth: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = settings_for(
        smtp_server_auth, username=smtp_server_auth.username, password=WRONG_PASSWORD
    )
    with pytest.raises(SmtpError) as caught:
        open_connection(settings)
    error = caught.value
    logging.getLogger("test").exception("sending failed", exc_info=error)
    assert error.kind == "auth"
    assert error.is_permanent is False
    assert error.code == 535
    assert error.message.startswith(
        f"SMTP server 127.0.0.1:{smtp_server_auth.port} refused the login for user handoff"
    )
    assert error.__cause__ is None and error.__context__ is None
    shown = "\n".join(
        [str(error), repr(error), "".join(traceback.format_exception(error)), repr(settings)]
    )
    shown += caplog.text
    for secret in secret_forms("handoff", WRONG_PASSWORD):
        assert secret not in shown


def test_a_non_ascii_password_fails_without_leaking_it(smtp_server_auth: SmtpServer) -> None:
    password = "pässwörd-geheim"
    settings = settings_for(smtp_server_auth, username="handoff", password=password)
    with pytest.raises(SmtpError) as caught:
        open_connection(settings)
    error = caught.value
    assert error.kind == "auth" and "only ASCII" in error.message
    assert error.__context__ is None and error.__cause__ is None
    shown = str(error) + repr(error) + "".join(traceback.format_exception(error))
    assert password not in shown


def secret_forms(user: str, password: str) -> list[str]:
    """The password and every base64 AUTH payload that carries it (PLAIN and LOGIN)."""
    return [
        password,
        base64.b64encode(password.encode()).decode(),
        base64.b64encode(f"\0{user}\0{password}".encode()).decode(),
    ]


def test_password_is_never_sent_in_plain_text_to_another_host(
    no_outside_smtp: OutsideAttempts,
) -> None:
    settings = SmtpSettings(
        host="smtp.example.com",
        port=25,
        security=SmtpSecurity.PLAIN,
        username="handoff",
        password=WRONG_PASSWORD,
    )
    with pytest.raises(SmtpError) as caught:
        open_connection(settings)
    assert caught.value.kind == "config"
    assert "smtp+starttls://" in caught.value.message
    assert WRONG_PASSWORD not in str(caught.value)
    assert no_outside_smtp.take() == []  # refused before any connection


def test_starttls_not_offered_is_an_error_never_a_plaintext_login(
    smtp_server_auth: SmtpServer, connect_calls: list[tuple[str, int]]
) -> None:
    settings = settings_for(
        smtp_server_auth,
        security=SmtpSecurity.STARTTLS,
        username="handoff",
        password=smtp_server_auth.password,
    )
    with pytest.raises(SmtpError) as caught:
        open_connection(settings)
    assert caught.value.kind == "tls"
    assert caught.value.is_permanent is False
    assert "does not offer STARTTLS, so nothing was sent" in caught.value.message
    assert len(connect_calls) == 1
    assert smtp_server_auth.messages == []


def test_implicit_tls_against_a_plain_server_fails_in_words(smtp_server: SmtpServer) -> None:
    with pytest.raises(SmtpError) as caught:
        open_connection(settings_for(smtp_server, security=SmtpSecurity.TLS))
    assert caught.value.kind in ("tls", "connect")
    assert caught.value.is_permanent is False
    assert f"127.0.0.1:{smtp_server.port}" in caught.value.message


def test_closing_twice_and_sending_after_close_reconnects(smtp_server: SmtpServer) -> None:
    connection = open_connection(settings_for(smtp_server))
    assert isinstance(connection, SmtpConnection)
    connection.close()
    connection.close()
    connection.send(envelope_from=SENDER, recipients=[ANN], data=message_bytes())
    connection.close()
    assert len(smtp_server.wait_for(1)) == 1


# --- settings from a URL ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com", ("mail.example.com", 25, SmtpSecurity.PLAIN, None, None)),
        ("smtp://127.0.0.1:2525", ("127.0.0.1", 2525, SmtpSecurity.PLAIN, None, None)),
        (
            "smtp+starttls://ann:secret@mail.example.com",
            ("mail.example.com", 587, SmtpSecurity.STARTTLS, "ann", "secret"),
        ),
        (
            "smtps://ann%40example.com:p%40ss%3Aw%2Fo%23rd%25@mail.example.com",
            ("mail.example.com", 465, SmtpSecurity.TLS, "ann@example.com", "p@ss:w/o#rd%"),
        ),
        (
            "SMTPS://user:pw@[::1]:1465/",
            ("::1", 1465, SmtpSecurity.TLS, "user", "pw"),
        ),
        ("smtp://user@localhost:25", ("localhost", 25, SmtpSecurity.PLAIN, "user", None)),
        (
            "smtp+starttls://u:caf%C3%A9@mail.example.com:2587",
            ("mail.example.com", 2587, SmtpSecurity.STARTTLS, "u", "café"),
        ),
    ],
)
def test_smtp_urls_are_parsed_with_default_ports_and_decoded_credentials(
    url: str, expected: tuple[object, ...]
) -> None:
    settings = parse_smtp_url(url)
    assert (
        settings.host,
        settings.port,
        settings.security,
        settings.username,
        settings.password,
    ) == expected
    if settings.password:
        assert settings.password not in repr(settings)


@pytest.mark.parametrize(
    "url",
    [
        "mail.example.com",
        "http://user:S3cr3t-pw@mail.example.com",
        "smtp://user:S3cr3t-pw@mail.example.com:notaport",
        "smtp://user:S3cr3t-pw@mail.example.com:99999",
        "smtp://user:S3cr3t/pw@mail.example.com",  # an unencoded "/" in the password
        "smtp://user:S3cr3t#pw@mail.example.com",  # an unencoded "#"
        "smtp://user:S3cr3t-pw@",
        "smtp://:S3cr3t-pw@mail.example.com",
        "smtp://user:S3cr3t-pw@mail.example.com/path",
        "smtp://user:S3cr3t-pw@mail.example.com?x=1",
        "",
    ],
)
def test_a_bad_smtp_url_is_refused_without_echoing_the_password(url: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_smtp_url(url)
    shown = str(caught.value) + "".join(traceback.format_exception(caught.value))
    for fragment in ("S3cr3t", "pw@"):
        assert fragment not in shown
    assert "HANDOFF_SMTP_URL" in str(caught.value)


def test_settings_repr_hides_the_password() -> None:
    settings = parse_smtp_url("smtps://handoff:Very-Secret@mail.example.com")
    assert "Very-Secret" not in repr(settings)
    assert settings.where == "mail.example.com:465"


# --- real TLS (test-local aiosmtpd with a self-signed certificate) --------------------------


@dataclass
class TlsServers:
    starttls: SmtpServer  # STARTTLS required before AUTH and MAIL
    implicit: SmtpServer  # TLS from the first byte
    client_context: ssl.SSLContext  # trusts exactly the test certificate


@pytest.fixture(scope="module")
def tls_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServers]:
    cert = _self_signed_cert(tmp_path_factory.mktemp("smtp-tls"))
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, cert.with_suffix(".key"))
    host = "127.0.0.1"
    servers = {
        kind: SmtpServer(host=host, port=free_port(host), username="handoff", password="secret")
        for kind in ("starttls", "implicit")
    }
    common = {
        "hostname": host,
        "server_hostname": "smtp.test",
        "ready_timeout": 5.0,
        "decode_data": False,
        "authenticator": _authenticator("handoff", "secret"),
        "auth_required": True,
    }
    controllers = [
        Controller(
            _Handler(servers["starttls"]),
            port=servers["starttls"].port,
            tls_context=server_context,
            require_starttls=True,
            **common,
        ),
        Controller(
            _Handler(servers["implicit"]),
            port=servers["implicit"].port,
            ssl_context=server_context,
            # aiosmtpd only recognises TLS started by STARTTLS; this whole session is TLS.
            auth_require_tls=False,
            **common,
        ),
    ]
    started = []
    try:
        for controller in controllers:
            controller.start()
            started.append(controller)
        yield TlsServers(
            starttls=servers["starttls"],
            implicit=servers["implicit"],
            client_context=ssl.create_default_context(cafile=str(cert)),
        )
    finally:
        for controller in started:
            controller.stop()


@pytest.mark.parametrize("security", [SmtpSecurity.STARTTLS, SmtpSecurity.TLS])
def test_login_and_delivery_over_tls(tls_servers: TlsServers, security: SmtpSecurity) -> None:
    server = tls_servers.starttls if security is SmtpSecurity.STARTTLS else tls_servers.implicit
    server.clear()
    settings = settings_for(
        server,
        security=security,
        username="handoff",
        password="secret",
        ssl_context=tls_servers.client_context,
    )
    data = message_bytes()
    with open_connection(settings) as connection:
        connection.send(envelope_from=SENDER, recipients=[ANN], data=data)
    (received,) = server.wait_for(1)
    assert received.auth_user == "handoff"
    assert received.content == data


@pytest.mark.parametrize("security", [SmtpSecurity.STARTTLS, SmtpSecurity.TLS])
def test_an_untrusted_certificate_stops_before_the_login(
    tls_servers: TlsServers, security: SmtpSecurity
) -> None:
    server = tls_servers.starttls if security is SmtpSecurity.STARTTLS else tls_servers.implicit
    settings = settings_for(server, security=security, username="handoff", password="secret")
    with pytest.raises(SmtpError) as caught:
        open_connection(settings)  # the default context does not trust the test certificate
    assert caught.value.kind == "tls"
    assert caught.value.is_permanent is False
    assert "certificate" in caught.value.message and "could not be verified" in caught.value.message
