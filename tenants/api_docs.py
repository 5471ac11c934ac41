"""The error body as the integration API's OpenAPI schema shows it, and how an operation documents
the error statuses it can answer (DESIGN, "API conventions": every operation documents each status
it can answer, with examples).

The body itself is built only by `tenants.errors.error_body`; this module describes it. Every
operation's documentation ends with `COMMON_ERRORS` (what any request can be answered before the
operation reads it: a request that cannot be read, a missing or bad key, a body too large or sent
compressed, a query parameter the operation does not take) after its own cases:
`**documented(OkSchema, NOT_FOUND_CASE, ...)` in the router's decorator gives ninja both the
`response=` mapping and the examples (`openapi_extra=`). A write (POST, PUT, DELETE) reads a body,
so it lists `FORM_BODY` among its cases (tests/test_api_schema.py holds every write to it)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from django.conf import settings
from ninja import Field, Schema

from tenants.api_fields import FormBody
from tenants.errors import error_body, http_error


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
        description="On a 422 `invalid_request` from the request's validation (a field's type, range or "
        "presence; a parameter not taken): one object per invalid input, with `loc` (where), `msg` (what is "
        "wrong) and `type` (a stable kind of error). A 422 the service gives after validation (e.g. "
        "`invalid_amount`, `unknown_feature`, `quantity_required`) has none: its `code` and `message` say it.",
    )


class ErrorOut(Schema):
    """Every error answer of the API has this body."""

    error: ErrorFields = Field(
        description="What went wrong: a code, a message and, on a 422 from validation, details."
    )


@dataclass(frozen=True)
class ErrorCase:
    """One way an operation can fail: the status, the body's code and message, and when it happens.

    A 422 `invalid_request` that the schema's validation answers carries `details`, one per invalid
    input: `source` says where the field was sent ("body", "query" or "path"; the field is the one
    the message names) and `detail_type` the detail's stable type. A refusal that the service
    makes after validation has no details: `source=None`."""

    status: int
    code: str
    message: str
    when: str
    source: str | None = "body"
    detail_type: str = "value_error"
    name: str = ""  # the example's name, when its code and field do not tell it from another case

    def field(self) -> list[str]:
        """The field its message names ("at: must be…" → ["at"])."""
        field, sep, _ = self.message.partition(": ")
        return field.split(".") if sep else []

    def details(self) -> list[dict[str, Any]] | None:
        """The example's `details`, as config.api answers them (None: the body has none)."""
        if self.code != "invalid_request" or self.source is None:
            return None
        msg = self.message.partition(": ")[2] or self.message
        return [{"type": self.detail_type, "loc": [self.source, *self.field()], "msg": msg}]

    def example_name(self) -> str:
        """The example's name: its code, and the field for a field's refusal (several cases of one
        operation may share a code: each keeps its own example)."""
        if self.name:
            return self.name
        field = ".".join(self.field())
        return f"{self.code} ({field})" if field and self.code == "invalid_request" else self.code


BAD_REQUEST = ErrorCase(
    400,
    *http_error(400),
    "The request could not be read (a Host this server does not serve, a form with more fields than it "
    "reads). A body over the size limit is a 413.",
)
UNAUTHORIZED = ErrorCase(401, *http_error(401), "No API key was sent, or the key is unknown or revoked.")
NOT_FOUND = ErrorCase(404, *http_error(404), "Nothing of that name exists for the key's tenant.")
_LIMIT_MB = f"{settings.DATA_UPLOAD_MAX_MEMORY_SIZE / 1024 / 1024:.1f}".removesuffix(".0")
PAYLOAD_TOO_LARGE = ErrorCase(
    413, *http_error(413), f"The request body is larger than {_LIMIT_MB} MB: nothing is read or done."
)
UNSUPPORTED_ENCODING = ErrorCase(
    415,
    *http_error(415),
    "The request body was sent with a Content-Encoding (gzip, br, deflate): send it as is. The answer "
    "carries `Accept-Encoding: identity`.",
)
UNKNOWN_QUERY = ErrorCase(
    422,
    "invalid_request",
    "dry_run: Unknown query parameter",
    "A query parameter the operation does not take, or one of its parameters given twice (`Given more than "
    "once: send it once`): nothing is done.",
    source="query",
    detail_type="extra_forbidden",
)
# A write's body sent as a form (tenants.api_fields.FormBody).
FORM_BODY = ErrorCase(
    422,
    "invalid_request",
    FormBody.MESSAGE,
    "The body was sent as a form (application/x-www-form-urlencoded or multipart/form-data, as curl -d "
    "sends it without a Content-Type), or is not JSON: nothing is done. A form without fields is no body.",
    detail_type="content_type",
    name="invalid_request (form)",
)
# What every operation can answer, whatever it does: listed after its own cases.
COMMON_ERRORS = (BAD_REQUEST, UNAUTHORIZED, PAYLOAD_TOO_LARGE, UNSUPPORTED_ENCODING, UNKNOWN_QUERY)


def documented(
    ok: type[Schema] | dict[int, type[Schema]],
    *cases: ErrorCase,
    ok_status: int = 200,
    ok_examples: dict[int, dict[str, Any]] | None = None,
    ok_descriptions: dict[int, str] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for a ninja operation decorator: `response` maps each success status to its
    schema (`ok`, or a {status: schema} mapping for operations with several, e.g. 201 and 200) and
    each error status to `ErrorOut`; `openapi_extra` gives each error status a description listing
    when it happens and one example body per case, and each success status its examples
    (`ok_examples`: {status: {name: body}})."""
    by_status: dict[int, list[ErrorCase]] = defaultdict(list)
    for case in (*cases, *COMMON_ERRORS):
        by_status[case.status].append(case)
    responses: dict[int, Any] = dict(ok) if isinstance(ok, dict) else {ok_status: ok}
    extra: dict[int, Any] = {}
    for status, named in (ok_examples or {}).items():
        extra[status] = {
            "description": (ok_descriptions or {}).get(status, HTTPStatus(status).phrase),
            "content": {"application/json": {"examples": {k: {"value": v} for k, v in named.items()}}},
        }
    for status, found in sorted(by_status.items()):
        responses[status] = ErrorOut
        examples: dict[str, Any] = {}
        for case in found:
            body = error_body(case.code, case.message, details=case.details())
            examples.setdefault(case.example_name(), {"summary": case.when, "value": body})
        extra[status] = {
            "description": f"{HTTPStatus(status).phrase}: " + " ".join(case.when for case in found),
            "content": {"application/json": {"examples": examples}},
        }
    return {"response": responses, "openapi_extra": {"responses": extra}}
