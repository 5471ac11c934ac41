"""Integration API of the plans app: what the key's tenant is entitled to, per product."""

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema

from plans.admission import Admission, check
from plans.selectors import entitlements
from tenants.errors import BusinessError

router = Router(tags=["entitlements"])


class LimitsOut(Schema):
    session_limit: int | None
    answered_only: bool
    included_credits: int  # thousandths of a credit
    credit_renewal: str
    extra_packs_allowed: bool
    ai_licenses: int
    chat_licenses: int
    ticket_credits_per_license: int
    ticket_credits: int
    unlimited_ai: bool


class UpcomingOut(Schema):
    plan_code: str
    plan_name: str
    starts_on: datetime


class RefusalOut(Schema):
    code: str
    message: str


class ProductOut(Schema):
    product: str
    plan_code: str | None
    plan_name: str | None
    state: str
    badge: str
    active: bool
    period_start: datetime | None
    period_end: datetime | None
    next_billing_date: datetime | None
    trial_ends_at: datetime | None
    trial_days_left: int | None
    grace_until: datetime | None
    ends_at: datetime | None
    limits: LimitsOut
    upcoming: UpcomingOut | None
    refusal: RefusalOut | None


class EntitlementsOut(Schema):
    tenant: str
    products: dict[str, ProductOut]


@router.get(
    "/entitlements",
    response=EntitlementsOut,
    summary="The tenant's plan, state, limits and flags per product",
)
def get_entitlements(request: HttpRequest) -> dict:
    ent = entitlements(tenant=request.auth.tenant)  # type: ignore[attr-defined]
    return {"tenant": ent.tenant_slug, "products": {code: e.as_dict() for code, e in ent.products.items()}}


class AdmissionOut(Schema):
    product: str
    allowed: bool
    code: str | None
    message: str | None
    state: str
    plan_code: str | None
    details: dict[str, Any]


ADMISSION_EXAMPLES = {
    "allowed": {
        "product": "ai_agents",
        "allowed": True,
        "code": None,
        "message": None,
        "state": "active",
        "plan_code": "agents-growth",
        "details": {"billable_sessions": 1180, "session_limit": 1500, "limit_source": "plan"},
    },
    "limit reached": {
        "product": "ai_agents",
        "allowed": False,
        "code": "session_limit_reached",
        "message": "Session limit has been reached: AI agents accept no new sessions until the limit is "
        "increased on the Session limit card or the next billing period starts on 1 Aug 2026.",
        "state": "active",
        "plan_code": "agents-growth",
        "details": {"billable_sessions": 1500, "session_limit": 1500, "limit_source": "plan"},
    },
}


@router.get(
    "/entitlements/{product}/admission",
    response={200: AdmissionOut},
    summary="May the tenant start new work (sessions, credits, tickets) on this product?",
    description="A check, answered 200 with `allowed`; when new work is refused, `code` and `message` are "
    "exactly what a refused write (402) would carry: `subscription_ended` ('Your subscription has ended. "
    "Please upgrade your plan to continue.'), `payment_overdue` ('Your payment is overdue and the grace "
    "period has expired.'), `session_limit_reached` (AI Agents). 404 for an unknown product.",
    openapi_extra={
        "responses": {
            "200": {
                "description": "The check",
                "content": {
                    "application/json": {"examples": {k: {"value": v} for k, v in ADMISSION_EXAMPLES.items()}}
                },
            }
        }
    },
)
def admission(request: HttpRequest, product: str) -> Admission:
    found = check(tenant=request.auth.tenant, product=product)  # type: ignore[attr-defined]
    if found is None:
        raise BusinessError("unknown_product", f"No product {product!r}.", status=404)
    return found
