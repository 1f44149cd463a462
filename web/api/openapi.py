"""The OpenAPI 3.1 document of the agent JSON API, served at `/api/v1/openapi.json`.

Written by hand next to the routes (`web.api.routes`); a test compares its paths and methods
with the app's URL map both ways, so a route cannot be added, renamed or dropped without the
document following.
"""

from __future__ import annotations

from typing import Any

from ticketing.models import Channel, EntryKind, OutboxStatus, Priority, Status

API_VERSION = "1.0.0"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [schema, {"type": "null"}]}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json(_ref("Error"))}


_TIMESTAMP = {"type": "string", "format": "date-time"}
_NULLABLE_TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}
_NULLABLE_STRING = {"type": ["string", "null"]}

_PERSON = {
    "type": "object",
    "required": ["email", "name"],
    "properties": {"email": {"type": "string", "format": "email"}, "name": {"type": "string"}},
}

_SUMMARY_PROPERTIES: dict[str, Any] = {
    "number": {"type": "integer", "description": "The human ticket number, shown as [#1234]."},
    "subject": {"type": "string"},
    "status": {"type": "string", "enum": [s.value for s in Status]},
    "priority": {"type": "string", "enum": [p.value for p in Priority]},
    "channel": {"type": "string", "enum": [c.value for c in Channel]},
    "customer": _ref("Person"),
    "assignee": _nullable(_ref("Person")),
    "tags": {"type": "array", "items": {"type": "string"}},
    "created_at": _TIMESTAMP,
    "updated_at": _TIMESTAMP,
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["status", "message"],
                "properties": {
                    "status": {"type": "integer"},
                    "message": {"type": "string", "description": "What went wrong, in words."},
                },
            }
        },
    },
    "Person": _PERSON,
    "TicketSummary": {
        "type": "object",
        "required": list(_SUMMARY_PROPERTIES),
        "properties": _SUMMARY_PROPERTIES,
    },
    "TicketList": {
        "type": "object",
        "required": ["tickets", "next_cursor"],
        "properties": {
            "tickets": {"type": "array", "items": _ref("TicketSummary")},
            "next_cursor": {
                "type": ["string", "null"],
                "description": "Pass as `cursor` for the next page; null on the last page.",
            },
        },
    },
    "Attachment": {
        "type": "object",
        "required": ["filename", "content_type", "size", "sha256"],
        "properties": {
            "filename": {"type": "string"},
            "content_type": {"type": "string"},
            "size": {"type": "integer"},
            "sha256": {"type": "string"},
        },
    },
    "Entry": {
        "type": "object",
        "description": "One event in a ticket's history, as in the export format.",
        "required": [
            "kind",
            "author_email",
            "author_name",
            "subject",
            "created_at",
            "body_text",
            "message_id",
            "in_reply_to",
            "threaded_by",
            "attachments",
        ],
        "properties": {
            "kind": {"type": "string", "enum": [k.value for k in EntryKind]},
            "author_email": _NULLABLE_STRING,
            "author_name": _NULLABLE_STRING,
            "subject": {"type": "string"},
            "created_at": _TIMESTAMP,
            "body_text": {"type": "string"},
            "message_id": _NULLABLE_STRING,
            "in_reply_to": _NULLABLE_STRING,
            "threaded_by": _NULLABLE_STRING,
            "attachments": {"type": "array", "items": _ref("Attachment")},
        },
    },
    "Ticket": {
        "type": "object",
        "description": "A ticket with its whole history (internal notes included), as in the "
        "export format.",
        "required": [
            *_SUMMARY_PROPERTIES,
            "merged_into",
            "first_response_at",
            "solved_at",
            "entries",
        ],
        "properties": {
            **_SUMMARY_PROPERTIES,
            "merged_into": {"type": ["integer", "null"]},
            "first_response_at": _NULLABLE_TIMESTAMP,
            "solved_at": _NULLABLE_TIMESTAMP,
            "entries": {"type": "array", "items": _ref("Entry")},
        },
    },
    "MessageInput": {
        "type": "object",
        "required": ["body"],
        "additionalProperties": False,
        "properties": {
            "body": {"type": "string", "minLength": 1, "maxLength": 100_000},
            "status": {
                "type": ["string", "null"],
                "enum": [*(s.value for s in Status), None],
                "description": "The ticket's status afterwards. Replies default to pending, "
                "notes leave it unchanged; null leaves it unchanged.",
            },
        },
    },
    "ReplyCreated": {
        "type": "object",
        "required": ["entry", "outbox", "ticket"],
        "properties": {
            "entry": _ref("Entry"),
            "outbox": {
                "type": "object",
                "description": "The outgoing email, queued for delivery.",
                "required": ["id", "status"],
                "properties": {
                    "id": {"type": "integer"},
                    "status": {"type": "string", "enum": [s.value for s in OutboxStatus]},
                },
            },
            "ticket": _ref("TicketSummary"),
        },
    },
    "NoteCreated": {
        "type": "object",
        "required": ["entry", "ticket"],
        "properties": {"entry": _ref("Entry"), "ticket": _ref("TicketSummary")},
    },
    "ArticleSuggestions": {
        "type": "object",
        "required": ["articles"],
        "properties": {
            "articles": {
                "type": "array",
                "maxItems": 10,
                "items": {
                    "type": "object",
                    "required": ["id", "title", "url", "snippet", "score"],
                    "properties": {
                        "id": {
                            "type": "string",
                            "description": "The article's id in `kb import`/`kb export`.",
                        },
                        "title": {"type": "string"},
                        "url": {
                            "type": "string",
                            "description": "Absolute path of the article's help-center page.",
                        },
                        "snippet": {
                            "type": "string",
                            "description": "Plain text around the words that matched.",
                        },
                        "score": {"type": "number", "description": "Higher is better."},
                    },
                },
            }
        },
    },
    "TicketPatch": {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": False,
        "description": "Only these fields; any other field is refused with 400.",
        "properties": {
            "status": {"type": "string", "enum": [s.value for s in Status]},
            "priority": {"type": "string", "enum": [p.value for p in Priority]},
            "assignee": {
                "type": ["string", "null"],
                "description": "An active agent's email address, 'me', or null to unassign.",
            },
            "tags": {
                "type": "array",
                "maxItems": 20,
                "items": {"type": "string", "maxLength": 50},
                "description": "The ticket's whole set of tags (replaces the current ones); "
                "names are lower-cased, unknown tags are created.",
            },
        },
    },
}

_NUMBER_PARAMETER = {
    "name": "number",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
    "description": "The ticket number.",
}

_COMMON_ERRORS = {
    "401": {"$ref": "#/components/responses/Unauthorized"},
}
_TICKET_ERRORS = {**_COMMON_ERRORS, "404": {"$ref": "#/components/responses/NotFound"}}
_BODY_ERRORS = {
    **_TICKET_ERRORS,
    "400": {"$ref": "#/components/responses/BadRequest"},
    "413": _error_response("The body is larger than 2 MB."),
    "415": _error_response("The body is not sent as application/json."),
}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


PATHS: dict[str, Any] = {
    "/tickets": {
        "get": {
            "operationId": "listTickets",
            "summary": "List, filter and search tickets",
            "description": "Without `q`: most recently updated first, keyset-paginated (follow "
            "`next_cursor` until it is null). With `q`: the best matches first (ties broken by "
            "ticket id), paged the same way through the 5,000 best matches. Merged tickets "
            "are never listed. Unknown parameters are refused with 400.",
            "parameters": [
                _query(
                    "status",
                    "Only tickets with this status.",
                    SCHEMAS["Ticket"]["properties"]["status"],
                ),
                _query(
                    "assignee",
                    "'me', 'none' (unassigned) or an agent's email address.",
                    {"type": "string"},
                ),
                _query(
                    "q",
                    "Full-text search over subjects, messages, notes and the customer; every "
                    "word must match. Ranked, best first; follow `next_cursor` for more.",
                    {"type": "string"},
                ),
                _query(
                    "cursor",
                    "The `next_cursor` of the previous page (same `q`, if any), unchanged.",
                    {"type": "string"},
                ),
                _query(
                    "limit",
                    "Tickets per page.",
                    {"type": "integer", "minimum": 1, "maximum": 100, "default": 50},
                ),
            ],
            "responses": {
                "200": {
                    "description": "One page of tickets.",
                    "content": _json(_ref("TicketList")),
                },
                "400": {"$ref": "#/components/responses/BadRequest"},
                **_COMMON_ERRORS,
            },
        }
    },
    "/tickets/{number}": {
        "parameters": [_NUMBER_PARAMETER],
        "get": {
            "operationId": "getTicket",
            "summary": "A ticket with its whole history",
            "responses": {
                "200": {"description": "The ticket.", "content": _json(_ref("Ticket"))},
                **_TICKET_ERRORS,
            },
        },
        "patch": {
            "operationId": "updateTicket",
            "summary": "Change status, priority, assignee or tags",
            "description": "Every field is checked before anything changes; each change is "
            "recorded in the ticket's history.",
            "requestBody": {"required": True, "content": _json(_ref("TicketPatch"))},
            "responses": {
                "200": {"description": "The changed ticket.", "content": _json(_ref("Ticket"))},
                **_BODY_ERRORS,
            },
        },
    },
    "/tickets/{number}/replies": {
        "parameters": [_NUMBER_PARAMETER],
        "post": {
            "operationId": "replyToTicket",
            "summary": "Reply to the customer (emailed through the outbox)",
            "requestBody": {"required": True, "content": _json(_ref("MessageInput"))},
            "responses": {
                "201": {
                    "description": "The reply, and its email queued in the outbox.",
                    "content": _json(_ref("ReplyCreated")),
                },
                **_BODY_ERRORS,
            },
        },
    },
    "/tickets/{number}/notes": {
        "parameters": [_NUMBER_PARAMETER],
        "post": {
            "operationId": "addNote",
            "summary": "Add an internal note (seen by agents only, never emailed)",
            "requestBody": {"required": True, "content": _json(_ref("MessageInput"))},
            "responses": {
                "201": {"description": "The note.", "content": _json(_ref("NoteCreated"))},
                **_BODY_ERRORS,
            },
        },
    },
    "/articles/suggest": {
        "get": {
            "operationId": "suggestArticles",
            "summary": "Help articles for what a customer is typing (public, no token)",
            "description": "Published help articles that may answer `q`, best first. Needs no "
            "token (the contact form calls it from the browser) and is rate limited per client "
            "address (`HANDOFF_SUGGEST_RATE_LIMIT`, default 60/minute): over it, 429 with "
            "`Retry-After`. An empty `q` gives an empty list.",
            "security": [],
            "parameters": [
                _query(
                    "q",
                    "What the customer typed; only the first 500 characters are used.",
                    {"type": "string", "maxLength": 500},
                ),
                _query(
                    "limit",
                    "At most this many articles (values outside 1-10 are clamped).",
                    {"type": "integer", "minimum": 1, "maximum": 10, "default": 5},
                ),
            ],
            "responses": {
                "200": {
                    "description": "Suggested articles, best first.",
                    "content": _json(_ref("ArticleSuggestions")),
                },
                "400": {"$ref": "#/components/responses/BadRequest"},
                "429": _error_response("Too many requests from this address; retry later."),
            },
        }
    },
    "/accounts": {
        "post": {
            "operationId": "upsertAccounts",
            "summary": "Create or update billing accounts (batch, by external_id)",
            "description": "The CSV import's fields as JSON, at most 1000 per request. Each item "
            "is checked on its own: good items are saved, bad ones are listed in `errors` with "
            "their index. An item holding anything like a full card number is refused and "
            "never stored. Card fields are all given or all left out.",
            "requestBody": {
                "required": True,
                "content": _json(
                    {
                        "type": "object",
                        "required": ["accounts"],
                        "additionalProperties": False,
                        "properties": {
                            "accounts": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": 1000,
                                "items": {
                                    "type": "object",
                                    "required": ["external_id", "email"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "external_id": {"type": "string", "maxLength": 200},
                                        "email": {"type": "string", "format": "email"},
                                        "name": {"type": "string"},
                                        "plan": {"type": "string"},
                                        "status": {"type": "string"},
                                        "card_brand": {"type": "string"},
                                        "card_last4": {"type": "string", "pattern": "^[0-9]{4}$"},
                                        "card_exp_month": {"type": ["integer", "string"]},
                                        "card_exp_year": {"type": ["integer", "string"]},
                                    },
                                },
                            }
                        },
                    }
                ),
            },
            "responses": {
                "200": {
                    "description": "What was saved, and the items refused.",
                    "content": _json(
                        {
                            "type": "object",
                            "required": ["received", "created", "updated", "errors"],
                            "properties": {
                                "received": {"type": "integer"},
                                "created": {"type": "integer"},
                                "updated": {"type": "integer"},
                                "cards_changed": {"type": "integer"},
                                "errors": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "index": {"type": "integer"},
                                            "message": {"type": "string"},
                                        },
                                    },
                                },
                            },
                        }
                    ),
                },
                "400": {"$ref": "#/components/responses/BadRequest"},
                "413": _error_response("The body is larger than 2 MB."),
                "415": _error_response("The body is not sent as application/json."),
                **_COMMON_ERRORS,
            },
        }
    },
    "/openapi.json": {
        "get": {
            "operationId": "getOpenApi",
            "summary": "This document",
            "security": [],
            "responses": {
                "200": {
                    "description": "The OpenAPI document.",
                    "content": _json({"type": "object"}),
                }
            },
        }
    },
}


def document() -> dict[str, Any]:
    """The whole OpenAPI document (a fresh dict each call)."""
    import copy

    return copy.deepcopy(
        {
            "openapi": "3.1.0",
            "info": {
                "title": "Handoff agent API",
                "version": API_VERSION,
                "description": "Work tickets from scripts and tools. Authenticate with a "
                "personal API token (`flask --app wsgi agents token EMAIL`) sent as "
                "`Authorization: Bearer <token>`; cookies are not accepted. Ticket shapes "
                "are those of the export format. Errors are JSON: "
                '`{"error": {"status": 404, "message": "…"}}`.',
            },
            "servers": [{"url": "/api/v1"}],
            "security": [{"bearerAuth": []}],
            "paths": PATHS,
            "components": {
                "securitySchemes": {
                    "bearerAuth": {
                        "type": "http",
                        "scheme": "bearer",
                        "description": "A personal API token, `hof_…`.",
                    }
                },
                "schemas": SCHEMAS,
                "responses": {
                    "Unauthorized": _error_response(
                        "No token, or an unknown or revoked one (`WWW-Authenticate: Bearer`)."
                    ),
                    "NotFound": _error_response("No such ticket (or it was merged)."),
                    "BadRequest": _error_response(
                        "A parameter or field is unknown or has an invalid value; the message "
                        "says which."
                    ),
                },
            },
        }
    )
