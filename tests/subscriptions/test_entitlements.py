"""entitlements(tenant=…): the one answer to "what may this tenant do, per product" — its query count,
its per-product limits and flags, the never-subscribed product, and the same data over the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from plans.factories import ScheduledChangeFactory, SubscriptionFactory, plan
from plans.models import Subscription
from plans.selectors import entitlements
from tenants.audit import SYSTEM
from tenants.services import api_key_create
from tests.subscriptions.helpers import START, subscribe

pytestmark = pytest.mark.django_db

ENTITLEMENTS_QUERIES = 1  # one joined query (plans.selectors.entitlements)


def ended(tenant, code: str, months_ago: int) -> Subscription:
    """An expired subscription row (history), with a scheduled change that never happened."""
    started = START - timedelta(days=30 * months_ago)
    sub = SubscriptionFactory(
        tenant=tenant,
        plan=plan(code),
        state=Subscription.State.EXPIRED,
        started_at=started,
        current_period_start=started,
        current_period_end=started + timedelta(days=30),
        ended_at=started + timedelta(days=30),
    )
    ScheduledChangeFactory(
        subscription=sub, to_plan=plan("agents-scale" if code != "agents-scale" else "agents-growth")
    )
    return sub


def test_entitlements_run_in_a_constant_number_of_queries(tenant, clock, django_assert_num_queries):
    """S01, S19: the count does not grow with scheduled changes or history rows."""
    growth = SubscriptionFactory(tenant=tenant, plan=plan("agents-growth"))
    ScheduledChangeFactory(subscription=growth, to_plan=plan("agents-scale"))
    with django_assert_num_queries(ENTITLEMENTS_QUERIES):
        ent = entitlements(tenant=tenant)
    assert ent["ai_agents"].upcoming.plan_code == "agents-scale"

    # Four more ended rows, each with its own scheduled change (five in all), and two more products.
    for months_ago, code in enumerate(
        ["agents-starter", "agents-scale", "agents-starter", "agents-scale"], start=2
    ):
        ended(tenant, code, months_ago)
    SubscriptionFactory(tenant=tenant, plan=plan("credits-plus"))
    SubscriptionFactory(tenant=tenant, plan=plan("helpdesk-essentials"))
    with django_assert_num_queries(ENTITLEMENTS_QUERIES):
        ent = entitlements(tenant=tenant)
    # The live row still wins, with its own upcoming change.
    assert (ent["ai_agents"].subscription_id, ent["ai_agents"].upcoming.plan_code) == (
        growth.pk,
        "agents-scale",
    )
    assert [(code, e.plan_code) for code, e in ent.products.items()] == [
        ("ai_agents", "agents-growth"),
        ("ai_credits", "credits-plus"),
        ("helpdesk_ai", "helpdesk-essentials"),
    ]


def test_helpdesk_pro_limits(org, capture):
    """L04, L06, L17: 25 AI and 25 Chat licenses, 3 ticket credits for every license (AI and Chat
    both: 150 a cycle), unlimited AI."""
    subscribe(tenant=org.tenant, actor=org.founder, plan_code="helpdesk-pro", capture=capture)
    ent = entitlements(tenant=org.tenant)["helpdesk_ai"]
    assert (ent.plan_code, ent.plan_name, ent.state, ent.badge) == (
        "helpdesk-pro",
        "AI Pro",
        "active",
        "Active subscription",
    )
    limits = ent.limits
    assert (limits.ai_licenses, limits.chat_licenses, limits.ticket_credits_per_license) == (25, 25, 3)
    assert (limits.ticket_credits, limits.unlimited_ai) == (150, True)
    assert (limits.session_limit, limits.included_credits, limits.extra_packs_allowed) == (None, 0, False)
    assert (ent.price_amount, ent.currency, ent.interval) == (59900, "usd", "month")


def test_helpdesk_essentials_limits_without_unlimited_ai(org, capture):
    """L17, L06: (10 AI + 10 Chat licenses) x 3 = 60 ticket credits a cycle."""
    subscribe(tenant=org.tenant, actor=org.founder, plan_code="helpdesk-essentials", capture=capture)
    limits = entitlements(tenant=org.tenant)["helpdesk_ai"].limits
    assert (limits.ai_licenses, limits.chat_licenses, limits.ticket_credits, limits.unlimited_ai) == (
        10,
        10,
        60,
        False,
    )


def test_ai_plus_credits_renew_monthly_and_allow_extra_packs(org, clock, capture):
    """C06, C12, C11: subscribing replaces AI Free at once (once the free trial is over: C19)."""
    free = entitlements(tenant=org.tenant)["ai_credits"]
    assert (free.plan_code, free.limits.included_credits, free.limits.credit_renewal) == (
        "credits-free",
        50_000,
        "none",
    )
    # AI Free: 3 calendar months (C05), 10 March to 10 June.
    assert (free.ends_at, free.limits.extra_packs_allowed) == (START + timedelta(days=92), False)

    clock.move_to(START + timedelta(days=15))  # the AI Agents trial has ended; AI Free runs on
    subscribe(tenant=org.tenant, actor=org.founder, plan_code="credits-plus", capture=capture)
    ent = entitlements(tenant=org.tenant)["ai_credits"]
    assert (ent.plan_code, ent.badge, ent.ends_at) == ("credits-plus", "Active subscription", None)
    assert ent.limits.included_credits == 2_000_000  # thousandths: 2,000 credits
    assert (ent.limits.credit_renewal, ent.limits.extra_packs_allowed) == ("monthly", True)


def test_a_never_subscribed_product_is_not_subscribed(org):
    """S30: no badge of the spec applies; new work is refused."""
    ent = entitlements(tenant=org.tenant)["helpdesk_ai"]
    assert (ent.state, ent.badge, ent.subscription_id, ent.plan_code) == (
        "none",
        "Not subscribed",
        None,
        None,
    )
    assert ent.active is False
    assert (ent.refusal.code, ent.refusal.message) == (
        "no_subscription",
        "There is no subscription for this product. Subscribe to a plan to continue.",
    )
    assert (ent.limits.ai_licenses, ent.limits.ticket_credits, ent.limits.unlimited_ai) == (0, 0, False)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_api_returns_the_same_entitlements_with_a_tenant_key(org, capture):
    """D04: the integration API answers from entitlements(); another tenant's key sees its own."""
    subscribe(tenant=org.tenant, actor=org.founder, plan_code="agents-growth", capture=capture)
    issued = api_key_create(tenant=org.tenant, name="Agents runtime", actor=org.founder)

    response = Client().get("/api/v1/entitlements", HTTP_AUTHORIZATION=f"Bearer {issued.secret}")

    assert response.status_code == 200
    body = response.json()
    ent = entitlements(tenant=org.tenant)
    assert body["tenant"] == org.tenant.slug
    assert list(body["products"]) == ["ai_agents", "ai_credits", "helpdesk_ai"]
    for code, e in ent.products.items():
        expected = {
            "product": e.product,
            "plan_code": e.plan_code,
            "plan_name": e.plan_name,
            "state": e.state,
            "badge": e.badge,
            "active": e.active,
            "period_start": _iso(e.period_start),
            "period_end": _iso(e.period_end),
            "next_billing_date": _iso(e.next_billing_date),
            "trial_ends_at": _iso(e.trial_ends_at),
            "trial_days_left": e.trial_days_left,
            "grace_until": _iso(e.grace_until),
            "ends_at": _iso(e.ends_at),
            "limits": {
                "session_limit": e.limits.session_limit,
                "answered_only": e.limits.answered_only,
                "included_credits": e.limits.included_credits,
                "credit_renewal": e.limits.credit_renewal,
                "extra_packs_allowed": e.limits.extra_packs_allowed,
                "ai_licenses": e.limits.ai_licenses,
                "chat_licenses": e.limits.chat_licenses,
                "ticket_credits_per_license": e.limits.ticket_credits_per_license,
                "ticket_credits": e.limits.ticket_credits,
                "unlimited_ai": e.limits.unlimited_ai,
            },
            "upcoming": None,
            "refusal": None if e.refusal is None else {"code": e.refusal.code, "message": e.refusal.message},
        }
        assert body["products"][code] == expected
    agents = body["products"]["ai_agents"]
    assert (agents["plan_code"], agents["badge"], agents["next_billing_date"]) == (
        "agents-growth",
        "Active subscription",
        "2021-04-10T09:00:00Z",
    )
    assert agents["limits"]["session_limit"] == 1500
    assert body["products"]["helpdesk_ai"]["refusal"]["code"] == "no_subscription"


def test_api_shows_the_upcoming_change_and_the_refusal(tenant, clock):
    """S19, S33 over the API."""
    sub = SubscriptionFactory(
        tenant=tenant,
        plan=plan("agents-growth"),
        current_period_start=START,
        current_period_end=START + timedelta(days=31),
    )
    ScheduledChangeFactory(subscription=sub, to_plan=plan("agents-scale"))
    issued = api_key_create(tenant=tenant, name="Runtime", actor=SYSTEM)
    body = Client().get("/api/v1/entitlements", HTTP_AUTHORIZATION=f"Bearer {issued.secret}").json()
    assert body["products"]["ai_agents"]["upcoming"] == {
        "plan_code": "agents-scale",
        "plan_name": "Scale",
        "starts_on": "2021-04-10T09:00:00Z",
    }
    assert body["products"]["ai_credits"]["refusal"] == {
        "code": "no_subscription",
        "message": "There is no subscription for this product. Subscribe to a plan to continue.",
    }


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer alw_deadbeef_not-a-real-key", "Basic Zm91bmRlcjpwYXNzd29yZA=="],
    ids=["no-key", "unknown-key", "not-bearer"],
)
def test_api_refuses_without_a_valid_key(org, authorization):
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}
    response = Client().get("/api/v1/entitlements", **headers)
    assert response.status_code == 401
    assert response.json() == {
        "error": {
            "code": "unauthorized",
            "message": "A valid API key is required: send it as 'Authorization: Bearer <key>'.",
        }
    }


def test_api_answers_for_the_keys_tenant_only(org, outsider, other_tenant):
    """Isolation: the outsider's key answers for Globex, which has no subscription."""
    issued = api_key_create(tenant=other_tenant, name="Globex runtime", actor=outsider)
    body = Client().get("/api/v1/entitlements", HTTP_AUTHORIZATION=f"Bearer {issued.secret}").json()
    assert body["tenant"] == "globex"
    assert {code: p["state"] for code, p in body["products"].items()} == {
        "ai_agents": "none",
        "ai_credits": "none",
        "helpdesk_ai": "none",
    }


def test_the_api_says_expired_and_suspended_the_moment_the_refusal_does_before_any_sweeper(org, clock):
    """S12, S33, C02: the database decides before a sweeper runs, in the answers' `state` too. At the
    trial's end (and AI Free's, three months after sign-up) nothing has swept the rows, yet every
    answer already says `expired` beside its refusal, not the row's `trialing` or `active`."""
    issued = api_key_create(tenant=org.tenant, name="Runtime", actor=SYSTEM)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {issued.secret}"}
    clock.move_to(START + timedelta(days=92))
    assert sorted(Subscription.objects.filter(tenant=org.tenant).values_list("state", flat=True)) == [
        "active",
        "trialing",
    ]  # no sweeper has run

    products = Client().get("/api/v1/entitlements", **auth).json()["products"]
    assert {code: (p["state"], p["refusal"] and p["refusal"]["code"]) for code, p in products.items()} == {
        "ai_agents": ("expired", "subscription_ended"),
        "ai_credits": ("expired", "subscription_ended"),
        "helpdesk_ai": ("none", "no_subscription"),
    }
    assert Client().get("/api/v1/credits", **auth).json()["plan"]["state"] == "expired"
    admission = Client().get("/api/v1/entitlements/ai_agents/admission", **auth).json()
    assert (admission["state"], admission["code"]) == ("expired", "subscription_ended")


def test_the_api_says_suspended_once_the_grace_period_has_passed_before_any_sweeper(tenant, clock):
    """S13, S14: past the grace period the refusal is `payment_overdue`, and the state `suspended`."""
    SubscriptionFactory(
        tenant=tenant,
        plan=plan("agents-growth"),
        state=Subscription.State.PAST_DUE,
        current_period_start=START,
        current_period_end=START + timedelta(days=31),
        payment_failed_at=START + timedelta(days=31),
        grace_until=START + timedelta(days=38),
    )
    issued = api_key_create(tenant=tenant, name="Runtime", actor=SYSTEM)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {issued.secret}"}
    clock.move_to(START + timedelta(days=37))
    assert Client().get("/api/v1/entitlements", **auth).json()["products"]["ai_agents"]["state"] == "past_due"
    clock.move_to(START + timedelta(days=39))
    agents = Client().get("/api/v1/entitlements", **auth).json()["products"]["ai_agents"]
    assert (agents["state"], agents["refusal"]["code"]) == ("suspended", "payment_overdue")
