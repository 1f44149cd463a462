"""Building realistic inbound emails for tests, as raw bytes."""

from __future__ import annotations

import email.utils
from email.message import EmailMessage


def make_email(
    *,
    sender: str = "Ann Customer <ann@example.org>",
    to: str = "support@example.com",
    subject: str = "My card was declined",
    body: str = "Hello, my card was declined twice this morning.",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    cc: str | None = None,
    headers: dict[str, str] | None = None,
    html: str | None = None,
    attachments: list[tuple[str, str, bytes]] = (),  # type: ignore[assignment]
    date: str = "Mon, 23 Nov 2026 09:00:00 +0000",
) -> bytes:
    """One message as bytes; `message_id=""` leaves the header out entirely."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    msg["Date"] = date
    if message_id != "":
        msg["Message-ID"] = message_id or email.utils.make_msgid(domain="mail.example.org")
    if in_reply_to:
        msg["In-Reply-To"] = f"<{in_reply_to}>"
    if references:
        msg["References"] = " ".join(f"<{r}>" for r in references)
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    if html:
        msg.add_alternative(html, subtype="html")
    for filename, content_type, data in attachments:
        maintype, subtype = content_type.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()
