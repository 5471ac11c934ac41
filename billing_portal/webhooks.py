"""The webhook endpoint's event log and dispatch.

Receiving: verify (signature and tolerance), check the envelope, store by event id — a duplicate
delivery finds the stored row. Applying: once, by a worker that claims the row with a conditional
update; each handler re-reads its object from the gateway and applies it through the services, so
duplicates and out-of-order deliveries end in the same state."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from billing_portal import services
from billing_portal.gateway.base import GatewayError, PaymentGateway, WebhookRejected
from billing_portal.gateway.factory import get_gateway
from billing_portal.models import WebhookEvent
from plans import services as plan_services
from tenants.models import Tenant

log = logging.getLogger(__name__)

# A worker that claimed an event this long ago and never finished it has died; the sweeper may
# claim it again. Far longer than any handler runs.
CLAIM_TIMEOUT = timedelta(minutes=10)
MAX_ATTEMPTS = 8


class EventIgnored(Exception):
    """A handler's object is not ours to apply (no tenant of this installation): stored as ignored
    with the reason, not retried."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Received:
    event: WebhookEvent
    created: bool


def _has_nul(value: Any) -> bool:
    """PostgreSQL's text and jsonb refuse NUL; a body carrying one is refused at the door."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def webhook_receive(*, payload: bytes, signature: str, enqueue: Callable[[int], Any]) -> Received:
    """Verify a delivery and store its event; `enqueue(event_pk)` runs after commit for a new one.
    Raises WebhookRejected (a 400: the gateway must not retry it as if we had failed)."""
    gateway = get_gateway()
    event = gateway.verify_webhook(payload=payload, signature_header=signature)
    if event.livemode != gateway.livemode:
        # https://docs.stripe.com/api/events/object#event_object-livemode: an endpoint registered in
        # the other mode (or a key of the other mode here) would mix test payments with real ones.
        raise WebhookRejected(
            f"The event comes from Stripe's {'live' if event.livemode else 'test'} mode, but this "
            f"installation's key is a {'live' if gateway.livemode else 'test'} mode key: refused."
        )
    body = json.loads(payload)
    if _has_nul(body):
        raise WebhookRejected("The event contains a NUL character.")
    try:
        with transaction.atomic():
            row = WebhookEvent.objects.create(
                event_id=event.id,
                type=event.type,
                object_type=event.object_type,
                object_id=event.object_id,
                payload=body,
                event_created=event.created,
            )
    except IntegrityError:
        return Received(WebhookEvent.objects.get(event_id=event.id), created=False)
    transaction.on_commit(lambda: enqueue(row.pk))
    return Received(row, created=True)


def webhook_event_process(*, event_pk: int, now: datetime | None = None) -> str:
    """Apply one stored event, once: a conditional update claims it (received, failed, or a stale
    claim of a worker that died); a second worker finds it taken."""
    now = now or timezone.now()
    claimable = Q(status__in=[WebhookEvent.Status.RECEIVED, WebhookEvent.Status.FAILED]) | Q(
        status=WebhookEvent.Status.PROCESSING, claimed_at__lt=now - CLAIM_TIMEOUT
    )
    claimed = (
        WebhookEvent.objects.filter(claimable, pk=event_pk)
        .filter(attempts__lt=MAX_ATTEMPTS)
        .update(status=WebhookEvent.Status.PROCESSING, attempts=F("attempts") + 1, claimed_at=now)
    )
    if claimed != 1:
        return "skipped"  # someone else got there first, or it is done
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
    except EventIgnored as exc:
        WebhookEvent.objects.filter(pk=row.pk, claimed_at=now).update(
            status=WebhookEvent.Status.IGNORED, error=exc.reason[:4000], processed_at=timezone.now()
        )
        return WebhookEvent.Status.IGNORED
    except GatewayError as exc:
        if exc.code != "resource_missing":
            log.exception("webhook %s (%s) failed", row.event_id, row.type)
            WebhookEvent.objects.filter(pk=row.pk, claimed_at=now).update(
                status=WebhookEvent.Status.FAILED, error=repr(exc)[:4000]
            )
            return WebhookEvent.Status.FAILED
        # The gateway does not know the object (another integration on the same account, or one
        # deleted since): retrying for days would not change that. Stored as ignored, with why.
        reason = f"Ignored: the gateway has no such object ({exc.message}); not one of this installation's."
        WebhookEvent.objects.filter(pk=row.pk, claimed_at=now).update(
            status=WebhookEvent.Status.IGNORED, error=reason[:4000], processed_at=timezone.now()
        )
        return WebhookEvent.Status.IGNORED
    except Exception as exc:
        log.exception("webhook %s (%s) failed", row.event_id, row.type)
        # Recorded, not raised: the retry sweeper tries it again (and the gateway redelivers).
        WebhookEvent.objects.filter(pk=row.pk, claimed_at=now).update(
            status=WebhookEvent.Status.FAILED, error=repr(exc)[:4000]
        )
        return WebhookEvent.Status.FAILED
    WebhookEvent.objects.filter(pk=row.pk, claimed_at=now).update(
        status=status, error="", processed_at=timezone.now(), tenant=tenant
    )
    return status


def webhook_events_due(*, now: datetime, limit: int = 200) -> list[int]:
    """Events the retry sweeper should hand to a worker: failed ones, received ones nobody picked
    up, and claims older than CLAIM_TIMEOUT (their worker died). A live claim is never taken."""
    stale = now - CLAIM_TIMEOUT
    return list(
        WebhookEvent.objects.filter(
            Q(status=WebhookEvent.Status.FAILED)
            | Q(status=WebhookEvent.Status.RECEIVED, received_at__lt=stale)
            | Q(status=WebhookEvent.Status.PROCESSING, claimed_at__lt=stale),
            attempts__lt=MAX_ATTEMPTS,
        )
        .order_by("received_at")
        .values_list("pk", flat=True)[:limit]
    )


# --- handlers: each re-reads its object and applies it; returns the tenant it concerned --------


NO_TENANT = "Ignored: the {what} belongs to no tenant of this installation."


def _on_checkout(gateway: PaymentGateway, row: WebhookEvent) -> Tenant | None:
    tenant = services.checkout_sync(session_id=row.object_id)
    if tenant is None:
        raise EventIgnored(NO_TENANT.format(what="checkout session"))
    return tenant


def _on_subscription(gateway: PaymentGateway, row: WebhookEvent) -> Tenant | None:
    tenant = services.subscription_sync(gateway, row.object_id)
    if tenant is None:
        raise EventIgnored(NO_TENANT.format(what="subscription"))
    return tenant


def _on_invoice(gateway: PaymentGateway, row: WebhookEvent) -> Tenant | None:
    inv = gateway.retrieve_invoice(row.object_id)
    tenant = services.tenant_for(customer_id=inv.customer_id, metadata=inv.metadata)
    if tenant is None:
        raise EventIgnored(NO_TENANT.format(what="invoice"))
    services.invoice_upsert(tenant=tenant, inv=inv)
    if inv.subscription_id:
        services.subscription_sync(gateway, inv.subscription_id)
        services.invoice_credits_grant(tenant=tenant, inv=inv)
    elif inv.metadata.get("extra_pack"):
        # An extra pack paid later (3D Secure confirmed, a retry, a payment that was processing): its
        # credits, once per invoice; or its processing payment failed.
        services.extra_pack_invoice_apply(
            tenant=tenant, inv=inv, payment_failed=row.type == "invoice.payment_failed"
        )
    return tenant


def _on_customer_updated(gateway: PaymentGateway, row: WebhookEvent) -> Tenant | None:
    """A new default card pays what is open. The event's previous_attributes only say whether the
    default card changed (the trigger); what is paid is re-read from the gateway."""
    previous = (row.payload.get("data") or {}).get("previous_attributes") or {}
    changed = "default_payment_method" in (previous.get("invoice_settings") or {})
    if not changed:
        return services.tenant_for(customer_id=row.object_id)
    return services.customer_card_changed(gateway=gateway, customer_id=row.object_id)


def _on_payment_action_required(gateway: PaymentGateway, row: WebhookEvent) -> Tenant | None:
    inv = gateway.retrieve_invoice(row.object_id)
    tenant = services.tenant_for(customer_id=inv.customer_id, metadata=inv.metadata)
    if tenant is None:
        raise EventIgnored(NO_TENANT.format(what="invoice"))
    services.invoice_needs_confirmation(tenant=tenant, gateway=gateway, invoice_id=inv.id)
    if inv.subscription_id:
        services.subscription_sync(gateway, inv.subscription_id)
    return tenant


def _on_charge_refunded(gateway: PaymentGateway, row: WebhookEvent) -> Tenant | None:
    invoice_id = gateway.invoice_of_charge(row.object_id)
    if not invoice_id:
        raise EventIgnored("Ignored: the refunded charge paid no invoice.")
    inv = gateway.retrieve_invoice(invoice_id)
    tenant = services.tenant_for(customer_id=inv.customer_id, metadata=inv.metadata)
    if tenant is None:
        raise EventIgnored(NO_TENANT.format(what="refunded charge"))
    services.invoice_refunds_record(tenant=tenant, gateway=gateway, invoice_id=invoice_id)
    return tenant


def _on_credit_note(gateway: PaymentGateway, row: WebhookEvent) -> Tenant | None:
    """A credit note's invoice never changes: its id (from the body) says which invoice to re-read."""
    invoice_id = str((row.payload.get("data") or {}).get("object", {}).get("invoice") or "")
    if not invoice_id:
        raise EventIgnored("Ignored: the credit note names no invoice.")
    inv = gateway.retrieve_invoice(invoice_id)
    tenant = services.tenant_for(customer_id=inv.customer_id, metadata=inv.metadata)
    if tenant is None:
        raise EventIgnored(NO_TENANT.format(what="credit note"))
    services.invoice_upsert(tenant=tenant, inv=inv)
    return tenant


def _on_dispute(gateway: PaymentGateway, row: WebhookEvent) -> Tenant | None:
    tenant = services.payment_disputed(gateway=gateway, dispute_id=row.object_id)
    if tenant is None:
        raise EventIgnored(NO_TENANT.format(what="disputed charge"))
    return tenant


def _on_customer_deleted(gateway: PaymentGateway, row: WebhookEvent) -> Tenant | None:
    if not gateway.retrieve_customer(row.object_id).deleted:
        raise EventIgnored("Ignored: the gateway still has this customer.")
    tenant = services.customer_forget(customer_id=row.object_id)
    if tenant is None:
        raise EventIgnored(NO_TENANT.format(what="customer"))
    return tenant


def _on_schedule(gateway: PaymentGateway, row: WebhookEvent) -> Tenant | None:
    schedule = gateway.retrieve_schedule(row.object_id)
    tenant = (
        services.subscription_sync(gateway, schedule.subscription_id) if schedule.subscription_id else None
    )
    if schedule.status in ("released", "canceled"):
        plan_services.scheduled_changes_void(gateway_schedule_id=schedule.id)
    return tenant


HANDLERS: dict[str, Callable[[PaymentGateway, WebhookEvent], Tenant | None]] = {
    "checkout.session.completed": _on_checkout,
    "checkout.session.expired": _on_checkout,
    "customer.updated": _on_customer_updated,
    "customer.deleted": _on_customer_deleted,
    "charge.refunded": _on_charge_refunded,
    "charge.dispute.created": _on_dispute,
    "credit_note.created": _on_credit_note,
    "credit_note.updated": _on_credit_note,
    "credit_note.voided": _on_credit_note,
    "invoice.payment_action_required": _on_payment_action_required,
    "customer.subscription.created": _on_subscription,
    "customer.subscription.updated": _on_subscription,
    "customer.subscription.deleted": _on_subscription,
    "customer.subscription.paused": _on_subscription,
    "customer.subscription.resumed": _on_subscription,
    # An upgrade that waited for its invoice applied, or expired unpaid (pending_if_incomplete).
    "customer.subscription.pending_update_applied": _on_subscription,
    "customer.subscription.pending_update_expired": _on_subscription,
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
