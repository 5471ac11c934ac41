"""The once-only email log: a key is sent once, a send is claimed by one worker, failures are
recorded and retried, and rendered bodies (which may hold one-time links) are dropped once sent."""

from __future__ import annotations

import threading
from datetime import timedelta
from smtplib import SMTPException
from unittest import mock

import pytest
import time_machine
from django.core import mail
from django.core.mail import EmailMultiAlternatives
from django.db import connection
from django.utils import timezone

from tenants.models import Notification
from tenants.notifications import notification_send, notify
from tenants.tasks import retry_stuck_notifications


def _notify(tenant, admin, key: str = "invitation:test"):
    return notify(
        key=key,
        tenant=tenant,
        to="pat@elsewhere.test",
        template="invitation",
        context={
            "tenant": tenant,
            "inviter": admin,
            "role": "Member",
            "link": "http://127.0.0.1:8000/invitations/one-time-token/",
            "expires_at": timezone.now() + timedelta(days=7),
        },
    )


def test_notify_with_the_same_key_twice_sends_one_email(tenant, admin, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = _notify(tenant, admin)
        second = _notify(tenant, admin)

    assert isinstance(first, Notification)
    assert second is None
    assert Notification.objects.count() == 1
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["pat@elsewhere.test"]


def test_notify_records_the_rendered_message_until_it_is_sent(tenant, admin):
    note = _notify(tenant, admin)  # the on-commit send never runs inside the test transaction

    note.refresh_from_db()
    assert (note.status, note.attempts, note.subject, note.template, note.tenant) == (
        Notification.Status.PENDING,
        0,
        "You're invited to join Acme Corp on Allowance",
        "invitation",
        tenant,
    )
    assert "http://127.0.0.1:8000/invitations/one-time-token/" in note.body_text
    assert "http://127.0.0.1:8000/invitations/one-time-token/" in note.body_html
    assert mail.outbox == []


def test_sent_message_carries_both_bodies_and_the_log_drops_them(tenant, admin):
    note = _notify(tenant, admin)

    assert notification_send(notification_id=note.pk) is True

    email = mail.outbox[0]
    assert email.subject == "You're invited to join Acme Corp on Allowance"
    assert email.from_email == "Allowance <billing@allowance.local>"
    assert "one-time-token" in email.body
    assert email.alternatives[0].mimetype == "text/html"
    assert "one-time-token" in email.alternatives[0].content
    note.refresh_from_db()
    assert (note.status, note.attempts, note.error, note.body_text, note.body_html) == (
        Notification.Status.SENT,
        1,
        "",
        "",
        "",
    )
    assert note.sent_at is not None
    assert note.claimed_at is not None


def test_sending_twice_sends_once(tenant, admin):
    note = _notify(tenant, admin)

    assert notification_send(notification_id=note.pk) is True
    assert notification_send(notification_id=note.pk) is False

    assert len(mail.outbox) == 1
    assert Notification.objects.get().attempts == 1


def test_failed_send_is_recorded_with_its_error_and_keeps_the_bodies(tenant, admin):
    note = _notify(tenant, admin)

    with (
        mock.patch.object(EmailMultiAlternatives, "send", side_effect=SMTPException("mail server said no")),
        pytest.raises(SMTPException),
    ):
        notification_send(notification_id=note.pk)

    note.refresh_from_db()
    assert (note.status, note.attempts, note.error, note.sent_at) == (
        Notification.Status.FAILED,
        1,
        "mail server said no",
        None,
    )
    assert "one-time-token" in note.body_text
    assert mail.outbox == []


def test_retry_task_requeues_a_failed_send_after_ten_minutes(tenant, admin):
    note = _notify(tenant, admin)
    with (
        mock.patch.object(EmailMultiAlternatives, "send", side_effect=SMTPException("mail server said no")),
        pytest.raises(SMTPException),
    ):
        notification_send(notification_id=note.pk)

    with time_machine.travel(note.created_at + timedelta(minutes=9), tick=False):
        assert retry_stuck_notifications() == 0
    assert mail.outbox == []

    with time_machine.travel(note.created_at + timedelta(minutes=11), tick=False):
        assert retry_stuck_notifications() == 1

    assert len(mail.outbox) == 1
    note.refresh_from_db()
    assert (note.status, note.attempts, note.error, note.body_text) == (Notification.Status.SENT, 2, "", "")
    with time_machine.travel(note.created_at + timedelta(minutes=30), tick=False):
        assert retry_stuck_notifications() == 0  # sent: never again
    assert len(mail.outbox) == 1


def test_retry_task_requeues_a_send_whose_worker_died_mid_send(tenant, admin):
    note = _notify(tenant, admin)
    Notification.objects.filter(pk=note.pk).update(
        status=Notification.Status.SENDING, claimed_at=note.created_at
    )

    with time_machine.travel(note.created_at + timedelta(minutes=11), tick=False):
        assert retry_stuck_notifications() == 1

    assert Notification.objects.get().status == Notification.Status.SENT
    assert len(mail.outbox) == 1


def test_retry_task_gives_up_after_five_attempts(tenant, admin):
    note = _notify(tenant, admin)
    Notification.objects.filter(pk=note.pk).update(status=Notification.Status.FAILED, attempts=5)

    with time_machine.travel(note.created_at + timedelta(minutes=11), tick=False):
        assert retry_stuck_notifications() == 0

    assert Notification.objects.get().status == Notification.Status.FAILED
    assert mail.outbox == []


@pytest.mark.django_db(transaction=True)
def test_two_workers_sending_at_once_send_one_email(tenant):
    note = Notification.objects.create(
        key="race",
        tenant=tenant,
        to_email="pat@elsewhere.test",
        template="t",
        subject="Hi",
        body_text="Body\n",
    )
    real_send = EmailMultiAlternatives.send

    def slow_send(self, *args, **kwargs):
        threading.Event().wait(0.3)  # the rival arrives while this one is sending
        return real_send(self, *args, **kwargs)

    barrier = threading.Barrier(2)
    results: list = []

    def worker():
        try:
            barrier.wait()
            results.append(notification_send(notification_id=note.pk))
        finally:
            connection.close()

    with mock.patch.object(EmailMultiAlternatives, "send", slow_send):
        threads = [threading.Thread(target=worker) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)

    assert sorted(results) == [False, True]
    assert len(mail.outbox) == 1
    assert Notification.objects.get().attempts == 1
