"""The error body as the integration API's OpenAPI schema shows it, and how an operation documents
the error statuses it can answer (DESIGN, "API conventions": every operation documents each status
it can answer, with examples).

The body itself is built only by `tenants.errors.error_body`; this module describes it. Every
operation's documentation starts from `COMMON_ERRORS` (a NUL anywhere is a 400, a missing or bad
key a 401) and adds its own cases: `**documented(OkSchema, NOT_FOUND_CASE, ...)` in the router's
decorator gives ninja both the `response=` mapping and the examples (`openapi_extra=`)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from ninja import Field, Schema

from tenants.errors import NUL_REFUSED, error_body, http_error


class ErrorFields(Schema):
    code: str = Field(
        description="Stable, machine-readable reason; branch on this, never on the message.",
        examples=["payment_overdue"],
    )
    message: str = Field(
        description="What to show a person, in the product's words (the specification's exact "
        "message where it has one).",
        examples=["Your payment is overdue and the grace period has expired."],
    )
    details: list[dict[str, Any]] | None = Field(
        default=None,
        description="Only on 422: one object per invalid input, with `loc` (where), `msg` (what is "
        "wrong) and `type` (a stable kind of error).",
    )


class ErrorOut(Schema):
    """Every error answer of the API has this body."""

    error: ErrorFields = Field(description="What went wrong: a code, a message and, on 422, details.")


@dataclass(frozen=True)
class ErrorCase:
    """One way an operation can fail: the status, the body's code and message, and when it happens."""

    status: int
    code: str
    message: str
    when: str


BAD_REQUEST = ErrorCase(400, *NUL_REFUSED, "The path, query, a header or the body holds a NUL character.")
UNAUTHORIZED = ErrorCase(401, *http_error(401), "No API key was sent, or the key is unknown or revoked.")
NOT_FOUND = ErrorCase(404, *http_error(404), "Nothing of that name exists for the key's tenant.")
INVALID = ErrorCase(
    422,
    "invalid_request",
    "limit: Input should be a valid integer",
    "A parameter or a body field is invalid.",
)
# What every operation behind the API key can answer.
COMMON_ERRORS = (BAD_REQUEST, UNAUTHORIZED)


def documented(ok: type[Schema], *cases: ErrorCase, ok_status: int = 200) -> dict[str, Any]:
    """Keyword arguments for a ninja operation decorator: `response` maps the success status to
    `ok` and each error status to `ErrorOut`; `openapi_extra` gives each error status a description
    listing when it happens and one example body per case."""
    by_status: dict[int, list[ErrorCase]] = defaultdict(list)
    for case in (*COMMON_ERRORS, *cases):
        by_status[case.status].append(case)
    responses: dict[int, Any] = {ok_status: ok}
    extra: dict[int, Any] = {}
    for status, found in sorted(by_status.items()):
        responses[status] = ErrorOut
        examples = {}
        for case in found:
            body = error_body(case.code, case.message)
            if case is INVALID:
                body["error"]["details"] = [
                    {
                        "type": "int_parsing",
                        "loc": ["query", "limit"],
                        "msg": "Input should be a valid integer",
                    }
                ]
            examples[case.code] = {"summary": case.when, "value": body}
        extra[status] = {
            "description": f"{HTTPStatus(status).phrase}: " + " ".join(case.when for case in found),
            "content": {"application/json": {"examples": examples}},
        }
    return {"response": responses, "openapi_extra": {"responses": extra}}
