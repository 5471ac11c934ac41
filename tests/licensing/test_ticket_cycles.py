"""Ticket credits, driven from the top as they happen in production: the subscription to AI
Essentials or AI Pro starts through the local gateway's checkout and webhooks, its periods roll over
on the gateway's clock, the sweepers run (L17, L18)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from billing_portal import services as billing
from config.beat import BEAT_SCHEDULE
from credits.models import Entry, Grant
from credits.selectors import ticket_credits
from licensing import services as licensing
from licensing.factories import ClientFactory
from licensing.models import Ticket
from licensing.selectors import header
from plans.factories import plan
from plans.models import Plan, Subscription
from tenants.models import AuditEvent
from tests.subscriptions.helpers import START, subscribe

pytestmark = pytest.mark.django_db

K = 1000


def cycles(tenant):
    return list(
        Grant.objects.filter(tenant=tenant, source="ticket_cycle")
        .order_by("pk")
        .values_list("amount", "remaining", "valid_from", "expires_at")
    )


def test_l17_ai_essentials_grants_three_for_every_license_ai_and_chat_when_it_starts(org, clock, capture):
    sub = subscribe(tenant=org.tenant, actor=org.founder, plan_code="helpdesk-essentials", capture=capture)

    # (10 AI + 10 Chat licenses) x 3, at once, valid until the cycle ends.
    assert cycles(org.tenant) == [(60 * K, 60 * K, sub.current_period_start, sub.current_period_end)]
    assert ticket_credits(tenant_id=org.tenant.pk).remaining == 60


def test_l17_ai_pro_grants_150(org, clock, capture):
    subscribe(tenant=org.tenant, actor=org.founder, plan_code="helpdesk-pro", capture=capture)
    assert [row[0] for row in cycles(org.tenant)] == [150 * K]


def test_l18_each_cycle_refreshes_once_at_its_start_and_the_previous_cycles_credits_expire(
    org, clock, capture
):
    tenant = org.tenant
    sub = subscribe(tenant=tenant, actor=org.founder, plan_code="helpdesk-essentials", capture=capture)
    ClientFactory(tenant=tenant, external_id="walk-in")
    for i in range(5):
        licensing.ticket_qualify(tenant=tenant, ticket_id=f"t-{i}", client_id="walk-in")
    first_end = sub.current_period_end
    assert ticket_credits(tenant_id=tenant.pk).remaining == 55

    clock.move_to(first_end)
    assert (
        ticket_credits(tenant_id=tenant.pk).remaining == 0
    )  # expired at the cycle's end, before any sweeper
    with capture(execute=True):
        billing.billing_tick(now=timezone.now())
    sub.refresh_from_db()
    assert sub.current_period_start == first_end
    assert cycles(tenant) == [
        (60 * K, 0, START, first_end),  # 5 used; the sweeper wrote off the other 55
        (60 * K, 60 * K, first_end, sub.current_period_end),
    ]
    assert ticket_credits(tenant_id=tenant.pk).remaining == 60

    # A second tick, the beat's task and a reconcile grant nothing again.
    with capture(execute=True):
        tick = billing.billing_tick(now=timezone.now())
        billing.tenant_reconcile(tenant=tenant)
    assert tick["ticket_credit_cycles"] == 0
    assert licensing.ticket_credits_refresh_due(now=timezone.now()) == 0
    assert len(cycles(tenant)) == 2


def test_the_sweeper_grants_a_cycle_the_webhooks_missed_exactly_once(org, clock, capture):
    tenant = org.tenant
    sub = subscribe(tenant=tenant, actor=org.founder, plan_code="helpdesk-essentials", capture=capture)
    Grant.objects.filter(tenant=tenant, source="ticket_cycle").delete()  # as if the grant had never been made

    assert licensing.ticket_credits_refresh_due(now=timezone.now()) == 1
    assert licensing.ticket_credits_refresh_due(now=timezone.now()) == 0
    assert cycles(tenant) == [(60 * K, 60 * K, sub.current_period_start, sub.current_period_end)]


def _change(tenant, actor, code, capture):
    with capture(execute=True):
        billing.plan_change(
            tenant=tenant, to_plan=plan(code), when="immediately", custom_date=None, actor=actor
        )


def _use(tenant, n, prefix):
    for i in range(n):
        licensing.ticket_qualify(tenant=tenant, ticket_id=f"{prefix}-{i}", client_id="walk-in")


def _used_of(tenant):
    tickets = header(tenant=tenant).tickets
    return (-(-tickets.cycle_used // K), tickets.cycle_amount // K, tickets.remaining)


def test_l17_an_upgrade_within_the_cycle_tops_it_up_and_a_downgrade_withdraws_what_the_new_plan_does_not_include(
    org, clock, capture
):
    """L17: the cycle's allowance is three for every license of the plan in force. An immediate
    upgrade grants the difference; an immediate downgrade (its unused time credited back in money)
    withdraws the credits beyond the new plan's — never those already used — so an upgrade and a
    downgrade within a cycle cannot buy AI Pro's credits for nothing."""
    tenant = org.tenant
    subscribe(tenant=tenant, actor=org.founder, plan_code="helpdesk-essentials", capture=capture)
    ClientFactory(tenant=tenant, external_id="walk-in")
    _use(tenant, 23, "a")
    clock.move_to(START + timedelta(days=3))

    _change(tenant, org.founder, "helpdesk-pro", capture)
    assert [row[0] for row in cycles(tenant)] == [60 * K, 90 * K]  # up to AI Pro's 150 this cycle
    assert _used_of(tenant) == (23, 150, 127)

    _change(tenant, org.founder, "helpdesk-essentials", capture)
    assert _used_of(tenant) == (23, 60, 37)  # 60 less the 23 used; the grants themselves unchanged
    assert [row[0] for row in cycles(tenant)] == [60 * K, 90 * K]
    withdrawal = Entry.objects.get(tenant=tenant, kind=Entry.Kind.ADJUST)
    assert withdrawal.quantity == -90 * K
    assert AuditEvent.objects.filter(tenant=tenant, action="credits.withdrawn").count() == 1
    _use(tenant, 40, "b")  # only 37 left
    assert Ticket.objects.filter(tenant=tenant, via="ticket_credit").count() == 23 + 37
    assert _used_of(tenant) == (60, 60, 0)

    # Refreshing again (the sweeper, a reconcile) changes nothing.
    with capture(execute=True):
        billing.billing_tick(now=timezone.now())
        billing.tenant_reconcile(tenant=tenant)
    assert licensing.ticket_credits_refresh(tenant=tenant) is None
    assert Entry.objects.filter(tenant=tenant, kind=Entry.Kind.ADJUST).count() == 1
    assert _used_of(tenant) == (60, 60, 0)

    # Back on AI Pro within the same cycle: the allowance is 150 again, with 60 used.
    _change(tenant, org.founder, "helpdesk-pro", capture)
    assert _used_of(tenant) == (60, 150, 90)
    assert len(cycles(tenant)) == 3


def test_l17_a_downgrade_after_more_was_used_than_the_new_plan_includes_leaves_nothing_and_takes_no_more(
    org, clock, capture
):
    tenant = org.tenant
    Plan.objects.filter(code="helpdesk-pro").update(unlimited_ai=False)  # its tickets take credits
    subscribe(tenant=tenant, actor=org.founder, plan_code="helpdesk-pro", capture=capture)
    ClientFactory(tenant=tenant, external_id="walk-in")
    _use(tenant, 100, "a")
    assert _used_of(tenant) == (100, 150, 50)

    _change(tenant, org.founder, "helpdesk-essentials", capture)

    assert _used_of(tenant) == (100, 100, 0)  # what was used stays used; the other 50 are withdrawn
    licensing.ticket_credits_refresh(tenant=tenant)
    assert Entry.objects.filter(tenant=tenant, kind=Entry.Kind.ADJUST).count() == 1
    answer = licensing.ticket_qualify(tenant=tenant, ticket_id="over", client_id="walk-in")
    assert answer["ai"] is False


def test_the_beat_runs_the_ticket_credit_sweeper():
    assert "licensing.tasks.refresh_ticket_credits" in {entry["task"] for entry in BEAT_SCHEDULE.values()}


def test_an_ended_subscription_gets_no_new_cycle(org, clock, capture):
    tenant = org.tenant
    sub = subscribe(tenant=tenant, actor=org.founder, plan_code="helpdesk-essentials", capture=capture)
    Subscription.objects.filter(pk=sub.pk).update(state=Subscription.State.EXPIRED, ended_at=timezone.now())
    Grant.objects.filter(tenant=tenant, source="ticket_cycle").delete()

    assert licensing.ticket_credits_refresh_due(now=timezone.now()) == 0
    assert licensing.ticket_credits_refresh(tenant=tenant) is None


def test_l18_the_sweeper_reaches_a_missed_cycle_behind_a_full_batch_of_subscriptions_it_skips(
    org, clock, capture
):
    """L18: `limit` caps the cycles one run grants, not the subscriptions it looks at. The first
    `limit` live subscriptions (by id) already granted — or refused, an overdue one — must not hide
    a later one whose cycle was missed: it would never be refreshed."""
    subscribe(tenant=org.tenant, actor=org.founder, plan_code="helpdesk-essentials", capture=capture)
    with capture(execute=True):
        founder, other = billing.organization_signup(
            email="founder@globex.test", password="Correct-horse-battery-42", organization="Globex"
        )
    sub = subscribe(tenant=other, actor=founder, plan_code="helpdesk-essentials", capture=capture)
    Grant.objects.filter(tenant=other, source="ticket_cycle").delete()  # the webhooks' grant was missed

    assert licensing.ticket_credits_refresh_due(now=timezone.now(), limit=1) == 1
    assert cycles(other) == [(60 * K, 60 * K, sub.current_period_start, sub.current_period_end)]
    assert licensing.ticket_credits_refresh_due(now=timezone.now(), limit=1) == 0
