"""The Overview's billing tiles, registered from BillingPortalConfig.ready into the tenants' tile
registry: the alerts that need action, one tile per product the tenant uses, and the next invoice.

Every tile reads the tenant's entitlements from one `entitlements()` call per request (kept on the
request), so the Overview asks the database the same few queries whatever the number of products
or invoices. Usage tiles (sessions, credits, licenses) are registered by their own apps."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import Any

from django.conf import settings
from django.urls import reverse

from billing_portal import selectors
from billing_portal.models import Invoice
from plans.models import Product
from plans.offers import subscription_actions
from plans.selectors import Entitlements, ProductEntitlement, State, entitlements
from sessions_billing.registry import overview_usage
from tenants import dashboard as tiles
from tenants.access import ALL_ROLES, BILLING_READERS, TenantRequest
from tenants.models import Role

_CACHE = "_billing_entitlements"


def _entitlements(request: TenantRequest) -> Entitlements:
    """The tenant's entitlements, read once for all the tiles of this request."""
    found = getattr(request, _CACHE, None)
    if found is None:
        found = entitlements(tenant=request.tenant)
        setattr(request, _CACHE, found)
    return found


def _billing_url(request: TenantRequest, product: str) -> str:
    """The product's Billing tab, or "" where the deployment has no Billing tab (S03)."""
    if not settings.BILLING_TAB_ENABLED:
        return ""
    return reverse("billing", kwargs={"slug": request.tenant.slug}) + f"?product={product}"


# --- alerts --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    kind: str  # overdue, payment_issue, expired, trial_ending, canceled (most urgent first)
    tone: str  # danger, warning, info: the banner's colour
    ent: ProductEntitlement
    billing_url: str  # the product's Billing tab ("" without one)
    action: str  # "manage" (the billing portal), "resume", "plans" (the Billing tab's plans) or ""
    # A trial ending soon: its sessions left (S09), as the usage tile and the Billing tab count them
    # (the trial's sessions less the billable sessions used); None for a product without sessions.
    sessions_left: int | None = None


ALERT_ORDER = ("overdue", "payment_issue", "expired", "trial_ending", "canceled")


def _alert_kind(ent: ProductEntitlement) -> tuple[str, str] | None:
    """What about this product needs action, in the spec's words (S10, S26, S33, S34, S29)."""
    refusal = ent.refusal.code if ent.refusal is not None else ""
    if ent.state == "none":
        return None  # a product the tenant never used is not an alert
    if refusal == "payment_overdue":
        return "overdue", "danger"
    if ent.state == "past_due":
        return "payment_issue", "warning"
    if refusal == "subscription_ended":
        return "expired", "danger"
    if ent.state == "trialing" and ent.badge == "Trial ending soon":
        return "trial_ending", "warning"
    if ent.state == "canceled":
        return "canceled", "info"
    return None


# What each alert offers: the portal fixes payments (S27); a cancellation is undone with Resume, the
# subscription card's own button, when the plan-offer rule offers it to this member (S29); an ended
# or ending plan is fixed by choosing a plan (S33).
_FIXED_IN_PORTAL = frozenset({"overdue", "payment_issue"})


def alerts_tile(request: TenantRequest) -> dict[str, Any] | None:
    is_admin = request.membership.role == Role.ADMIN
    found = []
    for ent in _entitlements(request).products.values():
        kind = _alert_kind(ent)
        if kind is None:
            continue
        billing_url = _billing_url(request, ent.product)
        if kind[0] == "canceled":
            resume = subscription_actions(ent=ent, role=request.membership.role).resume
            action = "resume" if resume and billing_url else ""
        elif kind[0] in _FIXED_IN_PORTAL:
            action = "manage" if is_admin and billing_url else ""
        else:
            action = "plans" if billing_url else ""
        sessions_left = None
        if kind[0] == "trial_ending" and ent.product == Product.Code.AI_AGENTS:
            sessions_left = overview_usage(request).trial_sessions_left
        found.append(Alert(kind[0], kind[1], ent, billing_url, action, sessions_left))
    if not found:
        return None  # all is well: nothing is drawn
    found.sort(key=lambda alert: ALERT_ORDER.index(alert.kind))
    return {"alerts": found, "is_admin": is_admin, "slug": request.tenant.slug}


# --- one tile per product ------------------------------------------------------------------------


def product_tile(request: TenantRequest, *, product: str) -> dict[str, Any] | None:
    """The product's plan, badge (S30) and key date; nothing for a product the tenant does not use."""
    ent = _entitlements(request).get(product)
    if ent is None or ent.state == "none":
        return None
    return {"ent": ent, "billing_url": _billing_url(request, product)}


# --- the next invoice ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Renewal:
    product_name: str
    plan_name: str
    on: datetime
    amount: int  # minor units
    currency: str
    interval: str
    credit_applied: int = 0  # minor units of the customer's credit balance that pay it first

    @property
    def amount_due(self) -> int:
        """Minor units left for the card once the credit balance is applied (Stripe's amount_due)."""
        return self.amount - self.credit_applied


def _renewal(ent: ProductEntitlement) -> Renewal | None:
    """The next invoice of a paid subscription that renews: the plan's price on the next billing
    date, or the upcoming plan's when a scheduled change starts by then."""
    if ent.next_billing_date is None or not ent.price_amount:
        return None
    up = ent.upcoming
    if up is not None and up.starts_on <= ent.next_billing_date:
        return Renewal(
            ent.product_name, up.plan_name, ent.next_billing_date, up.price_amount, up.currency, up.interval
        )
    return Renewal(
        ent.product_name,
        ent.plan_name or "",
        ent.next_billing_date,
        ent.price_amount,
        ent.currency,
        ent.interval,
    )


def _credit(request: TenantRequest, last: Invoice | None) -> dict[str, Any] | None:
    left = selectors.credit_balance_left(tenant=request.tenant, newest=last)
    if left is None:
        return None
    return {"amount": -left.ending_balance, "currency": left.currency, "invoice": left}


def _with_credit(renewals: list[Renewal], credit: dict[str, Any] | None) -> list[Renewal]:
    """The renewals, soonest first, each with what the credit balance pays of it: the gateway applies
    the customer's balance to each invoice as it is finalized, before charging the card, until the
    balance is used up; only to an invoice in the balance's currency.
    https://docs.stripe.com/billing/customer/balance"""
    ordered = sorted(renewals, key=lambda r: r.on)
    if credit is None:
        return ordered
    left, applied = credit["amount"], []
    for renewal in ordered:
        take = min(left, renewal.amount) if renewal.currency.lower() == credit["currency"].lower() else 0
        left -= take
        applied.append(replace(renewal, credit_applied=take))
    return applied


def next_invoice_tile(request: TenantRequest) -> dict[str, Any] | None:
    """Admins and finance: when and how much each paid subscription renews for, and the last invoice.
    A plan whose payment failed renews once its open invoice is paid: the tile says so, and until
    when (its grace period), instead of "No renewal is scheduled." (S26, S27)."""
    products = _entitlements(request).products.values()
    renewals = [r for r in map(_renewal, products) if r is not None]
    unpaid = [ent for ent in products if ent.state == State.PAST_DUE]
    last = selectors.last_invoice(tenant=request.tenant)
    if not renewals and not unpaid and last is None:
        return None
    # A downgrade's credit pays the next invoices before the card (an outsider probe: the tile said
    # $49.00 due while $89.77 of credit waited to pay it): each renewal says what is left due.
    credit = _credit(request, last) if renewals else None
    # A change scheduled for a day within the period is prorated and invoiced that day (S18), before
    # the renewal: said, without an amount (the Overview asks the gateway for no preview).
    switches = [
        ent
        for ent in products
        if ent.upcoming is not None
        and ent.next_billing_date is not None
        and ent.upcoming.starts_on < ent.next_billing_date
    ]
    return {
        "switches": switches,
        "renewals": _with_credit(renewals, credit),
        "unpaid": unpaid,
        "last": last,
        "credit": credit,
        "slug": request.tenant.slug,
    }


def register() -> None:
    tiles.register(
        tiles.Tile(
            "billing-alerts", "billing_portal/tiles/alerts.html", alerts_tile, alerts=True, roles=ALL_ROLES
        ),
        *(
            tiles.Tile(
                f"product-{code}",
                "billing_portal/tiles/product.html",
                partial(product_tile, product=code),
                order=10 + position,
                roles=ALL_ROLES,
            )
            for position, code in enumerate(Product.Code.values)
        ),
        tiles.Tile(
            "next-invoice",
            "billing_portal/tiles/next_invoice.html",
            next_invoice_tile,
            order=20,
            roles=BILLING_READERS,
        ),
    )
