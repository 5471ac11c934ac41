"""Billing orchestration: the services that span layers (gateway + plans + tenants).

Every write to the gateway is an attempt (billing_portal.attempts): a pending row written before the
call, whose id and a hash of the call's parameters make its idempotency key, so a retry after a
failure is a new attempt with a new key (Stripe replays a key's first answer, errors included, for
24 hours). What the gateway answers is applied through plans' state machine. What a tenant's member may buy, change or resume is asked of
`plans.offers` (the rule the plan cards render from), never decided here.

A plan change, a resume and a Cancel scheduled plan hold the tenant's and the subscription's row
locks across their gateway call (`plans.services.subscription_lock`): lock, check, call, write,
commit. A second click waits for the first to commit, then finds the state it left and is refused
with the card's sentence — so one click makes one gateway call, and nothing is left half done if
the process dies between the call and the write (the next attempt finds the gateway's state: a price already held, a schedule already made). The price
is that a slow gateway holds the tenant's subscription writes (webhooks included) for as long as
the call takes, bounded by the SDK's timeout and retries; other tenants are not held. (The other
way, a pending row written under the lock before the call, needs a sweeper for rows a crash leaves
pending and every reader to treat "pending" as "scheduled".)"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.dateformat import format as date_format

from billing_portal.attempts import gateway_write
from billing_portal.gateway.base import (
    CatalogPrice,
    GatewayCheckoutSession,
    GatewayError,
    GatewayInvoice,
    GatewayInvoicePreview,
    GatewaySubscription,
    PaymentGateway,
    PortalSettings,
)
from billing_portal.gateway.factory import get_gateway
from billing_portal.models import (
    BillingCustomer,
    CheckoutSession,
    ExtraPackPurchase,
    GatewayAttempt,
    Invoice,
    InvoiceLine,
    PortalConfiguration,
)
from credits import selectors as credit_selectors
from credits import services as credit_services
from credits.models import ExtraPack
from licensing import services as licensing_services
from plans import selectors as plan_selectors
from plans import services as plan_services
from plans.models import Lead, Plan, Product, ScheduledChange, Subscription
from plans.money import credits_string
from plans.offers import (
    CardAction,
    OfferAction,
    actor_role,
    card_action_refusal,
    card_action_require,
    confirmed_by_code,
    offer_require,
)
from plans.payments import RUNNING, PaidSubscriptionFacts, PaymentStatus
from tenants import security_codes
from tenants import services as tenant_services
from tenants.audit import SYSTEM, Actor, audit
from tenants.errors import BusinessError
from tenants.models import Membership, Role, Tenant, User
from tenants.notifications import notify
from tenants.text import ascii_digits

State = Subscription.State
log = logging.getLogger(__name__)


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
    for sub in plan_services.tenant_provision(tenant=tenant, actor=user):
        free_plan_credits_grant(subscription=sub)
    return user, tenant


@transaction.atomic
def organization_create(
    *, name: str, admin: User, actor: User | Actor | None = None, now: datetime | None = None
) -> Tenant:
    """A new tenant, on what a new tenant starts on (the AI Agents trial, AI Free) from `now` (the
    demo's stories sign up in the past)."""
    tenant = tenant_services.tenant_create(name=name, admin=admin, actor=actor)
    for sub in plan_services.tenant_provision(tenant=tenant, now=now, actor=actor or admin):
        free_plan_credits_grant(subscription=sub, now=now)
    return tenant


def free_plan_credits_grant(*, subscription: Subscription, now: datetime | None = None) -> None:
    """A free plan's included credits (AI Free: 50 for its 3 months, C05), granted as it starts."""
    if subscription.plan.kind == Plan.Kind.FREE:
        credit_services.credits_grant_plan_period(
            tenant=subscription.tenant,
            plan=subscription.plan,
            period_start=subscription.current_period_start,
            period_end=subscription.current_period_end,
            reference=f"subscription:{subscription.pk}:free",
            now=now,
        )


# --- customers, checkout, portal ---------------------------------------------------------------


def customer_ensure(*, tenant: Tenant) -> str:
    """The tenant's customer at the gateway, created once: its creation holds the tenant's lock (the
    first lock every subscription write takes), so two requests at once make one customer."""
    existing = BillingCustomer.objects.filter(tenant=tenant).values_list("customer_id", flat=True).first()
    if existing is not None:
        return existing
    with transaction.atomic():
        tenant_services.tenant_lock(tenant=tenant)
        existing = BillingCustomer.objects.filter(tenant=tenant).values_list("customer_id", flat=True).first()
        if existing is not None:
            return existing
        admin_email = (
            Membership.objects.filter(tenant=tenant, role=Role.ADMIN)
            .order_by("pk")
            .values_list("user__email", flat=True)
            .first()
            or ""
        )
        metadata = {"tenant_id": str(tenant.pk), "tenant_slug": tenant.slug}
        try:
            customer_id = gateway_write(
                tenant=tenant,
                operation="create_customer",
                params={"email": admin_email, "name": tenant.name, "metadata": metadata},
                call=lambda key: get_gateway().create_customer(
                    email=admin_email, name=tenant.name, metadata=metadata, idempotency_key=key
                ),
                result_id=str,
            )
        except GatewayError as exc:
            failure = exc
        else:
            BillingCustomer.objects.create(
                tenant=tenant, gateway=settings.PAYMENT_GATEWAY, customer_id=customer_id
            )
            return customer_id
    raise _gateway_error(failure) from failure


# An open checkout session is offered again for this long (Stripe expires it after 24 hours).
CHECKOUT_REUSE = timedelta(hours=23)


MSG_CODE_REQUIRED = (
    "Subscribe to {plan} with Subscribe Now on the {product} page: it asks for the security code "
    "emailed to you."
)


def checkout_start(
    *,
    tenant: Tenant,
    plan: Plan,
    actor: User,
    success_url: str,
    cancel_url: str,
    without_security_code: bool = False,
) -> str:
    """Open the gateway's hosted checkout for a first paid subscription to `plan`, when its card
    offers Subscribe to `actor`; returns its URL. A click while a checkout for the same plan is still
    open gets that one again (two tabs, a double click, 20 parallel requests: one session to pay).
    Under the tenant's lock, so the check and the creation cannot interleave. An AI Credits plan is
    bought with Subscribe Now and the emailed security code (C09, C10: `subscribe_now`), so it is
    refused here unless the caller says no code applies (`without_security_code`: the demo's seed)."""
    if confirmed_by_code(plan) and not without_security_code:
        # Pointing to Subscribe Now is true only where the card offers it: otherwise the card's own
        # refusal (AI Free "cannot be bought", AI Ultra "Speak with Specialist"). A refusal only: the
        # lock below is for what opens a checkout.
        offer_require(
            tenant=tenant, plan=plan, role=actor_role(tenant=tenant, user=actor), action=OfferAction.SUBSCRIBE
        )
        raise BusinessError(
            "security_code_required",
            MSG_CODE_REQUIRED.format(plan=plan.name, product=plan.product.name),
            status=409,
        )
    with transaction.atomic():
        plan_services.subscription_lock(tenant=tenant, product=plan.product)
        offer_require(
            tenant=tenant, plan=plan, role=actor_role(tenant=tenant, user=actor), action=OfferAction.SUBSCRIBE
        )
        if not plan.stripe_price_id:
            raise BusinessError("plan_not_self_serve", f"{plan.name} cannot be bought here yet.", status=422)
        try:
            return _checkout_open(
                tenant=tenant, plan=plan, actor=actor, success_url=success_url, cancel_url=cancel_url
            )
        except GatewayError as exc:
            failure = exc
    raise _gateway_error(failure) from failure


def _checkout_open(*, tenant: Tenant, plan: Plan, actor: User, success_url: str, cancel_url: str) -> str:
    gateway = get_gateway()
    still_open = CheckoutSession.objects.filter(
        tenant=tenant,
        plan=plan,
        status=CheckoutSession.Status.OPEN,
        created_at__gt=timezone.now() - CHECKOUT_REUSE,
    ).exclude(gateway_session_id="")
    for candidate in still_open.order_by("-created_at"):
        at_gateway = gateway.retrieve_checkout_session(candidate.gateway_session_id)
        if at_gateway.status == "open" and at_gateway.url:
            return at_gateway.url
        _checkout_record(at_gateway)  # it completed or expired meanwhile
    customer_id = customer_ensure(tenant=tenant)
    session = CheckoutSession.objects.create(tenant=tenant, plan=plan, created_by=actor)
    metadata = {"tenant_id": str(tenant.pk), "plan": plan.code, "checkout": str(session.pk)}
    reference = f"checkout-{session.pk}"
    gw = gateway_write(
        tenant=tenant,
        operation="create_checkout_session",
        params={
            "customer": customer_id,
            "price": plan.stripe_price_id,
            "success_url": success_url,
            "cancel_url": cancel_url,
            "client_reference_id": reference,
            "metadata": metadata,
        },
        call=lambda key: gateway.create_checkout_session(
            customer_id=customer_id,
            price_id=plan.stripe_price_id,
            success_url=success_url,
            cancel_url=cancel_url,
            client_reference_id=reference,
            metadata=metadata,
            idempotency_key=key,
        ),
        result_id=lambda created: created.id,
    )
    CheckoutSession.objects.filter(pk=session.pk).update(gateway_session_id=gw.id, url=gw.url)
    audit(tenant=tenant, actor=actor, action="checkout.started", target=session, target_label=plan.name)
    return gw.url


def _checkout_record(session: GatewayCheckoutSession) -> None:
    """Our record of a checkout follows the gateway's: complete, or expired."""
    if session.status == "complete":
        CheckoutSession.objects.filter(gateway_session_id=session.id).exclude(
            status=CheckoutSession.Status.COMPLETE
        ).update(status=CheckoutSession.Status.COMPLETE, completed_at=timezone.now())
    elif session.status == "expired":
        CheckoutSession.objects.filter(
            gateway_session_id=session.id, status=CheckoutSession.Status.OPEN
        ).update(status=CheckoutSession.Status.EXPIRED)


def checkout_sync(*, session_id: str) -> Tenant | None:
    """Apply a checkout session as the gateway has it now: our record of it, its subscription and
    that subscription's first invoice. Once one completes, the tenant's other open checkouts for the
    product are expired at the gateway: nobody can pay a second subscription through them. The
    webhook handler calls it; so may anyone who must not wait for the webhook (the demo, the return
    from checkout)."""
    gateway = get_gateway()
    session = gateway.retrieve_checkout_session(session_id)
    tenant = tenant_for(customer_id=session.customer_id, metadata=session.metadata)
    _checkout_record(session)
    if session.status == "complete" and tenant is not None:
        _checkouts_expire_others(tenant=tenant, gateway=gateway, completed=session.id)
    if not session.subscription_id:
        return tenant
    gw = gateway.retrieve_subscription(session.subscription_id)
    tenant = subscription_sync(gateway, gw.id) or tenant
    if tenant is not None and gw.latest_invoice_id:
        inv = gateway.retrieve_invoice(gw.latest_invoice_id)
        invoice_upsert(tenant=tenant, inv=inv)
        invoice_credits_grant(tenant=tenant, inv=inv)
    return tenant


def _checkouts_expire_others(*, tenant: Tenant, gateway: PaymentGateway, completed: str) -> None:
    done = CheckoutSession.objects.filter(gateway_session_id=completed).select_related("plan").first()
    if done is None:
        return
    others = CheckoutSession.objects.filter(
        tenant=tenant, plan__product=done.plan.product, status=CheckoutSession.Status.OPEN
    ).exclude(gateway_session_id__in=["", completed])
    for other in others:
        _checkout_expire(tenant=tenant, gateway=gateway, session_id=other.gateway_session_id)


def _checkout_expire(*, tenant: Tenant, gateway: PaymentGateway, session_id: str) -> None:
    try:
        expired = gateway_write(
            tenant=tenant,
            operation="expire_checkout",
            params={"session": session_id},
            call=lambda key: gateway.expire_checkout_session(session_id, idempotency_key=key),
            result_id=lambda closed: closed.id,
        )
    except GatewayError as exc:
        # It completed meanwhile (its own sync then meets the duplicate rule), or the gateway did
        # not answer: its 24 hours will expire it, and a second payment is refunded anyway.
        log.warning("checkout %s not expired: %s", session_id, exc.code)
        return
    _checkout_record(expired)


def checkout_return(*, tenant: Tenant, session_id: str) -> Tenant | None:
    """The customer is back from the hosted checkout with its session's id: apply that session now
    (the webhook may come later). Only a session this tenant opened is read; anything else, or a
    gateway that does not answer, is left to the webhook."""
    if not CheckoutSession.objects.filter(tenant=tenant, gateway_session_id=session_id[:200]).exists():
        return None
    try:
        with transaction.atomic():
            return checkout_sync(session_id=session_id)
    except GatewayError as exc:
        log.warning("checkout %s not synced on return: %s", session_id, exc.code)
        return None


def portal_purpose(*, tenant: Tenant) -> str:
    """Which portal configuration Manage opens for the tenant. C20: an AI Credits package is
    deactivated by Customer Success only, so while the tenant pays for one the portal offers no
    cancel at all: Stripe's portal lists every subscription of the customer and its
    subscription_cancel feature applies to each of them (AI Agents is canceled on its card instead).
    https://docs.stripe.com/api/customer_portal/configurations/object#portal_configuration_object-features-subscription_cancel"""
    has_package = (
        Subscription.objects.filter(tenant=tenant, product__code=Product.Code.AI_CREDITS)
        .exclude(gateway_subscription_id="")
        .exclude(state=State.EXPIRED)
        .exists()
    )
    return PortalConfiguration.Purpose.NO_CANCEL if has_package else PortalConfiguration.Purpose.DEFAULT


def portal_url(*, tenant: Tenant, return_url: str) -> str:
    customer_id = customer_ensure(tenant=tenant)
    purpose = portal_purpose(tenant=tenant)
    configuration = PortalConfiguration.objects.filter(
        gateway=settings.PAYMENT_GATEWAY, purpose=purpose
    ).first()
    if configuration is None and purpose == PortalConfiguration.Purpose.NO_CANCEL:
        # Never fall back to the Dashboard's default here: it may offer cancel. Made now, once.
        configuration_id, _ = portal_configure(purpose=purpose)
    elif configuration is None:
        log.warning("no portal configuration: run manage.py billing_portal_configure")
        configuration_id = ""
    else:
        configuration_id = configuration.configuration_id
    try:
        return get_gateway().create_portal_session(
            customer_id=customer_id, return_url=return_url, configuration_id=configuration_id
        )
    except GatewayError as exc:
        raise _gateway_error(exc) from exc


# What Manage opens: card updates and invoices (S17, S27), cancel at the end of the period (S29).
# Plan changes go through Allowance's own dialog (S18: its offers, previews and schedules), so the
# portal does not switch plans; nor does it pause.
PORTAL = PortalSettings(
    payment_methods=True,
    invoice_history=True,
    cancel_at_period_end=True,
    plan_switching=False,
    pause=False,
    headline="Manage your payment methods, invoices and subscription.",
)
# What Manage opens while the tenant has an AI Credits package (C20): no cancel.
PORTAL_NO_CANCEL = dataclasses.replace(
    PORTAL, cancel_at_period_end=False, headline="Manage your payment methods and invoices."
)
PORTALS = {
    PortalConfiguration.Purpose.DEFAULT: PORTAL,
    PortalConfiguration.Purpose.NO_CANCEL: PORTAL_NO_CANCEL,
}


def portal_configure(*, purpose: str = PortalConfiguration.Purpose.DEFAULT) -> tuple[str, bool]:
    """Create, or bring up to date, this installation's portal configuration for `purpose` at the
    gateway, and record it for Manage. Returns its id and whether it was recorded for the first time.
    Each purpose is found again by its own marker (the default's is the one it always had)."""
    portal = PORTALS[PortalConfiguration.Purpose(purpose)]
    marker = {"managed_by": "allowance", "installation": settings.BILLING_INSTALLATION_ID}
    if purpose != PortalConfiguration.Purpose.DEFAULT:
        marker["purpose"] = str(purpose)
    configuration_id = gateway_write(
        tenant=None,
        operation="configure_portal",
        params={"settings": str(portal), "marker": marker},
        call=lambda key: get_gateway().configure_portal(settings=portal, marker=marker, idempotency_key=key),
        result_id=str,
    )
    _, created = PortalConfiguration.objects.update_or_create(
        gateway=settings.PAYMENT_GATEWAY, purpose=purpose, defaults={"configuration_id": configuration_id}
    )
    return configuration_id, created


# --- purchases confirmed with the security code (AI Credits: Subscribe Now, extra packs) ----------
#
# C10: each is confirmed with a code emailed to the admin (tenants.security_codes), bound to the
# action: "subscribe:<plan>" or "extra_pack:<pack>". What the member may buy is asked of
# plans.offers first (a refused click spends no code), then the code is used (a wrong one is
# counted and committed), then, under the tenant's lock, the offer is asked again and the gateway
# is called: a double submit finds the first one's result (already on Plus, a pack active or being
# paid) and is refused with the card's sentence.

# Card errors are a payment refused (402): the message is the bank's, fit for the cardholder.
CARD_ERRORS = frozenset(
    {"card_declined", "authentication_required", "expired_card", "incorrect_cvc", "insufficient_funds"}
)
MSG_NO_CARD = "There is no saved card: you will enter one on the payment page."


def _payment_error(exc: GatewayError) -> BusinessError:
    return BusinessError(exc.code, exc.message, status=402 if exc.code in CARD_ERRORS else 502)


def subscribe_purpose(plan: Plan) -> str:
    return f"subscribe:{plan.code}"


def extra_pack_purpose(pack: ExtraPack) -> str:
    return f"extra_pack:{pack.code}"


MSG_PACK_PROCESSING = "Your payment is being processed: the extra credits are added as soon as it succeeds."


@dataclass(frozen=True)
class PurchaseOutcome:
    """What a confirmed purchase did: `done` (paid, applied now), `checkout` (no saved card: pay on
    the gateway's hosted checkout, `url`), `confirm` (the bank asks for 3D Secure: confirm on the
    hosted invoice page, `url`; applied when paid, by its webhook) or `processing` (accepted, not
    settled yet: applied when paid, by its webhook)."""

    status: str
    url: str = ""
    message: str = ""


def subscribe_now(
    *, tenant: Tenant, plan: Plan, actor: User, code: str, success_url: str, cancel_url: str
) -> PurchaseOutcome:
    """Subscribe Now on the AI Credits page (C09, C11, C22, C23), confirmed with the security code:
    the subscription is created with the customer's saved card and applied at once (the plan, its
    2,000 credits, AI Statistics), through the same sync the webhook runs; without a saved card,
    the hosted checkout as before."""
    if not confirmed_by_code(plan):
        raise BusinessError(
            "not_an_ai_credits_plan",
            f"{plan.name} is not an AI Credits plan: see its Billing tab.",
            status=422,
        )
    role = actor_role(tenant=tenant, user=actor)
    offer_require(tenant=tenant, plan=plan, role=role, action=OfferAction.SUBSCRIBE)
    if not plan.stripe_price_id:
        raise BusinessError("plan_not_self_serve", f"{plan.name} cannot be bought here yet.", status=422)
    security_codes.security_code_use(user=actor, tenant=tenant, purpose=subscribe_purpose(plan), code=code)
    with transaction.atomic():
        plan_services.subscription_lock(tenant=tenant, product=plan.product)
        offer_require(tenant=tenant, plan=plan, role=role, action=OfferAction.SUBSCRIBE)
        # Read before the plan starts: its credits replace these (the success message says so).
        ending = credit_selectors.plan_credits_ending(tenant=tenant, plan=plan)
        try:
            outcome = _subscribe_with_saved_card(
                tenant=tenant, plan=plan, actor=actor, success_url=success_url, cancel_url=cancel_url
            )
        except GatewayError as exc:
            failure = exc
        else:
            if outcome.status == "done" and ending is not None:
                outcome = dataclasses.replace(outcome, message=f"{outcome.message} {ending.ended(plan.name)}")
            return outcome
    raise _payment_error(failure) from failure


def _awaiting_confirmation(*, tenant: Tenant, gateway: PaymentGateway, plan: Plan) -> str:
    """The hosted invoice page of a subscription to `plan` that an earlier Subscribe Now left waiting
    for its 3D Secure confirmation (Stripe ends it after 23 hours): a second click is sent there
    instead of making a second subscription."""
    recent = GatewayAttempt.objects.filter(
        tenant=tenant,
        operation="create_subscription",
        status=GatewayAttempt.Status.SUCCEEDED,
        created_at__gt=timezone.now() - timedelta(hours=23),
    ).exclude(result_id="")
    for attempt in recent.order_by("-created_at"):
        gw = gateway.retrieve_subscription(attempt.result_id)
        if gw.status == "incomplete" and gw.price_id == plan.stripe_price_id and gw.latest_invoice_id:
            return gateway.retrieve_invoice(gw.latest_invoice_id).hosted_invoice_url
    return ""


def _subscribe_with_saved_card(
    *, tenant: Tenant, plan: Plan, actor: User, success_url: str, cancel_url: str
) -> PurchaseOutcome:
    gateway = get_gateway()
    waiting = _awaiting_confirmation(tenant=tenant, gateway=gateway, plan=plan)
    if waiting:
        return PurchaseOutcome("confirm", url=waiting, message=MSG_CONFIRM_SUBSCRIPTION)
    customer_id = customer_ensure(tenant=tenant)
    if not gateway.retrieve_customer(customer_id).default_payment_method:
        url = _checkout_open(
            tenant=tenant, plan=plan, actor=actor, success_url=success_url, cancel_url=cancel_url
        )
        return PurchaseOutcome("checkout", url=url, message=MSG_NO_CARD)
    metadata = {"tenant_id": str(tenant.pk), "plan": plan.code}
    gw = gateway_write(
        tenant=tenant,
        operation="create_subscription",
        params={"customer": customer_id, "price": plan.stripe_price_id, "metadata": metadata},
        call=lambda key: gateway.create_subscription(
            customer_id=customer_id, price_id=plan.stripe_price_id, metadata=metadata, idempotency_key=key
        ),
        result_id=lambda made: made.id,
    )
    inv = gateway.retrieve_invoice(gw.latest_invoice_id) if gw.latest_invoice_id else None
    if gw.status == "incomplete":
        if inv is not None:
            invoice_needs_confirmation(tenant=tenant, gateway=gateway, invoice_id=inv.id)
        audit(tenant=tenant, actor=actor, action="subscription.awaiting_confirmation", target_label=plan.name)
        return PurchaseOutcome(
            "confirm", url=inv.hosted_invoice_url if inv else "", message=MSG_CONFIRM_SUBSCRIPTION
        )
    # Applied now, by the very path the webhook runs (its later events change nothing).
    subscription_sync(gateway, gw.id, actor=actor)
    if inv is not None:
        invoice_upsert(tenant=tenant, inv=inv)
        invoice_credits_grant(tenant=tenant, inv=inv)
    audit(tenant=tenant, actor=actor, action="subscription.subscribed_now", target_label=plan.name)
    return PurchaseOutcome("done", message=f"You are now on {plan.name}. Your credits are ready to use.")


MSG_CONFIRM_SUBSCRIPTION = (
    "Your bank asks you to confirm this payment. Confirm it on the payment page: "
    "your plan starts as soon as it is paid."
)
MSG_CONFIRM_PACK = (
    "Your bank asks you to confirm this payment. Confirm it on the payment page: "
    "the credits are added as soon as it is paid."
)
MSG_PACK_IN_FLIGHT = "A payment for extra credits is still in progress. Wait for it to finish."
# A pack's payment that waits for the buyer's 3D Secure confirmation is given up after this long:
# its invoice is voided and another pack may be bought. Stripe gives an incomplete subscription's
# first payment 23 hours (https://docs.stripe.com/billing/subscriptions/overview#subscription-statuses);
# a one-off invoice has no such limit at Stripe, so we set the same one ourselves.
PACK_CONFIRMATION_WINDOW = timedelta(hours=23)


def msg_pack_awaiting(purchase: ExtraPackPurchase) -> str:
    until = purchase.created_at + PACK_CONFIRMATION_WINDOW
    return (
        "A payment for extra credits is waiting for your bank's confirmation on its payment page. "
        f"Confirm it there, or buy again after {timezone.localtime(until):%-d %b %Y %H:%M} "
        "(an unconfirmed payment is cancelled then)."
    )


MSG_PACK_NOT_ON_SALE = "This extra credit package is not on sale."


def _extra_pack_require(*, tenant: Tenant, role: str, pack: ExtraPack) -> None:
    """The page's rule (plans.offers, with the active pack), a pack on sale, no payment in flight."""
    refusal = credit_selectors.pack_offer(tenant=tenant, role=role).refusal
    if refusal is not None:
        raise refusal.error()
    if not ExtraPack.objects.filter(pk=pack.pk, active=True).exists():
        raise BusinessError("extra_pack_not_on_sale", MSG_PACK_NOT_ON_SALE, status=422)
    in_flight = ExtraPackPurchase.objects.filter(tenant=tenant, status__in=ExtraPackPurchase.OPEN).first()
    if in_flight is not None:
        message = (
            msg_pack_awaiting(in_flight)
            if in_flight.status == ExtraPackPurchase.Status.AWAITING_CONFIRMATION
            else MSG_PACK_IN_FLIGHT
        )
        raise BusinessError("extra_pack_in_progress", message, status=409)


def extra_pack_buy(*, tenant: Tenant, pack: ExtraPack, actor: User, code: str) -> PurchaseOutcome:
    """Buy extra credits (C12 to C15, C17, C24), confirmed with the security code: a pending
    purchase row, the one-off charge (its idempotency key from the attempt), and the credits
    granted by `credits` as soon as the payment succeeds — here when the charge returns paid, from
    the invoice.paid webhook otherwise; once, keyed by the invoice. A decline grants nothing,
    voids the invoice and marks the purchase failed."""
    role = actor_role(tenant=tenant, user=actor)
    product = Product.objects.get(code=Product.Code.AI_CREDITS)
    with transaction.atomic():
        plan_services.subscription_lock(tenant=tenant, product=product)
        _extra_pack_settle(tenant=tenant, gateway=get_gateway())
    _extra_pack_require(tenant=tenant, role=role, pack=pack)
    security_codes.security_code_use(user=actor, tenant=tenant, purpose=extra_pack_purpose(pack), code=code)
    return extra_pack_charge_confirmed(tenant=tenant, pack=pack, actor=actor)


def extra_pack_charge_confirmed(*, tenant: Tenant, pack: ExtraPack, actor: User) -> PurchaseOutcome:
    """The purchase itself, once the buyer has confirmed it: `extra_pack_buy` after the security
    code; `seed_demo`, whose demo admin confirms nothing (the code is the dialog's step, C10, not
    the payment's). Under the tenant's lock the same rules are asked again (admin on Plus, no
    active pack, none in flight), then the saved card is charged."""
    role = actor_role(tenant=tenant, user=actor)
    product = Product.objects.get(code=Product.Code.AI_CREDITS)
    failure: GatewayError | None = None
    with transaction.atomic():
        plan_services.subscription_lock(tenant=tenant, product=product)
        _extra_pack_require(tenant=tenant, role=role, pack=pack)
        purchase = ExtraPackPurchase.objects.create(
            tenant=tenant,
            pack=pack,
            created_by=actor,
            credits=pack.credits,
            validity_days=pack.validity_days,
            amount=pack.price_amount,
            currency=pack.currency,
        )
        outcome, failure = _extra_pack_charge(tenant=tenant, purchase=purchase, actor=actor)
    if failure is not None:
        raise _payment_error(failure) from failure
    return outcome


def _extra_pack_charge(
    *, tenant: Tenant, purchase: ExtraPackPurchase, actor: User
) -> tuple[PurchaseOutcome, GatewayError | None]:
    gateway = get_gateway()
    pack = purchase.pack
    customer_id = customer_ensure(tenant=tenant)
    metadata = {
        "tenant_id": str(tenant.pk),
        "extra_pack": pack.code,
        "extra_pack_purchase": str(purchase.pk),
    }
    description = (
        f"{pack.name}: {credits_string(purchase.credits)} AI credits, valid {purchase.validity_days} days"
    )
    try:
        inv = gateway_write(
            tenant=tenant,
            operation="charge_one_off",
            params={"customer": customer_id, "amount": purchase.amount, "metadata": metadata},
            call=lambda key: gateway.charge_one_off(
                customer_id=customer_id,
                amount=purchase.amount,
                currency=purchase.currency,
                description=description,
                metadata=metadata,
                idempotency_key=key,
            ),
            result_id=lambda paid: paid.id,
        )
    except GatewayError as exc:
        try:
            found = _purchase_invoice(gateway=gateway, customer_id=customer_id, purchase=purchase)
            known = True
        except GatewayError:
            found, known = None, False
        if exc.code == "authentication_required" and found is not None and found.status == "open":
            invoice_needs_confirmation(tenant=tenant, gateway=gateway, invoice_id=found.id)
            purchase.status = ExtraPackPurchase.Status.AWAITING_CONFIRMATION
            purchase.gateway_invoice_id = found.id
            purchase.save(update_fields=["status", "gateway_invoice_id"])
            return PurchaseOutcome("confirm", url=found.hosted_invoice_url, message=MSG_CONFIRM_PACK), None
        if found is not None and found.status in ("open", "uncollectible"):
            # Declined: its invoice is voided at once, or the gateway's automatic collection would
            # take the money days later for a purchase the buyer was told had failed.
            found = _extra_pack_invoice_void(tenant=tenant, gateway=gateway, inv=found)
        if found is not None and found.status == "paid":
            # The payment went through after all (an answer lost on its way back, or paid before
            # the void): the money taken is credited.
            invoice_upsert(tenant=tenant, inv=found)
            extra_pack_invoice_apply(tenant=tenant, inv=found, actor=actor)
            return _pack_done(purchase), None
        purchase.error_code = exc.code[:80]
        purchase.gateway_invoice_id = "" if found is None else found.id
        if not known or (found is not None and found.status == "open"):
            # Not voided (the gateway failed): the purchase stays open, so no second pack starts
            # while its invoice may still be collected; the next buy settles it first.
            purchase.save(update_fields=["error_code", "gateway_invoice_id"])
        else:
            purchase.status = ExtraPackPurchase.Status.FAILED
            purchase.finished_at = timezone.now()
            purchase.save(update_fields=["status", "error_code", "gateway_invoice_id", "finished_at"])
        audit(
            tenant=tenant,
            actor=actor,
            action="extra_pack.payment_failed",
            target_label=pack.name,
            data={"code": exc.code, "purchase": purchase.pk},
        )
        return PurchaseOutcome("failed", message=exc.message), exc
    invoice_upsert(tenant=tenant, inv=inv)
    extra_pack_invoice_apply(tenant=tenant, inv=inv, actor=actor)
    if inv.status != "paid":
        # Accepted but not settled yet (a payment method that confirms later): nothing is said to
        # be added. The purchase is processing, which the next buy's settling leaves alone (its
        # invoice is open but must not be voided): invoice.paid grants the pack, and
        # invoice.payment_failed fails it (extra_pack_invoice_apply).
        purchase.status = ExtraPackPurchase.Status.PROCESSING
        purchase.gateway_invoice_id = inv.id
        purchase.save(update_fields=["status", "gateway_invoice_id"])
        return PurchaseOutcome("processing", message=MSG_PACK_PROCESSING), None
    return _pack_done(purchase), None


def _pack_done(purchase: ExtraPackPurchase) -> PurchaseOutcome:
    return PurchaseOutcome(
        "done",
        message=f"{credits_string(purchase.credits)} extra credits added, valid for {purchase.validity_days} days.",
    )


def _extra_pack_invoice_void(
    *, tenant: Tenant, gateway: PaymentGateway, inv: GatewayInvoice
) -> GatewayInvoice:
    """Void a declined pack's open invoice (https://docs.stripe.com/api/invoices/void) and mirror it;
    returns the invoice as the gateway has it afterwards: void; paid, when a payment got there
    first (voiding it is refused); or still open when the gateway could not be reached."""
    try:
        voided = gateway_write(
            tenant=tenant,
            operation="void_invoice",
            params={"invoice": inv.id},
            call=lambda key: gateway.void_invoice(inv.id, idempotency_key=key),
            result_id=lambda made: made.id,
        )
    except GatewayError as exc:
        log.warning("could not void the extra pack invoice %s: %s", inv.id, exc.code)
        try:
            voided = gateway.retrieve_invoice(inv.id)
        except GatewayError:
            return inv
    invoice_upsert(tenant=tenant, inv=voided)
    return voided


def _extra_pack_settle(*, tenant: Tenant, gateway: PaymentGateway, now: datetime | None = None) -> None:
    """Under the tenant's lock, before a new purchase (and from the sweeper): a declined purchase
    whose invoice could not be voided then (the gateway failed), or one whose 3D Secure
    confirmation was not given within PACK_CONFIRMATION_WINDOW, is settled now — voided and failed,
    or, if that invoice was collected meanwhile, granted. Younger purchases waiting for the
    confirmation are left alone (they may still be paid on the hosted page)."""
    now = now or timezone.now()
    owed = ExtraPackPurchase.objects.select_related("pack").filter(
        Q(status=ExtraPackPurchase.Status.PENDING)
        | Q(
            status=ExtraPackPurchase.Status.AWAITING_CONFIRMATION,
            created_at__lte=now - PACK_CONFIRMATION_WINDOW,
        ),
        tenant=tenant,
    )
    for purchase in owed:
        customer_id = customer_ensure(tenant=tenant)
        try:
            inv = (
                gateway.retrieve_invoice(purchase.gateway_invoice_id)
                if purchase.gateway_invoice_id
                else _purchase_invoice(gateway=gateway, customer_id=customer_id, purchase=purchase)
            )
        except GatewayError:
            continue  # still unknown: the purchase keeps blocking another one
        if inv is not None and inv.status in ("open", "uncollectible"):
            inv = _extra_pack_invoice_void(tenant=tenant, gateway=gateway, inv=inv)
        if inv is not None and inv.status == "paid":
            invoice_upsert(tenant=tenant, inv=inv)
            extra_pack_invoice_apply(tenant=tenant, inv=inv)
        elif inv is None or inv.status == "void":
            if purchase.status == ExtraPackPurchase.Status.AWAITING_CONFIRMATION:
                purchase.error_code = "confirmation_expired"
            purchase.status = ExtraPackPurchase.Status.FAILED
            purchase.finished_at = now
            purchase.save(update_fields=["status", "error_code", "finished_at"])


def extra_pack_confirmations_expire(*, now: datetime) -> int:
    """The sweeper (billing_tick, beat): every pack payment still unconfirmed after
    PACK_CONFIRMATION_WINDOW is settled (its invoice voided, the purchase failed; or granted if it
    was paid), so a payment nobody confirms never blocks the next pack. Returns how many tenants
    had one."""
    due = (
        ExtraPackPurchase.objects.filter(
            status=ExtraPackPurchase.Status.AWAITING_CONFIRMATION,
            created_at__lte=now - PACK_CONFIRMATION_WINDOW,
        )
        .values_list("tenant_id", flat=True)
        .distinct()
    )
    product = Product.objects.get(code=Product.Code.AI_CREDITS)
    found = 0
    for tenant in Tenant.objects.filter(pk__in=list(due)):
        with transaction.atomic():
            plan_services.subscription_lock(tenant=tenant, product=product)
            found += 1
            _extra_pack_settle(tenant=tenant, gateway=get_gateway(), now=now)
    return found


def _purchase_invoice(
    *, gateway: PaymentGateway, customer_id: str, purchase: ExtraPackPurchase
) -> GatewayInvoice | None:
    """The invoice a refused charge left open (the gateway raises the card's refusal, not the
    invoice), found by the purchase id in its metadata."""
    invoices = gateway.list_invoices(
        customer_id=customer_id, created_since=purchase.created_at - timedelta(minutes=5)
    )
    return next(
        (inv for inv in invoices if inv.metadata.get("extra_pack_purchase") == str(purchase.pk)), None
    )


def extra_pack_invoice_apply(
    *, tenant: Tenant, inv: GatewayInvoice, actor: User | None = None, payment_failed: bool = False
) -> None:
    """An extra pack's invoice as the gateway has it now: paid → the pack's credits, granted once
    (keyed by the invoice, whoever gets here first: the purchase or the invoice.paid webhook) and
    the purchase marked paid; voided or uncollectible → the purchase failed. Money taken is always
    credited, even for a purchase that had failed (a later retry of its invoice succeeded).
    `payment_failed` (the invoice.payment_failed webhook): a processing payment that failed is a
    decline like any other — its open invoice is voided and the purchase failed (or, if the gateway
    cannot be reached, left pending for the next buy's settling to void)."""
    code = inv.metadata.get("extra_pack", "")
    purchase_id = inv.metadata.get("extra_pack_purchase", "")
    purchase = (
        ExtraPackPurchase.objects.select_for_update()
        .select_related("pack")
        .filter(tenant=tenant, pk=int(purchase_id))
        .first()
        if ascii_digits(purchase_id)
        else None
    )
    now = timezone.now()
    if (
        payment_failed
        and inv.status == "open"
        and purchase is not None
        and purchase.status == ExtraPackPurchase.Status.PROCESSING
    ):
        inv = _extra_pack_invoice_void(tenant=tenant, gateway=get_gateway(), inv=inv)
        if inv.status == "open":
            purchase.status = ExtraPackPurchase.Status.PENDING
            purchase.save(update_fields=["status"])
    if inv.status == "paid":
        pack = purchase.pack if purchase is not None else ExtraPack.objects.filter(code=code).first()
        if pack is None:
            log.error("paid invoice %s names no extra pack we sell (%r)", inv.id, code)
            return
        # What was bought (the purchase row), not the pack as staff may have changed it since.
        credit_services.credits_grant_extra_pack(
            tenant=tenant,
            pack=pack,
            reference=f"invoice:{inv.id}",
            credits=None if purchase is None else purchase.credits,
            validity_days=None if purchase is None else purchase.validity_days,
            actor=actor,
        )
        if purchase is not None and purchase.status != ExtraPackPurchase.Status.PAID:
            purchase.status = ExtraPackPurchase.Status.PAID
            purchase.gateway_invoice_id = inv.id
            purchase.finished_at = now
            purchase.save(update_fields=["status", "gateway_invoice_id", "finished_at"])
    elif (
        inv.status in ("void", "uncollectible")
        and purchase is not None
        and purchase.status in ExtraPackPurchase.OPEN
    ):
        purchase.status = ExtraPackPurchase.Status.FAILED
        purchase.error_code = inv.status
        purchase.finished_at = now
        purchase.save(update_fields=["status", "error_code", "finished_at"])


# --- plan changes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangeResult:
    applied_now: bool
    subscription: Subscription
    scheduled: ScheduledChange | None = None
    # An immediate change whose payment did not go through waits, pending, until this moment.
    pending_until: datetime | None = None
    message: str = ""  # what the admin is told when the change did not apply


def plan_change(
    *, tenant: Tenant, to_plan: Plan, when: str, custom_date: datetime | None, actor: User
) -> ChangeResult:
    """Apply subscription updates: now (prorated, entitlements recalculated at once), at the end of the
    current period, or on a custom date (an Upcoming subscription until then; at that date the rest
    of its billing period is prorated and invoiced, as Immediately is now). Lock, check (the plan
    card's offer and the dialog's choices), call the gateway, write — see the module's docstring. A
    refusal of the gateway is recorded (its attempt committed) before it is raised."""
    with transaction.atomic():
        plan_services.subscription_lock(tenant=tenant, product=to_plan.product)
        request = plan_services.plan_change_validate(
            tenant=tenant,
            to_plan=to_plan,
            role=actor_role(tenant=tenant, user=actor),
            when=when,
            custom_date=custom_date,
        )
        try:
            return _plan_change_apply(tenant=tenant, request=request, actor=actor)
        except GatewayError as exc:
            failure = exc
    raise _gateway_error(failure) from failure


def _plan_change_apply(*, tenant: Tenant, request: plan_services.ChangeRequest, actor: User) -> ChangeResult:
    sub, to_plan = request.subscription, request.to_plan
    gateway = get_gateway()
    if request.effective_at is None:
        # An immediate change supersedes a scheduled one: release that schedule first.
        for change in ScheduledChange.objects.filter(
            subscription=sub, status=ScheduledChange.Status.SCHEDULED
        ):
            _scheduled_change_release(tenant=tenant, change=change, actor=actor)
        # pending_if_incomplete: a change whose invoice is not paid is not applied. Stripe keeps it
        # in pending_update and applies it when the invoice is paid (or drops it after 23 hours),
        # so the new plan's limits are granted only once paid; Stripe's default (allow_incomplete)
        # would apply it and leave the subscription past due on the unpaid upgrade.
        # https://docs.stripe.com/billing/subscriptions/pending-updates
        gw = gateway_write(
            tenant=tenant,
            operation="change_price",
            params={
                "subscription": sub.gateway_subscription_id,
                "price": to_plan.stripe_price_id,
                "payment_behavior": "pending_if_incomplete",
            },
            call=lambda key: gateway.change_subscription_price(
                subscription_id=sub.gateway_subscription_id,
                price_id=to_plan.stripe_price_id,
                idempotency_key=key,
                payment_behavior="pending_if_incomplete",
            ),
            result_id=lambda changed: changed.id,
        )
        updated = plan_services.subscription_apply_facts(
            tenant=tenant, gw=subscription_facts(gw), actor=actor
        )
        assert updated is not None
        if gw.pending_update is not None:
            return _change_pending(
                tenant=tenant, sub=updated, to_plan=to_plan, until=gw.pending_update.expires_at, actor=actor
            )
        product_cycle_grants(tenant=tenant)
        return ChangeResult(applied_now=True, subscription=updated)
    at = request.effective_at
    schedule = gateway_write(
        tenant=tenant,
        operation="schedule_change",
        params={
            "subscription": sub.gateway_subscription_id,
            "price": to_plan.stripe_price_id,
            "at": at.isoformat(),
        },
        call=lambda key: gateway.schedule_subscription_change(
            subscription_id=sub.gateway_subscription_id,
            price_id=to_plan.stripe_price_id,
            at=at,
            idempotency_key=key,
        ),
        result_id=lambda made: made.id,
    )
    change = plan_services.scheduled_change_record(
        request=request, gateway_schedule_id=schedule.id, actor=actor
    )
    return ChangeResult(applied_now=False, subscription=sub, scheduled=change)


def _change_pending(
    *, tenant: Tenant, sub: Subscription, to_plan: Plan, until: datetime, actor: User
) -> ChangeResult:
    """The upgrade's invoice was not paid: the subscription stays on its plan (and its limits) and
    the admin is told why, and what makes it apply."""
    until_day = date_format(timezone.localtime(until), "j M Y")
    message = (
        f"The payment for {to_plan.name} did not go through, so you are still on {sub.plan.name}. "
        f"Update your payment method (Manage): {to_plan.name} applies as soon as it is paid, until {until_day}."
    )
    audit(
        tenant=tenant,
        actor=actor,
        action="subscription.change_pending",
        target=sub,
        target_label=to_plan.name,
        data={"to_plan": to_plan.code, "until": until.isoformat()},
    )
    return ChangeResult(applied_now=False, subscription=sub, pending_until=until, message=message)


def plan_change_preview(*, tenant: Tenant, to_plan: Plan, actor: User) -> GatewayInvoicePreview:
    """What "Immediately" would charge now for a change to `to_plan`: the gateway's preview of the very
    update `plan_change` makes. Refuses (BusinessError) what `plan_change` would refuse; changes nothing."""
    request = plan_services.plan_change_validate(
        tenant=tenant,
        to_plan=to_plan,
        role=actor_role(tenant=tenant, user=actor),
        when=plan_services.When.IMMEDIATELY,
        custom_date=None,
    )
    try:
        return get_gateway().preview_price_change(
            subscription_id=request.subscription.gateway_subscription_id, price_id=to_plan.stripe_price_id
        )
    except GatewayError as exc:
        raise _gateway_error(exc) from exc


@dataclass(frozen=True)
class CustomDateOutlook:
    """What "On custom date" does for one date (S18): on `starts_on` the plan switches and the rest
    of the billing period that date falls in is prorated and invoiced then, as "Immediately" is at
    its moment; the first renewal after it bills the new plan in full."""

    from_plan: Plan
    to_plan: Plan
    starts_on: datetime
    period_end: datetime  # the current period's end: the next renewal
    # The gateway's estimate of the invoice made at the switch (Stripe's preview with a proration
    # date), for a date within the current period; None past it (Stripe previews a proration date
    # within the current period only) or when the gateway could not be asked (`unavailable` says why).
    preview: GatewayInvoicePreview | None = None
    unavailable: str = ""

    @property
    def within_period(self) -> bool:
        """The switch falls in the current period: that period's rest is prorated."""
        return self.starts_on < self.period_end

    @property
    def at_period_end(self) -> bool:
        """The switch is the period's end: nothing left to prorate, the renewal bills the new plan."""
        return self.starts_on == self.period_end


def plan_change_custom_date_outlook(
    *, tenant: Tenant, to_plan: Plan, custom_date: datetime | None, actor: User
) -> CustomDateOutlook:
    """What a change to `to_plan` "On custom date" `custom_date` invoices, and when: the dialog's
    words for the chosen date, with the gateway's estimate of the switch's invoice where one exists.
    Refuses (BusinessError) what `plan_change` would refuse for that date; changes nothing."""
    request = plan_services.plan_change_validate(
        tenant=tenant,
        to_plan=to_plan,
        role=actor_role(tenant=tenant, user=actor),
        when=plan_services.When.CUSTOM_DATE,
        custom_date=custom_date,
    )
    sub, at = request.subscription, request.effective_at
    assert at is not None  # a custom date was validated
    assert sub.current_period_end is not None  # a paid subscription has a period
    outlook = CustomDateOutlook(
        from_plan=sub.plan, to_plan=to_plan, starts_on=at, period_end=sub.current_period_end
    )
    if not outlook.within_period:
        return outlook
    try:
        preview = get_gateway().preview_price_change(
            subscription_id=sub.gateway_subscription_id, price_id=to_plan.stripe_price_id, at=at
        )
    except GatewayError as exc:
        return dataclasses.replace(outlook, unavailable=exc.message)
    return dataclasses.replace(outlook, preview=preview)


def scheduled_change_undo(*, tenant: Tenant, change: ScheduledChange, actor: User) -> ScheduledChange:
    """Cancel scheduled plan (the Upcoming card's Cancel, admins): lock, then — if it is still
    scheduled and the Upcoming card still offers Cancel — release the gateway's schedule and mark the
    change canceled. A second click finds it canceled and changes nothing. Past the change's date the
    gateway has applied it (whether or not its webhook came): nothing is released, the subscription
    is re-read from the gateway so the page shows the real state, and the click is refused with the
    card's sentence."""
    role = actor_role(tenant=tenant, user=actor)
    failure: BusinessError | None = None
    with transaction.atomic():
        change = plan_services.scheduled_change_lock(tenant=tenant, change=change)
        if change.status != ScheduledChange.Status.SCHEDULED:
            return change
        ent = plan_selectors.entitlements(tenant=tenant)[change.to_plan.product.code]
        refusal = card_action_refusal(ent=ent, role=role, action=CardAction.CANCEL_UPCOMING)
        if refusal is not None and refusal.code == "change_applied":
            subscription_sync(get_gateway(), change.subscription.gateway_subscription_id)
            failure = refusal.error()
        elif refusal is not None:
            raise refusal.error()
        else:
            try:
                return _scheduled_change_release(tenant=tenant, change=change, actor=actor)
            except GatewayError as exc:
                failure = _gateway_error(exc)
    raise failure


def subscription_cancel(*, tenant: Tenant, product: Product, actor: User) -> Subscription:
    """Cancel subscription on the Billing tab (admins): at the end of the period, as the portal
    would. A scheduled change is released first — Stripe's portal refuses to cancel a subscription a
    schedule holds (https://docs.stripe.com/customer-management#limitations). Lock, check the card's
    offer, release, cancel, apply the gateway's answer (the card shows Canceled at once)."""
    with transaction.atomic():
        sub = plan_services.subscription_lock(tenant=tenant, product=product)
        card_action_require(
            tenant=tenant,
            product=product,
            role=actor_role(tenant=tenant, user=actor),
            action=CardAction.CANCEL,
        )
        assert sub is not None  # the card offers Cancel on a paid subscription only
        subscription_id = sub.gateway_subscription_id
        try:
            for change in ScheduledChange.objects.filter(
                subscription=sub, status=ScheduledChange.Status.SCHEDULED
            ):
                _scheduled_change_release(tenant=tenant, change=change, actor=actor)
            gw = gateway_write(
                tenant=tenant,
                operation="cancel",
                params={"subscription": subscription_id, "at_period_end": True},
                call=lambda key: get_gateway().cancel_subscription(
                    subscription_id=subscription_id, at_period_end=True, idempotency_key=key
                ),
                result_id=lambda canceled: canceled.id,
            )
        except GatewayError as exc:
            failure = exc
        else:
            canceled = plan_services.subscription_apply_facts(
                tenant=tenant, gw=subscription_facts(gw), actor=actor
            )
            assert canceled is not None
            return canceled
    raise _gateway_error(failure) from failure


def _scheduled_change_release(*, tenant: Tenant, change: ScheduledChange, actor: User) -> ScheduledChange:
    """Under the tenant's lock: release the gateway's schedule, then mark the change canceled. A
    GatewayError is the caller's to record and raise."""
    if change.status != ScheduledChange.Status.SCHEDULED:
        return change
    if change.gateway_schedule_id:
        schedule_id = change.gateway_schedule_id
        gateway_write(
            tenant=tenant,
            operation="release_schedule",
            params={"schedule": schedule_id},
            call=lambda key: get_gateway().release_schedule(schedule_id, idempotency_key=key),
        )
    return plan_services.scheduled_change_cancel(tenant=tenant, change=change, actor=actor)


def subscription_resume(*, tenant: Tenant, product: Product, actor: User) -> Subscription:
    """Resume: undo the cancellation at period end of the tenant's `product` subscription, when its
    card offers Resume to `actor` (admins). The gateway's answer is applied at once, so the card
    shows Active before the webhook arrives."""
    with transaction.atomic():
        sub = plan_services.subscription_lock(tenant=tenant, product=product)
        if sub is None:
            raise BusinessError("not_canceled", "There is no subscription to resume.", status=409)
        offer_require(
            tenant=tenant,
            plan=sub.plan,
            role=actor_role(tenant=tenant, user=actor),
            action=OfferAction.RESUME,
        )
        subscription_id = sub.gateway_subscription_id
        try:
            gw = gateway_write(
                tenant=tenant,
                operation="resume",
                params={"subscription": subscription_id},
                call=lambda key: get_gateway().resume_subscription(
                    subscription_id=subscription_id, idempotency_key=key
                ),
                result_id=lambda resumed: resumed.id,
            )
        except GatewayError as exc:
            failure = exc
        else:
            resumed = plan_services.subscription_apply_facts(
                tenant=tenant, gw=subscription_facts(gw), actor=actor
            )
            assert resumed is not None
            audit(
                tenant=tenant,
                actor=actor,
                action="subscription.resumed",
                target=resumed,
                target_label=resumed.plan.name,
                data={"state": resumed.state},
            )
            return resumed
    raise _gateway_error(failure) from failure


# --- the gateway's facts, applied ---------------------------------------------------------------

# Every status a Stripe subscription can have, in the plans app's words. An unknown status is an
# error (the event fails and is retried), never a silent "active".
# https://docs.stripe.com/billing/subscriptions/overview#subscription-statuses
STRIPE_STATUS: dict[str, PaymentStatus] = {
    "incomplete": PaymentStatus.PENDING,  # first invoice not paid within checkout
    "incomplete_expired": PaymentStatus.ENDED,  # first invoice never paid (23 hours)
    "trialing": PaymentStatus.PAID,  # a trial at the gateway: access, nothing owed yet
    "active": PaymentStatus.PAID,
    "past_due": PaymentStatus.PAYMENT_FAILED,  # a renewal failed; Smart Retries running
    "unpaid": PaymentStatus.PAYMENT_OVERDUE,  # retries exhausted, invoices left open
    "paused": PaymentStatus.PAUSED,  # trial ended without a payment method
    "canceled": PaymentStatus.ENDED,
}


def subscription_facts(gw: GatewaySubscription) -> PaidSubscriptionFacts:
    """Translate the gateway's subscription into the plans app's facts."""
    status = STRIPE_STATUS.get(gw.status)
    if status is None:
        raise ValueError(f"unknown subscription status {gw.status!r} on {gw.id}")
    return PaidSubscriptionFacts(
        reference=gw.id,
        status=status,
        price_id=gw.price_id,
        current_period_start=gw.current_period_start,
        current_period_end=gw.current_period_end,
        cancel_at_period_end=gw.cancel_at_period_end,
        cancel_at=gw.cancel_at,
        canceled_at=gw.canceled_at,
        ended_at=gw.ended_at,
    )


def price_of(price_id: str) -> CatalogPrice:
    """What a catalog price costs and the name of what it buys (the plan's name, as Stripe names a
    price's product): what the local gateway charges and writes on its invoice lines."""
    plan = Plan.objects.filter(stripe_price_id=price_id).first()
    if plan is None:
        raise GatewayError(f"No such price: '{price_id}'", code="resource_missing")
    interval = plan.interval if plan.interval != Plan.Interval.NONE else "month"
    return CatalogPrice(plan.price_amount, plan.currency, interval, plan.name)


def tenant_for(*, customer_id: str = "", metadata: dict | None = None) -> Tenant | None:
    """The tenant a gateway object belongs to: by our metadata, else by its customer."""
    tenant_id = (metadata or {}).get("tenant_id")
    if tenant_id and ascii_digits(str(tenant_id)):
        tenant = Tenant.objects.filter(pk=int(tenant_id)).first()
        if tenant is not None:
            return tenant
    if customer_id:
        bc = BillingCustomer.objects.select_related("tenant").filter(customer_id=customer_id).first()
        return bc.tenant if bc else None
    return None


def subscription_sync(
    gateway: PaymentGateway, subscription_id: str, *, actor: User | Actor | None = None
) -> Tenant | None:
    """Re-read a subscription from the gateway and apply it as it is now; returns its tenant. A
    second running subscription to a product the tenant already pays for is not applied: it is
    canceled at the gateway and refunded (duplicate_cancel)."""
    gw = gateway.retrieve_subscription(subscription_id)
    tenant = tenant_for(customer_id=gw.customer_id, metadata=gw.metadata)
    if tenant is None:
        log.warning("subscription %s belongs to no tenant we know", subscription_id)
        return None
    if STRIPE_STATUS.get(gw.status) in RUNNING and _duplicate_canceled(tenant=tenant, gateway=gateway, gw=gw):
        return tenant
    plan_services.subscription_apply_facts(tenant=tenant, gw=subscription_facts(gw), actor=actor)
    product_cycle_grants(tenant=tenant)
    if gw.default_payment_method and gw.status not in ENDED_STATUSES:
        subscription_card_adopt(tenant=tenant, gateway=gateway, subscription_id=gw.id)
    return tenant


def _duplicate_canceled(*, tenant: Tenant, gateway: PaymentGateway, gw: GatewaySubscription) -> bool:
    """At most one live subscription per tenant and product, at the gateway too: a running
    subscription we do not track, for a product the tenant has a live paid subscription to (two
    checkouts both paid), is canceled at once and its payments refunded in full. Returns whether
    `gw` was such a duplicate. Under the tenant's lock, re-read: two events of one duplicate handle
    it once."""
    plan = Plan.objects.select_related("product").filter(stripe_price_id=gw.price_id).first()
    if plan is None or Subscription.objects.filter(gateway_subscription_id=gw.id).exists():
        return False
    plan_services.subscription_lock(tenant=tenant, product=plan.product)
    kept = (
        Subscription.objects.select_related("plan", "product")
        .filter(tenant=tenant, product=plan.product)
        .exclude(state=State.EXPIRED)
        .exclude(gateway_subscription_id__in=["", gw.id])
        .first()
    )
    if kept is None:
        return False
    other = gateway.retrieve_subscription(kept.gateway_subscription_id)
    if STRIPE_STATUS.get(other.status) not in RUNNING:
        # The one we track ended at the gateway (its webhook is late): apply that, then the new one.
        plan_services.subscription_apply_facts(tenant=tenant, gw=subscription_facts(other))
        return False
    gw = gateway.retrieve_subscription(gw.id)
    if STRIPE_STATUS.get(gw.status) not in RUNNING:
        return False  # already canceled by an earlier event of this duplicate
    duplicate_cancel(tenant=tenant, gateway=gateway, duplicate=gw, kept=kept)
    return True


def duplicate_cancel(
    *, tenant: Tenant, gateway: PaymentGateway, duplicate: GatewaySubscription, kept: Subscription
) -> int:
    """Give back, in full, everything the duplicate subscription's invoices took, then cancel it now;
    audit it and email the admins. Returns the minor units refunded to the card (what the duplicate's
    invoices have had refunded in all, by this call or an earlier try).

    What an invoice took is what its charges collected plus what the customer's credit balance paid
    of it. A refund returns only the first, at most what its charge collected
    (https://docs.stripe.com/api/refunds/create); the part paid from the balance goes back to the
    balance through a credit note's credit_amount, which the next finalized invoice applies
    (https://docs.stripe.com/api/credit_notes/create, https://docs.stripe.com/billing/customer/balance).
    The audit and the email say how much went where.

    Every one of its invoices is given back, whenever it was created: the duplicate was never applied
    (it granted nothing), so each of its payments paid a second time for a product the kept
    subscription already covers. (Comparing an invoice's creation with `kept.started_at` missed the
    usual case: two checkouts paid at once, where the kept row is created when its webhook is
    applied, after the duplicate was paid.)

    Refunds and credits first, cancel last: while the duplicate runs, its sync finds it again, so a
    failure part way (a refund refused, Stripe unreachable) is finished by the event's retry; what an
    earlier try gave back is read from the gateway and not given again (each try's keys are new)."""
    refunded, returned, currency = 0, 0, kept.plan.currency
    for inv in gateway.list_invoices(customer_id=duplicate.customer_id):
        if inv.subscription_id != duplicate.id or inv.status != "paid":
            continue
        refunded += _invoice_refund_in_full(tenant=tenant, gateway=gateway, inv=inv).amount_refunded
        returned += _invoice_balance_return(tenant=tenant, gateway=gateway, inv=inv)
        currency = inv.currency
    gateway_write(
        tenant=tenant,
        operation="cancel_duplicate",
        params={"subscription": duplicate.id},
        call=lambda key: gateway.cancel_subscription(
            subscription_id=duplicate.id, at_period_end=False, idempotency_key=key
        ),
        result_id=lambda canceled: canceled.id,
    )
    audit(
        tenant=tenant,
        actor=SYSTEM,
        action="subscription.duplicate_canceled",
        target=kept,
        target_label=kept.plan.name,
        data={
            "subscription": duplicate.id,
            "kept": kept.gateway_subscription_id,
            "refunded": refunded,  # to the card
            "returned_to_balance": returned,  # to the customer's credit balance
            "currency": currency,
        },
    )
    for email in _admin_emails(tenant):
        notify(
            key=f"duplicate-canceled:{duplicate.id}:{email}",
            tenant=tenant,
            to=email,
            template="subscription_duplicate_refunded",
            context={
                "tenant": tenant,
                "kept": kept,
                "product": kept.product,
                "refunded": refunded,
                "returned": returned,
                "currency": currency,
            },
        )
    return refunded


def _invoice_refund_in_full(*, tenant: Tenant, gateway: PaymentGateway, inv: GatewayInvoice) -> Invoice:
    """Refund what the invoice's payments collected and is not refunded yet; its mirror, with what
    has been refunded in all (read from the gateway again only when this call refunded)."""
    refunded = gateway.invoice_refunded(inv.id)
    if refunded >= inv.amount_paid:
        return _invoice_refunded_mirror(tenant=tenant, inv=inv, refunded=refunded)
    gateway_write(
        tenant=tenant,
        operation="refund_invoice",
        params={"invoice": inv.id},
        call=lambda key: gateway.refund_invoice(inv.id, idempotency_key=key),
        result_id=lambda _: inv.id,
    )
    return invoice_refunds_record(tenant=tenant, gateway=gateway, invoice_id=inv.id)


def _invoice_balance_return(*, tenant: Tenant, gateway: PaymentGateway, inv: GatewayInvoice) -> int:
    """Give back to the customer's credit balance what that balance paid of the invoice
    (`balance_applied`), less what its credit notes have credited to the balance already; returns the
    minor units returned in all (the whole balance-paid part once this has succeeded).

    Once only: the attempt's key is new at each try (billing_portal.attempts), so what a retry owes is
    read from the gateway first, as for the refund: a second run of the same event, or a retry after a
    crash that the gateway outlived, finds the credit there and asks for nothing."""
    owed = inv.balance_applied - gateway.invoice_credited_to_balance(inv.id)
    if owed > 0:
        gateway_write(
            tenant=tenant,
            operation="credit_to_balance",
            params={"invoice": inv.id, "amount": owed},
            call=lambda key: gateway.credit_invoice_to_balance(
                inv.id,
                amount=owed,
                reason="duplicate",
                memo="A second subscription, canceled: what the credit balance paid goes back to it.",
                metadata={"invoice": inv.id, "reason": "duplicate_subscription"},
                idempotency_key=key,
            ),
            result_id=lambda note: note.id,
        )
        invoice_upsert(tenant=tenant, inv=gateway.retrieve_invoice(inv.id))
    return inv.balance_applied


def invoice_refunds_record(*, tenant: Tenant, gateway: PaymentGateway, invoice_id: str) -> Invoice:
    """The invoice mirror, with what has been refunded of its payments (charge.refunded)."""
    return _invoice_refunded_mirror(
        tenant=tenant, inv=gateway.retrieve_invoice(invoice_id), refunded=gateway.invoice_refunded(invoice_id)
    )


def _invoice_refunded_mirror(*, tenant: Tenant, inv: GatewayInvoice, refunded: int) -> Invoice:
    invoice = invoice_upsert(tenant=tenant, inv=inv)
    invoice.amount_refunded = refunded
    invoice.save(update_fields=["amount_refunded", "updated_at"])
    return invoice


def invoice_needs_confirmation(*, tenant: Tenant, gateway: PaymentGateway, invoice_id: str) -> Invoice:
    """invoice.payment_action_required: the customer must confirm the payment (3D Secure) on the
    hosted invoice page; the Billing tab says so until the invoice is paid."""
    inv = gateway.retrieve_invoice(invoice_id)
    invoice = invoice_upsert(tenant=tenant, inv=inv)
    if inv.status == "open":
        invoice.needs_confirmation = True
        invoice.save(update_fields=["needs_confirmation", "updated_at"])
    return invoice


def customer_forget(*, customer_id: str) -> Tenant | None:
    """customer.deleted: the tenant's link to that customer is dropped, so the next checkout makes a
    new customer (the deleted one is "No such customer" to every call). Its subscriptions were
    canceled with it; their own events end them here."""
    link = BillingCustomer.objects.select_related("tenant").filter(customer_id=customer_id).first()
    if link is None:
        return None
    tenant = link.tenant
    link.delete()
    audit(
        tenant=tenant,
        actor=SYSTEM,
        action="billing.customer_deleted",
        target_label=customer_id,
        data={"customer": customer_id},
    )
    return tenant


def payment_disputed(*, gateway: PaymentGateway, dispute_id: str) -> Tenant | None:
    """charge.dispute.created: the cardholder disputed a payment with their bank. Audited on the
    tenant, and every platform staff member is emailed once: a dispute has a deadline for evidence.
    https://docs.stripe.com/disputes/responding"""
    dispute = gateway.retrieve_dispute(dispute_id)
    charge = gateway.retrieve_charge(dispute.charge_id)
    tenant = tenant_for(customer_id=charge.customer_id)
    if tenant is None:
        return None
    invoice_id = gateway.invoice_of_charge(charge.id)
    audit(
        tenant=tenant,
        actor=SYSTEM,
        action="payment.disputed",
        target_label=invoice_id or charge.id,
        data={
            "dispute": dispute.id,
            "charge": charge.id,
            "invoice": invoice_id,
            "amount": dispute.amount,
            "currency": dispute.currency,
            "reason": dispute.reason,
        },
    )
    staff = User.objects.filter(is_staff=True, is_active=True).order_by("pk").values_list("email", flat=True)
    for email in staff:
        notify(
            key=f"dispute:{dispute.id}:{email}",
            tenant=tenant,
            to=email,
            template="payment_disputed",
            context={"tenant": tenant, "dispute": dispute, "invoice_id": invoice_id},
        )
    return tenant


def _admin_emails(tenant: Tenant) -> list[str]:
    return list(
        Membership.objects.filter(tenant=tenant, role=Role.ADMIN)
        .order_by("pk")
        .values_list("user__email", flat=True)
    )


ENDED_STATUSES = frozenset({"canceled", "incomplete_expired"})


def subscription_card_adopt(*, tenant: Tenant, gateway: PaymentGateway, subscription_id: str) -> None:
    """Checkout saved the card on the subscription, where it wins over the customer's default, which
    is the card the portal updates (S17, S27): move it to the customer, so that "Manage → update the
    card" is what pays. A refusal is logged; the next sync of the subscription tries again."""
    try:
        gateway_write(
            tenant=tenant,
            operation="adopt_card",
            params={"subscription": subscription_id},
            call=lambda key: gateway.adopt_subscription_card(
                subscription_id=subscription_id, idempotency_key=key
            ),
            result_id=lambda sub: sub.id,
        )
    except GatewayError as exc:
        log.warning("the card of %s stays on the subscription for now: %s", subscription_id, exc.code)


def _invoice_pay(*, tenant: Tenant, gateway: PaymentGateway, invoice_id: str, card: str) -> None:
    try:
        paid = gateway_write(
            tenant=tenant,
            operation="pay_invoice",
            params={"invoice": invoice_id, "payment_method": card},
            call=lambda key: gateway.pay_invoice(invoice_id, idempotency_key=key),
            result_id=lambda invoice: invoice.id,
        )
    except GatewayError as exc:
        log.info("open invoice %s not paid by the new card: %s", invoice_id, exc.code)
        return
    invoice_upsert(tenant=tenant, inv=paid)
    subscription_sync(gateway, paid.subscription_id)


def customer_card_changed(*, gateway: PaymentGateway, customer_id: str) -> Tenant | None:
    """The customer has a new default card (the portal's "Add payment method"): pay what is open on
    their subscriptions now, instead of waiting for the next retry (or forever, once the retries are
    exhausted and the subscription unpaid). A decline is recorded on its attempt and left to the
    invoice's own events. https://docs.stripe.com/api/invoices/pay"""
    tenant = tenant_for(customer_id=customer_id)
    if tenant is None:
        return None
    customer = gateway.retrieve_customer(customer_id)
    if customer.deleted or not customer.default_payment_method:
        return tenant
    for inv in gateway.list_invoices(customer_id=customer_id):
        if inv.status == "open" and inv.subscription_id:
            _invoice_pay(
                tenant=tenant, gateway=gateway, invoice_id=inv.id, card=customer.default_payment_method
            )
    return tenant


def product_cycle_grants(*, tenant: Tenant) -> None:
    """What a product grants at the start of each billing cycle, once per cycle, as soon as the
    subscription says the cycle has started (or a plan change raised the amount): Helpdesk AI's
    ticket credits (L17, L18). The sweeper in `billing_tick` catches any cycle this missed."""
    licensing_services.ticket_credits_refresh(tenant=tenant)


def service_period(inv: GatewayInvoice) -> tuple[datetime | None, datetime | None]:
    """The service an invoice's lines pay for: the earliest line start to the latest line end. The
    invoice's own period_start/end is not it: at Stripe it is the window in which items could be
    added (a subscription's first invoice: a single instant), and lines carry the service period."""
    starts = [line.period_start for line in inv.lines if line.period_start is not None]
    ends = [line.period_end for line in inv.lines if line.period_end is not None]
    return (min(starts) if starts else None, max(ends) if ends else None)


def invoice_credits_grant(*, tenant: Tenant, inv: GatewayInvoice) -> None:
    """A paid invoice of a subscription whose plan includes credits (AI Plus: 2,000 a month, C06)
    grants the period it pays for, once: the grant is keyed by the invoice. Call it after the
    subscription is synced. The period is the subscription line's (a renewal invoice's own period
    is the one that ended: https://docs.stripe.com/api/invoices/object#invoice_object-period_start)."""
    if inv.status != "paid" or not inv.subscription_id:
        return
    sub = (
        Subscription.objects.select_related("plan")
        .filter(tenant=tenant, gateway_subscription_id=inv.subscription_id)
        .first()
    )
    if sub is None or not sub.plan.included_credits:
        return
    paid = max(
        (line for line in inv.lines if line.period_start and line.period_end),
        key=lambda line: line.period_end or sub.current_period_end,
        default=None,
    )
    start, end = (paid.period_start, paid.period_end) if paid else (None, None)
    # The credits arrive with the payment: a grant applied after its invoice was paid (a late
    # webhook, a reconcile) is written as of the payment, so the ledger replayed at any moment since
    # holds it, as the credits the payment bought were the customer's from then.
    now = timezone.now()
    credit_services.credits_grant_plan_period(
        tenant=tenant,
        plan=sub.plan,
        period_start=start or sub.current_period_start,
        period_end=end or sub.current_period_end,
        reference=f"invoice:{inv.id}",
        now=min(inv.paid_at, now) if inv.paid_at else now,
    )


def invoice_upsert(*, tenant: Tenant, inv: GatewayInvoice) -> Invoice:
    """Mirror the gateway's invoice as it is now (lines replaced wholesale: they are the gateway's)."""
    service_start, service_end = service_period(inv)
    fields = {
        "tenant": tenant,
        "gateway_subscription_id": inv.subscription_id,
        "number": inv.number,
        "status": inv.status,
        "currency": inv.currency,
        "subtotal": inv.subtotal,
        "tax": inv.tax,
        "total": inv.total,
        "amount_due": inv.amount_due,
        "amount_paid": inv.amount_paid,
        "amount_remaining": inv.amount_remaining,
        "billing_reason": inv.billing_reason,
        "period_start": inv.period_start,
        "period_end": inv.period_end,
        "service_period_start": service_start,
        "service_period_end": service_end,
        "issued_at": inv.created,
        "paid_at": inv.paid_at,
        "hosted_invoice_url": inv.hosted_invoice_url,
        "pdf_url": inv.invoice_pdf,
        "amount_credited": inv.credited,
        "starting_balance": inv.starting_balance,
        "ending_balance": inv.ending_balance,
    }
    if inv.status != "open":
        fields["needs_confirmation"] = False
    invoice, _ = Invoice.objects.select_for_update().update_or_create(
        gateway_invoice_id=inv.id, defaults=fields
    )
    invoice.lines.all().delete()
    InvoiceLine.objects.bulk_create(
        InvoiceLine(
            invoice=invoice,
            position=i,
            description=line.description[:500],
            quantity=line.quantity,
            amount=line.amount,
            period_start=line.period_start,
            period_end=line.period_end,
        )
        for i, line in enumerate(inv.lines)
    )
    return invoice


# --- reconciliation and the clock --------------------------------------------------------------


@dataclass
class ReconcileReport:
    """What a reconcile applied, and what it could not (each object skipped, with why)."""

    customers: int = 0
    subscriptions: int = 0
    invoices: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "customers": self.customers,
            "subscriptions": self.subscriptions,
            "invoices": self.invoices,
            "errors": len(self.failures),
            "failures": self.failures,
        }


def _skipped(report: ReconcileReport, customer: BillingCustomer, object_id: str, exc: Exception) -> None:
    """Record an object the reconcile could not apply and go on with the next one: one bad object
    (a price missing from the catalog, a refusal of the gateway) must not stop the others."""
    message = exc.message if isinstance(exc, GatewayError | BusinessError) else repr(exc)
    log.error("billing_reconcile: %s of %s skipped: %s", object_id, customer.tenant.slug, message)
    report.failures.append({"tenant": customer.tenant.slug, "object": object_id, "error": message})


def customer_reconcile(
    *, customer: BillingCustomer, since: datetime, report: ReconcileReport | None = None
) -> ReconcileReport:
    """Re-read one customer's subscriptions and recent invoices from the gateway and apply them,
    each in its own transaction; what cannot be applied is skipped and recorded in the report."""
    report = report or ReconcileReport()
    gateway = get_gateway()
    for gw in gateway.list_subscriptions(customer_id=customer.customer_id):
        try:
            with transaction.atomic():
                subscription_sync(gateway, gw.id)
        except (GatewayError, BusinessError, ValueError) as exc:
            _skipped(report, customer, gw.id, exc)
            continue
        report.subscriptions += 1
    for inv in gateway.list_invoices(customer_id=customer.customer_id, created_since=since):
        try:
            with transaction.atomic():
                invoice_upsert(tenant=customer.tenant, inv=inv)
                invoice_credits_grant(tenant=customer.tenant, inv=inv)
        except (GatewayError, BusinessError, ValueError) as exc:
            _skipped(report, customer, inv.id, exc)
            continue
        report.invoices += 1
    return report


def tenant_reconcile(*, tenant: Tenant, since_days: int = 35) -> ReconcileReport:
    """The tenant's billing as the gateway has it now (the demo and operators, without waiting for
    webhooks)."""
    customer = BillingCustomer.objects.select_related("tenant").filter(tenant=tenant).first()
    if customer is None:
        return ReconcileReport()
    return customer_reconcile(customer=customer, since=timezone.now() - timedelta(days=since_days))


def billing_reconcile(*, since_days: int = 35) -> ReconcileReport:
    """Re-read every customer's subscriptions and recent invoices from the gateway and repair local
    state (missed or failed webhooks). Whatever cannot be applied is skipped, recorded (logged, and
    listed in the report) and the reconcile goes on with everything else."""
    report = ReconcileReport()
    since = timezone.now() - timedelta(days=since_days)
    for bc in BillingCustomer.objects.select_related("tenant").order_by("pk"):
        report.customers += 1
        try:
            customer_reconcile(customer=bc, since=since, report=report)
        except GatewayError as exc:  # the customer's lists could not be read
            _skipped(report, bc, bc.customer_id, exc)
    return report


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
        "extra_pack_confirmations_expired": extra_pack_confirmations_expire(now=now),
        "contracts_renewed": contracts_renew_due(now=now),
        **licensing_services.licensing_sweep(now=now),
        **credit_services.credits_sweep(now=now),
    }


# --- contracts: contact-sales plans (AI Ultra, Enterprise) assigned by staff -------------------


def _contract_credits_grant(period: plan_services.ContractPeriod) -> None:
    """The contract's credits for one period (AI Ultra, C07), once: the grant is keyed by the
    contract and the period. The previous period's plan credits end where this one starts, as at
    an AI Plus renewal."""
    contract = period.contract
    if contract.credits_per_period <= 0 or period.expired:
        return
    start, end = plan_services.contract_period_bounds(contract, period.index)
    credit_services.credits_grant_plan_period(
        tenant=contract.subscription.tenant,
        plan=contract.subscription.plan,
        period_start=start,
        period_end=end,
        reference=f"contract:{contract.pk}:period:{period.index}",
        amount=contract.credits_per_period,
    )


@transaction.atomic
def contract_assign(
    *,
    lead: Lead,
    starts_at: datetime,
    months: int,
    credits_per_period: int,
    reason: str,
    actor: User | Actor,
    now: datetime | None = None,
) -> tuple[Subscription, bool]:
    """Staff (admin, "Assign the contracted plan"): put the lead's tenant on its contact-sales plan by
    contract, no payment gateway involved (C07, C16; Enterprise, S16), and grant the first month's
    credits. Under the tenant's lock; refused with nothing written while a paid subscription of the
    product is live. The same lead twice: one subscription, one grant (False the second time)."""
    period, created = plan_services.contract_start(
        lead=lead,
        starts_at=starts_at,
        months=months,
        credits_per_period=credits_per_period,
        reason=reason,
        actor=actor,
        now=now,
    )
    if created:
        _contract_credits_grant(period)
    return period.contract.subscription, created


def contracts_renew_due(*, now: datetime) -> int:
    """Sweeper: a contracted subscription whose period has ended moves to its next monthly period
    and gets that period's credits, or expires at the contract's end. A second run changes nothing
    (the period has moved; grants are keyed by period)."""
    done = 0
    for pk in plan_services.contract_periods_due(now=now):
        with transaction.atomic():
            period = plan_services.contract_period_advance(subscription_id=pk, now=now)
            if period is None:
                continue
            _contract_credits_grant(period)
            done += 1
    return done


__all__ = [
    "billing_reconcile",
    "billing_tick",
    "checkout_start",
    "organization_signup",
    "plan_change",
    "subscription_resume",
]
