"""Sending email once. `notify(key=...)` records the message under a unique key and hands it to a
worker after the transaction commits; a second `notify` with the same key sends nothing."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.utils import timezone

from tenants.dev_mailbox import TENANT_HEADER
from tenants.models import Notification, Tenant


def notify(
    *, key: str, to: str, template: str, context: dict[str, Any], tenant: Tenant | None = None
) -> Notification | None:
    """Queue the email `templates/emails/<template>.{txt,html}` (first line of the text is the
    subject). Returns the new log row, or None when this key was already sent or queued."""
    ctx = {"site_url": settings.SITE_URL, **context}
    subject, _, body_text = render_to_string(f"emails/{template}.txt", ctx).strip().partition("\n")
    body_html = render_to_string(f"emails/{template}.html", {**ctx, "subject": subject})
    try:
        with transaction.atomic():
            note = Notification.objects.create(
                key=key[:200],
                tenant=tenant,
                to_email=to,
                template=template,
                subject=subject.strip()[:200],
                body_text=body_text.strip() + "\n",
                body_html=body_html,
            )
    except IntegrityError:
        return None  # already recorded under this key: once only

    from tenants.tasks import send_notification

    transaction.on_commit(lambda: send_notification.delay(note.pk))
    return note


def notification_send(*, notification_id: int) -> bool:
    """Send one queued email. Claims the row with a conditional update so two workers cannot both
    send it; returns True if this call sent it."""
    now = timezone.now()
    claimed = Notification.objects.filter(
        pk=notification_id, status__in=[Notification.Status.PENDING, Notification.Status.FAILED]
    ).update(status=Notification.Status.SENDING, claimed_at=now)
    if claimed != 1:
        return False  # someone else got there first, or it is already sent
    note = Notification.objects.select_related("tenant").get(pk=notification_id)
    message = EmailMultiAlternatives(
        subject=note.subject,
        body=note.body_text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[note.to_email],
        headers={TENANT_HEADER: note.tenant.slug} if note.tenant is not None else {},
    )
    if note.body_html:
        message.attach_alternative(note.body_html, "text/html")
    try:
        message.send()
    except Exception as exc:
        Notification.objects.filter(pk=note.pk).update(
            status=Notification.Status.FAILED, attempts=note.attempts + 1, error=str(exc)[:2000]
        )
        raise
    Notification.objects.filter(pk=note.pk).update(
        status=Notification.Status.SENT,
        attempts=note.attempts + 1,
        sent_at=timezone.now(),
        error="",
        body_text="",
        body_html="",
    )
    return True
