"""Wiring notices to the app: their settings from config, the scan the job and CLI run."""

from __future__ import annotations

import datetime as dt
import gc

from flask import Flask

from mail.notices import NoticeContext, ScanResult, scan
from ticketing.db import utcnow
from ticketing.models import NoticeRule
from ticketing.services.notices import NoticeSettings
from web.extensions import db, sqlite_read_only
from web.mail_runtime import outbound_context, stop_requested


def notice_settings(app: Flask) -> NoticeSettings:
    config = app.config
    names = [n.strip() for n in str(config["HANDOFF_NOTICE_RULES"]).split(",") if n.strip()]
    return NoticeSettings(
        soon_days=int(config["HANDOFF_NOTICE_SOON_DAYS"]),
        very_soon_days=int(config["HANDOFF_NOTICE_VERY_SOON_DAYS"]),
        expired_grace_days=int(config["HANDOFF_NOTICE_EXPIRED_GRACE_DAYS"]),
        cap=int(config["HANDOFF_NOTICE_CAP"]),
        cap_window=dt.timedelta(seconds=int(config["HANDOFF_NOTICE_CAP_WINDOW"])),
        rules=frozenset(NoticeRule(name) for name in names),
    )


def notice_context(app: Flask) -> NoticeContext:
    return NoticeContext(
        outbound=outbound_context(app),
        settings=notice_settings(app),
        account_url=app.config["HANDOFF_ACCOUNT_URL"],
        help_url=app.config["HANDOFF_NOTICE_HELP_URL"],
    )


def run_scan(app: Flask, *, today: dt.date | None = None, dry_run: bool = False) -> ScanResult:
    """One scan, committed in batches, so a failure keeps what went before. When the worker
    is asked to stop (`stop_requested`), the scan ends after the batch in hand."""
    now = utcnow()
    db.session.rollback()  # start from a fresh transaction…
    # …that only reads: on SQLite the selection over every card must not hold the write lock
    # the mail poller and other scans wait for (BEGIN instead of BEGIN IMMEDIATE).
    read_only = sqlite_read_only.set(True)
    pending = [read_only]

    def selected() -> None:
        db.session.rollback()  # end the read transaction; writes begin IMMEDIATE
        sqlite_read_only.reset(pending.pop())
        # What lives for the whole scan (the candidates, the app) need not be traversed by
        # every full garbage collection the batches trigger: about a tenth of a big scan's
        # time. Undone when the scan ends, so nothing stays exempt from collection.
        gc.freeze()

    try:
        result = scan(
            db.session,
            today=today or now.date(),
            now=now,
            ctx=notice_context(app),
            dry_run=dry_run,
            on_batch=None if dry_run else db.session.commit,
            on_selected=selected,
            should_stop=stop_requested.is_set,
        )
    finally:
        if pending:  # the scan failed before writing anything
            sqlite_read_only.reset(pending.pop())
        gc.unfreeze()
    if dry_run:
        db.session.rollback()
    else:
        db.session.commit()
    return result
