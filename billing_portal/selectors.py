"""Every read of the billing portal that a view, task or other app needs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum

from django.db.models import BigIntegerField, Count, F, QuerySet, Sum, Value
from django.db.models.expressions import Combinable
from django.db.models.functions import Cast, Greatest
from django.utils import timezone

from billing_portal.models import CheckoutSession, Invoice
from plans import selectors as plan_selectors
from plans.models import Product
from plans.money import format_money
from tenants.models import Tenant

# --- Payments waiting for the customer -----------------------------------------------------------


@dataclass(frozen=True)
class PaymentNotice:
    """An open invoice the Billing tab points at, and what it waits for."""

    invoice: Invoice
    confirm: bool  # the bank asks the customer to confirm the payment (3D Secure): the hosted page
    message: str


def payment_notices(*, tenant: Tenant) -> list[PaymentNotice]:
    """Open invoices waiting for the customer, newest first, in one query: a payment the bank asks
    them to confirm (invoice.payment_action_required; confirmed on the invoice's hosted page), and a
    plan change waiting for its payment (an upgrade applies once its invoice is paid)."""
    notices = []
    for invoice in Invoice.objects.filter(tenant=tenant, status=Invoice.Status.OPEN).order_by(
        "-issued_at", "-pk"
    ):
        amount = format_money(invoice.amount_remaining, invoice.currency)
        if invoice.needs_confirmation:
            notices.append(
                PaymentNotice(
                    invoice,
                    True,
                    f"Your bank asks you to confirm the payment of {amount} (invoice {invoice}).",
                )
            )
        elif invoice.billing_reason == "subscription_update":
            notices.append(
                PaymentNotice(
                    invoice,
                    False,
                    f"A plan change is waiting for its payment of {amount} (invoice {invoice}): update your "
                    "payment method (Manage) and it applies as soon as it is paid.",
                )
            )
    return notices


# --- Invoices ----------------------------------------------------------------------------------


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


def invoices_for(
    *, tenant: Tenant, status: str | None = None, since: date | None = None, until: date | None = None
) -> QuerySet[Invoice]:
    """The tenant's invoices, newest first; `since` and `until` are issue dates, both included."""
    invoices = Invoice.objects.filter(tenant=tenant)
    if status:
        invoices = invoices.filter(status=status)
    if since:
        invoices = invoices.filter(issued_at__gte=_start_of(since))
    if until:
        # Up to the end of `until` (time.max: PostgreSQL keeps microseconds), never the next day's
        # start: the day after 9999-12-31 does not exist (OverflowError, a 500 from a query string).
        invoices = invoices.filter(
            issued_at__lte=datetime.combine(until, time.max, tzinfo=timezone.get_current_timezone())
        )
    return invoices.order_by("-issued_at", "-pk")


@dataclass(frozen=True)
class CurrencyTotals:
    currency: str
    count: int
    total: int  # minor units
    amount_paid: int  # minor units
    amount_remaining: int  # minor units
    # What negative totals (a downgrade's proration) put on the customer's credit balance instead of
    # paying out: total + credited_to_balance - what the balance paid = what was charged.
    credited_to_balance: int = 0  # minor units
    # Refunded of what was paid (the gateway keeps a refunded invoice "paid"; the refund is on its
    # charges), and what credit notes credited (part of it may be those refunds: see Invoice.net_paid).
    amount_refunded: int = 0  # minor units
    amount_credited: int = 0  # minor units

    @property
    def net_paid(self) -> int:
        """Minor units paid less refunded: what stayed paid (Invoice.net_paid, summed)."""
        return self.amount_paid - self.amount_refunded


def _sum(field: str | Combinable) -> Cast:
    # PostgreSQL sums bigint into numeric; cast back so the sums arrive as Python ints.
    return Cast(Sum(field), BigIntegerField())


def invoice_totals(invoices: QuerySet[Invoice]) -> list[CurrencyTotals]:
    """Count and sums of `invoices` per currency, in one query; amounts in different currencies are
    never added together."""
    rows = (
        invoices.order_by()
        .values("currency")
        .annotate(
            count=Count("pk"),
            total=_sum("total"),
            amount_paid=_sum("amount_paid"),
            amount_remaining=_sum("amount_remaining"),
            credited_to_balance=_sum(Greatest(F("starting_balance") - F("ending_balance"), Value(0))),
            amount_refunded=_sum("amount_refunded"),
            amount_credited=_sum("amount_credited"),
        )
        .order_by("currency")
    )
    return [CurrencyTotals(**row) for row in rows]


def credit_balance_left(*, tenant: Tenant, newest: Invoice | None) -> Invoice | None:
    """The newest finalized invoice when it left the customer a credit balance (ending_balance < 0):
    the gateway applies that balance to the next invoices before charging the card (Stripe:
    https://docs.stripe.com/billing/customer/balance). The figure is as of that invoice. `newest`:
    the tenant's newest invoice as `last_invoice` reads it (None: no invoice, so no balance); another
    query only when that one is a draft."""
    if newest is not None and newest.status == Invoice.Status.DRAFT:
        newest = (
            Invoice.objects.filter(tenant=tenant)
            .exclude(status=Invoice.Status.DRAFT)
            .order_by("-issued_at", "-pk")
            .first()
        )
    return newest if newest is not None and newest.ending_balance < 0 else None


def invoice_detail(*, tenant: Tenant, invoice_id: int) -> Invoice:
    """One of the tenant's invoices with its lines; raises Invoice.DoesNotExist for another
    tenant's invoice, exactly as for one that does not exist."""
    return (
        Invoice.objects.select_related("tenant").prefetch_related("lines").get(tenant=tenant, pk=invoice_id)
    )


def last_invoice(*, tenant: Tenant) -> Invoice | None:
    """The tenant's most recently issued invoice (the Overview's next-invoice tile)."""
    return Invoice.objects.filter(tenant=tenant).order_by("-issued_at", "-pk").first()


# --- the Billing tab left behind by a checkout in a new tab -------------------------------------


class CheckoutWatch(StrEnum):
    WAITING = "waiting"  # no payment yet: the checkout tab is open (or still loading)
    ACTIVATING = "activating"  # the checkout completed; the payment provider's confirmation is on its way
    PAID = "paid"  # the product is on a paid plan now: show the updated page
    CLOSED = "closed"  # the checkout was canceled or expired: nothing was charged
    TIMED_OUT = "timed_out"  # stop asking; the page says to reload once the payment is done


WATCH_FOR = timedelta(minutes=30)  # how long the tab left behind keeps asking


def checkout_watch(
    *, tenant: Tenant, product: Product, since: datetime, now: datetime | None = None
) -> CheckoutWatch:
    """Where the checkout opened from the Billing tab (rendered at `since`) stands, for that tab."""
    now = now or timezone.now()
    if plan_selectors.entitlements(tenant=tenant, now=now)[product.code].is_paid:
        return CheckoutWatch.PAID
    latest = (
        CheckoutSession.objects.filter(tenant=tenant, plan__product=product, created_at__gte=since)
        .order_by("-created_at", "-pk")
        .values_list("status", flat=True)
        .first()
    )
    if latest == CheckoutSession.Status.EXPIRED:
        return CheckoutWatch.CLOSED
    if now - since > WATCH_FOR:
        return CheckoutWatch.TIMED_OUT
    if latest == CheckoutSession.Status.COMPLETE:
        return CheckoutWatch.ACTIVATING
    return CheckoutWatch.WAITING
