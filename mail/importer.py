"""Reading mail archives (mbox files, Maildir folders) for `flask mail import`.

Teams moving from another helpdesk or mail client bring their history as an archive; every
message goes through the same pipeline as polled mail, and the pipeline's dedupe makes a
second import of the same archive a no-op.
"""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from pathlib import Path


def open_archive(path: Path) -> mailbox.Mailbox:
    """An mbox file or a Maildir folder (one with cur/ and new/), opened read-only."""
    if path.is_dir():
        if not ((path / "cur").is_dir() or (path / "new").is_dir()):
            raise ValueError(f"{path} is a folder but not a Maildir (no cur/ or new/)")
        return mailbox.Maildir(path, factory=None, create=False)
    if path.is_file():
        return mailbox.mbox(path, factory=None, create=False)
    raise ValueError(f"{path} does not exist")


def iter_raw_messages(archive: mailbox.Mailbox) -> Iterator[bytes]:
    """Each message's bytes as stored, in archive order."""
    for key in archive.iterkeys():
        yield archive.get_bytes(key)
