"""Celery entry points of licensing: thin, take ids, call a service, safe to run twice."""

from celery import shared_task
from django.utils import timezone

from licensing import services


@shared_task(acks_late=True)
def refresh_ticket_credits() -> int:
    """Each Helpdesk AI cycle that has started without its ticket credits gets them (L18)."""
    return services.ticket_credits_refresh_due(now=timezone.now())
