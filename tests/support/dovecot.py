"""A real Dovecot IMAP server for end-to-end tests.

Provides:

- session fixture ``imap_server`` -> ``ImapServer``: plain IMAP (LOGIN allowed without TLS) on
  a free port of 127.0.0.1, with users ``support@example.com``, ``sales@example.com`` and
  ``billing@example.com`` (password ``secret``), Maildir storage and the special-use folders
  Archive, Sent, Trash and Junk.
- function fixture ``imap_mailbox`` -> the same ``ImapServer`` after ``reset()``: every user
  has an empty INBOX and only the default folders (use it, or
  ``pytestmark = pytest.mark.usefixtures("imap_mailbox")``, for per-test isolation).
- session fixture ``imap_server_tls`` -> ``ImapServer`` with ``tls=True``: a second instance
  with ``ssl = required`` and a self-signed certificate (localhost, 127.0.0.1, 127.0.0.2) made
  in the fixture, listening on 127.0.0.2. ``port`` speaks implicit TLS (imaps);
  ``starttls_port`` is a plain port where LOGIN is refused until STARTTLS (LOGINDISABLED).
  ``cert_path`` is the PEM to trust; ``ssl_context()`` builds a client context trusting it.

Each instance gets its own config, ``base_dir``, ``state_dir``, log and mail under a temp dir,
and is stopped by the pid in ``<base_dir>/master.pid``; leftover children are killed. When
``/usr/sbin/dovecot`` is missing, ``require_service`` skips or (in CI) fails.

The settings follow /work/shared/recipes/dovecot.md (facts checked for Dovecot 2.3 run as root).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import pytest
from imapclient import IMAPClient

from tests.support.services import free_port, require_service

DOVECOT_BIN = "/usr/sbin/dovecot"
PASSWORD = "secret"
USERS: Mapping[str, str] = MappingProxyType(
    {
        "support@example.com": PASSWORD,
        "sales@example.com": PASSWORD,
        "billing@example.com": PASSWORD,
    }
)
# Folders Dovecot creates for every user (``auto = create``); reset() keeps them.
DEFAULT_FOLDERS = ("INBOX", "Archive", "Sent", "Trash", "Junk")
PLAIN_ADDRESS = "127.0.0.1"
TLS_ADDRESS = "127.0.0.2"
START_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0

_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]", re.IGNORECASE)


@dataclass(frozen=True)
class ImapServer:
    """A running Dovecot instance and helpers that drive it over IMAP (via imapclient).

    Every helper opens its own short connection, so it never disturbs a connection held by
    the code under test (beyond what a second real client would do).
    """

    host: str
    port: int
    users: Mapping[str, str]
    mail_root: Path = field(repr=False)
    tls: bool = False
    starttls_port: int | None = None
    cert_path: Path | None = None

    # -- connections -------------------------------------------------------------------
    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts exactly this server's self-signed certificate."""
        if self.cert_path is None:
            raise RuntimeError("this ImapServer has no TLS certificate")
        return ssl.create_default_context(cafile=str(self.cert_path))

    @contextlib.contextmanager
    def connect(self, user: str | None = None, *, timeout: float = 10) -> Iterator[IMAPClient]:
        """An IMAPClient connected (and, given ``user``, logged in); logged out afterwards."""
        client = IMAPClient(
            self.host,
            port=self.port,
            ssl=self.tls,
            ssl_context=self.ssl_context() if self.tls else None,
            timeout=timeout,
        )
        try:
            if user is not None:
                client.login(user, self.users[user])
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    # -- messages ----------------------------------------------------------------------
    def append(
        self,
        user: str,
        raw: bytes,
        folder: str = "INBOX",
        flags: Iterable[str | bytes] = (),
        msg_time: dt.datetime | None = None,
    ) -> int:
        """APPEND ``raw`` to ``folder`` and return its UID (from the APPENDUID response)."""
        with self.connect(user) as client:
            response = client.append(folder, raw, flags=tuple(flags), msg_time=msg_time)
        match = _APPENDUID.search(response)
        if match is None:
            raise AssertionError(f"APPEND response without APPENDUID: {response!r}")
        return int(match.group(2))

    def uids(self, user: str, folder: str = "INBOX", criteria: str | list = "ALL") -> list[int]:
        """UIDs matching an IMAP SEARCH ``criteria`` (e.g. ``"UNSEEN"``), ascending."""
        with self.connect(user) as client:
            client.select_folder(folder, readonly=True)
            return sorted(int(uid) for uid in client.search(criteria))

    def flags(self, user: str, uid: int, folder: str = "INBOX") -> frozenset[str]:
        """The flags of one message, as strings such as ``"\\\\Seen"``."""
        with self.connect(user) as client:
            client.select_folder(folder, readonly=True)
            found = client.get_flags([uid])
        if uid not in found:
            raise KeyError(f"no UID {uid} in {user}/{folder}")
        return frozenset(f.decode() if isinstance(f, bytes) else str(f) for f in found[uid])

    def fetch_raw(self, user: str, uid: int, folder: str = "INBOX") -> bytes:
        """The full RFC 5322 bytes of one message (BODY.PEEK[], so \\Seen is not set)."""
        with self.connect(user) as client:
            client.select_folder(folder, readonly=True)
            found = client.fetch([uid], ["BODY.PEEK[]"])
        if uid not in found:
            raise KeyError(f"no UID {uid} in {user}/{folder}")
        return bytes(found[uid][b"BODY[]"])

    # -- folders -----------------------------------------------------------------------
    def uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        with self.connect(user) as client:
            return int(client.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"])

    def folders(self, user: str) -> list[str]:
        with self.connect(user) as client:
            return [name for _flags, _sep, name in client.list_folders()]

    def create_folder(self, user: str, folder: str) -> None:
        with self.connect(user) as client:
            client.create_folder(folder)

    def clear(self, user: str, folder: str = "INBOX") -> None:
        """Expunge every message in ``folder``."""
        with self.connect(user) as client:
            client.select_folder(folder)
            uids = client.search("ALL")
            if uids:
                client.delete_messages(uids)
                client.expunge()

    def recreate_folder(self, user: str, folder: str) -> None:
        """Leave ``folder`` empty with a new UIDVALIDITY, as if deleted and recreated.

        Ordinary folders are DELETEd and CREATEd over IMAP. INBOX cannot be deleted, so it is
        emptied and its UID state reset on disk (see ``reset_uidvalidity``).
        """
        if folder.upper() == "INBOX":
            self.clear(user, folder)
            self.reset_uidvalidity(user, folder)
            return
        with self.connect(user) as client:
            client.delete_folder(folder)
            client.create_folder(folder)

    def reset_uidvalidity(self, user: str, folder: str = "INBOX") -> None:
        """Give ``folder`` a new UIDVALIDITY while keeping its messages (which get new UIDs).

        This is what a client sees when a server rebuilds its index: same messages, new UIDs,
        new UIDVALIDITY. Dovecot keeps a Maildir folder's UIDs in ``dovecot-uidlist`` and its
        index in ``dovecot.index*``; with both removed, the next access rescans cur/ and new/,
        numbers the messages from 1 and takes a fresh UIDVALIDITY from the per-user
        ``dovecot-uidvalidity`` counter, which only ever grows (so even two resets in the same
        second give different values). Safe here because each IMAP session runs in its own
        short-lived ``imap`` process; a connection held open across the reset keeps a stale
        view, as it would on a real server.
        """
        folder_dir = self._maildir(user, folder)
        if not (folder_dir / "cur").is_dir():
            raise FileNotFoundError(f"no Maildir folder {folder!r} for {user} at {folder_dir}")
        for path in folder_dir.iterdir():
            if path.name == "dovecot-uidlist" or path.name.startswith("dovecot.index"):
                path.unlink()

    def reset(self, users: Iterable[str] | None = None) -> None:
        """Empty the default folders and delete every other folder, for each user."""
        for user in self.users if users is None else users:
            with self.connect(user) as client:
                extra = [
                    name
                    for flags, _sep, name in client.list_folders()
                    if name not in DEFAULT_FOLDERS
                    and not {b"\\Noselect", b"\\NonExistent"} & set(flags)
                ]
                # Children first: "A/B" before "A" (a parent left without children vanishes).
                for name in sorted(extra, key=lambda n: (-n.count("/"), n)):
                    client.delete_folder(name)
                for name in DEFAULT_FOLDERS:
                    client.select_folder(name)
                    uids = client.search("ALL")
                    if uids:
                        client.delete_messages(uids)
                        client.expunge()

    def _maildir(self, user: str, folder: str) -> Path:
        root = self.mail_root / user / "Maildir"
        if folder.upper() == "INBOX":
            return root
        # Maildir++ layout: "Projects/2024" (IMAP separator "/") is stored as ".Projects.2024".
        return root / ("." + folder.replace("/", "."))


# -- process management ------------------------------------------------------------------


@dataclass
class _Instance:
    root: Path
    config: Path
    base_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None


def _config(
    root: Path,
    address: str,
    imap_port: int,
    *,
    tls_port: int | None = None,
    cert: Path | None = None,
) -> str:
    mail_root = root / "mail"
    lines = [
        # One independent instance per fixture: everything it writes stays under `root`.
        f"base_dir = {root / 'run'}",
        f"state_dir = {root / 'state'}",
        f"log_path = {root / 'dovecot.log'}",
        f"instance_name = handoff-test-{root.name}",
        "protocols = imap",
        f"listen = {address}",
        # imap-login refuses to run as root; auth and other internal services need a user too.
        "default_login_user = dovenull",
        "default_internal_user = dovecot",
        "default_internal_group = dovecot",
        # A userdb uid of 0 is refused: all mail belongs to the dovecot system user.
        "first_valid_uid = 100",
        "auth_mechanisms = plain login",
        "auth_verbose = yes",
        # Dovecot answers a failed login only after 2 s by default; tests of wrong
        # passwords should not wait for that (about 0.5 s remains with 0).
        "auth_failure_delay = 0",
        # After a failed login Dovecot's auth penalty (kept by anvil, per client IP) delays
        # every later login from that IP by 2, 4, ... 15 s, which would leak from one test
        # into the next. auth treats a missing anvil-auth-penalty socket as "penalty off",
        # and mode 0 disables the listener.
        "service anvil {\n  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n}",
        "passdb {",
        "  driver = passwd-file",
        f"  args = scheme=PLAIN username_format=%u {root / 'users'}",
        "}",
        "userdb {",
        "  driver = static",
        f"  args = uid=dovecot gid=dovecot home={mail_root}/%u",
        "}",
        "mail_location = maildir:~/Maildir",
        "namespace inbox {",
        "  inbox = yes",
        "  separator = /",
        "  mailbox Archive {\n    auto = create\n    special_use = \\Archive\n  }",
        "  mailbox Sent {\n    auto = create\n    special_use = \\Sent\n  }",
        "  mailbox Trash {\n    auto = create\n    special_use = \\Trash\n  }",
        "  mailbox Junk {\n    auto = create\n    special_use = \\Junk\n  }",
        "}",
        # Tests, helpers and the app may hold several connections per user from 127.0.0.1.
        "protocol imap {\n  mail_max_userip_connections = 100\n}",
    ]
    if cert is None:
        lines += [
            # Plain-text LOGIN on loopback, no TLS at all.
            "ssl = no",
            "disable_plaintext_auth = no",
            "service imap-login {",
            f"  inet_listener imap {{\n    address = {address}\n    port = {imap_port}\n  }}",
            "  inet_listener imaps {\n    port = 0\n  }",
            "}",
        ]
    else:
        lines += [
            # TLS mandatory: LOGIN/AUTHENTICATE are refused until the connection is encrypted.
            "ssl = required",
            "disable_plaintext_auth = yes",
            f"ssl_cert = <{cert}",
            f"ssl_key = <{cert.with_suffix('.key')}",
            "service imap-login {",
            f"  inet_listener imap {{\n    address = {address}\n    port = {imap_port}\n  }}",
            f"  inet_listener imaps {{\n    address = {address}\n    port = {tls_port}\n"
            "    ssl = yes\n  }",
            "}",
        ]
    return "\n".join(lines) + "\n"


def _make_root() -> Path:
    # Not pytest's tmp_path: /tmp/pytest-of-root is mode 700, and the dovecot user must be
    # able to traverse down to the mail homes.
    root = Path(tempfile.mkdtemp(prefix="handoff-dovecot-"))
    root.chmod(0o755)
    return root


def _prepare(root: Path, users: Mapping[str, str]) -> None:
    entry = pwd.getpwnam("dovecot")
    (root / "users").write_text("".join(f"{u}:{{PLAIN}}{p}\n" for u, p in users.items()))
    (root / "users").chmod(0o644)  # read by the auth process, which runs as dovecot
    mail_root = root / "mail"
    mail_root.mkdir(mode=0o755)
    os.chown(mail_root, entry.pw_uid, entry.pw_gid)  # homes are created by imap as dovecot


def _children(pid: int) -> set[int]:
    """All descendants of ``pid`` (via /proc), so leftovers can be killed after the master."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still "exists"; treat it as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _log_tail(instance: _Instance, lines: int = 30) -> str:
    try:
        return "\n".join(instance.log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_for_banner(host: str, port: int, deadline: float, instance: _Instance) -> None:
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5) as sock:
                if sock.recv(64).startswith(b"* OK"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"Dovecot did not accept connections on {host}:{port} within {START_TIMEOUT}s;"
                f" log:\n{_log_tail(instance)}"
            )
        time.sleep(0.02)


def _wait_for_tcp(host: str, port: int, deadline: float, instance: _Instance) -> None:
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"Dovecot did not listen on {host}:{port} within {START_TIMEOUT}s;"
                f" log:\n{_log_tail(instance)}"
            )
        time.sleep(0.02)


def _start(instance: _Instance, address: str, ports: Iterable[tuple[int, bool]]) -> None:
    """Start Dovecot and wait until every (port, sends_banner) answers."""
    # -F keeps the master in the foreground as our child, so we reap it: daemonized, its
    # zombie would linger under a container's pid 1 that does not reap orphans. Its output
    # goes to a file, not a pipe nobody reads.
    with (instance.root / "startup.log").open("wb") as out:
        instance.process = subprocess.Popen(
            [DOVECOT_BIN, "-F", "-c", str(instance.config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + START_TIMEOUT
    pid_file = instance.base_dir / "master.pid"
    while not pid_file.exists():
        if instance.process.poll() is not None or time.monotonic() > deadline:
            startup = (instance.root / "startup.log").read_text(errors="replace")
            raise RuntimeError(
                f"dovecot did not start (exit {instance.process.poll()}): {startup}\n"
                f"log:\n{_log_tail(instance)}"
            )
        time.sleep(0.01)
    for port, banner in ports:
        if banner:
            _wait_for_banner(address, port, deadline, instance)
        else:
            _wait_for_tcp(address, port, deadline, instance)


def _stop(instance: _Instance) -> None:
    """Stop the master by the pid in master.pid, then kill whatever is left of its tree."""
    pid_file = instance.base_dir / "master.pid"
    pid: int | None = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int(pid_file.read_text().split()[0])
    if pid is None and instance.process is not None:
        pid = instance.process.pid
    if pid is None:
        return
    children = _children(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    # On SIGTERM the master stops its children at once, but its `log` child then lingers
    # about a second collecting the last lines and the master waits for it. Once every other
    # child is gone nothing is left to shut down cleanly (all state lives in the temp dir we
    # delete), so the log process and the master are killed rather than awaited.
    workers = {p for p in children if not _cmdline(p).endswith("/log")}
    deadline = time.monotonic() + STOP_TIMEOUT
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.01)
    for leftover in [*children, pid]:
        if _alive(leftover):
            with contextlib.suppress(ProcessLookupError):
                os.kill(leftover, signal.SIGKILL)
    if instance.process is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            instance.process.wait(timeout=STOP_TIMEOUT)


def _self_signed_cert(directory: Path) -> Path:
    """Write a self-signed certificate (PEM) and key for localhost, 127.0.0.1, 127.0.0.2."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address(PLAIN_ADDRESS)),
                    x509.IPAddress(ipaddress.ip_address(TLS_ADDRESS)),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "server.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = cert_path.with_suffix(".key")
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)  # read by the (root) master process only
    return cert_path


@contextlib.contextmanager
def run_dovecot(*, tls: bool = False) -> Iterator[ImapServer]:
    """Run one Dovecot instance for the duration of the ``with`` block."""
    if not os.access(DOVECOT_BIN, os.X_OK):
        require_service("dovecot", f"{DOVECOT_BIN} not found (apt-get install dovecot-imapd)")
    try:
        pwd.getpwnam("dovecot")
        pwd.getpwnam("dovenull")
    except KeyError as exc:
        require_service("dovecot", f"system user missing: {exc}")
    root = _make_root()
    instance = _Instance(
        root=root,
        config=root / "dovecot.conf",
        base_dir=root / "run",
        log_path=root / "dovecot.log",
    )
    try:
        _prepare(root, USERS)
        # Dovecot counts a connection whose remote IP equals its local IP as "secured" and
        # then allows plaintext LOGIN even with ssl = required. Loopback traffic to
        # 127.0.0.2 comes from 127.0.0.1 (the lo route's src), so the TLS instance listens
        # there to make "no login without TLS" real; the plain one stays on 127.0.0.1.
        address = TLS_ADDRESS if tls else PLAIN_ADDRESS
        imap_port = free_port(address)
        if tls:
            cert = _self_signed_cert(root)
            tls_port = free_port(address)
            instance.config.write_text(
                _config(root, address, imap_port, tls_port=tls_port, cert=cert)
            )
            # The imaps port answers only after a handshake, so just wait for it to listen.
            _start(instance, address, [(imap_port, True), (tls_port, False)])
            server = ImapServer(
                host=address,
                port=tls_port,
                users=USERS,
                mail_root=root / "mail",
                tls=True,
                starttls_port=imap_port,
                cert_path=cert,
            )
        else:
            instance.config.write_text(_config(root, address, imap_port))
            _start(instance, address, [(imap_port, True)])
            server = ImapServer(host=address, port=imap_port, users=USERS, mail_root=root / "mail")
        yield server
    finally:
        _stop(instance)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def imap_server() -> Iterator[ImapServer]:
    """A plain-IMAP Dovecot shared by the session (see ``imap_mailbox`` for isolation)."""
    with run_dovecot() as server:
        yield server


@pytest.fixture
def imap_mailbox(imap_server: ImapServer) -> ImapServer:
    """``imap_server`` with every user's folders emptied and extra folders removed."""
    imap_server.reset()
    return imap_server


@pytest.fixture(scope="session")
def imap_server_tls() -> Iterator[ImapServer]:
    """A Dovecot with ``ssl = required``: implicit TLS on ``port``, STARTTLS-only plain port."""
    with run_dovecot(tls=True) as server:
        yield server
