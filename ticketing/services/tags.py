"""Tags on tickets: free-form labels ("billing", "vip") that agents set and views filter on.

Place in the flow: the ticket sidebar, the API (`PATCH /api/v1/tickets/<n>`) and merges call
`set_tags`; tags are created on first use. Names are normalised (trimmed, lower-case, inner
whitespace collapsed) and limited to a safe alphabet, so a tag can sit in a URL, a filter
and an HTML page without surprises.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ticketing.errors import Invalid
from ticketing.models import Agent, Tag, Ticket
from ticketing.services import conversation

MAX_TAG = 50
MAX_TAGS_PER_TICKET = 20
_TAG = re.compile(r"[\w][\w .+&/:-]*")


def normalize_tag(name: str) -> str:
    """The stored form of a tag name; Invalid when it is too long or has odd characters."""
    cleaned = " ".join(name.split()).lower()
    if len(cleaned) > MAX_TAG:
        raise Invalid(f"Keep each tag under {MAX_TAG} characters.")
    if cleaned and not _TAG.fullmatch(cleaned):
        raise Invalid("Tags may contain letters, digits, spaces and . + & / : - _ only.")
    return cleaned


def parse_tags(text: str) -> list[str]:
    """Comma-separated tag names as an agent types them -> normalised, unique, in order."""
    return list(dict.fromkeys(n for n in (normalize_tag(p) for p in text.split(",")) if n))


def set_tags(
    session: Session,
    ticket: Ticket,
    names: Iterable[str],
    *,
    actor: Agent | None,
    now: dt.datetime,
) -> Ticket:
    """Make `ticket`'s tags exactly `names` (normalised), creating unknown tags, and note the
    change in the history ("Tags: billing, vip by Dana"). No change records nothing."""
    wanted = list(dict.fromkeys(n for n in (normalize_tag(x) for x in names) if n))
    if len(wanted) > MAX_TAGS_PER_TICKET:
        raise Invalid(f"A ticket can have at most {MAX_TAGS_PER_TICKET} tags.")
    current = {t.name for t in ticket.tags}
    if current == set(wanted):
        return ticket
    tags = [_tag(session, name) for name in wanted]
    ticket.tags = sorted(tags, key=lambda t: t.name)
    ticket.updated_at = now
    added = [n for n in wanted if n not in current]
    removed = sorted(current - set(wanted))
    parts = []
    if added:
        parts.append("added " + ", ".join(added))
    if removed:
        parts.append("removed " + ", ".join(removed))
    who = f" by {actor.name}" if actor else ""
    conversation.record_event(ticket, text=f"Tags {'; '.join(parts)}{who}", now=now, actor=actor)
    return ticket


def _tag(session: Session, name: str) -> Tag:
    found = session.scalar(sa.select(Tag).where(Tag.name == name))
    if found is not None:
        return found
    # Two agents may create the same new tag at once: the unique name decides, and the
    # loser reads the winner's row (a savepoint keeps the rest of the transaction).
    try:
        with session.begin_nested():
            tag = Tag(name=name)
            session.add(tag)
            session.flush()
        return tag
    except IntegrityError:
        return session.scalars(sa.select(Tag).where(Tag.name == name)).one()
