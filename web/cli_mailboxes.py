"""`flask --app wsgi mailboxes …`: add, list, remove and test the mailboxes Handoff polls.

No logic here: parse options, call `ticketing.services.mailboxes` (and `mail.imap` for the
connection check), commit, print. The IMAP password is read from standard input or a hidden
prompt, stored encrypted under SECRET_KEY, and never printed.
"""

from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import AppGroup

from mail.imap import ImapError, ImapSettings, check_mailbox
from mail.poller import reconcile
from mail.transport import parse_smtp_url
from ticketing.crypto import encrypt_secret
from ticketing.errors import Invalid, NotFound
from ticketing.models import Mailbox, MailboxSecurity
from ticketing.services import mailboxes as mailbox_service
from web.extensions import db

mailboxes_cli = AppGroup("mailboxes", help="Manage the support mailboxes polled over IMAP.")


def _secret_key() -> str:
    return str(current_app.config["SECRET_KEY"])


def _read_imap_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if sys.stdin.isatty():
        return click.prompt("IMAP password", hide_input=True)
    raise click.UsageError(
        "no terminal to ask for the IMAP password: pass --imap-password-stdin and give the"
        " password as the first line of standard input"
    )


@mailboxes_cli.command("add")
@click.argument("name")
@click.option("--address", required=True, help="The support address customers write to.")
@click.option("--imap-host", required=True, help="IMAP server host name.")
@click.option("--imap-port", required=True, type=int, help="IMAP port (usually 993 with --tls).")
@click.option("--imap-user", required=True, help="IMAP user name.")
@click.option(
    "--imap-password-stdin",
    is_flag=True,
    help="Read the IMAP password from the first line of standard input (else a hidden prompt).",
)
@click.option("--folder", default="INBOX", show_default=True, help="Folder to poll.")
@click.option(
    "--move-to",
    "move_to",
    default=None,
    help="Move processed mail to this folder (created if missing).",
)
@click.option(
    "--tls",
    "security",
    flag_value=MailboxSecurity.TLS.value,
    default=True,
    help="Implicit TLS (IMAPS, port 993). The default.",
)
@click.option(
    "--starttls",
    "security",
    flag_value=MailboxSecurity.STARTTLS.value,
    help="Plain connection upgraded with STARTTLS (port 143); never falls back to plain text.",
)
@click.option(
    "--plain",
    "security",
    flag_value=MailboxSecurity.PLAIN.value,
    help="No encryption; allowed only for a loopback host.",
)
def mailboxes_add(
    name: str,
    address: str,
    imap_host: str,
    imap_port: int,
    imap_user: str,
    imap_password_stdin: bool,
    folder: str,
    move_to: str | None,
    security: str,
) -> None:
    """Add a mailbox to poll. The password is stored encrypted with SECRET_KEY."""
    password = _read_imap_password(imap_password_stdin)
    try:
        mailbox = mailbox_service.add_mailbox(
            db.session,
            name=name,
            address=address,
            imap_host=imap_host,
            imap_port=imap_port,
            imap_user=imap_user,
            imap_password=password,
            imap_security=security,
            folder=folder,
            move_to_folder=move_to,
            secret_key=_secret_key(),
        )
    except Invalid as exc:
        raise click.ClickException(str(exc)) from None
    db.session.commit()
    click.echo(
        f"Added mailbox {mailbox.name} ({mailbox.address}, {_where(mailbox)},"
        f" {mailbox.imap_security.value}, folder {mailbox.folder})."
    )
    click.echo(f"Check it with: flask --app wsgi mailboxes test {mailbox.name}")


@mailboxes_cli.command("list")
def mailboxes_list() -> None:
    """List the active mailboxes; passwords are never shown.

    Tab-separated: name, address, host:port, security, folder, last polled, last error.
    """
    for mailbox in mailbox_service.list_mailboxes(db.session):
        polled = mailbox.last_polled_at.isoformat() if mailbox.last_polled_at else "never"
        error = " ".join((mailbox.last_error or "-").split())
        click.echo(
            "\t".join(
                [
                    mailbox.name,
                    mailbox.address,
                    _where(mailbox),
                    mailbox.imap_security.value,
                    mailbox.folder,
                    polled,
                    error,
                ]
            )
        )


@mailboxes_cli.command("remove")
@click.argument("name")
def mailboxes_remove(name: str) -> None:
    """Stop polling a mailbox; mail on the server is left alone.

    The mailbox is deleted, or, when tickets refer to it, kept for their history but
    deactivated, with its stored password wiped.
    """
    try:
        outcome = mailbox_service.remove_mailbox(db.session, name)
    except NotFound as exc:
        raise click.ClickException(str(exc)) from None
    db.session.commit()
    if outcome is mailbox_service.MailboxRemoval.DELETED:
        click.echo(f"Removed mailbox {name}.")
    else:
        click.echo(
            f"Deactivated mailbox {name}: tickets refer to it, so it is kept for their history"
            " but no longer polled, and its stored password was deleted."
        )


@mailboxes_cli.command("set-password")
@click.argument("name")
@click.option(
    "--imap-password-stdin",
    is_flag=True,
    help="Read the IMAP password from the first line of standard input (else a hidden prompt).",
)
def mailboxes_set_password(name: str, imap_password_stdin: bool) -> None:
    """Replace a mailbox's stored IMAP password.

    Use it after the password changed on the server, or after SECRET_KEY changed.
    """
    try:
        mailbox = mailbox_service.get_mailbox(db.session, name)
        password = _read_imap_password(imap_password_stdin)
        mailbox_service.set_imap_password(mailbox, password=password, secret_key=_secret_key())
    except (NotFound, Invalid) as exc:
        raise click.ClickException(str(exc)) from None
    db.session.commit()
    click.echo(f"Stored a new IMAP password for mailbox {mailbox.name}.")


@mailboxes_cli.command("set-smtp")
@click.argument("name")
@click.option("--clear", is_flag=True, help="Use the global HANDOFF_SMTP_URL again.")
def mailboxes_set_smtp(name: str, clear: bool) -> None:
    """Send this mailbox's mail through its own SMTP server.

    Reads the URL (`smtp://user:pass@host:port`, `smtp+starttls://…`, `smtps://…`) from the
    first line of standard input, so the password never appears in the shell history; it is
    stored encrypted.
    """
    try:
        mailbox = mailbox_service.get_mailbox(db.session, name)
    except NotFound as exc:
        raise click.ClickException(str(exc)) from None
    if clear:
        mailbox.smtp_url_encrypted = ""
        db.session.commit()
        click.echo(f"Mailbox {mailbox.name} now sends through HANDOFF_SMTP_URL.")
        return
    url = sys.stdin.readline().strip()
    try:
        settings = parse_smtp_url(url)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    mailbox.smtp_url_encrypted = encrypt_secret(url, key=_secret_key())
    db.session.commit()
    click.echo(f"Mailbox {mailbox.name} now sends through {settings.where} ({settings.security}).")


@mailboxes_cli.command("test")
@click.argument("name")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for the server.")
def mailboxes_test(name: str, timeout: float) -> None:
    """Check a mailbox's IMAP login and folder.

    Prints the folder, UIDVALIDITY, message count and unseen count. Changes nothing on the
    server; exits non-zero with the reason when it fails.
    """
    try:
        mailbox = mailbox_service.get_mailbox(db.session, name)
        password = mailbox_service.imap_password(mailbox, secret_key=_secret_key())
    except (NotFound, Invalid) as exc:
        raise click.ClickException(str(exc)) from None
    settings = ImapSettings.for_mailbox(mailbox, password=password, timeout=timeout)
    try:
        result = check_mailbox(settings)
    except ImapError as exc:
        raise click.ClickException(f"mailbox {mailbox.name}: {exc}") from None
    click.echo(
        f"Mailbox {mailbox.name}: logged in to {_where(mailbox)} as {mailbox.imap_user}"
        f" ({mailbox.imap_security.value})"
    )
    click.echo(f"Folder:      {result.folder}")
    click.echo(f"UIDVALIDITY: {result.uidvalidity}")
    click.echo(f"Messages:    {result.exists}")
    click.echo(f"Unseen:      {result.unseen}")
    try:
        seen = reconcile(db.session, mailbox, settings)
    except ImapError as exc:
        raise click.ClickException(f"mailbox {mailbox.name}: {exc}") from None
    click.echo(f"Recorded:    {seen.recorded} of {seen.on_server} messages on the server")
    if seen.not_recorded:
        shown = ", ".join(str(uid) for uid in seen.not_recorded[:20])
        more = " …" if len(seen.not_recorded) > 20 else ""
        click.echo(f"Not yet recorded: {len(seen.not_recorded)} (UIDs {shown}{more})")


def _where(mailbox: Mailbox) -> str:
    host = f"[{mailbox.imap_host}]" if ":" in mailbox.imap_host else mailbox.imap_host
    return f"{host}:{mailbox.imap_port}"
