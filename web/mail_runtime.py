"""Wiring the mail pipeline to the app: settings from config, passwords, the blob store."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import Flask

from mail.inbound import InboundSettings
from mail.outbound import OutboundContext, SendResult, deliver_due
from mail.poller import PollResult, default_owner, poll_all
from mail.transport import SmtpSettings, parse_smtp_url
from ticketing.crypto import decrypt_secret
from ticketing.errors import Invalid
from ticketing.models import Mailbox
from ticketing.services import outbox as outbox_rules
from ticketing.services.mailboxes import imap_password
from ticketing.storage import BlobStore
from web.extensions import db
from web.logs import configure_logging

# Set by `flask worker` on SIGTERM/SIGINT: the poll and send loops finish the message or row
# in hand, then return (checked between messages, never in the middle of one).
stop_requested = threading.Event()


def blobs(app: Flask) -> BlobStore:
    return app.extensions["handoff_blobs"]  # type: ignore[no-any-return]


def outbound_context(app: Flask) -> OutboundContext:
    config = app.config
    default_from = config.get("HANDOFF_MAIL_FROM") or (
        f"support@{urlsplit(config['HANDOFF_BASE_URL']).hostname or 'localhost'}"
    )
    return OutboundContext(
        secret_key=config["SECRET_KEY"],
        base_url=config["HANDOFF_BASE_URL"],
        blobs=blobs(app),
        default_from=default_from,
        team_name=config["HANDOFF_TEAM_NAME"],
        template_dir=Path(config["HANDOFF_DATA_DIR"]) / "templates" / "email",
        caps=outbox_rules.AutomaticMailCaps(
            per_ticket=int(config["HANDOFF_AUTO_MAIL_PER_TICKET"]),
            per_recipient=int(config["HANDOFF_AUTO_MAIL_PER_RECIPIENT"]),
            window=dt.timedelta(seconds=int(config["HANDOFF_AUTO_MAIL_WINDOW"])),
        ),
        ack_window=dt.timedelta(seconds=int(config["HANDOFF_ACK_WINDOW"])),
    )


def inbound_settings(app: Flask) -> InboundSettings:
    own = frozenset(db.session.scalars(sa.select(Mailbox.address)))
    return InboundSettings(
        secret_key=app.config["SECRET_KEY"],
        own_addresses=own,
        max_message_bytes=int(app.config["HANDOFF_MAX_EMAIL_BYTES"]),
        new_ticket_limit=int(app.config["HANDOFF_NEW_TICKETS_PER_SENDER"]),
        new_ticket_window=dt.timedelta(seconds=int(app.config["HANDOFF_NEW_TICKET_WINDOW"])),
        outbound=outbound_context(app),
        journey_link_window=dt.timedelta(seconds=int(app.config["HANDOFF_JOURNEY_LINK_WINDOW"])),
    )


def poll_mailboxes(app: Flask, *, only_due: bool = True) -> list[PollResult]:
    """Poll every active mailbox once (the job and `flask mail poll` both call this)."""
    secret_key = app.config["SECRET_KEY"]
    return poll_all(
        db.session,
        passwords=lambda mailbox: imap_password(mailbox, secret_key=secret_key),
        settings=inbound_settings(app),
        blobs=blobs(app),
        interval=dt.timedelta(seconds=int(app.config["HANDOFF_POLL_INTERVAL"])),
        only_due=only_due,
        lease=dt.timedelta(seconds=int(app.config["HANDOFF_POLL_LEASE"])),
        should_stop=stop_requested.is_set,
        prepare_processes=int(app.config["HANDOFF_INGEST_PROCESSES"]),
        helper_log_setup=(configure_logging, (app.config["HANDOFF_LOG_FORMAT"],)),
    )


def smtp_settings(app: Flask, mailbox_id: int | None = None) -> SmtpSettings:
    """The SMTP server for mail from this mailbox: its own, else HANDOFF_SMTP_URL."""
    if mailbox_id is not None:
        mailbox = db.session.get(Mailbox, mailbox_id)
        if mailbox is not None and mailbox.smtp_url_encrypted:
            return parse_smtp_url(
                decrypt_secret(mailbox.smtp_url_encrypted, key=app.config["SECRET_KEY"])
            )
    url = app.config.get("HANDOFF_SMTP_URL") or ""
    if not url:
        raise Invalid("HANDOFF_SMTP_URL is not set: outgoing mail stays queued until it is.")
    return parse_smtp_url(url)


def has_smtp(app: Flask) -> bool:
    """Whether any outgoing mail can be delivered (globally or through a mailbox)."""
    if app.config.get("HANDOFF_SMTP_URL"):
        return True
    return (
        db.session.scalar(sa.select(Mailbox.id).where(Mailbox.smtp_url_encrypted != "")) is not None
    )


def send_outbox(app: Flask, *, owner: str | None = None) -> SendResult:
    """Deliver one batch of due outbox rows (the job and `flask outbox send` call this)."""
    if not has_smtp(app):
        raise Invalid("HANDOFF_SMTP_URL is not set: outgoing mail stays queued until it is.")
    policy = outbox_rules.RetryPolicy(max_attempts=int(app.config["HANDOFF_OUTBOX_MAX_ATTEMPTS"]))
    return deliver_due(
        db.session,
        smtp=lambda mailbox_id: smtp_settings(app, mailbox_id),
        blobs=blobs(app),
        owner=owner or default_owner(),
        policy=policy,
        lease=dt.timedelta(seconds=int(app.config.get("HANDOFF_OUTBOX_LEASE", 300))),
        should_stop=stop_requested.is_set,
    )
