"""Celery entry points: take ids, call a service, nothing else."""

from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from tenants import services
from tenants.models import Notification
from tenants.notifications import notification_send


@shared_task(acks_late=True, autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def send_notification(notification_id: int) -> bool:
    return notification_send(notification_id=notification_id)


@shared_task(acks_late=True)
def retry_stuck_notifications() -> int:
    """Requeue emails left pending or failed for more than ten minutes (a worker died, SMTP was down)."""
    cutoff = timezone.now() - timedelta(minutes=10)
    stuck = Notification.objects.filter(
        status__in=[Notification.Status.PENDING, Notification.Status.FAILED],
        created_at__lt=cutoff,
        attempts__lt=5,
    ).values_list("pk", flat=True)[:500]
    # Rows stuck in SENDING (a worker died mid-send) go back to FAILED so they are tried again.
    Notification.objects.filter(status=Notification.Status.SENDING, claimed_at__lt=cutoff).update(
        status=Notification.Status.FAILED
    )
    ids = list(stuck)
    for pk in ids:
        send_notification.delay(pk)
    return len(ids)


@shared_task(acks_late=True)
def expire_invitations() -> int:
    return services.invitations_expire_due(now=timezone.now())
