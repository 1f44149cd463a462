"""Wiring the inbound mail pipeline to the app: settings from config, passwords, the blob store."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from flask import Flask

from mail.inbound import InboundSettings
from mail.poller import PollResult, poll_all
from ticketing.models import Mailbox
from ticketing.services.mailboxes import imap_password
from ticketing.storage import BlobStore
from web.extensions import db


def blobs(app: Flask) -> BlobStore:
    return app.extensions["handoff_blobs"]  # type: ignore[no-any-return]


def inbound_settings(app: Flask) -> InboundSettings:
    own = frozenset(db.session.scalars(sa.select(Mailbox.address)))
    return InboundSettings(
        secret_key=app.config["SECRET_KEY"],
        own_addresses=own,
        max_message_bytes=int(app.config["HANDOFF_MAX_EMAIL_BYTES"]),
        new_ticket_limit=int(app.config["HANDOFF_NEW_TICKETS_PER_SENDER"]),
        new_ticket_window=dt.timedelta(seconds=int(app.config["HANDOFF_NEW_TICKET_WINDOW"])),
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
    )
