"""Billing orchestration: the services that span layers (gateway + plans + tenants).

Gateway calls happen outside our row locks and carry idempotency keys derived from our row ids;
what the gateway answers is then applied through plans' state machine in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing_portal.gateway.base import GatewayError
from billing_portal.gateways import get_gateway
from billing_portal.models import BillingCustomer, CheckoutSession
from billing_portal.webhooks import invoice_upsert, sync_subscription
from plans import selectors as plan_selectors
from plans import services as plan_services
from plans.models import Plan, ScheduledChange, Subscription
from plans.services import When
from tenants import services as tenant_services
from tenants.audit import Actor, audit
from tenants.errors import BusinessError
from tenants.models import Membership, Role, Tenant, User

State = Subscription.State


def _gateway_error(exc: GatewayError) -> BusinessError:
    return BusinessError(exc.code, exc.message, status=502)


# --- onboarding ---------------------------------------------------------------------------------


@transaction.atomic
def organization_signup(
    *, email: str, password: str, organization: str, full_name: str = ""
) -> tuple[User, Tenant]:
    """Sign-up: the user, their tenant, and the plans a new tenant starts on (the AI Agents trial)."""
    user, tenant = tenant_services.user_signup(
        email=email, password=password, organization=organization, full_name=full_name
    )
    plan_services.tenant_provision(tenant=tenant, actor=user)
    return user, tenant


@transaction.atomic
def organization_create(*, name: str, admin: User, actor: User | Actor | None = None) -> Tenant:
    tenant = tenant_services.tenant_create(name=name, admin=admin, actor=actor)
    plan_services.tenant_provision(tenant=tenant, actor=actor or admin)
    return tenant


# --- customers, checkout, portal ---------------------------------------------------------------


def customer_ensure(*, tenant: Tenant) -> str:
    """The tenant's customer at the gateway, created once (idempotency key: the tenant id)."""
    existing = BillingCustomer.objects.filter(tenant=tenant).first()
    if existing is not None:
        return existing.customer_id
    admin_email = (
        Membership.objects.filter(tenant=tenant, role=Role.ADMIN)
        .order_by("pk")
        .values_list("user__email", flat=True)
        .first()
        or ""
    )
    try:
        customer_id = get_gateway().create_customer(
            email=admin_email,
            name=tenant.name,
            metadata={"tenant_id": str(tenant.pk), "tenant_slug": tenant.slug},
            idempotency_key=f"customer:{tenant.pk}",
        )
    except GatewayError as exc:
        raise _gateway_error(exc) from exc
    bc, _ = BillingCustomer.objects.get_or_create(
        tenant=tenant, defaults={"gateway": settings.PAYMENT_GATEWAY, "customer_id": customer_id}
    )
    return bc.customer_id


def checkout_start(*, tenant: Tenant, plan: Plan, actor: User, success_url: str, cancel_url: str) -> str:
    """Open the gateway's hosted checkout for a first paid subscription to `plan`; returns its URL."""
    if plan.kind == Plan.Kind.CONTACT_SALES:
        raise BusinessError("contact_sales", f"{plan.name} is contracted through our sales team.", status=422)
    if not plan.is_paid or not plan.stripe_price_id:
        raise BusinessError("plan_not_self_serve", f"{plan.name} cannot be bought here.", status=422)
    live = plan_selectors.live_subscription(tenant=tenant, product_code=plan.product.code)
    if live is not None and live.gateway_subscription_id and live.state != State.EXPIRED:
        raise BusinessError(
            "already_subscribed",
            "You already have a paid subscription: choose when the change applies in Apply subscription updates.",
            status=409,
        )
    customer_id = customer_ensure(tenant=tenant)
    session = CheckoutSession.objects.create(tenant=tenant, plan=plan, created_by=actor)
    metadata = {"tenant_id": str(tenant.pk), "plan": plan.code, "checkout": str(session.pk)}
    try:
        gw = get_gateway().create_checkout_session(
            customer_id=customer_id,
            price_id=plan.stripe_price_id,
            success_url=success_url,
            cancel_url=cancel_url,
            client_reference_id=f"checkout-{session.pk}",
            metadata=metadata,
            idempotency_key=f"checkout:{session.pk}",
        )
    except GatewayError as exc:
        raise _gateway_error(exc) from exc
    CheckoutSession.objects.filter(pk=session.pk).update(gateway_session_id=gw.id, url=gw.url)
    audit(tenant=tenant, actor=actor, action="checkout.started", target=session, target_label=plan.name)
    return gw.url


def portal_url(*, tenant: Tenant, return_url: str) -> str:
    customer_id = customer_ensure(tenant=tenant)
    try:
        return get_gateway().create_portal_session(customer_id=customer_id, return_url=return_url)
    except GatewayError as exc:
        raise _gateway_error(exc) from exc


# --- plan changes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangeResult:
    applied_now: bool
    subscription: Subscription
    scheduled: ScheduledChange | None = None


def plan_change(
    *, tenant: Tenant, to_plan: Plan, when: str, custom_date: datetime | None, actor: User
) -> ChangeResult:
    """Apply subscription updates: now (prorated, entitlements recalculated at once), at the end of the
    current period, or on a custom date (an Upcoming subscription until then)."""
    request = plan_services.plan_change_validate(
        tenant=tenant, to_plan=to_plan, when=when, custom_date=custom_date
    )
    sub = request.subscription
    gateway = get_gateway()
    try:
        if request.effective_at is None:
            # An immediate change supersedes a scheduled one: release that schedule first.
            for change in ScheduledChange.objects.filter(
                subscription=sub, status=ScheduledChange.Status.SCHEDULED
            ):
                scheduled_change_undo(tenant=tenant, change=change, actor=actor)
            gw = gateway.change_subscription_price(
                subscription_id=sub.gateway_subscription_id,
                price_id=to_plan.stripe_price_id,
                # The row's last write time makes A→B, B→A, A→B three keys, while a double click
                # (nothing changed in between) repeats the first one.
                idempotency_key=f"plan-change:{sub.pk}:{to_plan.pk}:{sub.updated_at.timestamp():.6f}",
            )
            with transaction.atomic():
                updated = plan_services.subscription_apply_gateway(tenant=tenant, gw=gw, actor=actor)
            assert updated is not None
            return ChangeResult(applied_now=True, subscription=updated)
        schedule = gateway.schedule_subscription_change(
            subscription_id=sub.gateway_subscription_id,
            price_id=to_plan.stripe_price_id,
            at=request.effective_at,
            # Keyed by how many changes this subscription has had scheduled: a double click repeats
            # the key, scheduling again after a cancel does not.
            idempotency_key=(
                f"plan-schedule:{sub.pk}:{ScheduledChange.objects.filter(subscription=sub).count()}:{to_plan.pk}"
            ),
        )
    except GatewayError as exc:
        raise _gateway_error(exc) from exc
    change = plan_services.scheduled_change_record(
        request=request, gateway_schedule_id=schedule.id, actor=actor
    )
    return ChangeResult(applied_now=False, subscription=sub, scheduled=change)


def scheduled_change_undo(*, tenant: Tenant, change: ScheduledChange, actor: User) -> ScheduledChange:
    """Cancel scheduled plan: release the gateway's schedule, then mark the change canceled."""
    if change.status != ScheduledChange.Status.SCHEDULED:
        return change
    if change.gateway_schedule_id:
        try:
            get_gateway().release_schedule(
                change.gateway_schedule_id, idempotency_key=f"schedule-release:{change.pk}"
            )
        except GatewayError as exc:
            raise _gateway_error(exc) from exc
    return plan_services.scheduled_change_cancel(tenant=tenant, change=change, actor=actor)


# --- reconciliation and the clock --------------------------------------------------------------


def billing_reconcile(*, since_days: int = 35) -> dict[str, int]:
    """Re-read every customer's subscriptions and recent invoices from the gateway and repair local
    state (missed or failed webhooks)."""
    gateway = get_gateway()
    counts = {"customers": 0, "subscriptions": 0, "invoices": 0, "errors": 0}
    since = timezone.now() - timedelta(days=since_days)
    for bc in BillingCustomer.objects.select_related("tenant").order_by("pk"):
        counts["customers"] += 1
        try:
            for gw in gateway.list_subscriptions(customer_id=bc.customer_id):
                with transaction.atomic():
                    sync_subscription(gateway, gw.id)
                counts["subscriptions"] += 1
            for inv in gateway.list_invoices(customer_id=bc.customer_id, created_since=since):
                with transaction.atomic():
                    invoice_upsert(tenant=bc.tenant, inv=inv)
                counts["invoices"] += 1
        except GatewayError:
            counts["errors"] += 1
    return counts


def gateway_advance(*, now: datetime) -> int:
    """The local gateway's clock: period roll-overs and scheduled changes falling due. Stripe keeps its
    own clock, so this does nothing there."""
    gateway = get_gateway()
    advance = getattr(gateway, "advance", None)
    return advance(now=now) if advance is not None else 0


def billing_tick(*, now: datetime) -> dict[str, int]:
    """Every billing sweeper once, in dependency order (operators and tests: `manage.py billing_tick`)."""
    return {
        "gateway_advanced": gateway_advance(now=now),
        "trials_expired": plan_services.trials_expire_due(now=now),
        "trial_reminders": plan_services.trial_reminders_due(now=now),
        "grace_expired": plan_services.grace_periods_expire_due(now=now),
        "subscriptions_ended": plan_services.subscriptions_end_due(now=now),
    }


__all__ = [
    "When",
    "billing_reconcile",
    "billing_tick",
    "checkout_start",
    "organization_signup",
    "plan_change",
]
