"""Starting a tenant on a plan without a person at the checkout: for `create_tenant --plan` and the
demo data. Paid plans go through the local gateway's checkout (DEBUG only), so the subscription,
its invoice and every webhook are exactly what a real checkout produces."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from billing_portal import services
from billing_portal.gateway.factory import get_gateway
from billing_portal.gateway.local import LocalGateway
from plans import services as plan_services
from plans.models import Plan, Subscription
from tenants.audit import Actor
from tenants.errors import BusinessError
from tenants.models import Membership, Role, Tenant, User


def local_gateway_available() -> bool:
    return settings.PAYMENT_GATEWAY == "local"


def start_plan(*, tenant: Tenant, plan: Plan, actor: User | Actor) -> Subscription | None:
    if plan.kind == Plan.Kind.TRIAL:
        return plan_services.trial_start(tenant=tenant, plan=plan, actor=actor)
    if plan.kind == Plan.Kind.FREE:
        sub = plan_services.free_plan_start(tenant=tenant, plan=plan, actor=actor)
        services.free_plan_credits_grant(subscription=sub)
        return sub
    if not plan.is_paid or not local_gateway_available():
        raise BusinessError("cannot_start", f"{plan.name} cannot be started without a checkout.")
    admin = (
        Membership.objects.filter(tenant=tenant, role=Role.ADMIN)
        .select_related("user")
        .order_by("pk")
        .first()
    )
    assert admin is not None
    # The demo's seed subscribes as staff would set it up: no member confirms a code here.
    url = services.checkout_start(
        tenant=tenant,
        plan=plan,
        actor=admin.user,
        success_url="/",
        cancel_url="/",
        without_security_code=True,
    )
    session_id = url.rstrip("/").rsplit("/", 1)[-1]
    gateway = get_gateway()
    assert isinstance(gateway, LocalGateway)
    gateway.complete_checkout(session_id)
    # Applied here and now, not when a worker gets to the webhooks: the caller needs the result. In
    # a transaction, as the webhook handler and the return from checkout apply it (its duplicate
    # check takes the tenant's lock).
    with transaction.atomic():
        services.checkout_sync(session_id=session_id)
    return (
        Subscription.objects.filter(tenant=tenant, product=plan.product)
        .exclude(state=Subscription.State.EXPIRED)
        .first()
    )
