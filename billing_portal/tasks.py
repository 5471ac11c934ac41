"""Celery entry points of billing: thin, take ids, call a service."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.db.models import Q
from django.utils import timezone

from billing_portal import services
from billing_portal.models import WebhookEvent
from billing_portal.webhooks import webhook_event_process


@shared_task(acks_late=True)
def process_webhook_event(event_pk: int) -> str:
    return webhook_event_process(event_pk=event_pk)


@shared_task(acks_late=True)
def retry_webhook_events() -> int:
    """Events that failed (or whose worker died mid-way) are tried again, up to 8 attempts."""
    stale = timezone.now() - timedelta(minutes=10)
    WebhookEvent.objects.filter(status=WebhookEvent.Status.PROCESSING, received_at__lt=stale).update(
        status=WebhookEvent.Status.FAILED
    )
    ids = list(
        WebhookEvent.objects.filter(
            Q(status=WebhookEvent.Status.FAILED)
            | Q(status=WebhookEvent.Status.RECEIVED, received_at__lt=stale),
            attempts__lt=8,
        ).values_list("pk", flat=True)[:200]
    )
    for pk in ids:
        process_webhook_event.delay(pk)
    return len(ids)


@shared_task(acks_late=True)
def advance_gateway_clock() -> int:
    """Local gateway only: period roll-overs and scheduled changes falling due."""
    return services.gateway_advance(now=timezone.now())


@shared_task(acks_late=True)
def reconcile() -> dict[str, int]:
    return services.billing_reconcile()
