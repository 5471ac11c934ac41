"""Integration API of the plans app: what the key's tenant is entitled to, per product."""

from datetime import datetime

from django.http import HttpRequest
from ninja import Router, Schema

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
    state: str
    plan_code: str | None


# Refusals of new work, by code: the status the API answers with.
REFUSAL_STATUS = {"payment_overdue": 402, "subscription_ended": 403, "no_subscription": 403}


@router.get(
    "/entitlements/{product}/admission",
    response={200: AdmissionOut},
    summary="May the tenant start new work (sessions, credits, tickets) on this product?",
    description="200 when it may; otherwise the refusal in the error shape, with the exact message to show "
    "(402 payment_overdue: 'Your payment is overdue and the grace period has expired.'; 403 "
    "subscription_ended: 'Your subscription has ended. Please upgrade your plan to continue.').",
)
def admission(request: HttpRequest, product: str) -> dict:
    ent = entitlements(tenant=request.auth.tenant).get(product)  # type: ignore[attr-defined]
    if ent is None:
        raise BusinessError("unknown_product", f"No product {product!r}.", status=404)
    if ent.refusal is not None:
        raise BusinessError(
            ent.refusal.code, ent.refusal.message, status=REFUSAL_STATUS.get(ent.refusal.code, 403)
        )
    return {"product": ent.product, "allowed": True, "state": ent.state, "plan_code": ent.plan_code}
