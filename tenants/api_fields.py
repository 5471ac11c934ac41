"""Field types every app's API shares."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from io import BytesIO
from typing import Annotated, Any

from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, QueryDict
from django.http.multipartparser import MultiPartParser, MultiPartParserError
from ninja.errors import ValidationError
from ninja.parser import Parser
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import PydanticCustomError

from tenants.text import CONTROL_CLASS


def _in_utc(value: datetime) -> datetime:
    # "9999-12-31T23:59:59-14:00" parses, but it is in the year 10000 in UTC, where Python's
    # datetime (and the database) cannot hold it: refused here, not a 500 further down. A moment
    # goes on in UTC, so every answer that repeats it says it in UTC ("Z"), as the API promises.
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError(
            "datetime_out_of_range", "Input should be a moment between the years 1 and 9999 in UTC"
        ) from None


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_text(value: Any) -> Any:
    # pydantic also reads a number (or a text of digits) as seconds since 1970: "as_of=-1" would be
    # a moment in 1969. The API promises ISO 8601 text; anything else is refused.
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise PydanticCustomError(
            "datetime_not_iso", "Input should be an ISO 8601 date and time with its zone"
        )
    return value


# An ISO 8601 moment with its zone (a naive one is refused), within what UTC can hold, in UTC.
Moment = Annotated[AwareDatetime, BeforeValidator(_iso_text), AfterValidator(_in_utc)]

_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_day(value: Any) -> Any:
    # As for a moment, pydantic also reads a number (or a text of digits) as seconds since 1970:
    # "until=0" would be 1 January 1970. A day is ISO 8601 text, YYYY-MM-DD, and nothing more.
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _ISO_DAY.fullmatch(value):
        raise PydanticCustomError("date_not_iso", "Input should be an ISO 8601 date (YYYY-MM-DD)")
    return value


# An ISO 8601 day: YYYY-MM-DD.
Day = Annotated[date, BeforeValidator(_iso_day)]


def pattern_says(code: str, message: str) -> WrapValidator:
    """A pattern's refusal in words (pydantic's own names the regular expression); the pattern
    stays in the OpenAPI schema."""

    def wrap(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except PydanticValidationError as exc:
            if any(e["type"] == "string_pattern_mismatch" for e in exc.errors()):
                raise PydanticCustomError(code, message) from None
            raise

    return WrapValidator(wrap)


# An id or a name a client sends holds no control characters (tenants.text):
# `Annotated[str, StringConstraints(..., pattern=PRINTABLE), NO_CONTROL]`.
PRINTABLE = f"^[^{CONTROL_CLASS}]+$"
NO_CONTROL = pattern_says("control_character", "String should not contain control characters")


class DuplicateKey(ValueError):
    """A JSON object that names a key twice. RFC 8259 §4 leaves its meaning to each reader (most
    keep the last, some the first): a proxy, a log and this API could each see another request,
    so it is refused (422) rather than guessed. `path`: where the key is, from the body's top
    (object keys and list indexes)."""

    MESSAGE = "Named twice in its object: send each field once"

    def __init__(self, path: tuple[str | int, ...]) -> None:
        super().__init__(f"{'.'.join(map(str, path))}: {self.MESSAGE}")
        self.path = path

    def errors(self) -> list[dict[str, Any]]:
        return [{"type": "duplicate_key", "loc": ("body", *self.path), "msg": self.MESSAGE}]


class _Repeated(dict[str, Any]):
    """The object the reader made of pairs that name `key` twice (found again by identity)."""

    key = ""


def _where(value: Any, target: object, path: tuple[str | int, ...] = ()) -> tuple[str | int, ...] | None:
    if value is target:
        return path
    children = (
        value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    )
    for name, child in children:
        if isinstance(child, dict | list) and (found := _where(child, target, (*path, name))) is not None:
            return found
    return None


def loads_strict(raw: bytes | str) -> Any:
    """json.loads, refusing an object that names a key twice (DuplicateKey, a ValueError, with the
    key's path). The reader's hook only compares sizes: the path is looked for when one repeats."""
    repeated: list[_Repeated] = []

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        found = dict(pairs)
        if len(found) == len(pairs):
            return found
        seen: set[str] = set()
        marked = _Repeated(found)
        marked.key = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        repeated.append(marked)
        return marked

    data = json.loads(raw, object_pairs_hook=unique)
    if repeated:
        first = repeated[0]
        raise DuplicateKey((*(_where(data, first) or ()), first.key))
    return data


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class FormBody(ValueError):
    """A body whose Content-Type says it is a form (FORM_TYPES) and that holds a field: the API reads
    JSON only, so it is refused (422) on every endpoint and for every method, never read as JSON
    against what it says it is nor taken for no body."""

    MESSAGE = "Send the body as JSON (application/json)."

    def __init__(self) -> None:
        super().__init__(self.MESSAGE)

    def errors(self) -> list[dict[str, Any]]:
        return [{"type": "content_type", "loc": ("body",), "msg": self.MESSAGE}]


def form_without_fields(request: HttpRequest) -> bool | None:
    """None when the body is not sent as a form; else whether the form holds no field (what a form
    posted without fields, or the test client's bare `post`, sends). Parsed here, not read from
    `request.POST`: Django fills that for a POST only, so a PUT's or a DELETE's form would look
    empty and its write go ahead. A form that cannot be parsed (a multipart body without its
    boundary) or holds more fields than Django parses counts as holding some."""
    if request.content_type not in FORM_TYPES:
        return None
    raw = request.body
    if not raw.strip():
        return True
    try:
        if request.content_type == "multipart/form-data":
            parser = MultiPartParser(request.META, BytesIO(raw), request.upload_handlers, request.encoding)
            fields, files = parser.parse()
            return not (fields or files)
        return not QueryDict(raw, encoding=request.encoding)
    except (MultiPartParserError, SuspiciousOperation):  # no boundary; too many fields or files
        return False


class StrictJsonParser(Parser):
    """ninja's body parser: a JSON object whatever the Content-Type says, but a form (FormBody) or
    an object that names a key twice is refused (config.api answers 422 for both)."""

    def parse_body(self, request: HttpRequest) -> Any:
        if request.content_type in FORM_TYPES:
            raise FormBody
        return loads_strict(request.body)


class FieldErrors(ValidationError):
    """Field errors whose `loc` already says where the client put the value: ("body", field, ...),
    ("query", name) or ("path", name). ninja's own ValidationError also names the view's body
    parameter ("body", "payload", field), which config.api drops before answering, so the API's
    `details` read the same whichever raised them."""


class RequestBody(BaseModel):
    """A request body's schema: a plain pydantic model. django-ninja's `Schema` wraps every
    validation in a `DjangoGetter`, there to read a model from an ORM object's attributes; a body
    is a JSON object, so that is work for nothing on every API call (about a twentieth of the
    integration API's Python time on the hot path). Validation, its errors and the OpenAPI page are
    the same: `from_attributes` as ninja's `Schema` sets it, so a body that is not an object is
    refused in the same words ("a valid dictionary or object"), naming no class of ours.

    A field the schema does not know is refused (422, "Extra inputs are not permitted"), as Stripe
    refuses an unknown parameter (docs.stripe.com/changelog/2011-06-21/exceptions-unrecognized-api-
    parameters): a misspelled optional field ("credit" for "credits" on a hold's commit) would
    otherwise be taken for its absence, and do what its absence does."""

    model_config = ConfigDict(from_attributes=True, extra="forbid")


def optional_body[Body: RequestBody](
    request: HttpRequest, schema: type[Body], *, example: str
) -> Body | None:
    """A body that may be left out: none at all (or only whitespace), or a form without fields, is
    None, whatever the method. Anything else must be the JSON object of `schema`, whatever the
    Content-Type says unless it says form (as ninja reads the other endpoints' bodies, through
    StrictJsonParser): a body that is not one is a 422 and the write is not done, never done as if
    nothing had been sent. Read by hand because ninja refuses an empty body of a body parameter,
    and reads none at all for an endpoint without one."""
    empty_form = form_without_fields(request)
    if empty_form is not None:
        if empty_form:
            return None
        raise FieldErrors(FormBody().errors())
    raw = request.body.strip()
    if not raw:
        return None
    return body_of(raw, schema, example=example)


def json_body[Body: RequestBody](request: HttpRequest, schema: type[Body], *, example: str) -> Body:
    """The JSON object of `schema` the request's body holds, read by hand as StrictJsonParser reads
    the others: a form is refused as there (FormBody), anything else read as JSON (body_of)."""
    if request.content_type in FORM_TYPES:
        raise FieldErrors(FormBody().errors())
    return body_of(request.body, schema, example=example)


def body_of[Body: RequestBody](raw: bytes, schema: type[Body], *, example: str) -> Body:
    """The JSON object of `schema` that `raw` holds, or FieldErrors (422) saying what it is not:
    JSON, an object, one without a key named twice, the schema's fields. For a body read by hand
    (ninja reads the others with StrictJsonParser, to the same errors)."""
    try:
        data = loads_strict(raw)
    except DuplicateKey as exc:
        raise FieldErrors(exc.errors()) from None
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python's parser goes
        raise FieldErrors(
            [{"type": "json_invalid", "loc": ("body",), "msg": "The request body is not valid JSON."}]
        ) from None
    if not isinstance(data, dict):
        raise FieldErrors(
            [{"type": "model_type", "loc": ("body",), "msg": f"Send a JSON object, e.g. {example}."}]
        )
    try:
        return schema.model_validate(data)
    except PydanticValidationError as exc:
        raise FieldErrors(
            [
                {"type": e["type"], "loc": ("body", *e["loc"]), "msg": e["msg"]}
                for e in exc.errors(include_url=False, include_context=False, include_input=False)
            ]
        ) from exc


class NoBody(RequestBody):
    """The body of a write that takes nothing beyond its path: `{}` at most."""


def no_body(request: HttpRequest) -> None:
    """A write that takes nothing beyond its path (release a hold, assign or remove a license, reset
    the session limit): no body, `{}`, or a form without fields, for every method. A field is refused as
    `RequestBody` refuses one it does not know (422 naming it, nothing done): a client that meant
    something by it learns it was not read, never that it was."""
    optional_body(request, NoBody, example="{}")
