"""Celery entry points of licensing: thin, take ids, call a service, safe to run twice."""

from celery import shared_task
from django.utils import timezone

from licensing import services


@shared_task(acks_late=True)
def refresh_ticket_credits() -> int:
    """Each Helpdesk AI cycle that has started without its ticket credits gets them (L18)."""
    return services.ticket_credits_refresh_due(now=timezone.now())


@shared_task(acks_late=True)
def check_client_import(import_id: int) -> str:
    """A large CSV file's check (every row, with progress on the page)."""
    return services.client_import_check(import_id=import_id).status


@shared_task(acks_late=True)
def apply_client_import(import_id: int, actor_id: int | None = None) -> str:
    """A large CSV file applied as a whole (one transaction) or not at all."""
    from tenants.models import User

    actor = User.objects.filter(pk=actor_id).first() if actor_id else None
    try:
        return services.client_import_apply(import_id=import_id, actor=actor).status
    except Exception as exc:
        services.client_import_failed(import_id=import_id, error=repr(exc))
        raise
