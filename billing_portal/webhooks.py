"""Gateway events: stored by id before anything else, applied after commit, once.

The event is only a trigger: each handler re-reads the object from the gateway and applies it as it
is now, so duplicates and out-of-order deliveries end in the same state."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from billing_portal.gateway.base import GatewayEvent, GatewayInvoice, PaymentGateway
from billing_portal.gateways import get_gateway
from billing_portal.models import BillingCustomer, CheckoutSession, Invoice, InvoiceLine, WebhookEvent
from plans import services as plan_services
from tenants.models import Tenant

log = logging.getLogger(__name__)


def webhook_event_record(*, event: GatewayEvent, payload: dict) -> tuple[WebhookEvent, bool]:
    """Store a verified event by its id. Returns (row, created); a duplicate delivery finds the row."""
    try:
        with transaction.atomic():
            row = WebhookEvent.objects.create(
                event_id=event.id,
                type=event.type,
                object_type=event.object_type,
                object_id=event.object_id,
                payload=payload,
                event_created=event.created,
            )
    except IntegrityError:
        return WebhookEvent.objects.get(event_id=event.id), False
    from billing_portal.tasks import process_webhook_event

    transaction.on_commit(lambda: process_webhook_event.delay(row.pk))
    return row, True


def webhook_event_process(*, event_pk: int) -> str:
    """Apply one stored event, once: a conditional update claims it; a second worker finds it taken."""
    claimed = WebhookEvent.objects.filter(
        pk=event_pk, status__in=[WebhookEvent.Status.RECEIVED, WebhookEvent.Status.FAILED]
    ).update(status=WebhookEvent.Status.PROCESSING, attempts=F("attempts") + 1)
    if claimed != 1:
        return "skipped"
    row = WebhookEvent.objects.get(pk=event_pk)
    handler = HANDLERS.get(row.type)
    try:
        if handler is None:
            status = WebhookEvent.Status.IGNORED
            tenant = None
        else:
            with transaction.atomic():
                tenant = handler(get_gateway(), row)
            status = WebhookEvent.Status.PROCESSED
    except Exception as exc:
        log.exception("webhook %s (%s) failed", row.event_id, row.type)
        # Recorded, not raised: the retry sweeper tries it again (and the gateway redelivers).
        WebhookEvent.objects.filter(pk=row.pk).update(
            status=WebhookEvent.Status.FAILED, error=repr(exc)[:4000]
        )
        return WebhookEvent.Status.FAILED
    WebhookEvent.objects.filter(pk=row.pk).update(
        status=status, error="", processed_at=timezone.now(), tenant=tenant
    )
    return status


# --- handlers: each re-reads its object and applies it; returns the tenant it concerned --------


def tenant_for(*, customer_id: str = "", metadata: dict | None = None) -> Tenant | None:
    tenant_id = (metadata or {}).get("tenant_id")
    if tenant_id and str(tenant_id).isdigit():
        tenant = Tenant.objects.filter(pk=int(tenant_id)).first()
        if tenant is not None:
            return tenant
    if customer_id:
        bc = BillingCustomer.objects.select_related("tenant").filter(customer_id=customer_id).first()
        return bc.tenant if bc else None
    return None


def sync_subscription(gateway: PaymentGateway, subscription_id: str) -> Tenant | None:
    gw = gateway.retrieve_subscription(subscription_id)
    tenant = tenant_for(customer_id=gw.customer_id, metadata=gw.metadata)
    if tenant is None:
        log.warning("subscription %s belongs to no tenant we know", subscription_id)
        return None
    plan_services.subscription_apply_gateway(tenant=tenant, gw=gw)
    return tenant


def invoice_upsert(*, tenant: Tenant, inv: GatewayInvoice) -> Invoice:
    """Mirror the gateway's invoice as it is now (lines replaced wholesale: they are the gateway's)."""
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
        "issued_at": inv.created,
        "paid_at": inv.paid_at,
        "hosted_invoice_url": inv.hosted_invoice_url,
        "pdf_url": inv.invoice_pdf,
    }
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


def _on_checkout(gateway: PaymentGateway, row: WebhookEvent) -> Tenant | None:
    session = gateway.retrieve_checkout_session(row.object_id)
    tenant = tenant_for(customer_id=session.customer_id, metadata=session.metadata)
    if session.status == "complete":
        CheckoutSession.objects.filter(gateway_session_id=session.id).exclude(
            status=CheckoutSession.Status.COMPLETE
        ).update(status=CheckoutSession.Status.COMPLETE, completed_at=timezone.now())
    elif session.status == "expired":
        CheckoutSession.objects.filter(
            gateway_session_id=session.id, status=CheckoutSession.Status.OPEN
        ).update(status=CheckoutSession.Status.EXPIRED)
    if session.subscription_id:
        return sync_subscription(gateway, session.subscription_id) or tenant
    return tenant


def _on_subscription(gateway: PaymentGateway, row: WebhookEvent) -> Tenant | None:
    return sync_subscription(gateway, row.object_id)


def _on_invoice(gateway: PaymentGateway, row: WebhookEvent) -> Tenant | None:
    inv = gateway.retrieve_invoice(row.object_id)
    tenant = tenant_for(customer_id=inv.customer_id, metadata=inv.metadata)
    if tenant is None:
        return None
    invoice_upsert(tenant=tenant, inv=inv)
    if inv.subscription_id:
        sync_subscription(gateway, inv.subscription_id)
    return tenant


def _on_schedule(gateway: PaymentGateway, row: WebhookEvent) -> Tenant | None:
    subscription_id = row.payload.get("data", {}).get("object", {}).get("subscription") or ""
    if isinstance(subscription_id, dict):
        subscription_id = subscription_id.get("id", "")
    tenant = sync_subscription(gateway, subscription_id) if subscription_id else None
    status = row.payload.get("data", {}).get("object", {}).get("status")
    if status in ("released", "canceled"):
        plan_services.scheduled_changes_void(gateway_schedule_id=row.object_id)
    return tenant


HANDLERS: dict[str, Callable[[PaymentGateway, WebhookEvent], Tenant | None]] = {
    "checkout.session.completed": _on_checkout,
    "checkout.session.expired": _on_checkout,
    "customer.subscription.created": _on_subscription,
    "customer.subscription.updated": _on_subscription,
    "customer.subscription.deleted": _on_subscription,
    "customer.subscription.paused": _on_subscription,
    "customer.subscription.resumed": _on_subscription,
    "invoice.created": _on_invoice,
    "invoice.finalized": _on_invoice,
    "invoice.paid": _on_invoice,
    "invoice.payment_failed": _on_invoice,
    "invoice.payment_succeeded": _on_invoice,
    "invoice.voided": _on_invoice,
    "invoice.marked_uncollectible": _on_invoice,
    "subscription_schedule.created": _on_schedule,
    "subscription_schedule.updated": _on_schedule,
    "subscription_schedule.released": _on_schedule,
    "subscription_schedule.canceled": _on_schedule,
    "subscription_schedule.completed": _on_schedule,
}
