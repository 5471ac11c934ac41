"""Integration API of the tenants app: who am I (the tenant of the key)."""

from datetime import datetime

from django.http import HttpRequest
from ninja import Field, Router, Schema

from tenants.api_docs import documented

router = Router(tags=["tenant"])


class TenantOut(Schema):
    slug: str = Field(description="The tenant's short name, as in its page addresses (/t/<slug>/).")
    name: str = Field(description="The tenant's display name.")


class KeyOut(Schema):
    name: str = Field(description="The name the tenant's admin gave the key.")
    prefix: str = Field(
        description="The key's first characters, shown on the API keys page to tell keys apart."
    )
    created_at: datetime = Field(description="When the key was issued (ISO 8601, UTC).")


class WhoAmI(Schema):
    tenant: TenantOut = Field(description="The tenant the key belongs to: every answer is about this tenant.")
    api_key: KeyOut = Field(description="The key this request was authenticated with (never its secret).")


@router.get(
    "/tenant",
    summary="The tenant and key this request is authenticated as",
    **documented(WhoAmI),
)
def whoami(request: HttpRequest) -> dict:
    key = request.auth  # type: ignore[attr-defined]
    return {"tenant": key.tenant, "api_key": key}
