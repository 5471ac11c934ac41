"""Celery entry points of the credits sweepers: thin, safe to run twice (config/beat.py)."""

from celery import shared_task
from django.utils import timezone

from credits import services


@shared_task(acks_late=True)
def expire_grants() -> int:
    return services.grants_expire_due(now=timezone.now())


@shared_task(acks_late=True)
def expire_holds() -> int:
    return services.holds_expire_due(now=timezone.now())


@shared_task(acks_late=True)
def send_low_balance_emails() -> int:
    return services.low_balance_notify_due(now=timezone.now())
