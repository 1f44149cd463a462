"""Who else has a ticket open right now, and whether they are writing a reply.

One row per (ticket, agent), refreshed by the ticket page's heartbeat and trusted only until
`expires_at`: a closed tab or a lost network simply stops refreshing it, so no cleanup is
needed for correctness (`services.presence` ignores and prunes expired rows). It feeds the
"Dana is replying…" line and the reply collision warning.
"""

from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ticketing.db import Base, str_enum
from ticketing.models.people import Agent


class Activity(enum.StrEnum):
    VIEWING = "viewing"
    REPLYING = "replying"


class TicketPresence(Base):
    """An agent's presence on a ticket, valid until `expires_at`."""

    __tablename__ = "ticket_presence"
    __table_args__ = (sa.UniqueConstraint("ticket_id", "agent_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(sa.ForeignKey("tickets.id", ondelete="CASCADE"))
    agent_id: Mapped[int] = mapped_column(
        sa.ForeignKey("agents.id", ondelete="CASCADE"), index=True
    )
    activity: Mapped[Activity] = mapped_column(str_enum(Activity))
    expires_at: Mapped[dt.datetime]

    agent: Mapped[Agent] = relationship(lazy="joined")

    def __repr__(self) -> str:
        return f"<TicketPresence ticket={self.ticket_id} agent={self.agent_id} {self.activity}>"
