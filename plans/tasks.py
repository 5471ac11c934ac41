"""Celery entry points of the plans sweepers: thin, safe to run twice."""

from celery import shared_task
from django.utils import timezone

from plans import services


@shared_task(acks_late=True)
def expire_trials() -> int:
    return services.trials_expire_due(now=timezone.now())


@shared_task(acks_late=True)
def send_trial_reminders() -> int:
    return services.trial_reminders_due(now=timezone.now())


@shared_task(acks_late=True)
def expire_grace_periods() -> int:
    return services.grace_periods_expire_due(now=timezone.now())


@shared_task(acks_late=True)
def end_subscriptions() -> int:
    return services.subscriptions_end_due(now=timezone.now())
