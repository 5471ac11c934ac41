"""Plan behaviour of the ledger, driven from the top as it happens in production: sign-up grants
AI Free's credits, a paid AI Plus invoice grants the month's credits (through the local gateway's
checkout, renewals and webhooks), sweepers end what expires. C05, C06, C11, C22, C23."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from billing_portal import services as billing
from billing_portal.models import Invoice
from credits import services as credits
from credits.models import Entry, Grant
from credits.selectors import figures, overview
from credits.tests.helpers import K, check_invariants, consume, refused
from plans.models import Plan, Subscription
from plans.selectors import MSG_ENDED
from tenants.errors import BusinessError
from tests.subscriptions.helpers import START, customer_id, gateway, subscribe

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def trial_over(org, capture):
    """The org's AI Agents trial has ended: a tenant on a free trial may only register interest in AI
    Plus (C19, plans.offers), and these journeys buy it."""
    from plans import services as plan_services

    with capture(execute=True):
        plan_services.trial_end(
            subscription=Subscription.objects.get(tenant=org.tenant, product__code="ai_agents"), reason="days"
        )


def grants(tenant):
    return list(
        Grant.objects.filter(tenant=tenant)
        .order_by("pk")
        .values_list("source", "amount", "remaining", "valid_from", "expires_at")
    )


def test_c05_ai_free_gives_50_credits_for_3_months_from_sign_up(org, clock, capture):
    """Three calendar months: from 10 March to 10 June (92 days), not 90 days."""
    tenant = org.tenant
    ends = START.replace(month=START.month + 3)
    assert ends - START == timedelta(days=92)
    assert grants(tenant) == [("plan_included", 50 * K, 50 * K, START, ends)]
    consume(tenant, "k", feature="ai_review", quantity=1)
    assert figures(tenant_id=tenant.pk).balance == 49_900
    clock.move_to(ends - timedelta(seconds=1))
    assert figures(tenant_id=tenant.pk).balance == 49_900
    clock.move_to(ends)
    assert figures(tenant_id=tenant.pk).balance == 0  # before any sweeper
    exc = refused(consume, tenant, "after")
    assert (exc.status, exc.code, exc.message) == (402, "subscription_ended", MSG_ENDED)
    with capture(execute=True):
        tick = billing.billing_tick(now=timezone.now())
    assert (tick["subscriptions_ended"], tick["credit_grants_expired"]) == (1, 1)
    assert live_state(tenant) is None
    assert list(Entry.objects.filter(tenant=tenant).order_by("pk").values_list("kind", "quantity")) == [
        ("grant", 50 * K),
        ("consume", -100),
        ("expire", -49_900),
    ]
    check_invariants(tenant)


def live_state(tenant):
    sub = (
        Subscription.objects.filter(tenant=tenant, product__code="ai_credits")
        .exclude(state="expired")
        .first()
    )
    return sub.state if sub else None


def test_c06_c11_c23_plus_grants_2000_credits_at_once_and_ends_the_free_credits(org, clock, capture):
    tenant = org.tenant
    consume(tenant, "free-use", quantity=5)
    clock.move_to(START + timedelta(hours=1))
    sub = subscribe(tenant=tenant, actor=org.founder, plan_code="credits-plus", capture=capture)
    invoice = Invoice.objects.get(tenant=tenant, gateway_subscription_id=sub.gateway_subscription_id)
    plus = Grant.objects.get(reference=f"invoice:{invoice.gateway_invoice_id}")
    assert (plus.source, plus.amount, plus.valid_from, plus.expires_at) == (
        "plan_included",
        2000 * K,
        sub.current_period_start,
        sub.current_period_end,
    )
    # The update is immediate: the balance is 2,000 and credits are usable (C11, C23).
    ov = overview(tenant=tenant)
    assert (ov.figures.balance, ov.plan.plan_name, ov.period_amount) == (2000 * K, "AI Plus", 2000 * K)
    assert consume(tenant, "plus-use")["balance"] == "1999"
    free = Grant.objects.get(reference__endswith=":free")
    assert (free.remaining, free.expires_at) == (0, START + timedelta(hours=1))
    assert list(Entry.objects.filter(grant=free).values_list("kind", "quantity")) == [
        ("grant", 50 * K),
        ("consume", -5 * K),
        ("expire", -45 * K),
    ]
    check_invariants(tenant)


def test_c06_each_monthly_renewal_grants_2000_and_the_previous_month_expires(org, clock, capture):
    tenant = org.tenant
    sub = subscribe(tenant=tenant, actor=org.founder, plan_code="credits-plus", capture=capture)
    consume(tenant, "m1", quantity=300)
    first_end = sub.current_period_end
    clock.move_to(first_end)
    assert figures(tenant_id=tenant.pk).balance == 0  # the first month's credits expired at renewal
    with capture(execute=True):
        billing.billing_tick(now=timezone.now())
    sub.refresh_from_db()
    assert sub.current_period_start == first_end
    assert [row[:3] for row in grants(tenant)] == [
        ("plan_included", 50 * K, 0),  # AI Free, replaced
        ("plan_included", 2000 * K, 0),  # month 1: 300 used, 1,700 expired at renewal
        ("plan_renewal", 2000 * K, 2000 * K),
    ]
    renewal = Grant.objects.get(source="plan_renewal")
    assert (renewal.valid_from, renewal.expires_at) == (first_end, sub.current_period_end)
    assert figures(tenant_id=tenant.pk).balance == 2000 * K
    assert Entry.objects.filter(kind="expire", quantity=-1700 * K).count() == 1
    # A second tick (and a reconcile that re-reads every invoice) grants nothing again.
    with capture(execute=True):
        billing.billing_tick(now=timezone.now())
        billing.tenant_reconcile(tenant=tenant)
    assert Grant.objects.filter(tenant=tenant).count() == 3
    check_invariants(tenant)


def test_the_plus_grant_is_keyed_by_the_invoice_so_a_replayed_payment_grants_once(org, capture):
    tenant = org.tenant
    sub = subscribe(tenant=tenant, actor=org.founder, plan_code="credits-plus", capture=capture)
    inv = gateway().retrieve_invoice(
        gateway().retrieve_subscription(sub.gateway_subscription_id).latest_invoice_id
    )
    for _ in range(3):
        billing.invoice_credits_grant(tenant=tenant, inv=inv)
    assert Grant.objects.filter(tenant=tenant, amount=2000 * K).count() == 1
    assert figures(tenant_id=tenant.pk).balance == 2000 * K


def test_a_failed_renewal_grants_nothing_until_it_is_paid(org, clock, capture):
    tenant = org.tenant
    sub = subscribe(tenant=tenant, actor=org.founder, plan_code="credits-plus", capture=capture)
    month_one = Grant.objects.get(tenant=tenant, amount=2000 * K)
    failed_at = START + timedelta(days=10)
    clock.move_to(failed_at)
    with capture(execute=True):
        gateway().fail_next_payment(sub.gateway_subscription_id)
    assert Subscription.objects.get(pk=sub.pk).state == "past_due"
    assert Grant.objects.filter(tenant=tenant, source="plan_renewal").count() == 0
    # The month paid for keeps its credits (grace running: work is not refused for the plan).
    assert consume(tenant, "k", quantity=100)["balance"] == "1900"
    clock.move_to(START + timedelta(days=12))
    with capture(execute=True):
        gateway().pay_open_invoices(customer_id(tenant))
    renewal = Grant.objects.get(tenant=tenant, source="plan_renewal")
    assert (renewal.valid_from, renewal.remaining) == (failed_at, 2000 * K)
    month_one.refresh_from_db()
    assert (month_one.remaining, month_one.expires_at) == (0, START + timedelta(days=12))
    assert figures(tenant_id=tenant.pk).balance == 2000 * K
    check_invariants(tenant)


def test_c22_plus_can_be_subscribed_after_the_free_plan_expired(org, clock, capture):
    tenant = org.tenant
    clock.move_to(START + timedelta(days=93))  # AI Free: 3 calendar months (92 days from 10 March)
    with capture(execute=True):
        billing.billing_tick(now=timezone.now())
    assert live_state(tenant) is None
    subscribe(tenant=tenant, actor=org.founder, plan_code="credits-plus", capture=capture)
    assert figures(tenant_id=tenant.pk).balance == 2000 * K
    assert consume(tenant, "k")["balance"] == "1999"


def test_a_late_invoice_for_an_older_period_never_shortens_the_newer_one(org, clock):
    from plans.factories import plan

    tenant = org.tenant
    plus = plan("credits-plus")
    may, june, july = START, START + timedelta(days=31), START + timedelta(days=61)
    newer = credits.credits_grant_plan_period(
        tenant=tenant, plan=plus, period_start=june, period_end=july, reference="invoice:june"
    )
    late = credits.credits_grant_plan_period(
        tenant=tenant, plan=plus, period_start=may, period_end=june, reference="invoice:may"
    )
    newer.refresh_from_db()
    assert (newer.valid_from, newer.expires_at) == (june, july)
    assert (late.valid_from, late.expires_at) == (may, june)
    assert (late.source, newer.source) == ("plan_included", "plan_included")


def test_staff_grants_for_ai_ultra_are_usable(org, admin):
    """C07: Ultra is contracted with sales; staff assign the plan and grant its credits."""
    from plans.factories import SubscriptionFactory, plan

    tenant = org.tenant
    Subscription.objects.filter(tenant=tenant, product__code="ai_credits").update(state="expired")
    SubscriptionFactory(tenant=tenant, plan=plan("credits-ultra"), gateway_subscription_id="")
    credits.credits_adjust(tenant=tenant, amount=10_000 * K, reason="Ultra contract 2021", actor=admin)
    assert consume(tenant, "k")["balance"] == "10049"


def test_extra_pack_credits_are_drawn_after_the_plus_credits(org, capture):
    from credits.models import ExtraPack

    tenant = org.tenant
    subscribe(tenant=tenant, actor=org.founder, plan_code="credits-plus", capture=capture)
    credits.credits_grant_extra_pack(
        tenant=tenant, pack=ExtraPack.objects.get(code="extra-500"), reference="payment:pi_x"
    )
    answer = consume(tenant, "k", quantity=2001)
    assert [(g["source"], g["credits"]) for g in answer["grants"]] == [
        ("plan_included", "2000"),
        ("extra_pack", "1"),
    ]
    assert answer["balance"] == "499"


def test_c09_c10_the_billing_tab_sends_ai_plus_to_the_security_code_dialog(org, clock, capture):
    """The Billing tab's AI Credits card offers Subscribe Now as the AI Credits page does (the dialog
    that emails the code), and its plain checkout refuses an AI Credits plan: no way to Plus without
    the code (it was a hosted checkout, even while the admin's codes were paused)."""
    from django.test import Client

    from billing_portal.models import CheckoutSession

    web = Client()
    web.force_login(org.founder)
    slug = org.tenant.slug
    page = web.get(f"/t/{slug}/billing/?product=ai_credits").content.decode()
    assert f'hx-get="/t/{slug}/ai-credits/plans/credits-plus/subscribe/"' in page
    assert f'action="/t/{slug}/billing/plans/credits-plus/subscribe/"' not in page

    answer = web.post(f"/t/{slug}/billing/plans/credits-plus/subscribe/", follow=True)
    assert "it asks for the security code emailed to you" in answer.content.decode()
    with pytest.raises(BusinessError) as refused:  # the service itself, whoever calls it
        billing.checkout_start(
            tenant=org.tenant, plan=Plan.objects.get(code="credits-plus"), actor=org.founder,
            success_url="/ok", cancel_url="/no",
        )  # fmt: skip
    assert (refused.value.code, refused.value.status) == ("security_code_required", 409)
    assert not CheckoutSession.objects.filter(tenant=org.tenant).exists()
    assert live_state(org.tenant) == "active"  # still AI Free


def test_c20_an_ai_credits_package_is_not_canceled_from_the_billing_tab(org, clock, capture):
    """Package deactivation is for Customer Success (C20, FAQ 6): the card offers no Cancel, and the
    cancel form posted anyway changes nothing and says so."""
    from django.test import Client

    sub = subscribe(tenant=org.tenant, actor=org.founder, plan_code="credits-plus", capture=capture)
    web = Client()
    web.force_login(org.founder)
    slug = org.tenant.slug
    page = web.get(f"/t/{slug}/billing/?product=ai_credits").content.decode()
    assert 'data-testid="cancel-subscription"' not in page

    answer = web.post(f"/t/{slug}/billing/cancel/", {"product": "ai_credits"}, follow=True)
    assert "Package deactivation is not available via self-service" in answer.content.decode()
    sub.refresh_from_db()
    assert (sub.state, sub.ends_at) == ("active", None)


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        ("2026-11-29T10:00:00+00:00", 3, "2027-02-28T10:00:00+00:00"),  # no 29 February in 2027
        ("2027-11-30T00:00:00+00:00", 3, "2028-02-29T00:00:00+00:00"),  # 2028 has one
        ("2026-01-31T23:59:59+00:00", 1, "2026-02-28T23:59:59+00:00"),
        ("2026-10-15T08:30:00+00:00", 3, "2027-01-15T08:30:00+00:00"),  # over a year's end
        ("2026-03-10T09:00:00+00:00", 12, "2027-03-10T09:00:00+00:00"),
    ],
)
def test_c05_three_months_are_calendar_months(start, months, expected):
    from datetime import datetime

    from plans.services import months_after

    assert months_after(datetime.fromisoformat(start), months) == datetime.fromisoformat(expected)
