"""The AI Agents free trial: what a new sign-up starts on, how it counts down, its reminder emails,
its end, and that it is granted once per tenant — through the real services and sweepers, with the
clock moved by time-machine."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.core import mail
from django.utils import timezone

from billing_portal import services as billing
from plans import services as plan_services
from plans.factories import plan
from plans.models import Subscription, TrialGrant
from plans.selectors import MSG_ENDED, entitlements
from tenants.errors import BusinessError
from tenants.models import AuditEvent
from tests.subscriptions.helpers import ADMIN_EMAILS, START, gateway, live, subscribe
from tests.subscriptions.helpers import org_mail as sent

pytestmark = pytest.mark.django_db

TRIAL_END = START + timedelta(days=14)
MSG_TRIAL_USED = "The free trial is available once per tenant. Subscribe to a plan to continue."


def test_signup_starts_on_the_agents_trial_with_14_days_and_50_sessions(org):
    """S08, S09, S30"""
    assert (settings.TRIAL_DAYS, settings.TRIAL_SESSIONS) == (14, 50)
    sub = live(org.tenant)
    assert (sub.plan.code, sub.state, sub.started_at, sub.trial_ends_at) == (
        "agents-trial",
        "trialing",
        START,
        TRIAL_END,
    )
    assert (sub.current_period_start, sub.current_period_end, sub.gateway_subscription_id) == (
        START,
        TRIAL_END,
        "",
    )
    assert TrialGrant.objects.filter(tenant=org.tenant).count() == 1

    ent = entitlements(tenant=org.tenant)["ai_agents"]
    assert ent.state == "trialing"
    assert ent.badge == "Trial subscription"
    assert ent.trial_days_left == 14
    assert ent.trial_ends_at == TRIAL_END
    assert ent.limits.session_limit == 50
    assert ent.next_billing_date is None
    assert ent.refusal is None
    assert ent.active is True
    # AI Free starts alongside; the Helpdesk product is not subscribed.
    assert entitlements(tenant=org.tenant)["ai_credits"].plan_code == "credits-free"
    assert sent() == []  # no reminder on day one


@pytest.mark.parametrize(
    ("elapsed", "days_left", "badge"),
    [
        (timedelta(days=1), 13, "Trial subscription"),
        (timedelta(days=10, hours=23, minutes=59), 4, "Trial subscription"),  # 3 days and 1 minute left
        (timedelta(days=11), 3, "Trial ending soon"),  # TRIAL_ENDING_SOON_DAYS before the end
        (timedelta(days=13, hours=12), 1, "Trial ending soon"),
        (timedelta(days=14) - timedelta(minutes=1), 1, "Trial ending soon"),
    ],
)
def test_trial_days_left_and_ending_soon_badge(org, clock, elapsed, days_left, badge):
    """S09, S10, S30"""
    assert settings.TRIAL_ENDING_SOON_DAYS == 3
    clock.move_to(START + elapsed)
    ent = entitlements(tenant=org.tenant)["ai_agents"]
    assert (ent.trial_days_left, ent.badge, ent.refusal) == (days_left, badge, None)


def test_entitlements_refuse_once_the_trial_end_passed_before_the_sweeper_runs(org, clock):
    """S12, S33: the database decides; the card already says Expired."""
    clock.move_to(TRIAL_END)
    ent = entitlements(tenant=org.tenant)["ai_agents"]
    assert live(org.tenant).state == "trialing"  # no sweeper has run
    assert ent.active is False
    assert (ent.refusal.code, ent.refusal.message) == ("subscription_ended", MSG_ENDED)
    assert ent.badge == "Expired subscription"
    assert ent.trial_days_left == 0


def test_trial_expires_by_days_when_the_sweeper_runs(org, clock, capture):
    """S12, S33, S11 (the trial-ended email, once per admin)"""
    clock.move_to(TRIAL_END - timedelta(minutes=1))
    assert plan_services.trials_expire_due(now=timezone.now()) == 0
    assert live(org.tenant).state == "trialing"

    now = TRIAL_END + timedelta(minutes=1)
    clock.move_to(now)
    with capture(execute=True):
        assert [plan_services.trials_expire_due(now=timezone.now()) for _ in range(3)] == [1, 0, 0]

    sub = Subscription.objects.get(tenant=org.tenant, product__code="ai_agents")
    assert (sub.state, sub.ended_at) == ("expired", now)
    ent = entitlements(tenant=org.tenant)["ai_agents"]
    assert ent.state == "expired"
    assert ent.badge == "Expired subscription"
    assert ent.refusal.message == "Your subscription has ended. Please upgrade your plan to continue."
    assert ent.limits.session_limit is None
    assert sent() == [(email, "Your AI Agents trial has ended") for email in ADMIN_EMAILS]
    assert AuditEvent.objects.filter(tenant=org.tenant, action="subscription.trial_ended").count() == 1


def test_trial_ended_by_sessions_expires_it_once(org, clock, capture):
    """S12: the trial also ends when its sessions run out (the metering calls trial_end)."""
    clock.move_to(START + timedelta(days=3))
    sub = live(org.tenant)
    with capture(execute=True):
        plan_services.trial_end(subscription=sub, reason="sessions")
        plan_services.trial_end(subscription=sub, reason="sessions")
    sub.refresh_from_db()
    assert (sub.state, sub.ended_at) == ("expired", START + timedelta(days=3))
    assert sent() == [(email, "Your AI Agents trial has ended") for email in ADMIN_EMAILS]
    assert all("all trial sessions are used" in m.body for m in mail.outbox if m.to[0] in ADMIN_EMAILS)
    assert entitlements(tenant=org.tenant)["ai_agents"].refusal.message == MSG_ENDED


def test_reminders_at_7_and_2_days_left_reach_every_admin_once(org, clock, capture):
    """S11"""

    def sweep_three_times() -> list[int]:
        with capture(execute=True):
            return [plan_services.trial_reminders_due(now=timezone.now()) for _ in range(3)]

    clock.move_to(TRIAL_END - timedelta(days=7, minutes=1))
    assert sweep_three_times() == [0, 0, 0]
    assert sent() == []

    clock.move_to(TRIAL_END - timedelta(days=7))
    assert sweep_three_times() == [1, 0, 0]  # one trial reminded (both its admins), then nothing
    assert sent() == [(email, "Your AI Agents trial ends in 7 days") for email in ADMIN_EMAILS]

    clock.move_to(TRIAL_END - timedelta(days=4))
    sweep_three_times()
    assert len(sent()) == 2

    clock.move_to(TRIAL_END - timedelta(days=2))
    assert sweep_three_times() == [1, 0, 0]
    assert sent("2 days") == [(email, "Your AI Agents trial ends in 2 days") for email in ADMIN_EMAILS]
    assert len(sent()) == 4

    clock.move_to(TRIAL_END - timedelta(hours=1))
    sweep_three_times()
    assert len(sent()) == 4

    clock.move_to(TRIAL_END + timedelta(minutes=1))
    with capture(execute=True):
        for _ in range(3):
            billing.billing_tick(now=timezone.now())
    assert sent("has ended") == [(email, "Your AI Agents trial has ended") for email in ADMIN_EMAILS]
    assert len(sent()) == 6
    assert "staff@initech.test" not in {to for to, _ in sent()}  # members get no billing email


def test_a_second_trial_is_refused_while_the_first_runs(org):
    """S13"""
    with pytest.raises(BusinessError) as exc:
        plan_services.trial_start(tenant=org.tenant, plan=plan("agents-trial"))
    assert (exc.value.code, exc.value.message, exc.value.status) == ("trial_used", MSG_TRIAL_USED, 409)
    assert Subscription.objects.filter(tenant=org.tenant, product__code="ai_agents").count() == 1


def test_trial_cannot_restart_after_it_expired(org, clock):
    """S13"""
    clock.move_to(TRIAL_END + timedelta(minutes=1))
    plan_services.trials_expire_due(now=timezone.now())
    with pytest.raises(BusinessError) as exc:
        plan_services.trial_start(tenant=org.tenant, plan=plan("agents-trial"))
    assert exc.value.code == "trial_used"
    # Provisioning again (a re-run of sign-up's step) does not bring it back either.
    assert plan_services.tenant_provision(tenant=org.tenant) == []
    assert list(
        Subscription.objects.filter(tenant=org.tenant, product__code="ai_agents").values_list(
            "state", flat=True
        )
    ) == ["expired"]
    assert entitlements(tenant=org.tenant)["ai_agents"].refusal.message == MSG_ENDED


def test_trial_cannot_come_back_after_a_paid_plan_is_canceled(org, clock, capture):
    """S13: after cancelling a paid plan the platform stays inactive until the tenant subscribes."""
    sub = subscribe(tenant=org.tenant, actor=org.founder, plan_code="agents-growth", capture=capture)
    clock.move_to(START + timedelta(days=5))
    with capture(execute=True):
        gateway().cancel_subscription(
            subscription_id=sub.gateway_subscription_id,
            at_period_end=False,
            idempotency_key="test-cancel-now",
        )
    assert Subscription.objects.get(pk=sub.pk).state == "expired"

    with pytest.raises(BusinessError) as exc:
        plan_services.trial_start(tenant=org.tenant, plan=plan("agents-trial"))
    assert (exc.value.code, exc.value.message) == ("trial_used", MSG_TRIAL_USED)
    ent = entitlements(tenant=org.tenant)["ai_agents"]
    assert (ent.state, ent.badge, ent.refusal.message) == ("expired", "Expired subscription", MSG_ENDED)
    assert Subscription.objects.filter(tenant=org.tenant, product__code="ai_agents").count() == 1


def test_subscribing_after_the_trial_and_the_free_plan_expired_works(org, clock, capture):
    """S12, C22: the Subscribe button still works once the trial (14 days) and AI Free (3 months: 92
    days from 10 March) ended."""
    clock.move_to(START + timedelta(days=92, minutes=1))
    with capture(execute=True):
        billing.billing_tick(now=timezone.now())
    ent = entitlements(tenant=org.tenant)
    assert (ent["ai_agents"].badge, ent["ai_credits"].badge) == (
        "Expired subscription",
        "Expired subscription",
    )
    assert ent["ai_credits"].refusal.message == MSG_ENDED

    agents = subscribe(tenant=org.tenant, actor=org.founder, plan_code="agents-starter", capture=capture)
    credits = subscribe(tenant=org.tenant, actor=org.founder, plan_code="credits-plus", capture=capture)

    ent = entitlements(tenant=org.tenant)
    assert (ent["ai_agents"].plan_code, ent["ai_agents"].badge, ent["ai_agents"].refusal) == (
        "agents-starter",
        "Active subscription",
        None,
    )
    assert (ent["ai_credits"].plan_code, ent["ai_credits"].badge, ent["ai_credits"].refusal) == (
        "credits-plus",
        "Active subscription",
        None,
    )
    assert ent["ai_credits"].limits.included_credits == 2_000_000  # thousandths: 2,000 credits
    # New rows; the ended ones stay as history.
    rows = Subscription.objects.filter(tenant=org.tenant).order_by("product__sort_order", "pk")
    assert [(s.plan.code, s.state) for s in rows] == [
        ("agents-trial", "expired"),
        ("agents-starter", "active"),
        ("credits-free", "expired"),
        ("credits-plus", "active"),
    ]
    assert {agents.pk, credits.pk}.isdisjoint({rows[0].pk, rows[2].pk})
