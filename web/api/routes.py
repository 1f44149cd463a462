"""Agent JSON API routes: parse and check the input, load through one helper, call the
services the agent UI calls, commit, answer JSON.

Every request parameter and body field is checked against a whitelist before it gets near
SQL or a model: unknown query parameters and unknown body fields (`customer_id`, `number`, …)
are refused with 400 rather than ignored, so a typo or a mass-assignment attempt is visible.
Unknown and merged tickets are 404 with nothing but the number asked for.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy.orm import Session
from werkzeug.exceptions import RequestEntityTooLarge

from mail import outbound
from ticketing.db import utcnow
from ticketing.errors import Invalid
from ticketing.models import Agent, Priority, Status, Ticket
from ticketing.models.people import normalize_email
from ticketing.services import actions, conversation, inbox, tags
from ticketing.services.export import entry_record, ticket_record
from web.api.auth import ApiError, authenticate_request, current_agent
from web.api.openapi import document
from web.extensions import csrf, db
from web.mail_runtime import outbound_context

bp = Blueprint("api", __name__, url_prefix="/api/v1")
# Bearer tokens only, never cookies (see web.api.auth): there is no ambient credential for a
# forged cross-site request to ride on, so CSRF tokens would protect nothing here.
csrf.exempt(bp)

# No token: the OpenAPI document, and article suggestions (public articles, throttled per
# address; the contact form calls it from the browser, see web/api/articles.py).
PUBLIC_ENDPOINTS = frozenset({"api.openapi", "api.suggest_articles"})
MAX_BODY_BYTES = 2 * 1024 * 1024
MAX_MESSAGE_CHARS = 100_000  # as in the agent UI's composer
DEFAULT_LIMIT = 50
MAX_LIMIT = 100
LIST_PARAMS = ("status", "assignee", "q", "cursor", "limit")
MESSAGE_FIELDS = ("body", "status")
PATCH_FIELDS = ("status", "priority", "assignee", "tags")
NUMBER = "<int:number>"
# Ticket numbers beyond a 32-bit integer cannot exist: `_ticket` answers 404 before they reach
# the database (SQLite cannot even bind integers past 64 bits). Not `int(max=…)` in the rule:
# Werkzeug then answers 405 for some methods, an inconsistency callers need not learn.
MAX_NUMBER = 2**31 - 1

SUMMARY_KEYS = (
    "number",
    "subject",
    "status",
    "priority",
    "channel",
    "customer",
    "assignee",
    "tags",
    "created_at",
    "updated_at",
)


# -- plumbing ----------------------------------------------------------------------------------


@bp.before_request
def _authenticate() -> None:
    request.max_content_length = MAX_BODY_BYTES
    if request.endpoint not in PUBLIC_ENDPOINTS:
        authenticate_request()


@bp.after_request
def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    response = jsonify({"error": {"status": status, "message": message}})
    response.status_code = status
    response.headers.update(headers or {})
    return response


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> Response:
    db.session.rollback()
    return _error(exc.status, exc.message, exc.headers)


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(_exc: RequestEntityTooLarge) -> Response:
    return _error(413, f"The request body is too large (at most {MAX_BODY_BYTES} bytes).")


@bp.errorhandler(Invalid)
def _invalid(exc: Invalid) -> Response:
    db.session.rollback()
    return _error(400, str(exc))


def _bad(message: str) -> ApiError:
    return ApiError(400, message)


def _choices(enum_cls: type[Status] | type[Priority]) -> str:
    return ", ".join(member.value for member in enum_cls)


def _text(value: Any, field: str) -> str:
    """`value` as a string the database can store exactly; 400 otherwise."""
    if not isinstance(value, str):
        raise _bad(f"{field} must be a string.")
    if "\x00" in value:
        raise _bad(f"{field} must not contain NUL characters.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(f"{field} must not contain unpaired surrogates.") from None
    return value


def _json_body(allowed: tuple[str, ...]) -> dict[str, Any]:
    """The request's JSON object, holding only `allowed` fields; 415/413/400 otherwise."""
    if request.mimetype != "application/json":
        raise ApiError(415, "Send the body as JSON, with 'Content-Type: application/json'.")
    raw = request.get_data(cache=False)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _bad("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise _bad('The JSON body must be an object, like {"body": "…"}.')
    unknown = sorted(str(key)[:50] for key in data if key not in allowed)
    if unknown:
        raise _bad(f"Unknown field(s): {', '.join(unknown)}. Allowed fields: {', '.join(allowed)}.")
    return data


def _ticket(number: int) -> Ticket:
    """The ticket with this number; 404 for unknown and merged tickets alike."""
    ticket = None
    if number <= MAX_NUMBER:
        ticket = db.session.scalar(sa.select(Ticket).where(Ticket.number == number))
    if ticket is None or ticket.merged_into_id is not None:
        raise ApiError(404, f"Ticket {number} not found.")
    return ticket


def _summary(ticket: Ticket) -> dict[str, Any]:
    """A ticket without its history: the export record's top-level fields."""
    record = ticket_record(ticket, [])
    return {key: record[key] for key in SUMMARY_KEYS}


def _full(ticket: Ticket) -> dict[str, Any]:
    return ticket_record(ticket, inbox.history(db.session, ticket))


def _agent_by_email(email: str) -> Agent | None:
    address = normalize_email(email)
    if not address or len(address) > 320 or not address.isprintable():
        return None
    return db.session.scalar(sa.select(Agent).where(Agent.email == address))


# -- list ----------------------------------------------------------------------------------------


def _single_param(name: str) -> str:
    values = request.args.getlist(name)
    if len(values) > 1:
        raise _bad(f"Give the {name} parameter at most once.")
    value = values[0].strip() if values else ""
    if "\x00" in value:
        raise _bad(f"{name} must not contain NUL characters.")
    return value


def _list_params() -> dict[str, Any]:
    unknown = sorted(name[:50] for name in request.args if name not in LIST_PARAMS)
    if unknown:
        raise _bad(
            f"Unknown query parameter(s): {', '.join(unknown)}. Allowed: {', '.join(LIST_PARAMS)}."
        )
    status_text = _single_param("status")
    try:
        status = Status(status_text) if status_text else None
    except ValueError:
        raise _bad(f"status must be one of: {_choices(Status)}.") from None

    assignee: int | str | None = _single_param("assignee") or None
    if assignee is not None and assignee not in (inbox.ME, inbox.UNASSIGNED):
        agent = _agent_by_email(str(assignee))
        if agent is None:
            raise _bad("assignee must be 'me', 'none' or the email address of an agent.")
        assignee = agent.id

    limit_text = _single_param("limit") or str(DEFAULT_LIMIT)
    if not (limit_text.isascii() and limit_text.isdigit() and len(limit_text) <= 3) or not (
        1 <= int(limit_text) <= MAX_LIMIT
    ):
        raise _bad(f"limit must be a whole number from 1 to {MAX_LIMIT}.")

    q = _single_param("q") or None
    cursor = _single_param("cursor") or None
    if cursor is not None:
        try:
            if q is not None:
                inbox.decode_search_cursor(cursor)
            else:
                inbox.decode_cursor(cursor, inbox.Sort.UPDATED)
        except Invalid:
            raise _bad(
                "cursor is not valid: pass the next_cursor of a previous page unchanged."
            ) from None
    return {
        "status": status,
        "assignee": assignee,
        "q": q,
        "cursor": cursor,
        "limit": int(limit_text),
    }


def search_page(
    session: Session,
    text: str,
    *,
    agent: Agent,
    filters: inbox.Filters,
    limit: int,
    cursor: str | None = None,
) -> inbox.Page:
    """One page of the tickets best matching the search `text`, best first, at most `limit`.

    The API's one seam to search: what matches and in which order is decided by the inbox's
    search (`ticketing.services.inbox.search_page` over `ticketing.search`: every word must
    match, with the database's full-text engine; ties in rank broken by ticket id). Its
    `next_cursor` continues after the page's last ticket, through the best
    `inbox.MAX_CANDIDATES` matches. Text without a searchable word finds nothing.
    """
    return inbox.search_page(
        session, text, agent=agent, filters=filters, cursor=cursor, limit=limit
    )


@bp.get("/tickets")
def list_tickets() -> Response:
    params = _list_params()
    me = current_agent()
    filters = inbox.Filters(status=params["status"], assignee=params["assignee"])
    if params["q"]:
        page = search_page(
            db.session,
            params["q"],
            agent=me,
            filters=filters,
            limit=params["limit"],
            cursor=params["cursor"],
        )
    else:
        page = inbox.list_tickets(
            db.session,
            view=inbox.View.ALL,
            agent=me,
            cursor=params["cursor"],
            limit=params["limit"],
            filters=filters,
        )
    return jsonify(
        {"tickets": [_summary(t) for t in page.tickets], "next_cursor": page.next_cursor}
    )


# -- one ticket ----------------------------------------------------------------------------------


@bp.get(f"/tickets/{NUMBER}")
def get_ticket(number: int) -> Response:
    return jsonify(_full(_ticket(number)))


def _message_input(*, default_status: Status | None) -> tuple[str, Status | None]:
    data = _json_body(MESSAGE_FIELDS)
    if "body" not in data:
        raise _bad("body is required: the text of the message.")
    body = _text(data["body"], "body")
    if not body.strip():
        raise _bad("body must not be empty.")
    if len(body) > MAX_MESSAGE_CHARS:
        raise _bad(f"body is too long (at most {MAX_MESSAGE_CHARS} characters).")
    status = default_status
    if "status" in data:
        status = _status(data["status"], nullable=True)
    return body, status


def _status(value: Any, *, nullable: bool = False) -> Status | None:
    if value is None and nullable:
        return None
    if isinstance(value, str):
        try:
            return Status(value)
        except ValueError:
            pass
    allowed = _choices(Status) + (" or null" if nullable else "")
    raise _bad(f"status must be one of: {allowed}.")


@bp.post(f"/tickets/{NUMBER}/replies")
def post_reply(number: int) -> tuple[Response, int]:
    """A public reply, emailed to the customer through the outbox (pending by default)."""
    ticket = _ticket(number)
    body, status = _message_input(default_status=Status.PENDING)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    entry, row = outbound.reply(
        db.session,
        ticket,
        actor=current_agent(),
        body_text=body,
        now=utcnow(),
        ctx=outbound_context(app),
        status=status,
    )
    db.session.commit()
    outbox = {"id": row.id, "status": row.status.value}
    return jsonify(entry=entry_record(entry), outbox=outbox, ticket=_summary(ticket)), 201


@bp.post(f"/tickets/{NUMBER}/notes")
def post_note(number: int) -> tuple[Response, int]:
    """An internal note (agents only, never emailed); the status is unchanged by default."""
    ticket = _ticket(number)
    body, status = _message_input(default_status=None)
    me, now = current_agent(), utcnow()
    entry = conversation.add_note(ticket, actor=me, body_text=body, now=now)
    if status is not None:
        conversation.set_status(ticket, status, actor=me, now=now)
    db.session.commit()
    return jsonify(entry=entry_record(entry), ticket=_summary(ticket)), 201


@bp.patch(f"/tickets/{NUMBER}")
def patch_ticket(number: int) -> Response:
    """Change status, priority, assignee and tags: all checked first, then all applied."""
    ticket = _ticket(number)
    data = _json_body(PATCH_FIELDS)
    if not data:
        raise _bad(f"Nothing to change: send at least one of {', '.join(PATCH_FIELDS)}.")
    me, now = current_agent(), utcnow()

    status = _status(data["status"]) if "status" in data else None
    priority = None
    if "priority" in data:
        try:
            priority = Priority(data["priority"])
        except (ValueError, TypeError):
            raise _bad(f"priority must be one of: {_choices(Priority)}.") from None
    assignee: Agent | None = None
    if "assignee" in data and data["assignee"] is not None:
        wanted = _text(data["assignee"], "assignee")
        assignee = me if wanted == inbox.ME else _agent_by_email(wanted)
        if assignee is None or not assignee.is_active:
            raise _bad("assignee must be null, 'me' or the email address of an active agent.")
    tag_names: list[str] | None = None
    if "tags" in data:
        if not isinstance(data["tags"], list):
            raise _bad('tags must be a list of tag names, like ["billing", "vip"].')
        tag_names = [tags.normalize_tag(_text(name, "each tag")) for name in data["tags"]]
        if len(set(tag_names)) > tags.MAX_TAGS_PER_TICKET:
            raise _bad(f"A ticket can have at most {tags.MAX_TAGS_PER_TICKET} tags.")

    if status is not None:
        conversation.set_status(ticket, status, actor=me, now=now)
    if priority is not None:
        actions.set_priority(ticket, priority, actor=me, now=now)
    if "assignee" in data:
        conversation.assign(ticket, assignee, actor=me, now=now)
    if tag_names is not None:
        tags.set_tags(db.session, ticket, tag_names, actor=me, now=now)
    db.session.commit()
    return jsonify(_full(ticket))


# -- the description -----------------------------------------------------------------------------


@bp.get("/openapi.json")
def openapi() -> Response:
    """This API's OpenAPI 3.1 document (public: it describes routes, never data)."""
    return jsonify(document())
