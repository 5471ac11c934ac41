"""The one business error type and the one builder of the error body.

Every refusal raises `BusinessError` with a stable code and the message the user sees (the spec's
exact words where it has them). Pages show `message`; the API answers `error_body(...)` with
`status`. Nothing else in the project builds `{"error": ...}`."""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse


class BusinessError(Exception):
    status = 400

    def __init__(self, code: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        if status is not None:
            self.status = status


def error_body(code: str, message: str, *, details: Any = None) -> dict[str, Any]:
    """`{"error": {"code", "message"}}`, with `details` (field errors) when there are any."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error}


def error_response(code: str, message: str, *, status: int, details: Any = None) -> JsonResponse:
    return JsonResponse(error_body(code, message, details=details), status=status)


# What the API answers for an HTTP status that no handler of ours described (ninja's and Django's
# own 404, 405, 500 ...): a code and a message that reveal no internals.
HTTP_ERRORS: dict[int, tuple[str, str]] = {
    400: ("bad_request", "The request could not be understood."),
    401: ("unauthorized", "A valid API key is required: send it as 'Authorization: Bearer <key>'."),
    403: ("forbidden", "This key may not do that."),
    404: ("not_found", "Not found."),
    405: ("method_not_allowed", "This method is not allowed on this endpoint."),
    413: ("payload_too_large", "The request body is too large."),
    415: (
        "unsupported_content_encoding",
        "Send the request body uncompressed: no Content-Encoding (gzip, br, deflate) is accepted.",
    ),
    429: ("rate_limited", "Too many requests. Try again later."),
    500: ("server_error", "Something went wrong on our side. Try again later."),
}


# A NUL character (U+0000) anywhere a client can put one: refused before anything runs.
NUL_REFUSED: tuple[str, str] = (
    "bad_request",
    "The request contains a NUL character, which no field, path or header may hold.",
)


def http_error(status: int) -> tuple[str, str]:
    return HTTP_ERRORS.get(status, ("error", "The request failed."))
