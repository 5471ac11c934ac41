"""API-key authentication for django-ninja: `Authorization: Bearer <key>`; the key decides the tenant.

Every app's router uses it (it is the API's default auth, set where the routers are mounted)."""

from __future__ import annotations

from django.http import HttpRequest
from ninja.security import HttpBearer

from tenants.errors import http_error
from tenants.key_confirmation import KeyConfirmation
from tenants.models import ApiKey, Tenant
from tenants.services import api_key_authenticate


class ApiKeyAuth(HttpBearer):
    def __init__(self, *, companions: bool = False, remembered: bool = False) -> None:
        # companions: read the registered key companions in the key's statement (an endpoint that
        # uses them sets its own `auth=ApiKeyAuth(companions=True)`). remembered: the key may come
        # from this process's memory, for the request to confirm (tenants.key_confirmation): only
        # for an endpoint whose write is a key-confirming procedure (tenants.durable_call).
        super().__init__()
        self.companions = companions
        self.remembered = remembered

    def __call__(self, request: HttpRequest) -> ApiKey | None:
        # HttpBearer.__call__, reading the header from META: `request.headers` would build a mapping
        # of every header first, on every API call, for this one.
        value = request.META.get("HTTP_AUTHORIZATION")
        if not value:
            return None
        scheme, _, token = value.partition(" ")
        if scheme.lower() != self.openapi_scheme:
            return None
        # RFC 9110 11.4: the scheme and the key are separated by one or more spaces.
        return self.authenticate(request, token.strip(" \t"))

    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        # A request that runs again after its remembered key was found stale reads it afresh.
        remembered = self.remembered and not getattr(request, "key_stale", False)
        key = api_key_authenticate(token, companions=self.companions, remembered=remembered)
        if key is not None:
            request.tenant = key.tenant  # type: ignore[attr-defined]
            if key.remembered:
                request.key_confirmation = KeyConfirmation(  # type: ignore[attr-defined]
                    key, token, api_key_authenticate
                )
        return key


class ApiRequest(HttpRequest):
    """What an endpoint behind `ApiKeyAuth` receives."""

    auth: ApiKey
    tenant: Tenant


UNAUTHORIZED_MESSAGE = http_error(401)[1]
