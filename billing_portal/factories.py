"""factory-boy factories for the billing portal."""

from datetime import timedelta

import factory
from django.utils import timezone

from billing_portal.models import Invoice, InvoiceLine
from tenants.factories import TenantFactory


class InvoiceFactory(factory.django.DjangoModelFactory):
    """A paid $10.00 monthly invoice issued now; pass `status` (and amounts) for other cases.
    The derived amounts follow the gateway's rules: paid in full when paid, nothing paid otherwise."""

    class Meta:
        model = Invoice

    tenant = factory.SubFactory(TenantFactory)
    gateway_invoice_id = factory.Sequence(lambda n: f"in_test_{n:08d}")
    number = factory.Sequence(lambda n: f"INV-{n:05d}")
    status = Invoice.Status.PAID
    currency = "usd"
    subtotal = 1000  # minor units
    tax = 0  # minor units
    total = factory.LazyAttribute(lambda o: o.subtotal + o.tax)
    amount_due = factory.LazyAttribute(lambda o: o.total)
    amount_paid = factory.LazyAttribute(lambda o: o.amount_due if o.status == Invoice.Status.PAID else 0)
    amount_remaining = factory.LazyAttribute(
        lambda o: (
            0 if o.status in (Invoice.Status.PAID, Invoice.Status.VOID) else o.amount_due - o.amount_paid
        )
    )
    billing_reason = "subscription_cycle"
    issued_at = factory.LazyFunction(timezone.now)
    period_start = factory.LazyAttribute(lambda o: o.issued_at)
    period_end = factory.LazyAttribute(lambda o: o.issued_at + timedelta(days=30))
    # What the lines pay for; by default the same as the gateway's period.
    service_period_start = factory.LazyAttribute(lambda o: o.period_start)
    service_period_end = factory.LazyAttribute(lambda o: o.period_end)
    paid_at = factory.LazyAttribute(lambda o: o.issued_at if o.status == Invoice.Status.PAID else None)


class InvoiceLineFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = InvoiceLine

    invoice = factory.SubFactory(InvoiceFactory)
    position = factory.Sequence(lambda n: n)
    description = factory.Sequence(lambda n: f"Line item {n}")
    quantity = 1
    amount = 1000  # minor units
    period_start = factory.LazyAttribute(lambda o: o.invoice.period_start)
    period_end = factory.LazyAttribute(lambda o: o.invoice.period_end)
