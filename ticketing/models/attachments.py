"""Files attached to timeline entries. The bytes live in the blob store under their sha256;
the filename is the sender's, display-only, and never decides where anything is written."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ticketing.db import Base

if TYPE_CHECKING:
    from ticketing.models.tickets import Entry


class Attachment(Base):
    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    entry_id: Mapped[int] = mapped_column(
        sa.ForeignKey("entries.id", ondelete="CASCADE"), index=True
    )
    sha256: Mapped[str] = mapped_column(sa.String(64), index=True)
    size: Mapped[int] = mapped_column(sa.BigInteger)
    content_type: Mapped[str] = mapped_column(sa.String(255))
    filename: Mapped[str] = mapped_column(sa.String(255))
    content_id: Mapped[str | None] = mapped_column(sa.String(998))
    is_inline: Mapped[bool] = mapped_column(default=False)

    entry: Mapped[Entry] = relationship(back_populates="attachments")

    def __repr__(self) -> str:
        return f"<Attachment {self.id} {self.filename!r} {self.size}B>"
