"""Billing portal tables: the tenant's customer at the gateway, checkout sessions we opened, the
webhook event log, and the invoice mirror finance reads. Money in integer minor units."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from billing_portal.gateway.store import LocalGatewayObject
from credits.models import ExtraPack
from plans.models import Plan
from tenants.models import Tenant

__all__ = [
    "BillingCustomer",
    "CheckoutSession",
    "ExtraPackPurchase",
    "GatewayAttempt",
    "Invoice",
    "InvoiceLine",
    "LocalGatewayObject",
    "PortalConfiguration",
    "WebhookEvent",
]


class BillingCustomer(models.Model):
    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="billing_customer")
    gateway = models.CharField(max_length=16)
    customer_id = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.tenant} @ {self.gateway}: {self.customer_id}"


class CheckoutSession(models.Model):
    """A hosted checkout we opened for a tenant; its id is the idempotency key of the gateway call."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        COMPLETE = "complete", "Complete"
        EXPIRED = "expired", "Expired"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    gateway_session_id = models.CharField(max_length=200, blank=True)
    url = models.URLField(max_length=1000, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["gateway_session_id"],
                condition=~models.Q(gateway_session_id=""),
                name="checkout_gateway_id_unique",
            )
        ]

    def __str__(self) -> str:
        return f"Checkout {self.pk} ({self.status})"


class GatewayAttempt(models.Model):
    """One attempt at a write to the payment gateway, written (pending) before the call. Its
    idempotency key is this row's id and a hash of the call's parameters, behind the installation's
    id: a retry of the same attempt repeats the key (the gateway replays the first answer), a new
    attempt after a failure gets a new one, and two deployments on one Stripe account never share a
    key. https://docs.stripe.com/api/idempotent_requests"""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    operation = models.CharField(max_length=40)
    params_hash = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    result_id = models.CharField(max_length=200, blank=True)  # what the gateway made or changed
    error_code = models.CharField(max_length=80, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "operation", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.operation} #{self.pk} ({self.status})"

    @property
    def idempotency_key(self) -> str:
        return f"{settings.BILLING_INSTALLATION_ID}:{self.operation}:{self.pk}:{self.params_hash[:16]}"


class PortalConfiguration(models.Model):
    """The customer portal configuration `manage.py billing_portal_configure` made at the gateway;
    every Manage session names it (without it, the Dashboard's default decides)."""

    class Purpose(models.TextChoices):
        DEFAULT = "default", "Payment methods, invoices, cancel at period end"
        # C20: no cancel, for a customer with an AI Credits package (the portal lists every
        # subscription of the customer, and its cancel feature applies to all of them).
        NO_CANCEL = "no_cancel", "Payment methods and invoices"

    gateway = models.CharField(max_length=16)
    purpose = models.CharField(max_length=16, choices=Purpose.choices, default=Purpose.DEFAULT)
    configuration_id = models.CharField(max_length=100)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["gateway", "purpose"], name="portal_configuration_one_per_purpose"
            )
        ]

    def __str__(self) -> str:
        return f"{self.gateway} {self.purpose}: {self.configuration_id}"


class WebhookEvent(models.Model):
    """Every verified gateway event, stored by its id before it is applied."""

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSING = "processing", "Processing"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored"
        FAILED = "failed", "Failed"

    event_id = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=80, db_index=True)
    object_type = models.CharField(max_length=60, blank=True)
    object_id = models.CharField(max_length=100, blank=True)
    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    attempts = models.PositiveSmallIntegerField(default=0)
    # When a worker claimed it (status processing); a claim older than the timeout is a dead worker's.
    claimed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    event_created = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        indexes = [models.Index(fields=["status", "received_at"])]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id} ({self.status})"


class Invoice(models.Model):
    """Mirror of a gateway invoice, kept from webhooks and reconciliation."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        OPEN = "open", "Open"
        PAID = "paid", "Paid"
        UNCOLLECTIBLE = "uncollectible", "Uncollectible"
        VOID = "void", "Void"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="invoices")
    gateway_invoice_id = models.CharField(max_length=100, unique=True)
    gateway_subscription_id = models.CharField(max_length=100, blank=True)
    number = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices)
    currency = models.CharField(max_length=3)
    subtotal = models.BigIntegerField()  # minor units
    tax = models.BigIntegerField(default=0)  # minor units
    total = models.BigIntegerField()  # minor units
    amount_due = models.BigIntegerField()  # minor units
    amount_paid = models.BigIntegerField()  # minor units
    amount_remaining = models.BigIntegerField()  # minor units
    billing_reason = models.CharField(max_length=40, blank=True)
    # The gateway's own period: for Stripe, the window in which invoice items could be added to the
    # invoice (a subscription's first invoice: one instant; a renewal: the period that just ended).
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    # The service the lines pay for: the earliest line start to the latest line end. What the pages,
    # the PDF and the CSV call the invoice's period. Stripe: "Use the line item period to get the
    # service period for each price" (https://docs.stripe.com/api/invoices/object#invoice_object-period_start).
    service_period_start = models.DateTimeField(null=True, blank=True)
    service_period_end = models.DateTimeField(null=True, blank=True)
    issued_at = models.DateTimeField()
    paid_at = models.DateTimeField(null=True, blank=True)
    hosted_invoice_url = models.URLField(max_length=1000, blank=True)
    pdf_url = models.URLField(max_length=1000, blank=True)
    # Refunded of what its payments collected (charge.refunded), and credited by credit notes; the
    # gateway's status stays "paid" either way.
    amount_refunded = models.BigIntegerField(default=0)  # minor units
    amount_credited = models.BigIntegerField(default=0)  # minor units
    # The customer's invoice balance at the gateway before and after this invoice (minor units;
    # negative: credit). A downgrade's invoice adds credit; the next invoices use it.
    starting_balance = models.BigIntegerField(default=0)
    ending_balance = models.BigIntegerField(default=0)
    # The last payment attempt asked the customer to confirm it (3D Secure), on the hosted page.
    needs_confirmation = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-issued_at", "-pk"]
        indexes = [models.Index(fields=["tenant", "-issued_at"]), models.Index(fields=["tenant", "status"])]

    def __str__(self) -> str:
        return self.number or self.gateway_invoice_id

    @property
    def money_back(self) -> str:
        """What happened to the money after it was paid, in words: Refunded, Partially refunded,
        Credited, or "" (the facts are amount_refunded and amount_credited)."""
        if self.amount_refunded and self.amount_refunded >= self.amount_paid:
            return "Refunded"
        if self.amount_refunded:
            return "Partially refunded"
        if self.amount_credited:
            return "Credited"
        return ""

    @property
    def money_back_amount(self) -> int:
        """Minor units that `money_back` is about: what was refunded, else what credit notes credited."""
        return self.amount_refunded or self.amount_credited

    @property
    def net_paid(self) -> int:
        """Minor units paid less what was refunded of it: the money that stayed paid. Credit notes are
        not taken off: one on a paid invoice refunds (counted in amount_refunded already), credits
        the customer's balance (paid again into a later invoice) or records a credit outside the
        gateway; one before payment lowered what was due, so amount_paid never held it.
        https://docs.stripe.com/api/credit_notes/create"""
        return self.amount_paid - self.amount_refunded

    @property
    def credit_added(self) -> int:
        """Minor units this invoice added to the customer's credit balance (a negative total)."""
        return max(self.starting_balance - self.ending_balance, 0)

    @property
    def credit_applied(self) -> int:
        """Minor units of the customer's credit balance that paid this invoice."""
        return max(self.ending_balance - self.starting_balance, 0) if self.starting_balance < 0 else 0


class InvoiceLine(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveSmallIntegerField()
    description = models.CharField(max_length=500)
    quantity = models.IntegerField(default=1)
    amount = models.BigIntegerField()  # minor units
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "position"], name="invoice_line_position_unique")
        ]

    def __str__(self) -> str:
        return self.description


class ExtraPackPurchase(models.Model):
    """One purchase of an extra credit pack (C12 to C15): written, pending, before the charge, under
    the tenant's lock. While one is pending, waiting for the customer's 3D Secure confirmation or
    processing, no second purchase starts (a payment in flight blocks another: the partial unique constraint). The
    credits are granted by `credits` when its invoice is paid, once, keyed by the invoice."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        AWAITING_CONFIRMATION = "awaiting_confirmation", "Waiting for confirmation"
        # Accepted by the gateway, not settled yet (a payment method that confirms later): its
        # invoice is open and must not be voided; invoice.paid grants it, invoice.payment_failed
        # fails it.
        PROCESSING = "processing", "Payment processing"
        PAID = "paid", "Paid"
        FAILED = "failed", "Failed"

    OPEN = (Status.PENDING, Status.AWAITING_CONFIRMATION, Status.PROCESSING)

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    pack = models.ForeignKey(ExtraPack, on_delete=models.PROTECT, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # What was bought, as it was on sale then: the grant uses these, not the pack's current row
    # (staff may change its size or validity while a payment is in flight).
    credits = models.PositiveBigIntegerField()  # thousandths of a credit, as sold
    validity_days = models.PositiveSmallIntegerField()  # as sold (C13: up to 30)
    amount = models.PositiveIntegerField()  # minor units
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=24, choices=Status.choices, default=Status.PENDING)
    gateway_invoice_id = models.CharField(max_length=100, blank=True)
    error_code = models.CharField(max_length=80, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant"],
                condition=models.Q(status__in=["pending", "awaiting_confirmation", "processing"]),
                name="one_open_extra_pack_purchase",
            )
        ]

    def __str__(self) -> str:
        return f"{self.pack} for {self.tenant} ({self.status})"
