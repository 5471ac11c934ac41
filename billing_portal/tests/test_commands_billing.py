"""Operator commands of billing: `billing_tick` (every sweeper once, JSON counts, safe to repeat),
`billing_reconcile` (repairs what a lost webhook missed), `create_tenant --plan` and `seed_demo`."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.utils import timezone

from billing_portal.gateway import factory
from billing_portal.models import Invoice, WebhookEvent
from credits.models import Grant
from plans import selectors as plan_selectors
from plans import services as plan_services
from plans.factories import SubscriptionFactory, plan
from plans.models import Contract, Lead, Plan, Subscription
from tenants.audit import sentence
from tenants.factories import MembershipFactory, TenantFactory, UserFactory
from tenants.models import ApiKey, AuditEvent, Notification, Role, Tenant, User

from .conftest import checkout_open, live_sub, local_gateway


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def _tenant_with_admin(slug: str) -> tuple[Tenant, User]:
    tenant = TenantFactory(name=slug.title(), slug=slug)
    admin = MembershipFactory(
        tenant=tenant, role=Role.ADMIN, user=UserFactory(email=f"admin@{slug}.test")
    ).user
    return tenant, admin


# --- billing_tick --------------------------------------------------------------------------------


def test_billing_tick_runs_every_sweeper_once_and_a_second_run_finds_nothing(db, live):
    """D03 and DESIGN principle 5: the gateway's renewal, trial expiry (S12), the 2-days-left reminder
    (S11), the end of a grace period (S28) and of a canceled subscription (S29), each once."""
    now = timezone.now()
    trial = plan("agents-trial")
    ended_trial, _ = _tenant_with_admin("ended-trial")
    SubscriptionFactory(
        tenant=ended_trial, plan=trial, state="trialing", gateway_subscription_id="",
        trial_ends_at=now - timedelta(hours=1), current_period_end=now - timedelta(hours=1),
    )  # fmt: skip
    ending_trial, _ = _tenant_with_admin("ending-trial")
    SubscriptionFactory(
        tenant=ending_trial, plan=trial, state="trialing", gateway_subscription_id="",
        trial_ends_at=now + timedelta(days=2, hours=-1), current_period_end=now + timedelta(days=2, hours=-1),
    )  # fmt: skip
    overdue, _ = _tenant_with_admin("overdue")
    SubscriptionFactory(
        tenant=overdue,
        state="past_due",
        payment_failed_at=now - timedelta(days=8),
        grace_until=now - timedelta(hours=1),
    )
    leaving, _ = _tenant_with_admin("leaving")
    SubscriptionFactory(
        tenant=leaving,
        state="canceled",
        canceled_at=now - timedelta(days=20),
        ends_at=now - timedelta(hours=1),
    )
    renewing, renewing_admin = _tenant_with_admin("renewing")
    with time_machine.travel(now - timedelta(days=32)):
        session_id = checkout_open(renewing, renewing_admin, "agents-starter")
        with live():
            sub_id = local_gateway().complete_checkout(session_id).id
    first_period_end = local_gateway().retrieve_subscription(sub_id).current_period_end
    assert first_period_end < now

    with live():
        first = json.loads(run("billing_tick"))
    notifications = Notification.objects.count()
    with live():
        second = json.loads(run("billing_tick"))

    assert first == {
        "gateway_advanced": 1,
        "trials_expired": 1,
        "trial_reminders": 1,
        "grace_expired": 1,
        "subscriptions_ended": 1,
        # extra-pack payments left unconfirmed (test_ai_credits_purchases covers it): none here
        "extra_pack_confirmations_expired": 0,
        # contracted plans' periods (test_contracts covers them): no contract here
        "contracts_renewed": 0,
        # the Helpdesk AI ticket-credit cycles (tests/licensing covers them): no Helpdesk AI here
        "ticket_credit_cycles": 0,
        # the credits sweepers (credits/tests cover them): nothing of theirs is due here
        "credit_grants_expired": 0,
        "credit_holds_expired": 0,
        "credit_low_balance_emails": 0,
    }
    assert second == dict.fromkeys(first, 0)
    assert Notification.objects.count() == notifications  # the second run sent nothing either
    assert sorted(Notification.objects.values_list("template", "to_email")) == [
        ("subscription_suspended", "admin@overdue.test"),
        ("trial_days_left", "admin@ending-trial.test"),
        ("trial_ended", "admin@ended-trial.test"),
    ]
    assert Subscription.objects.get(tenant=ended_trial).state == "expired"
    assert Subscription.objects.get(tenant=ending_trial).state == "trialing"
    assert Subscription.objects.get(tenant=overdue).state == "suspended"
    assert Subscription.objects.get(tenant=leaving).state == "expired"
    renewed = local_gateway().retrieve_subscription(sub_id)
    assert renewed.current_period_start == first_period_end
    assert renewed.current_period_end > now
    assert list(
        Invoice.objects.filter(tenant=renewing).order_by("issued_at").values_list("billing_reason", "status")
    ) == [
        ("subscription_create", "paid"),
        ("subscription_cycle", "paid"),
    ]
    assert live_sub(renewing).current_period_end == renewed.current_period_end


# --- billing_reconcile ---------------------------------------------------------------------------


@pytest.fixture
def webhooks_lost(monkeypatch, fresh_gateway) -> None:
    """The gateway's deliveries go nowhere (our endpoint was down)."""
    monkeypatch.setattr(factory.WIRING, "deliver", lambda payload, header: None)


def test_billing_reconcile_repairs_a_checkout_whose_webhooks_were_lost(
    webhooks_lost, trial_tenant, admin, live
):
    session_id = checkout_open(trial_tenant, admin, "agents-growth")
    with live():
        sub_id = local_gateway().complete_checkout(session_id).id
    assert WebhookEvent.objects.count() == 0
    assert live_sub(trial_tenant).state == "trialing"
    assert Invoice.objects.count() == 0

    first = json.loads(run("billing_reconcile"))
    second = json.loads(run("billing_reconcile"))

    assert first == second == {"customers": 1, "subscriptions": 1, "invoices": 1, "errors": 0, "failures": []}
    sub = live_sub(trial_tenant)
    assert (sub.plan.code, sub.state, sub.gateway_subscription_id) == ("agents-growth", "active", sub_id)
    assert plan_selectors.entitlements(tenant=trial_tenant)["ai_agents"].badge == "Active subscription"
    invoice = Invoice.objects.get()
    assert (
        invoice.tenant,
        invoice.status,
        invoice.total,
        invoice.amount_paid,
        invoice.gateway_subscription_id,
    ) == (
        trial_tenant,
        "paid",
        19900,
        19900,
        sub_id,
    )
    assert list(invoice.lines.values_list("amount", flat=True)) == [19900]
    assert AuditEvent.objects.filter(tenant=trial_tenant, action="subscription.activated").count() == 1


def test_billing_reconcile_skips_a_subscription_it_cannot_apply_and_repairs_everyone_else(
    webhooks_lost, db, live, caplog
):
    """Issue 7, defect 7 (failed before the fix: a price missing from our catalog raised out of the
    reconcile and stopped it for every customer after that one). The subscription is skipped, the
    error recorded and reported at the end, and every other customer is still repaired."""
    first, first_admin = _tenant_with_admin("first")
    second, second_admin = _tenant_with_admin("second")
    subs = {}
    for tenant, admin, code in (
        (first, first_admin, "agents-starter"),
        (second, second_admin, "agents-growth"),
    ):
        plan_services.tenant_provision(tenant=tenant)
        with live():
            subs[tenant.slug] = local_gateway().complete_checkout(checkout_open(tenant, admin, code)).id
    # Someone renamed Starter's price in the catalog: the first customer's subscription bills a price
    # we no longer know.
    Plan.objects.filter(code="agents-starter").update(stripe_price_id="price_renamed_since")

    out, err = StringIO(), StringIO()
    call_command("billing_reconcile", stdout=out, stderr=err)

    report = json.loads(out.getvalue())
    assert report == {
        "customers": 2,
        "subscriptions": 1,
        "invoices": 2,
        "errors": 1,
        "failures": [
            {
                "tenant": "first",
                "object": subs["first"],
                "error": "No plan in the catalog has the price 'price_local_agents_starter'.",
            }
        ],
    }
    assert err.getvalue() == (
        f"first: {subs['first']}: No plan in the catalog has the price 'price_local_agents_starter'.\n"
    )
    assert (live_sub(second).plan.code, live_sub(second).state) == ("agents-growth", "active")
    assert live_sub(first).state == "trialing"  # left as it was, to be looked at
    assert Invoice.objects.filter(tenant=first).count() == 1  # its invoices are still mirrored
    assert f"billing_reconcile: {subs['first']}" in caplog.text


def test_billing_portal_configure_makes_one_configuration_and_manage_uses_it(trial_tenant, admin, settings):
    """Issue 7, defect 4: run twice, one configuration at the gateway (found again by its marker),
    recorded; Manage's sessions name it."""
    from unittest import mock

    from billing_portal import services
    from billing_portal.gateway.store import LocalGatewayObject
    from billing_portal.models import PortalConfiguration

    first = json.loads(run("billing_portal_configure"))
    second = json.loads(run("billing_portal_configure"))

    assert first["recorded"] == "created"
    assert (first["default"]["recorded"], first["no_cancel"]["recorded"]) == ("created", "created")
    for purpose in ("default", "no_cancel"):
        assert second[purpose] == first[purpose] | {"recorded": "updated"}
    assert (first["cancel"], first["plan_switching"], first["pause"]) == ("at_period_end", False, False)
    assert first["no_cancel"]["cancel"] == "off"
    config, no_cancel = LocalGatewayObject.objects.filter(
        object_type="billing_portal.configuration"
    ).order_by("pk")
    assert config.object_id == first["configuration"]
    assert config.data["metadata"] == {
        "managed_by": "allowance",
        "installation": settings.BILLING_INSTALLATION_ID,
    }
    assert config.data["features"]["subscription_update"] == {"enabled": False}
    assert no_cancel.object_id == first["no_cancel"]["configuration"]
    assert no_cancel.data["features"]["subscription_cancel"]["enabled"] is False
    assert (
        PortalConfiguration.objects.get(gateway="local", purpose="default").configuration_id
        == first["configuration"]
    )
    with mock.patch.object(
        type(local_gateway()), "create_portal_session", autospec=True, return_value="/p/"
    ) as made:
        services.portal_url(tenant=trial_tenant, return_url="/back/")
    assert made.call_args.kwargs["configuration_id"] == first["configuration"]


# --- create_tenant --plan ------------------------------------------------------------------------


def test_create_tenant_on_a_paid_plan_through_the_local_gateway(db, live):
    with live():
        output = run(
            "create_tenant", "Acme", "--admin-email", "a@acme.test", "--plan", "agents-growth", "--api-key"
        )

    result = last_json(output)
    assert result["tenant"] == "acme"
    assert result["api_key"].startswith("alw_")
    tenant = Tenant.objects.get(slug="acme")
    ent = plan_selectors.entitlements(tenant=tenant)["ai_agents"]
    assert (ent.plan_code, ent.state, ent.badge) == ("agents-growth", "active", "Active subscription")
    assert list(Invoice.objects.filter(tenant=tenant).values_list("status", "total")) == [("paid", 19900)]
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"processed"}
    assert ApiKey.objects.filter(tenant=tenant).count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_demo_starts_a_paid_plan_outside_a_transaction_before_any_webhook(webhooks_lost):
    """`make run` with DATABASE_URL on PostgreSQL: seed_demo applies the checkout itself, before a
    worker gets to the webhooks, and outside any transaction. Taking the tenant's lock there was a
    TransactionManagementError (SQLite's select_for_update does nothing, so the embedded default
    hid it; with webhooks applied at once, as the other tests do, the path is never reached)."""
    from billing_portal.demo import start_plan

    tenant, user = _tenant_with_admin("demo-pg")

    sub = start_plan(tenant=tenant, plan=plan("agents-growth"), actor=user)

    assert sub is not None
    assert (sub.plan.code, sub.state) == ("agents-growth", "active")
    assert list(Invoice.objects.filter(tenant=tenant).values_list("status", "total")) == [("paid", 19900)]


@pytest.mark.parametrize("code", ["agents-trial", "credits-free"])
def test_create_tenant_on_a_trial_or_free_plan_starts_it_at_once(code, db, live):
    with live():
        output = run("create_tenant", "Acme", "--admin-email", "a@acme.test", "--plan", code)

    tenant = Tenant.objects.get(slug=last_json(output)["tenant"])
    sub = Subscription.objects.get(tenant=tenant, plan__code=code)
    assert sub.state == ("trialing" if code == "agents-trial" else "active")


ULTRA_TERMS = (
    "--contract-months", "12", "--credits-per-month", "10000.5",
    "--contract-reason", "Contract ACME-2026-01, signed by Ana",
)  # fmt: skip


def test_c07_create_tenant_starts_ai_ultra_under_the_contract_through_the_contract_service(db):
    """AI Ultra was refused outright ("no self-serve start"); the operator gives the contract's terms
    and the tenant is on AI Ultra as the Lead admin's "Assign the contracted plan" puts it (C07, C16)."""
    output = run(
        "create_tenant", "Acme", "--admin-email", "a@acme.test", "--plan", "credits-ultra", *ULTRA_TERMS
    )

    tenant = Tenant.objects.get(slug=last_json(output)["tenant"])
    sub = live_sub(tenant, "ai_credits")
    contract = Contract.objects.get(subscription=sub)
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    assert (sub.plan.code, sub.state, sub.gateway_subscription_id) == ("credits-ultra", "active", "")
    assert (contract.starts_at, contract.months, contract.credits_per_period) == (today, 12, 10_000_500)
    assert (sub.ends_at, contract.ends_at) == (plan_services.months_after(today, 12),) * 2
    assert list(Grant.objects.filter(tenant=tenant).values_list("amount", "reference")) == [
        (10_000_500, f"contract:{contract.pk}:period:0")
    ]
    lead = Lead.objects.get(tenant=tenant)
    assert (lead.plan.code, lead.kind, lead.status, lead.user, contract.lead_id) == (
        "credits-ultra", "specialist", "won", None, lead.pk,
    )  # fmt: skip
    assert "Contract ACME-2026-01, signed by Ana" in lead.message
    events = AuditEvent.objects.filter(
        tenant=tenant, action__in=["lead.created", "subscription.contracted", "lead.won"]
    )
    assert sorted((e.action, e.actor_type) for e in events) == [
        ("lead.created", "system"), ("lead.won", "system"), ("subscription.contracted", "system"),
    ]  # fmt: skip
    assert sentence(events.get(action="lead.created")) == "System recorded the sales agreement for AI Ultra"
    ends = f"{contract.ends_at:%-d %b %Y}"
    assert f"AI Ultra under contract from {today:%-d %b %Y} until {ends}, 10000.5 credits a month." in output
    ent = plan_selectors.entitlements(tenant=tenant)["ai_credits"]
    assert (ent.plan_code, ent.badge, ent.ends_at) == (
        "credits-ultra",
        "Active subscription",
        contract.ends_at,
    )


def test_s16_create_tenant_starts_enterprise_under_a_contract_without_credits(db):
    output = run(
        "create_tenant", "Acme", "--admin-email", "a@acme.test", "--plan", "agents-enterprise",
        "--contract-months", "3", "--contract-reason", "Order 77",
    )  # fmt: skip

    tenant = Tenant.objects.get(slug=last_json(output)["tenant"])
    sub = live_sub(tenant, "ai_agents")
    assert (sub.plan.code, sub.state, sub.contract.months, sub.contract.credits_per_period) == (
        "agents-enterprise", "active", 3, 0,
    )  # fmt: skip
    assert Lead.objects.get(tenant=tenant).kind == "book_demo"
    assert not Grant.objects.filter(tenant=tenant).exists()


@pytest.mark.parametrize(
    ("code", "flags", "name", "asks"),
    [
        ("credits-ultra", "--contract-months, --contract-reason, --credits-per-month", "AI Ultra", "Speak with Specialist"),
        ("agents-enterprise", "--contract-months, --contract-reason", "Enterprise", "Book a demo"),
    ],
)  # fmt: skip
def test_c07_create_tenant_on_a_contact_sales_plan_without_its_terms_says_what_works(
    code, flags, name, asks, db
):
    with pytest.raises(CommandError) as error:
        run("create_tenant", "Acme", "--admin-email", "a@acme.test", "--plan", code)

    assert str(error.value) == (
        f"{name} is contracted through sales: give the contract's {flags} (and --contract-start if it did "
        f"not start today). Otherwise create the tenant without --plan; once it asks for {name} ({asks}), "
        'staff assign the plan from that lead: /admin/plans/lead/, action "Assign the contracted plan".'
    )
    assert (Tenant.objects.count(), User.objects.count(), Lead.objects.count()) == (0, 0, 0)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--contract-months", "0"), "A contract lasts 1 to 120 months."),
        (("--contract-months", "121"), "A contract lasts 1 to 120 months."),
        (("--contract-start", "2999-01-01"), "Assign the contract on its start date, not before."),
        (("--contract-start", "2020-01-01"), "Assign the contract within a month of its start date"),
        (("--credits-per-month", "0"), "AI Ultra needs the credits the contract grants each month."),
        (("--credits-per-month", "1.0001"), "--credits-per-month: a quantity of credits with at most three decimals."),
        (("--contract-reason", "x" * 201), "Give the contract's reference and who agreed it, in at most 200 characters."),
    ],
)  # fmt: skip
def test_c07_create_tenant_with_terms_the_contract_service_refuses_creates_nothing(extra, message, db):
    before = (Tenant.objects.count(), User.objects.count(), AuditEvent.objects.count())
    with pytest.raises(CommandError) as error:
        run(
            "create_tenant",
            "Acme",
            "--admin-email",
            "a@acme.test",
            "--plan",
            "credits-ultra",
            *ULTRA_TERMS,
            *extra,
        )

    assert str(error.value).startswith(message)
    assert (Tenant.objects.count(), User.objects.count(), AuditEvent.objects.count()) == before
    assert (Lead.objects.count(), Contract.objects.count(), Grant.objects.count()) == (0, 0, 0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--plan", "credits-free", "--contract-months", "12"), "--contract-months: contract terms are for a contact-sales plan"),
        (("--contract-reason", "R"), "--contract-reason: contract terms are for a contact-sales plan"),
        (("--plan", "agents-enterprise", "--contract-months", "3", "--contract-reason", "R", "--credits-per-month", "5"),
         "Enterprise grants no AI credits: leave out --credits-per-month."),
    ],
)  # fmt: skip
def test_create_tenant_refuses_contract_terms_a_plan_does_not_take(args, message, db):
    with pytest.raises(CommandError) as error:
        run("create_tenant", "Acme", "--admin-email", "a@acme.test", *args)

    assert str(error.value).startswith(message)
    assert (Tenant.objects.count(), User.objects.count()) == (0, 0)


def test_create_tenant_with_an_unknown_plan_lists_the_plans(db):
    with pytest.raises(CommandError) as error:
        run("create_tenant", "Acme", "--admin-email", "a@acme.test", "--plan", "nope")

    codes = ", ".join(sorted(Plan.objects.values_list("code", flat=True)))
    assert str(error.value) == f"No plan 'nope'. Plans: {codes}."
    assert "agents-growth" in codes
    assert "agents-enterprise" in codes
    assert (Tenant.objects.count(), User.objects.count()) == (0, 0)


def test_create_tenant_on_a_paid_plan_with_the_stripe_gateway_is_refused(db, settings):
    settings.PAYMENT_GATEWAY = "stripe"

    with pytest.raises(CommandError) as error:
        run("create_tenant", "Acme", "--admin-email", "a@acme.test", "--plan", "agents-growth")

    assert (
        str(error.value)
        == "Growth is paid: with the Stripe gateway the tenant's admin subscribes on the Billing tab."
    )
    assert Tenant.objects.count() == 0


# --- seed_demo -----------------------------------------------------------------------------------

DEMO_STATES = {
    "orbit": ("agents-trial", "trialing", "Trial subscription"),
    "nimbus": ("agents-trial", "trialing", "Trial ending soon"),
    "tidewater": ("agents-starter", "active", "Active subscription"),
    "kestrel": ("agents-growth", "past_due", "Payment issue"),
    "juniper": ("agents-scale", "canceled", "Canceled subscription"),
    "quill": ("agents-trial", "expired", "Expired subscription"),
    "helix": ("agents-growth", "active", "Active subscription"),
}


def _billing_rows() -> dict[str, int]:
    return {
        "subscriptions": Subscription.objects.count(),
        "invoices": Invoice.objects.count(),
        "webhook_events": WebhookEvent.objects.count(),
        "tenants": Tenant.objects.count(),
    }


# The demo buys plans through the local gateway, and a scheduled change needs the subscription its
# webhooks made: real commits are needed.
@pytest.mark.django_db(transaction=True)
def test_seed_demo_puts_a_tenant_in_each_state_and_is_idempotent(settings):
    """Every badge of S30 has a demo tenant, made through the real checkout and webhooks."""
    settings.DEBUG = True

    run("seed_demo")
    first = _billing_rows()
    run("seed_demo")

    assert _billing_rows() == first
    assert first["webhook_events"] > 0
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"processed"}
    for slug, (code, state, badge) in DEMO_STATES.items():
        ent = plan_selectors.entitlements(tenant=Tenant.objects.get(slug=slug))["ai_agents"]
        assert (ent.plan_code, ent.state, ent.badge) == (code, state, badge), slug
    upcoming = plan_selectors.entitlements(tenant=Tenant.objects.get(slug="tidewater"))["ai_agents"].upcoming
    assert upcoming is not None
    assert upcoming.plan_code == "agents-growth"
    assert plan_selectors.entitlements(tenant=Tenant.objects.get(slug="kestrel"))["ai_agents"].grace_until
    assert plan_selectors.entitlements(tenant=Tenant.objects.get(slug="juniper"))["ai_agents"].ends_at
    # Lumen's trial ended first (C19), then it bought AI Plus.
    lumen = plan_selectors.entitlements(tenant=Tenant.objects.get(slug="lumen"))
    assert (lumen["ai_credits"].plan_code, lumen["ai_credits"].state) == ("credits-plus", "active")
    assert (lumen["ai_agents"].plan_code, lumen["ai_agents"].state) == ("agents-trial", "expired")
    # Helix's period was moved back for a month of usage: its invoice bills that same period (the
    # card said 5 Nov to 5 Dec while its only invoice billed 29 Nov to 29 Dec).
    helix = Tenant.objects.get(slug="helix")
    sub = Subscription.objects.get(tenant=helix, product__code="ai_agents", state="active")
    [invoice] = Invoice.objects.filter(tenant=helix, gateway_subscription_id=sub.gateway_subscription_id)
    assert (invoice.service_period_start, invoice.service_period_end) == (
        sub.current_period_start,
        sub.current_period_end,
    )
    assert invoice.issued_at == sub.current_period_start


def test_a_paid_plan_that_ended_before_its_webhooks_arrived_does_not_bring_the_trial_back(
    webhooks_lost, trial_tenant, admin, live
):
    """S13: the trial converted into the paid plan stays used up even if we learn of the plan only
    after it was canceled."""
    session_id = checkout_open(trial_tenant, admin, "agents-growth")
    with live():
        sub_id = local_gateway().complete_checkout(session_id).id
        local_gateway().cancel_subscription(
            subscription_id=sub_id, at_period_end=False, idempotency_key="gone"
        )
    assert live_sub(trial_tenant).state == "trialing"  # nothing applied yet

    run("billing_reconcile")

    from plans.selectors import entitlements

    ent = entitlements(tenant=trial_tenant)["ai_agents"]
    assert (ent.state, ent.badge) == ("expired", "Expired subscription")
    assert ent.refusal is not None
    assert ent.refusal.code == "subscription_ended"


# The demo's stories happen before the seed runs: each period shown holds what was seeded in it, a
# failed renewal bills the period after the paid one, and an ended trial ran its days first.
@pytest.mark.django_db(transaction=True)
def test_seed_demo_tells_each_story_in_order(settings):
    from sessions_billing.models import BillableWindow, Conversation

    settings.DEBUG = True
    run("seed_demo")

    # Kestrel: the paid period, then its renewal's open invoice for the period that follows.
    kestrel = Tenant.objects.get(slug="kestrel")
    sub = Subscription.objects.get(tenant=kestrel, product__code="ai_agents")
    paid, failed = Invoice.objects.filter(tenant=kestrel).order_by("issued_at")
    assert (paid.status, failed.status) == ("paid", "open")
    assert paid.service_period_end == failed.service_period_start == sub.current_period_start
    assert failed.service_period_end == sub.current_period_end
    assert sub.payment_failed_at == sub.current_period_start < timezone.now()
    assert sub.grace_until == sub.current_period_start + timedelta(days=settings.GRACE_PERIOD_DAYS)
    # Every tenant's sessions started within the period they are counted in.
    for slug in ("helix", "orbit", "nimbus", "tidewater", "kestrel"):
        tenant = Tenant.objects.get(slug=slug)
        ent = plan_selectors.entitlements(tenant=tenant)["ai_agents"]
        first = Conversation.objects.filter(tenant=tenant).order_by("started_at").first()
        assert first is not None, slug
        assert first.started_at >= ent.period_start, slug
        assert not BillableWindow.objects.filter(tenant=tenant, starts_at__lt=ent.period_start).exists()
    # Ended trials ran their 14 days, and ended then; the log says when.
    for slug in ("quill", "lumen"):
        trial = Subscription.objects.get(tenant__slug=slug, product__code="ai_agents")
        assert trial.state == "expired"
        assert trial.trial_ends_at - trial.started_at == timedelta(days=14), slug
        assert trial.ended_at == trial.trial_ends_at, slug
        started = AuditEvent.objects.get(tenant=trial.tenant, action="subscription.trial_started")
        ended = AuditEvent.objects.get(tenant=trial.tenant, action="subscription.trial_ended")
        assert (started.created_at, ended.created_at) == (trial.started_at, trial.ended_at), slug
        assert started.data["ends"] == trial.trial_ends_at.date().isoformat()
    # Lumen's trial ended before it bought AI Plus (C19).
    lumen_plus = Subscription.objects.get(tenant__slug="lumen", product__code="ai_credits")
    lumen_trial = Subscription.objects.get(tenant__slug="lumen", product__code="ai_agents")
    assert lumen_trial.ended_at < lumen_plus.current_period_start
    # A running trial says one end everywhere: the log's and the subscription's.
    nimbus = Subscription.objects.get(tenant__slug="nimbus", product__code="ai_agents")
    started = AuditEvent.objects.get(tenant=nimbus.tenant, action="subscription.trial_started")
    assert started.data["ends"] == nimbus.trial_ends_at.date().isoformat()
    assert nimbus.trial_ends_at - nimbus.started_at == timedelta(days=14)


# The Activity log tells each story on its days: a plan bought in the past is logged on the day of
# its invoice, before what followed it; the team and AI Free date from the sign-up (README: AI Free
# lasts 3 months from sign-up); a step reads as one row.
@pytest.mark.django_db(transaction=True)
def test_seed_demo_logs_each_step_on_its_day(settings):
    from django.db.models import Q

    from billing_portal.management.commands.seed_demo import DEMO_TENANTS
    from tenants.models import Membership
    from tenants.selectors import ActivityFilter, activity

    settings.DEBUG = True
    run("seed_demo")

    for slug in ("helix", "tidewater", "kestrel", "juniper", "lumen"):
        tenant = Tenant.objects.get(slug=slug)
        first = Invoice.objects.filter(tenant=tenant).order_by("issued_at").first()
        assert first is not None, slug
        bought = AuditEvent.objects.filter(
            tenant=tenant,
            action__in=["checkout.started", "subscription.converted", "subscription.plan_changed"],
        )
        assert {event.created_at.replace(microsecond=0) for event in bought} == {first.issued_at}, slug
    for tenant in Tenant.objects.filter(slug__in=[slug for slug, *_ in DEMO_TENANTS]):
        free = Subscription.objects.get(tenant=tenant, plan__code__in=["credits-free", "credits-plus"])
        assert free.started_at == tenant.created_at, tenant.slug
        grant = Grant.objects.get(reference=f"subscription:{free.pk}:free")
        assert (grant.valid_from, grant.created_at) == (tenant.created_at, tenant.created_at), tenant.slug
        if free.plan.code == "credits-free":  # AI Free's 3 months (Lumen's ended when it bought AI Plus)
            assert grant.expires_at == plan_services.months_after(tenant.created_at, 3), tenant.slug
        signed_up = AuditEvent.objects.filter(tenant=tenant).filter(
            Q(action__in=["tenant.created", "member.added", "subscription.trial_started"])
            | Q(action="subscription.started", target_label="AI Free")
        )
        assert signed_up.count() == 4, tenant.slug
        assert {event.created_at for event in signed_up} == {tenant.created_at}, tenant.slug
        assert set(Membership.objects.filter(tenant=tenant).values_list("created_at", flat=True)) == {
            tenant.created_at
        }, tenant.slug  # the Team page's "Joined"
    # Kestrel bought Growth, then its renewal failed: in that order.
    kestrel = Tenant.objects.get(slug="kestrel")
    converted = AuditEvent.objects.get(tenant=kestrel, action="subscription.converted")
    failed = AuditEvent.objects.get(tenant=kestrel, action="subscription.payment_failed")
    assert converted.created_at < failed.created_at
    # Helix's upgrade reads as one row, with the verb of a first subscription.
    helix = Tenant.objects.get(slug="helix")
    rows = [
        sentence(e) for e in activity(tenant=helix, filters=ActivityFilter()).select_related("actor_user")
    ]
    assert [row for row in rows if "Growth" in row] == [
        "System upgraded the subscription to Growth",
        "Helix Admin opened the checkout for Growth",
    ]
