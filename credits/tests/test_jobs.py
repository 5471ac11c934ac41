"""The credits sweepers and their Celery tasks: idempotent, and the low-balance email once per
plan period (C03's rule: 80% of the period's credits used, or the balance under the setting)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from credits import services, tasks
from credits.factories import grant
from credits.models import Hold, Source
from credits.selectors import summary
from credits.tests.conftest import START
from credits.tests.helpers import K, check_invariants, consume
from plans.factories import plan
from tenants.factories import MembershipFactory, UserFactory
from tenants.models import Notification, Role

pytestmark = pytest.mark.django_db


def _plan_period(tenant, reference="invoice:in_1", start=START):
    return services.credits_grant_plan_period(
        tenant=tenant,
        plan=plan("credits-plus"),
        period_start=start,
        period_end=start + timedelta(days=30),
        reference=reference,
    )


def low_emails():
    return sorted((m.to[0], m.subject) for m in mail.outbox if "credits" in m.subject)


def test_low_balance_email_goes_to_the_admins_once_per_period(
    plus, admin, member, clock, django_capture_on_commit_callbacks
):
    MembershipFactory(tenant=plus, role=Role.ADMIN, user=UserFactory(email="second-admin@acme.test"))
    _plan_period(plus)
    consume(plus, "k1", quantity=1599)  # 79.95% used, 401 left
    with django_capture_on_commit_callbacks(execute=True):
        assert services.low_balance_notify_due(now=timezone.now()) == 0
    consume(plus, "k2", quantity=1)  # 80%
    with django_capture_on_commit_callbacks(execute=True):
        assert services.low_balance_notify_due(now=timezone.now()) == 1
        assert services.low_balance_notify_due(now=timezone.now()) == 0
    assert low_emails() == [
        ("admin@acme.test", "Your AI credits are running low"),
        ("second-admin@acme.test", "Your AI credits are running low"),
    ]
    body = next(m.body for m in mail.outbox if m.to == ["admin@acme.test"])
    assert "Acme Corp has 400 credits available.\n" in body
    assert "Used this period: 1,600 credits of 2,000 credits (80%); the period ends on 1 Jun 2022." in body
    assert "/t/acme/marketplace/ai-credits/" in body
    # The next period is another period: one more email when it runs low too.
    clock.move_to(START + timedelta(days=30))
    _plan_period(plus, reference="invoice:in_2", start=START + timedelta(days=30))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.low_balance_notify_due(now=timezone.now()) == 0
    consume(plus, "k3", quantity=1700)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.low_balance_notify_due(now=timezone.now()) == 1
    assert len(low_emails()) == 4
    assert Notification.objects.filter(template="credits_low").count() == 4


def test_a_balance_under_the_setting_is_low_even_when_little_was_used(
    plus, admin, settings, django_capture_on_commit_callbacks
):
    settings.CREDITS_LOW_BALANCE = 100
    services.credits_grant_plan_period(
        tenant=plus,
        plan=plan("credits-free"),
        period_start=START,
        period_end=START + timedelta(days=90),
        reference="subscription:1:free",
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert [services.low_balance_notify_due(now=timezone.now()) for _ in range(2)] == [1, 0]
    assert low_emails() == [("admin@acme.test", "Your AI credits are running low")]


def test_c03_credits_held_by_open_holds_make_the_balance_low_for_the_email(
    plus, admin, clock, django_capture_on_commit_callbacks
):
    """The email's rule is the sidebar's: available credits (balance - open holds) under the
    setting, though nothing of the period is consumed."""
    _plan_period(plus)
    services.credits_hold(tenant=plus, idempotency_key="long-job", amount=1995 * K, ttl_seconds=600)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.low_balance_notify_due(now=timezone.now()) == 1
    assert low_emails() == [("admin@acme.test", "Your AI credits are running low")]


def _page_figure(client, testid: str) -> str | None:
    page = client.get("/t/acme/marketplace/ai-credits/").content.decode()
    found = re.search(rf'data-testid="{testid}">([^<]*)<', page)
    return found.group(1) if found else None


def test_c03_c15_the_low_balance_email_says_the_available_and_held_credits_the_page_shows(
    plus, admin, clock, client_for, django_capture_on_commit_callbacks
):
    """The email stated the balance (held credit included: 400 credits "left" of which 350.1 could
    not be spent); it says what the AI Credits page says: 49.9 available, 350.1 reserved."""
    _plan_period(plus)
    consume(plus, "k1", quantity=1600)  # 80% of the period used: 400 left
    services.credits_hold(tenant=plus, idempotency_key="long-job", amount=350_100, ttl_seconds=600)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.low_balance_notify_due(now=timezone.now()) == 1

    (email,) = [m for m in mail.outbox if "credits" in m.subject]
    page = client_for(admin)
    assert (_page_figure(page, "available"), _page_figure(page, "held")) == ("49.9 credits", "350.1 credits")
    assert (
        "Acme Corp has 49.9 credits available (350.1 credits reserved by work in progress).\n"
        "Used this period: 1,600 credits of 2,000 credits (80%); the period ends on 1 Jun 2022.\n"
    ) in email.body
    html = email.alternatives[0][0]
    assert "has 49.9 credits available (350.1 credits reserved by work in progress).</p>" in html
    assert "400 credits" not in email.body + html


def test_c03_an_expired_hold_reserves_nothing_and_the_email_names_no_reserved_credits(
    plus, admin, clock, django_capture_on_commit_callbacks
):
    _plan_period(plus)
    consume(plus, "k1", quantity=1999)
    services.credits_hold(tenant=plus, idempotency_key="h", amount=900, ttl_seconds=60)
    clock.move_to(START + timedelta(minutes=2))  # past the hold's expiry, before the sweeper
    with django_capture_on_commit_callbacks(execute=True):
        assert services.low_balance_notify_due(now=timezone.now()) == 1
    (email,) = [m for m in mail.outbox if "credits" in m.subject]
    assert "Acme Corp has 1 credit available.\n" in email.body
    assert "reserved" not in email.body


def test_c03_the_email_is_sent_only_when_the_sidebar_says_the_credits_run_low(
    plus, admin, clock, client_for, django_capture_on_commit_callbacks
):
    """One rule decides both (`balance_runs_low` on the tenant's summary): a period's plan grants
    of 100 and 2,000 credits with 90 used is 4% used and 2,010 available — no quick access in the
    sidebar, so no email either (one grant alone at 90% sent one that said "2,010 left")."""
    grant(plus, 100, source=Source.PLAN_INCLUDED, days=30)
    consume(plus, "k1", quantity=90)
    grant(plus, 2000, source=Source.PLAN_INCLUDED, days=30, valid_from=START + timedelta(seconds=1))
    clock.move_to(START + timedelta(minutes=1))
    assert summary(tenant_id=plus.pk).runs_low is False
    nav = re.search(
        r'<nav class="sidebar".*?</nav>', client_for(admin).get("/t/acme/").content.decode(), re.S
    )
    assert nav is not None
    assert "AI Credits" not in nav.group(0)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.low_balance_notify_due(now=timezone.now()) == 0
    assert low_emails() == []
    assert not Notification.objects.filter(template="credits_low").exists()


def test_the_sweeper_tasks_are_thin_and_safe_to_run_twice(plus, clock):
    grant(plus, 5, source=Source.EXTRA_PACK, days=1)
    services.credits_hold(tenant=plus, idempotency_key="h", amount=K, ttl_seconds=60)
    clock.move_to(START + timedelta(days=2))
    assert (tasks.expire_grants(), tasks.expire_grants()) == (1, 0)
    assert (tasks.expire_holds(), tasks.expire_holds()) == (1, 0)
    assert tasks.send_low_balance_emails() == 0
    assert Hold.objects.get().status == "expired"
    check_invariants(plus)
