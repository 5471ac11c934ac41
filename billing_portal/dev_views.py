"""Hosted-page stand-ins of the local payment gateway, at /dev/billing/…: the checkout page and the
customer portal. They act on the local gateway, which emits the events Stripe would send, signed,
through the real webhook view. Refused (404) unless DEBUG is on and the local gateway is in use, and
only for a signed-in admin of the tenant that owns the customer."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from billing_portal.gateway.base import GatewayError
from billing_portal.gateway.factory import get_gateway
from billing_portal.gateway.local import LocalGateway
from billing_portal.gateway.local.invoices import Card
from billing_portal.models import BillingCustomer
from plans.models import Plan
from tenants.access import ADMIN_ONLY, BILLING_READERS, TenantRequest, member_access
from tenants.models import Role, Tenant


def _local_gateway() -> LocalGateway:
    gateway = get_gateway()
    if not (settings.DEBUG and isinstance(gateway, LocalGateway)):
        raise Http404
    return gateway


def _customer_tenant(request: HttpRequest, customer_id: str, roles: tuple[Role, ...] = ADMIN_ONLY) -> Tenant:
    """The tenant owning `customer_id`, for one of its members with one of `roles` (the tenant
    views' access rule: 404 for anyone else, a member without the role included — the stand-in
    reveals nothing)."""
    bc = BillingCustomer.objects.select_related("tenant").filter(customer_id=customer_id).first()
    if bc is None:
        raise Http404
    try:
        return member_access(request, roles, tenant=bc.tenant).tenant
    except PermissionDenied as exc:
        raise Http404 from exc


def _safe_return(request: HttpRequest, url: str, fallback: str = "/") -> str:
    ok = url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return url if url and ok else fallback


@require_http_methods(["GET", "POST"])
def checkout(request: TenantRequest, session_id: str) -> HttpResponse:
    """Stripe Checkout's page: the card entered here pays (4242), declines (0002), or asks for 3D
    Secure (3184), which the customer confirms on the page before anything is created."""
    gateway = _local_gateway()
    try:
        session = gateway.retrieve_checkout_session(session_id)
    except GatewayError as exc:
        raise Http404 from exc
    tenant = _customer_tenant(request, session.customer_id)
    plan = Plan.objects.select_related("product").filter(code=session.metadata.get("plan", "")).first()
    back = reverse("billing", kwargs={"slug": tenant.slug}) + (
        f"?product={plan.product.code}" if plan else "?"
    )
    error, confirming = None, False
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "cancel":
                gateway.expire_checkout(session_id)
                return HttpResponseRedirect(gateway.checkout_return_url(session_id, completed=False))
            if action == "decline":
                gateway.complete_checkout(session_id, card=Card.DECLINES, last4="0002")
            elif action == "pay_3ds":
                confirming = True  # the bank's challenge, shown on the page
            elif action == "confirm":
                gateway.complete_checkout(session_id, card=Card.REQUIRES_ACTION, last4="3184", confirmed=True)
                return HttpResponseRedirect(gateway.checkout_return_url(session_id, completed=True))
            else:
                gateway.complete_checkout(session_id, card=Card.PAYS, last4="4242")
                return HttpResponseRedirect(gateway.checkout_return_url(session_id, completed=True))
        except GatewayError as exc:
            error = exc.message
    return render(
        request,
        "billing_portal/dev/checkout.html",
        {
            "session": session,
            "plan": plan,
            "tenant": tenant,
            "error": error,
            "back": back,
            "confirming": confirming,
        },
        status=402 if error else 200,
    )


MSG_PORTAL_NO_CANCEL = "This portal does not offer cancellation. Nothing was changed."
# Each action of the portal page that a configuration can turn off, with the feature it needs
# (https://docs.stripe.com/api/customer_portal/configurations/object#portal_configuration_object-features)
# and the refusal when the session's configuration has it off. Resume and the test actions are not
# features of a configuration.
PORTAL_ACTION_FEATURES = {
    "cancel": ("subscription_cancel", MSG_PORTAL_NO_CANCEL),
    "update_card": (
        "payment_method_update",
        "This portal does not offer updating the payment method. Nothing was changed.",
    ),
    "pay": ("invoice_history", "This portal does not offer paying invoices. Nothing was changed."),
}


def _enabled(features: dict, feature: str) -> bool:
    return bool((features.get(feature) or {}).get("enabled"))


@require_http_methods(["GET", "POST"])
def portal(request: TenantRequest, customer_id: str) -> HttpResponse:
    """Stripe's customer portal, reached only through a portal session (`?session=`). Every request,
    an action's included, visits the session: an expired one shows only that it expired and changes
    nothing, and an action is checked against what the session's configuration allows at that
    moment, not what the page showed when it was rendered."""
    gateway = _local_gateway()
    tenant = _customer_tenant(request, customer_id)
    return_url = _safe_return(request, request.GET.get("return", ""))
    try:
        features = gateway.visit_portal_session(
            customer_id=customer_id, session_id=request.GET.get("session", "")
        )
    except GatewayError as exc:
        if exc.code != "portal_session_expired":
            raise Http404("No such portal session.") from None
        # Gone: the link worked once and never will again (a POST to it changes nothing either).
        context = {"expired": exc.message, "tenant": tenant, "return_url": return_url}
        return render(request, "billing_portal/dev/portal.html", context, status=410)
    if request.method == "POST":
        action = request.POST.get("action", "")
        subscription_id = request.POST.get("subscription", "")
        owned = {s.id for s in gateway.list_subscriptions(customer_id=customer_id)}
        if subscription_id and subscription_id not in owned:
            raise Http404
        needs = PORTAL_ACTION_FEATURES.get(action)
        if needs is not None and not _enabled(features, needs[0]):
            # The session's configuration has it off: Stripe's portal offers no such action (C20).
            messages.error(request, needs[1])
            return HttpResponseRedirect(request.get_full_path())
        try:
            if action == "pay":
                gateway.pay_open_invoices(customer_id)
                messages.success(request, "Payment received.")
            elif action == "fail_next_payment":
                gateway.fail_next_payment(subscription_id)
                messages.warning(request, "The next payment was attempted and declined.")
            elif action == "update_card":
                gateway.set_card(customer_id, failing=False, last4=request.POST.get("last4", "4242")[-4:])
                messages.success(request, "Payment method updated.")
            elif action == "cancel":
                gateway.cancel_subscription(
                    subscription_id=subscription_id,
                    at_period_end=True,
                    # Per request: a key per subscription made a cancel after a renewal replay the
                    # first cancel (nothing changed). Canceling twice is a no-op at the gateway anyway.
                    idempotency_key=f"portal-cancel:{subscription_id}:{secrets.token_hex(8)}",
                )
                messages.success(request, "Your subscription will be canceled at the end of the period.")
            elif action == "resume":
                gateway.resume_subscription(
                    subscription_id=subscription_id,
                    idempotency_key=f"portal-resume:{subscription_id}:{secrets.token_hex(8)}",
                )
                messages.success(request, "Your subscription will renew.")
            else:
                raise Http404
        except GatewayError as exc:
            messages.error(request, exc.message)
        return HttpResponseRedirect(request.get_full_path())
    overview = gateway.customer_overview(customer_id)
    plans = {p.stripe_price_id: p for p in Plan.objects.select_related("product").exclude(stripe_price_id="")}
    for sub in overview["subscriptions"]:
        sub["plan"] = plans.get(sub["price_id"])  # the template has no dict lookup by a variable key
    return render(
        request,
        "billing_portal/dev/portal.html",
        {
            "overview": overview,
            "tenant": tenant,
            "return_url": return_url,
            "plans": plans,
            "customer_id": customer_id,
            "can_cancel": _enabled(features, "subscription_cancel"),
            "can_update_card": _enabled(features, "payment_method_update"),
            "can_see_invoices": _enabled(features, "invoice_history"),
        },
    )


@require_http_methods(["GET", "POST"])
def invoice(request: TenantRequest, gateway_invoice_id: str) -> HttpResponse:
    """Stripe's hosted invoice page: pay an open invoice with a card entered here, or confirm a
    payment the bank asked the customer to confirm (3D Secure)."""
    gateway = _local_gateway()
    try:
        found = gateway.retrieve_invoice(gateway_invoice_id)
    except GatewayError as exc:
        raise Http404 from exc
    # Stripe's hosted invoice page opens for whoever holds its link; here, for those our pages show
    # the link to: the tenant's admins and finance (the invoice page's "Hosted invoice").
    tenant = _customer_tenant(request, found.customer_id, BILLING_READERS)
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "confirm":
                gateway.confirm_payment(gateway_invoice_id)
            elif action == "pay":
                gateway.pay_on_hosted_page(gateway_invoice_id)
            else:
                raise Http404
        except GatewayError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, "Payment received.")
        return HttpResponseRedirect(request.get_full_path())
    return render(
        request,
        "billing_portal/dev/invoice.html",
        {
            "invoice": found,
            "tenant": tenant,
            "needs_confirmation": found.status == "open"
            and gateway.payment_needs_confirmation(gateway_invoice_id),
        },
    )
