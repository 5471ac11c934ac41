"""Integration API of the plans app: what the key's tenant is entitled to, per product."""

import json
from datetime import datetime
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from ninja import Field, Path, Router, Schema
from ninja.responses import NinjaJSONEncoder

from plans.admission import check
from plans.selectors import entitlements
from tenants.api_answer import JSON, json_answer
from tenants.api_auth import ApiKeyAuth
from tenants.api_docs import NOT_FOUND, ErrorCase, documented
from tenants.cache import VersionedCache
from tenants.errors import BusinessError
from tenants.models import ApiKey

router = Router(tags=["entitlements"])

# Per process: the encoded answer of GET /entitlements per tenant, under the same versions and until
# the same instant as the entitlements it renders (plans.selectors).
_ANSWERS = VersionedCache("entitlements-answer")
# Per process: the admission check's encoded answer per tenant and product ({product: (...)}), with
# what it was computed from: the very entitlements object the cache served (a later one, after a
# change or a time boundary, is another object) and the key companions' values. Kept only when the
# product's checker says its answer follows from those alone (Admission.reusable: AI Agents when its
# count came from the companions, a product without a checker), so the same inputs are answered the
# same bytes.
_ADMISSIONS = VersionedCache("admission-answer")


class LimitsOut(Schema):
    session_limit: int | None = Field(
        description="AI Agents: billable sessions the plan includes each period; null when the plan sets no "
        "limit. A tenant may set a lower limit of its own: the limit in force, and where it comes from, are "
        "`session_limit` and `limit_source` in `GET /api/v1/usage` and in the admission check's `details`."
    )
    answered_only: bool = Field(
        description="AI Agents: only answered conversations count as billable sessions."
    )
    included_credits: int = Field(
        description="AI Credits: credits the plan includes, in thousandths of a credit (49900 is 49.9 credits)."
    )
    credit_renewal: str = Field(
        description="AI Credits: when the included credits are granted again: `none` or `monthly`."
    )
    extra_packs_allowed: bool = Field(
        description="AI Credits: extra credit packs may be bought on this plan."
    )
    ai_licenses: int = Field(description="Helpdesk AI: AI licenses the plan includes.")
    chat_licenses: int = Field(description="Helpdesk AI: Chat licenses the plan includes.")
    ticket_credits_per_license: int = Field(
        description="Helpdesk AI: ticket credits each license (AI or Chat) brings every cycle."
    )
    ticket_credits: int = Field(
        description="Helpdesk AI: ticket credits granted each cycle ((ai_licenses + chat_licenses) times "
        "ticket_credits_per_license)."
    )
    unlimited_ai: bool = Field(
        description="Helpdesk AI: every ticket gets AI, without spending ticket credits."
    )


class UpcomingOut(Schema):
    plan_code: str = Field(description="Code of the plan a scheduled change moves to.")
    plan_name: str = Field(description="Display name of that plan.")
    starts_on: datetime = Field(description="When the change takes effect (ISO 8601, UTC).")


class RefusalOut(Schema):
    code: str = Field(
        description="Why new work is refused: `payment_overdue`, `subscription_ended` or `no_subscription` "
        "(the code the admission check answers with)."
    )
    message: str = Field(description="The message to show, in the specification's words.")


class ProductOut(Schema):
    product: str = Field(description="Product code: `ai_agents`, `ai_credits` or `helpdesk_ai`.")
    plan_code: str | None = Field(
        description="Code of the tenant's current plan; null without a subscription."
    )
    plan_name: str | None = Field(
        description="Display name of the current plan; null without a subscription."
    )
    state: str = Field(
        description="Subscription state: `trialing`, `active`, `past_due`, `suspended`, `canceled`, "
        "`expired` or `none`. It says `expired` (or `suspended`) the moment `refusal` does, before any "
        "background job has moved the subscription."
    )
    badge: str = Field(
        description="The badge the Billing tab shows, e.g. `Active subscription`, `Payment issue`."
    )
    active: bool = Field(description="May the product accept new work? False exactly when `refusal` is set.")
    period_start: datetime | None = Field(
        description="Start of the current billing period or validity (UTC)."
    )
    period_end: datetime | None = Field(description="End of the current billing period or validity (UTC).")
    next_billing_date: datetime | None = Field(
        description="When the next payment is taken; null for free plans, trials and ending subscriptions."
    )
    trial_ends_at: datetime | None = Field(description="End of the free trial; null outside a trial.")
    trial_days_left: int | None = Field(description="Whole days left in the trial; null outside a trial.")
    grace_until: datetime | None = Field(
        description="After a failed payment: access continues until then; null when no payment is overdue."
    )
    ends_at: datetime | None = Field(
        description="When a canceled plan, a free plan or a contracted plan stops; null when it renews."
    )
    limits: LimitsOut = Field(description="What the current plan allows (all zero without a plan).")
    upcoming: UpcomingOut | None = Field(description="A plan change scheduled for later; null when none is.")
    refusal: RefusalOut | None = Field(
        description="Why new work is refused; null while the product is active."
    )


class EntitlementsOut(Schema):
    tenant: str = Field(description="Slug of the key's tenant.")
    products: dict[str, ProductOut] = Field(description="One entry per product, keyed by product code.")


@router.get(
    "/entitlements",
    summary="The tenant's plan, state, limits and flags per product",
    **documented(EntitlementsOut),
)
def get_entitlements(request: HttpRequest) -> HttpResponse:
    # The answer's bytes are kept with the entitlements they render (tenants.cache): a request that
    # finds them sends them as they are, without building, validating and encoding them again.
    key: ApiKey = request.auth  # type: ignore[attr-defined]
    tenant, now = key.tenant, timezone.now()
    body = _ANSWERS.get(tenant.pk, key.versions, now) if key.versions else None
    if body is None or body[0] != tenant.slug:
        ent = entitlements(tenant=tenant, now=now, versions=key.versions)
        data = {
            "tenant": ent.tenant_slug,
            "products": {code: e.as_dict() for code, e in ent.products.items()},
        }
        # What ninja does with a returned dict: validate it through the schema, encode the dump.
        rendered = json.dumps(EntitlementsOut.model_validate(data).model_dump(), cls=NinjaJSONEncoder)
        body = (tenant.slug, rendered.encode())
        if key.versions:
            _ANSWERS.put(tenant.pk, key.versions, body, valid_from=now, valid_until=ent.valid_until)
    return HttpResponse(body[1], content_type=JSON)


class AdmissionOut(Schema):
    product: str = Field(description="The product code asked about.")
    allowed: bool = Field(
        description="May the tenant start new work (a session, a consumption, a ticket) now?"
    )
    code: str | None = Field(
        description="Null when allowed; otherwise the code a refused write (402) would carry: "
        "`subscription_ended`, `payment_overdue`, `no_subscription` or a product's own "
        "(`session_limit_reached` for AI Agents)."
    )
    message: str | None = Field(
        description="Null when allowed; otherwise the exact message a refused write would carry."
    )
    state: str = Field(description="The subscription state (see `state` of the entitlements).")
    plan_code: str | None = Field(description="Code of the current plan; null without one.")
    details: dict[str, Any] = Field(
        description="The product's own figures behind the answer (AI Agents: `billable_sessions`, "
        "`session_limit`, `limit_source`; Helpdesk AI: `ai_licenses`, `ai_licenses_used`, `chat_licenses`, "
        "`chat_licenses_used`, `ticket_credits_remaining`, `unlimited_ai`)."
    )


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
    "payment overdue": {
        "product": "ai_agents",
        "allowed": False,
        "code": "payment_overdue",
        "message": "Your payment is overdue and the grace period has expired.",
        "state": "suspended",
        "plan_code": "agents-growth",
        "details": {"billable_sessions": 312, "session_limit": 1500, "limit_source": "plan"},
    },
}
UNKNOWN_PRODUCT = ErrorCase(404, "unknown_product", "No product 'ai_agent'.", NOT_FOUND.when)


def _admission_docs() -> dict[str, Any]:
    docs = documented(AdmissionOut, UNKNOWN_PRODUCT)
    docs["openapi_extra"]["responses"][200] = {
        "description": "The check",
        "content": {
            "application/json": {"examples": {k: {"value": v} for k, v in ADMISSION_EXAMPLES.items()}}
        },
    }
    return docs


@router.get(
    "/entitlements/{product}/admission",
    summary="May the tenant start new work (sessions, credits, tickets) on this product?",
    description="A check, answered 200 with `allowed`; when new work is refused, `code` and `message` are "
    "exactly what a refused write (402) would carry: `subscription_ended` ('Your subscription has ended. "
    "Please upgrade your plan to continue.'), `payment_overdue` ('Your payment is overdue and the grace "
    "period has expired.'), `session_limit_reached` (AI Agents). 404 for an unknown product.",
    # The key's statement also reads what the product checkers registered as key companions (the
    # period's session count): the check is then one round trip.
    auth=ApiKeyAuth(companions=True),
    **_admission_docs(),
)
def admission(
    request: HttpRequest,
    product: str = Path(..., description="Product code: `ai_agents`, `ai_credits` or `helpdesk_ai`."),
) -> HttpResponse:
    key: ApiKey = request.auth  # type: ignore[attr-defined]
    tenant, now, companions, versions = key.tenant, timezone.now(), key.companions, key.versions
    ents = entitlements(tenant=tenant, now=now, versions=versions) if versions is not None else None
    kept = (_ADMISSIONS.get(tenant.pk, versions, now) if versions is not None else None) or {}
    hit = kept.get(product)
    if hit is not None and hit[0] is ents and hit[1] == companions:
        return HttpResponse(hit[2], content_type=JSON)
    found = check(
        tenant=tenant, product=product, now=now, versions=versions, companions=companions, ents=ents
    )
    if found is None:
        raise BusinessError("unknown_product", f"No product {product!r}.", status=404)
    # AdmissionOut's fields, in its order and with its types (its test compares the bytes).
    answer = json_answer(
        {
            "product": found.product,
            "allowed": found.allowed,
            "code": found.code,
            "message": found.message,
            "state": found.state,
            "plan_code": found.plan_code,
            "details": found.details,
        }
    )
    if found.reusable and versions is not None and ents is not None:
        # The other products' kept answers stay beside it while they were made from the same
        # entitlements object; the whole entry ends when those entitlements do.
        same = {code: other for code, other in kept.items() if other[0] is ents}
        _ADMISSIONS.put(
            tenant.pk,
            versions,
            same | {product: (ents, companions, answer.content)},
            valid_from=now,
            valid_until=ents.valid_until,
        )
    return answer
