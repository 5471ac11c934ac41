"""The integration API under /api/v1/, authenticated by `Authorization: Bearer <key>`.

Every error answers `{"error": {"code": ..., "message": ...}}`: ninja's own validation and
authentication errors are mapped to that shape here, as are our BusinessErrors."""

from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import HttpBearer

from plans.api import router as plans_router
from tenants.api import router as tenants_router
from tenants.errors import BusinessError, error_body
from tenants.models import ApiKey
from tenants.services import api_key_authenticate


class ApiKeyAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        key = api_key_authenticate(token)
        if key is not None:
            request.tenant = key.tenant  # type: ignore[attr-defined]
        return key


api = NinjaAPI(
    title="Allowance integration API",
    version="1",
    urls_namespace="api",
    auth=ApiKeyAuth(),
    docs_url="/docs",
)


def _error(request: HttpRequest, status: int, code: str, message: str) -> HttpResponse:
    return api.create_response(request, error_body(code, message), status=status)


@api.exception_handler(BusinessError)
def on_business_error(request: HttpRequest, exc: BusinessError) -> HttpResponse:
    return _error(request, exc.status, exc.code, exc.message)


@api.exception_handler(AuthenticationError)
def on_auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return _error(
        request, 401, "unauthorized", "A valid API key is required: send it as 'Authorization: Bearer <key>'."
    )


@api.exception_handler(ValidationError)
def on_validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    first = exc.errors[0] if exc.errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
    message = f"{where}: {first.get('msg', 'invalid')}" if where else first.get("msg", "Invalid request.")
    response = api.create_response(
        request, {"error": {"code": "invalid_request", "message": message, "details": exc.errors}}, status=422
    )
    return response


@api.exception_handler(Http404)
def on_not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return _error(request, 404, "not_found", "Not found.")


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return _error(request, exc.status_code, "http_error", str(exc))


api.add_router("/", tenants_router)
api.add_router("/", plans_router)
