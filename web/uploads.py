"""Files agents upload with a reply or note: checked, stored by content, named safely."""

from __future__ import annotations

import re
from collections.abc import Iterable

from werkzeug.datastructures import FileStorage

from mail.filenames import safe_filename
from ticketing.errors import Invalid
from ticketing.services.conversation import NewAttachment
from ticketing.storage import BlobStore

MAX_FILES = 10
MAX_FILE_BYTES = 20 * 1024 * 1024
_MIME = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")


def store_uploads(files: Iterable[FileStorage] | None, *, blobs: BlobStore) -> list[NewAttachment]:
    """Store the uploaded files; Invalid (a 400 with the reason) when there are too many or
    one is too large. The browser's filename is display-only; its type is only a label."""
    chosen = [f for f in (files or []) if f and f.filename]
    if len(chosen) > MAX_FILES:
        raise Invalid(f"Attach at most {MAX_FILES} files.")
    stored = []
    for upload in chosen:
        data = upload.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise Invalid(f"{upload.filename[:100]} is larger than 20 MB.")
        content_type = (upload.mimetype or "").lower()
        if not _MIME.match(content_type):
            content_type = "application/octet-stream"
        stored.append(
            NewAttachment(
                sha256=blobs.put(data),
                size=len(data),
                content_type=content_type,
                filename=safe_filename(upload.filename, content_type=content_type),
            )
        )
    return stored
