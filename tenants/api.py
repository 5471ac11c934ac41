"""Integration API of the tenants app: who am I (the tenant of the key)."""

from datetime import datetime

from django.http import HttpRequest
from ninja import Router, Schema

router = Router(tags=["tenant"])


class TenantOut(Schema):
    slug: str
    name: str


class KeyOut(Schema):
    name: str
    prefix: str
    created_at: datetime


class WhoAmI(Schema):
    tenant: TenantOut
    api_key: KeyOut


@router.get("/tenant", response=WhoAmI, summary="The tenant and key this request is authenticated as")
def whoami(request: HttpRequest) -> dict:
    key = request.auth  # type: ignore[attr-defined]
    return {"tenant": key.tenant, "api_key": key}
