"""Celery entry points of billing: thin, take ids, call a service."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from billing_portal import services, webhooks


@shared_task(acks_late=True)
def process_webhook_event(event_pk: int) -> str:
    return webhooks.webhook_event_process(event_pk=event_pk)


@shared_task(acks_late=True)
def retry_webhook_events() -> int:
    """Failed events, events nobody picked up, and claims of workers that died are tried again, up
    to MAX_ATTEMPTS; an event a worker is applying right now is left alone."""
    ids = webhooks.webhook_events_due(now=timezone.now())
    for pk in ids:
        process_webhook_event.delay(pk)
    return len(ids)


@shared_task(acks_late=True)
def advance_gateway_clock() -> int:
    """Local gateway only: period roll-overs and scheduled changes falling due."""
    return services.gateway_advance(now=timezone.now())


@shared_task(acks_late=True)
def expire_pack_confirmations() -> int:
    """Extra-pack payments nobody confirmed (3D Secure) within the window: voided, the pack freed."""
    return services.extra_pack_confirmations_expire(now=timezone.now())


@shared_task(acks_late=True)
def reconcile() -> dict[str, object]:
    return services.billing_reconcile().as_dict()


def deliver_in_process(payload: bytes, signature: str) -> None:
    """The local gateway's webhook delivery: the endpoint's own receiver, signature and all, then a
    worker applies the event, as with a delivery over HTTP."""
    webhooks.webhook_receive(payload=payload, signature=signature, enqueue=process_webhook_event.delay)


@shared_task(acks_late=True)
def renew_contracts() -> int:
    """Contracted plans (AI Ultra, Enterprise): the next monthly period and its credits, or the end."""
    return services.contracts_renew_due(now=timezone.now())
