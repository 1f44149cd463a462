"""Mailboxes: the support addresses Handoff polls over IMAP, and their stored credentials.

The IMAP password is kept encrypted (`ticketing.crypto`, keyed by SECRET_KEY) and only
decrypted by `imap_password` for the poller or a connection check; nothing here lists or
logs it. Services flush; the caller commits.

Removing a mailbox that tickets or inbound receipts refer to does not delete it: the row
stays (so history still says which address a ticket came in on) but is deactivated, no
longer polled, and its stored password is wiped. A mailbox nothing refers to is deleted.
"""

from __future__ import annotations

import enum
import ipaddress
import re

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ticketing.crypto import decrypt_secret, encrypt_secret
from ticketing.errors import Invalid, NotFound
from ticketing.models import Mailbox, MailboxSecurity
from ticketing.models.people import normalize_email

# A handle typed on the command line: letters, digits, ".", "_" and "-".
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_ADDRESS = re.compile(r"[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[^@\s<>()\[\],;:\".]+")
_HOST = re.compile(r"[A-Za-z0-9.:\[\]_-]{1,255}")


class MailboxRemoval(enum.StrEnum):
    """What `remove_mailbox` did."""

    DELETED = "deleted"  # nothing referred to it
    DEACTIVATED = "deactivated"  # kept for the tickets/receipts that refer to it


def add_mailbox(
    session: Session,
    *,
    name: str,
    address: str,
    imap_host: str,
    imap_port: int,
    imap_user: str,
    imap_password: str,
    imap_security: MailboxSecurity | str,
    folder: str = "INBOX",
    move_to_folder: str | None = None,
    secret_key: str,
) -> Mailbox:
    """Add a mailbox to poll; its password is stored encrypted under `secret_key`.

    Raises Invalid for a name already used (also by a removed mailbox kept for history), an
    address that is not an email address, a port outside 1-65535, an empty host, user,
    password or folder, a `move_to_folder` equal to `folder`, or plain (unencrypted) IMAP to a
    host that is not loopback: that would send the password over the network in clear text.
    Enqueues nothing.
    """
    name = name.strip()
    if not _NAME.fullmatch(name):
        raise Invalid(
            "A mailbox name is 1-100 letters, digits, '.', '_' or '-', starting with a letter"
            " or digit (for example: support)."
        )
    existing = session.scalar(sa.select(Mailbox).where(Mailbox.name == name))
    if existing is not None:
        if existing.is_active:
            raise Invalid(f"A mailbox named {name!r} already exists.")
        raise Invalid(
            f"The name {name!r} belongs to a removed mailbox that tickets still refer to;"
            " choose another name."
        )
    address = normalize_email(address)
    if len(address) > 320 or not _ADDRESS.fullmatch(address):
        raise Invalid(f"{address!r} is not an email address like support@example.com.")
    imap_host = imap_host.strip()
    if not _HOST.fullmatch(imap_host):
        raise Invalid("Give the IMAP server's host name or IP address, such as imap.example.com.")
    if not 1 <= int(imap_port) <= 65535:
        raise Invalid(f"The IMAP port must be between 1 and 65535, not {imap_port}.")
    imap_user = imap_user.strip()
    if not imap_user or len(imap_user) > 320:
        raise Invalid("Give the IMAP user name (often the full email address).")
    if not imap_password:
        raise Invalid("Give the IMAP password.")
    try:
        security = MailboxSecurity(imap_security)
    except ValueError:
        choices = ", ".join(s.value for s in MailboxSecurity)
        raise Invalid(f"IMAP security must be one of {choices}.") from None
    if security is MailboxSecurity.PLAIN and not _is_loopback(imap_host):
        raise Invalid(
            f"Plain IMAP would send the password to {imap_host} unencrypted; it is allowed"
            " only for a loopback host (localhost, 127.0.0.1, ::1). Use TLS or STARTTLS."
        )
    folder = _folder(folder, what="folder")
    move_to = _folder(move_to_folder, what="move-to folder") if move_to_folder else None
    if move_to is not None and move_to == folder:
        raise Invalid("The move-to folder must differ from the polled folder.")

    mailbox = Mailbox(
        name=name,
        address=address,
        imap_host=imap_host,
        imap_port=int(imap_port),
        imap_user=imap_user,
        imap_password_encrypted=encrypt_secret(imap_password, key=secret_key),
        imap_security=security,
        folder=folder,
        move_to_folder=move_to,
        is_active=True,
    )
    session.add(mailbox)
    session.flush()
    return mailbox


def get_mailbox(session: Session, name: str) -> Mailbox:
    """The active mailbox called `name`. Raises NotFound (also for a removed one)."""
    mailbox = session.scalar(
        sa.select(Mailbox).where(Mailbox.name == name.strip(), Mailbox.is_active.is_(True))
    )
    if mailbox is None:
        raise NotFound(f"No mailbox named {name.strip()!r}.")
    return mailbox


def list_mailboxes(session: Session, *, include_inactive: bool = False) -> list[Mailbox]:
    """Mailboxes by name: the active ones, or all with `include_inactive`."""
    query = sa.select(Mailbox).order_by(Mailbox.name)
    if not include_inactive:
        query = query.where(Mailbox.is_active.is_(True))
    return list(session.scalars(query))


def remove_mailbox(session: Session, name: str) -> MailboxRemoval:
    """Stop polling a mailbox: delete it, or deactivate it when anything refers to it.

    Tickets and inbound receipts keep pointing at a deactivated mailbox; it is no longer
    polled, `get_mailbox` no longer finds it, and its stored password is wiped. Raises
    NotFound for an unknown (or already removed) name.
    """
    mailbox = get_mailbox(session, name)
    if _is_referenced(session, mailbox.id):
        mailbox.is_active = False
        mailbox.imap_password_encrypted = ""
        session.flush()
        return MailboxRemoval.DEACTIVATED
    session.delete(mailbox)
    session.flush()
    return MailboxRemoval.DELETED


def set_imap_password(mailbox: Mailbox, *, password: str, secret_key: str) -> Mailbox:
    """Replace the stored IMAP password (e.g. after it changed, or SECRET_KEY did)."""
    if not password:
        raise Invalid("Give the IMAP password.")
    mailbox.imap_password_encrypted = encrypt_secret(password, key=secret_key)
    return mailbox


def imap_password(mailbox: Mailbox, *, secret_key: str) -> str:
    """The decrypted IMAP password. Raises Invalid if it cannot be decrypted with this key."""
    if not mailbox.imap_password_encrypted:
        raise Invalid(f"Mailbox {mailbox.name!r} has no stored IMAP password.")
    return decrypt_secret(mailbox.imap_password_encrypted, key=secret_key)


def _folder(value: str, *, what: str) -> str:
    folder = value.strip()
    if not folder or len(folder) > 255 or any(ord(c) < 32 or ord(c) == 127 for c in folder):
        raise Invalid(f"Give an IMAP {what} name such as INBOX (at most 255 characters).")
    return folder


def _is_loopback(host: str) -> bool:
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _is_referenced(session: Session, mailbox_id: int) -> bool:
    """True when any row of any table has a foreign key to this mailbox.

    Read from the metadata, so a table added later (and its migration) is covered without
    changing this function.
    """
    mailboxes = Mailbox.__table__
    for table in Mailbox.metadata.sorted_tables:
        for fk in table.foreign_keys:
            if fk.column.table is mailboxes and table is not mailboxes:
                found = session.scalar(
                    sa.select(sa.literal(1))
                    .select_from(table)
                    .where(fk.parent == mailbox_id)
                    .limit(1)
                )
                if found is not None:
                    return True
    return False
