"""The integration API under /api/v1/: mounts each app's router (`<app>/api.py`) and maps exceptions
to the error body of `tenants.errors` (the only place that builds it). Errors that ninja or Django
produce before any handler runs (405, 404, 500) are shaped by `config.middleware`."""

from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET
from ninja import NinjaAPI, Swagger
from ninja.errors import AuthenticationError, HttpError, ValidationError

from credits.api import router as credits_router
from licensing.api import router as licensing_router
from plans.api import router as plans_router
from sessions_billing.api import router as sessions_router
from tenants.api import router as tenants_router
from tenants.api_auth import UNAUTHORIZED_MESSAGE, ApiKeyAuth
from tenants.api_fields import DuplicateKey, FieldErrors, FormBody, StrictJsonParser
from tenants.api_run import streamlined
from tenants.errors import BusinessError, error_body, http_error


def _read_only(view: Any) -> Any:
    """The schema and the docs page answer GET (and HEAD, as GET: config.middleware); any other method
    is a 405 naming GET, not ninja's schema for a DELETE nor a CSRF refusal worded for a key. Exempt from
    CSRF because nothing but GET reaches the view, and GET is never checked."""
    return csrf_exempt(require_GET(view))


api = NinjaAPI(
    title="Allowance integration API",
    version="1",
    description="Every request carries `Authorization: Bearer <key>`; the key decides the tenant. "
    'Every error answers `{"error": {"code", "message"}}` (with `details` on a 422 from the request\'s '
    "validation): branch on `code`, "
    "show `message`. A body field or query parameter an operation does not take, or a JSON key named twice, "
    "is a 422. Credits are counted in thousandths of a credit; times are ISO 8601 in UTC.",
    urls_namespace="api",
    auth=ApiKeyAuth(),
    parser=StrictJsonParser(),  # a JSON key named twice is a 422, not the last one silently
    # Swagger UI from our own origin ("ninja" is in INSTALLED_APPS; its template has no inline
    # script), without the badge that would fetch validator.swagger.io (offline, and the CSP).
    docs=Swagger(settings={"validatorUrl": None}),
    docs_url="/docs",
    docs_decorator=_read_only,
)
# Every operation runs through ninja's own steps without the per-request checks that never apply to
# ours (tenants.api_run): the integration API is the hot path.
api.add_decorator(streamlined, mode="view")


def _error(
    request: HttpRequest, status: int, code: str, message: str, details: object = None
) -> HttpResponse:
    return api.create_response(request, error_body(code, message, details=details), status=status)


@api.exception_handler(BusinessError)
def on_business_error(request: HttpRequest, exc: BusinessError) -> HttpResponse:
    return _error(request, exc.status, exc.code, exc.message)


@api.exception_handler(AuthenticationError)
def on_auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    response = _error(request, 401, "unauthorized", UNAUTHORIZED_MESSAGE)
    # RFC 9110 15.5.2: a 401 names the scheme to use; RFC 6750 3.1: with a key that was sent but is
    # unknown or revoked, error="invalid_token".
    sent = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")[0].lower() == "bearer"
    response["WWW-Authenticate"] = (
        'Bearer realm="api", error="invalid_token"' if sent else 'Bearer realm="api"'
    )
    return response


@api.exception_handler(ValidationError)
def on_validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    details = exc.errors if isinstance(exc, FieldErrors) else [_as_sent(e) for e in exc.errors]
    first = details[0] if details else {}
    where = ".".join(str(part) for part in first.get("loc", ())[1:])
    message = f"{where}: {first.get('msg', 'invalid')}" if where else first.get("msg", "Invalid request.")
    return _error(request, 422, "invalid_request", message, details=details)


def _as_sent(error: dict[str, Any]) -> dict[str, Any]:
    """ninja's location of a body field, ("body", <the view's body parameter>, field, ...), as the
    client sent it: ("body", field, ...). The parameter's name ("payload", "data") is ours, not the
    client's. Query and path locations are already ("query", name) and ("path", name)."""
    loc = list(error.get("loc", ()))
    if loc[:1] != ["body"] or len(loc) < 2:
        return error
    if len(loc) == 2 and error.get("type") in ("model_attributes_type", "dict_type", "model_type"):
        # The body is JSON but not an object: pydantic's words ("a valid dictionary or object to
        # extract fields from") are about Python, not about what the client sent.
        return {**error, "loc": ["body"], "msg": "The request body should be a JSON object."}
    return {**error, "loc": ["body", *loc[2:]]}


@api.exception_handler(Http404)
def on_not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return _error(request, 404, *http_error(404))  # never the exception's text: it names our models


@api.exception_handler(RequestDataTooBig)
def on_body_too_large(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    # Over DATA_UPLOAD_MAX_MEMORY_SIZE, found when ninja reads the body (any Content-Type): a 413,
    # in DEBUG too (ninja would otherwise answer its traceback there).
    return _error(request, 413, *http_error(413))


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    # ninja adds the parser's own words in DEBUG ("Cannot parse request body (Expecting ...)").
    if exc.status_code == 400 and isinstance(exc.__cause__, DuplicateKey | FormBody):
        return on_validation_error(request, FieldErrors(exc.__cause__.errors()))
    if exc.status_code == 400 and str(exc).startswith("Cannot parse request body"):
        # A body that is not JSON is bad input like any other (DESIGN: 422).
        return _error(request, 422, "invalid_request", "The request body is not valid JSON.")
    return _error(request, exc.status_code, "http_error", str(exc))


api.add_router("/", tenants_router)
api.add_router("/", plans_router)
api.add_router("/", credits_router)
api.add_router("/", sessions_router)
api.add_router("/", licensing_router)
