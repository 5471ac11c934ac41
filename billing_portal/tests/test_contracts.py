"""Contact-sales plans assigned by contract (C07, C16; Enterprise "Book a demo", S16): staff open the
lead the tenant sent, "Assign the contracted plan", and the tenant is on the plan with its credits,
no payment gateway involved; the billing sweep renews each month and ends the contract."""

from __future__ import annotations

import html
import importlib
import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.apps import apps as django_apps
from django.contrib.auth.models import Permission

from billing_portal import services
from billing_portal.tests.conftest import live_sub
from credits.models import Grant
from plans import selectors as plan_selectors
from plans import services as plan_services
from plans.factories import SubscriptionFactory, plan
from plans.models import Contract, Lead, Subscription
from tenants import services as tenant_services
from tenants.audit import sentence
from tenants.factories import UserFactory
from tenants.models import AuditEvent

K = 1000
CHANGELIST = "/admin/plans/lead/"
PAGE = "/t/acme/marketplace/ai-credits/"


def assign_url(lead: Lead) -> str:
    return f"/admin/plans/lead/{lead.pk}/assign-contract/"


@pytest.fixture
def sales(db):
    """Customer Success: staff holding the explicit permission, not a superuser."""
    user = UserFactory(email="sales@platform.test", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(codename="assign_contract"),
        Permission.objects.get(codename="view_lead"),
        Permission.objects.get(codename="change_lead"),
    )
    return user


@pytest.fixture
def ultra_lead(trial_tenant, member) -> Lead:
    """Acme (AI Agents trial, AI Free) asked to Speak with Specialist about AI Ultra (C16)."""
    lead, created = plan_services.lead_create(tenant=trial_tenant, user=member, plan=plan("credits-ultra"))
    assert created
    return lead


def contract_form(**overrides) -> dict:
    return {
        "starts_on": datetime.now(UTC).date().isoformat(),
        "months": "12",
        "credits_per_month": "10000.5",
        "reason": "Contract ACME-2026-01, signed by Ana",
        **overrides,
    }


def ultra_grants(tenant) -> list[tuple[str, int, str]]:
    return list(
        Grant.objects.filter(tenant=tenant, plan__code="credits-ultra")
        .order_by("valid_from")
        .values_list("source", "amount", "reference")
    )


def test_c07_c16_staff_assign_ultra_from_the_lead_and_its_credits_are_granted(ultra_lead, sales, client_for):
    tenant, client = ultra_lead.tenant, client_for(sales)
    free = live_sub(tenant, "ai_credits")
    chosen = client.post(CHANGELIST, {"action": "assign_contract", "_selected_action": [ultra_lead.pk]})
    assert (chosen.status_code, chosen["Location"]) == (302, assign_url(ultra_lead))
    form = client.get(assign_url(ultra_lead)).content.decode()
    assert 'name="credits_per_month"' in form
    assert f'value="{datetime.now(UTC).date().isoformat()}"' in form  # contract start: today

    done = client.post(assign_url(ultra_lead), contract_form())
    assert done.status_code == 302

    sub = live_sub(tenant, "ai_credits")
    assert (sub.plan.code, sub.state, sub.gateway_subscription_id) == ("credits-ultra", "active", "")
    contract = Contract.objects.get(subscription=sub)
    assert (contract.months, contract.credits_per_period, contract.lead_id) == (12, 10_000_500, ultra_lead.pk)
    assert (sub.current_period_start, sub.current_period_end) == (
        contract.starts_at,
        plan_services.months_after(contract.starts_at, 1),
    )
    assert ultra_grants(tenant) == [("plan_included", 10_000_500, f"contract:{contract.pk}:period:0")]
    free.refresh_from_db()
    assert free.state == "expired"  # AI Free gave way, as it does to AI Plus
    assert Lead.objects.get(pk=ultra_lead.pk).status == "won"
    actions = set(AuditEvent.objects.filter(tenant=tenant).values_list("action", flat=True))
    assert {"subscription.contracted", "lead.won", "subscription.ended_by_contract"} <= actions
    contracted = AuditEvent.objects.get(tenant=tenant, action="subscription.contracted")
    assert (contracted.actor_user, contracted.data["reason"]) == (
        sales,
        "Contract ACME-2026-01, signed by Ana",
    )


def test_c07_assigning_the_same_lead_twice_makes_one_subscription_and_one_grant(
    ultra_lead, sales, client_for
):
    client = client_for(sales)
    client.post(assign_url(ultra_lead), contract_form())
    again = client.post(assign_url(ultra_lead), contract_form(credits_per_month="99"), follow=True)
    assert "already assigned; nothing changed" in again.content.decode()
    tenant = ultra_lead.tenant
    assert Subscription.objects.filter(tenant=tenant, plan__code="credits-ultra").count() == 1
    assert Contract.objects.filter(tenant=tenant).count() == 1
    assert [amount for _, amount, _ in ultra_grants(tenant)] == [10_000_500]


def test_c07_refused_while_a_paid_ai_plus_is_live_and_nothing_is_written(ultra_lead, sales, client_for):
    tenant = ultra_lead.tenant
    live_sub(tenant, "ai_credits").delete()
    plus = SubscriptionFactory(tenant=tenant, plan=plan("credits-plus"))
    before = (Subscription.objects.count(), Grant.objects.count(), AuditEvent.objects.count())

    page = client_for(sales).post(assign_url(ultra_lead), contract_form()).content.decode()

    assert "Cancel the current AI Plus subscription first" in page
    assert (Subscription.objects.count(), Grant.objects.count(), AuditEvent.objects.count()) == before
    assert not Contract.objects.exists()
    assert live_sub(tenant, "ai_credits").pk == plus.pk
    assert Lead.objects.get(pk=ultra_lead.pk).status == "new"


def test_c07_staff_without_the_permission_get_403_and_are_not_offered_the_action(ultra_lead, client_for):
    staff = UserFactory(email="ops@platform.test", is_staff=True)
    staff.user_permissions.add(
        Permission.objects.get(codename="view_lead"), Permission.objects.get(codename="change_lead")
    )
    client = client_for(staff)
    assert "assign_contract" not in client.get(CHANGELIST).content.decode()
    assert client.get(assign_url(ultra_lead)).status_code == 403
    assert client.post(assign_url(ultra_lead), contract_form()).status_code == 403
    client.post(CHANGELIST, {"action": "assign_contract", "_selected_action": [ultra_lead.pk]})
    assert not Contract.objects.exists()
    assert live_sub(ultra_lead.tenant, "ai_credits").plan.code == "credits-free"


def test_c07_the_sweep_renews_a_contracted_period_once_and_expires_the_contract_at_its_end(
    trial_tenant, member, sales
):
    start = datetime(2026, 1, 31, tzinfo=UTC)
    with time_machine.travel(start + timedelta(hours=1), tick=False):
        lead, _ = plan_services.lead_create(tenant=trial_tenant, user=member, plan=plan("credits-ultra"))
        sub, created = services.contract_assign(
            lead=lead, starts_at=start, months=2, credits_per_period=5000 * K, reason="R-1", actor=sales
        )
    assert created
    contract = Contract.objects.get(subscription=sub)
    feb_end, mar_end = datetime(2026, 2, 28, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC)

    renewal = feb_end + timedelta(minutes=1)
    with time_machine.travel(renewal, tick=False):
        assert services.billing_tick(now=renewal)["contracts_renewed"] == 1
        assert services.billing_tick(now=renewal)["contracts_renewed"] == 0  # a second sweep: nothing
    sub.refresh_from_db()
    assert (sub.state, sub.current_period_start, sub.current_period_end) == ("active", feb_end, mar_end)
    grants = list(
        Grant.objects.filter(tenant=trial_tenant, plan__code="credits-ultra")
        .order_by("valid_from")
        .values_list("source", "amount", "valid_from", "expires_at", "reference")
    )
    assert grants == [
        ("plan_included", 5000 * K, start, feb_end, f"contract:{contract.pk}:period:0"),
        ("plan_renewal", 5000 * K, feb_end, mar_end, f"contract:{contract.pk}:period:1"),
    ]

    end = mar_end + timedelta(minutes=1)
    with time_machine.travel(end, tick=False):
        assert services.billing_tick(now=end)["contracts_renewed"] == 1
        assert services.billing_tick(now=end)["contracts_renewed"] == 0
    sub.refresh_from_db()
    assert (sub.state, sub.ended_at) == ("expired", mar_end)
    assert Grant.objects.filter(tenant=trial_tenant, plan__code="credits-ultra").count() == 2


def test_c07_c24_the_ai_credits_page_and_the_api_show_ultra_current(ultra_lead, sales, admin, client_for):
    tenant = ultra_lead.tenant
    client_for(sales).post(assign_url(ultra_lead), contract_form(credits_per_month="10000"))

    page = client_for(admin).get(PAGE).content.decode()
    card = re.search(r'data-testid="plan-credits-ultra".*?</article>', page, re.S)
    assert card is not None
    assert 'data-testid="current-plan"' in card.group(0)
    assert re.search(r'data-testid="plan-name">AI Ultra<', page)
    assert re.search(r'data-testid="balance">10,000', page)
    assert 'data-testid="buy-extra-credits"' not in page  # C24: no Buy Credits on Ultra

    secret = tenant_services.api_key_create(tenant=tenant, name="k", actor=admin).secret
    auth = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    ent = client_for(admin).get("/api/v1/entitlements", **auth).json()["products"]["ai_credits"]
    assert (ent["plan_code"], ent["state"]) == ("credits-ultra", "active")
    credits = client_for(admin).get("/api/v1/credits", **auth).json()
    assert (credits["balance"], credits["plan"]["code"]) == ("10000", "credits-ultra")
    assert (credits["plan"]["included_credits"], credits["plan"]["renewal"]) == ("10000", "monthly")


def test_s16_enterprise_book_a_demo_is_assigned_by_contract_and_ends_the_trial(
    trial_tenant, admin, sales, client_for
):
    lead, _ = plan_services.lead_create(tenant=trial_tenant, user=admin, plan=plan("agents-enterprise"))
    trial = live_sub(trial_tenant, "ai_agents")
    form = client_for(sales).get(assign_url(lead)).content.decode()
    assert 'name="credits_per_month"' not in form  # AI Agents: no credits to ask for
    client_for(sales).post(assign_url(lead), contract_form(credits_per_month=""))
    sub = live_sub(trial_tenant, "ai_agents")
    assert (sub.plan.code, sub.state, sub.gateway_subscription_id) == ("agents-enterprise", "active", "")
    trial.refresh_from_db()
    assert trial.state == "expired"
    assert Contract.objects.get(subscription=sub).credits_per_period == 0
    assert not Grant.objects.filter(tenant=trial_tenant, plan__code="agents-enterprise").exists()


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"credits_per_month": "99999999999999999999"}, "at most a billion credits"),
        ({"starts_on": "2020-01-01"}, "within a month of its start date"),
        ({"starts_on": "2999-01-01"}, "not before"),
    ],
)
def test_c07_a_contract_past_what_the_ledger_holds_or_begun_long_ago_is_a_form_error(
    ultra_lead, sales, client_for, overrides, error
):
    """A 20-digit monthly amount was a 500 (the ledger's bigint); a contract of 2020 was assigned
    with its first month long over: no credits, and the AI Free it replaced left running."""
    response = client_for(sales).post(assign_url(ultra_lead), contract_form(**overrides))

    assert response.status_code == 200
    assert error in response.content.decode()
    assert not Contract.objects.exists()
    assert ultra_grants(ultra_lead.tenant) == []


# --- "Won" means the contracted plan was assigned (the lead's status by hand) -------------------


def set_status_in_the_list(client, lead: Lead, status: str):
    """The changelist's list_editable status, as the admin posts one row of it."""
    return client.post(
        CHANGELIST,
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-MIN_NUM_FORMS": "0",
            "form-MAX_NUM_FORMS": "1000",
            "form-0-id": str(lead.pk),
            "form-0-status": status,
            "_save": "Save",
        },
    )


def change_url(lead: Lead) -> str:
    return f"/admin/plans/lead/{lead.pk}/change/"


def page_text(response) -> str:
    return html.unescape(response.content.decode())


WON_BY_CONTRACT = (
    'A lead is won when its contracted plan is assigned: select the lead and use the action "Assign the '
    'contracted plan" (it marks the lead won).'
)


def test_c16_won_chosen_by_hand_in_the_lead_list_is_refused_and_changes_nothing(
    ultra_lead, sales, client_for
):
    """A lead set to won in the list showed a deal done while no contract existed (C07, C16)."""
    before = AuditEvent.objects.count()
    response = set_status_in_the_list(client_for(sales), ultra_lead, "won")

    assert response.status_code == 200
    assert WON_BY_CONTRACT in page_text(response)
    assert Lead.objects.get(pk=ultra_lead.pk).status == "new"
    assert AuditEvent.objects.count() == before
    assert not Contract.objects.exists()


def test_c16_won_chosen_by_hand_on_the_lead_page_is_refused(ultra_lead, sales, client_for):
    client = client_for(sales)
    response = client.post(change_url(ultra_lead), {"status": "won", "staff_notes": "Signed, I think"})

    assert response.status_code == 200
    assert WON_BY_CONTRACT in page_text(response)
    lead = Lead.objects.get(pk=ultra_lead.pk)
    assert (lead.status, lead.staff_notes) == ("new", "")
    assert 'Won is set by the action "Assign the contracted plan".' in page_text(client.get(change_url(lead)))


def test_c16_a_registered_interest_is_never_won_by_hand(trial_tenant, member, sales, client_for):
    lead, _ = plan_services.lead_create(tenant=trial_tenant, user=member, plan=plan("credits-plus"))
    response = set_status_in_the_list(client_for(sales), lead, "won")

    assert (
        "AI Plus is bought, not contracted: its lead is never won here. Mark it Contacted or Lost; the "
        "tenant's admin subscribes on the AI Credits or Billing page."
    ) in page_text(response)
    assert Lead.objects.get(pk=lead.pk).status == "new"


def test_c16_contacted_and_lost_by_hand_are_saved_and_audited(ultra_lead, sales, client_for):
    client = client_for(sales)
    assert set_status_in_the_list(client, ultra_lead, "contacted").status_code == 302
    response = client.post(change_url(ultra_lead), {"status": "lost", "staff_notes": "Chose a rival"})
    assert response.status_code == 302

    lead = Lead.objects.get(pk=ultra_lead.pk)
    assert (lead.status, lead.staff_notes) == ("lost", "Chose a rival")
    changes = AuditEvent.objects.filter(action="lead.status_changed").order_by("pk")
    assert [(e.actor_user, e.data["from"], e.data["to"]) for e in changes] == [
        (sales, "new", "contacted"),
        (sales, "contacted", "lost"),
    ]
    # The customer reads these on the Activity page: their request's fate, not the sales pipeline's.
    assert [sentence(e) for e in changes] == [
        f"{sales.display_name} took up the sales request for AI Ultra",
        f"{sales.display_name} closed the sales request for AI Ultra",
    ]


def test_c16_a_lead_back_to_new_beside_an_open_one_is_refused_not_a_500(
    ultra_lead, member, sales, client_for
):
    """The one-open-lead-per-plan constraint was only the database's (tenant and plan are read-only
    in the form, so the form did not check it): an IntegrityError."""
    client = client_for(sales)
    set_status_in_the_list(client, ultra_lead, "lost")
    plan_services.lead_create(tenant=ultra_lead.tenant, user=member, plan=plan("credits-ultra"))

    response = set_status_in_the_list(client, ultra_lead, "new")

    assert response.status_code == 200
    assert "Acme Corp has another open (New) lead for AI Ultra: work that one instead." in page_text(response)
    assert Lead.objects.get(pk=ultra_lead.pk).status == "lost"


def test_c16_the_assigned_lead_is_won_its_status_read_only_and_the_list_shows_the_contract_end(
    ultra_lead, sales, client_for
):
    client = client_for(sales)
    client.post(assign_url(ultra_lead), contract_form())
    contract = Contract.objects.get(lead=ultra_lead)

    response = client.post(change_url(ultra_lead), {"status": "lost", "staff_notes": "renewal talks"})
    assert response.status_code == 302
    lead = Lead.objects.get(pk=ultra_lead.pk)
    assert (lead.status, lead.staff_notes) == ("won", "renewal talks")  # the notes saved, the status kept
    page = page_text(client.get(change_url(lead)))
    assert "This lead's contracted plan is assigned: the lead stays won." in page
    assert re.search(r'<select name="status"[^>]*disabled', page)
    assert set_status_in_the_list(client, lead, "new").status_code == 302
    assert Lead.objects.get(pk=lead.pk).status == "won"

    listing = page_text(client.get(CHANGELIST))
    assert f"until {contract.ends_at.day} {contract.ends_at:%b %Y}" in listing


def test_staff_cannot_add_a_lead_by_hand(db, client_for):
    """A lead is a tenant's request; the add form (tenant and plan read-only) could only fail."""
    superuser = UserFactory(email="root@platform.test", is_staff=True, is_superuser=True)
    assert client_for(superuser).get("/admin/plans/lead/add/").status_code == 403


# --- the contract's end: on the subscription, the pages and the admin -------------------------


def test_c07_the_contract_end_is_the_subscriptions_and_every_page_says_when_it_ends(
    trial_tenant, member, admin, sales, client_for
):
    """The contract's end was its own alone: the subscription had none, so the Billing tab, the AI
    Credits page and the entitlements said nothing of when the contracted plan ends."""
    start = datetime(2026, 1, 31, tzinfo=UTC)
    end = datetime(2026, 3, 31, tzinfo=UTC)
    with time_machine.travel(start + timedelta(hours=1), tick=False):
        lead, _ = plan_services.lead_create(tenant=trial_tenant, user=member, plan=plan("credits-ultra"))
        sub, _ = services.contract_assign(
            lead=lead, starts_at=start, months=2, credits_per_period=5000 * K, reason="R-1", actor=sales
        )
        assert (sub.ends_at, Contract.objects.get(subscription=sub).ends_at) == (end, end)
        ent = plan_selectors.entitlements(tenant=trial_tenant)["ai_credits"]
        assert (ent.state, ent.badge, ent.ends_at, ent.active) == ("active", "Active subscription", end, True)
        credits_page = client_for(admin).get(PAGE).content.decode()
        assert re.search(r'data-testid="valid-until">31 Mar 2026<', credits_page)
        billing = client_for(admin).get("/t/acme/billing/?product=ai_credits").content.decode()
        assert re.search(r'data-testid="valid-until">31 Mar 2026<', billing)
        assert "until 31 Mar 2026" in page_text(client_for(sales).get(CHANGELIST))


def test_c07_past_the_contract_end_nothing_shows_it_running_even_before_the_sweep(
    trial_tenant, member, admin, sales, client_for
):
    start = datetime(2026, 1, 31, tzinfo=UTC)
    end = datetime(2026, 3, 31, tzinfo=UTC)
    with time_machine.travel(start + timedelta(hours=1), tick=False):
        lead, _ = plan_services.lead_create(tenant=trial_tenant, user=member, plan=plan("credits-ultra"))
        sub, _ = services.contract_assign(
            lead=lead, starts_at=start, months=2, credits_per_period=5000 * K, reason="R-1", actor=sales
        )
    with time_machine.travel(end + timedelta(minutes=1), tick=False):
        assert Subscription.objects.get(pk=sub.pk).state == "active"  # not swept yet
        ent = plan_selectors.entitlements(tenant=trial_tenant)["ai_credits"]
        assert (ent.badge, ent.active, ent.ended_at) == ("Expired subscription", False, end)
        assert ent.refusal is not None
        assert ent.refusal.code == "subscription_ended"
        credits_page = client_for(admin).get(PAGE).content.decode()
        assert 'data-testid="valid-until"' not in credits_page
        assert re.search(r'data-testid="badge">Expired subscription<', credits_page)
        billing = client_for(admin).get("/t/acme/billing/?product=ai_credits").content.decode()
        assert re.search(r'data-testid="ended-on">31 Mar 2026<', billing)
        overview = client_for(admin).get("/t/acme/").content.decode()
        assert "Valid until <strong>31 Mar 2026" not in overview
        assert "ended 31 Mar 2026" in page_text(client_for(sales).get(CHANGELIST))

        now = end + timedelta(minutes=1)
        assert services.billing_tick(now=now)["contracts_renewed"] == 1
    sub.refresh_from_db()
    assert (sub.state, sub.ended_at, sub.ends_at) == ("expired", end, end)


def test_c07_contracts_assigned_before_get_their_end_on_the_subscription(ultra_lead, sales):
    """The data migration: a contract assigned before its end was on the subscription."""
    sub, _ = services.contract_assign(
        lead=ultra_lead,
        starts_at=datetime.now(UTC),
        months=12,
        credits_per_period=K,
        reason="R",
        actor=sales,
    )
    Subscription.objects.filter(pk=sub.pk).update(ends_at=None)
    migration = importlib.import_module("plans.migrations.0010_contract_subscription_ends_at")

    migration.forwards(django_apps, None)

    sub.refresh_from_db()
    assert sub.ends_at == Contract.objects.get(subscription=sub).ends_at


def test_c07_the_api_says_when_a_contracted_plan_renews_and_not_past_the_contract_end(
    trial_tenant, member, admin, sales, client_for
):
    """C07: AI Ultra's credits renew each month of the contract (the sweep grants them), so GET
    /credits says `next_renewal` is the period's end, as it says `renewal: monthly`, and the AI
    Credits page shows the same date; in the contract's last month nothing renews and both say
    nothing."""
    start = datetime(2026, 1, 31, tzinfo=UTC)
    with time_machine.travel(start + timedelta(hours=1), tick=False):
        lead, _ = plan_services.lead_create(tenant=trial_tenant, user=member, plan=plan("credits-ultra"))
        services.contract_assign(
            lead=lead, starts_at=start, months=2, credits_per_period=5000 * K, reason="R-1", actor=sales
        )
        secret = tenant_services.api_key_create(tenant=trial_tenant, name="k", actor=admin).secret
        auth = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
        first = client_for(admin).get("/api/v1/credits", **auth).json()["plan"]
        page = client_for(admin).get(f"/t/{trial_tenant.slug}/marketplace/ai-credits/").content.decode()
    assert (first["renewal"], first["next_renewal"]) == ("monthly", "2026-02-28T00:00:00Z")
    assert re.search(r'data-testid="next-renewal">28 Feb 2026<', page)

    last_month = datetime(2026, 2, 28, 0, 1, tzinfo=UTC)
    with time_machine.travel(last_month, tick=False):
        services.billing_tick(now=last_month)
        last = client_for(admin).get("/api/v1/credits", **auth).json()["plan"]
        page = client_for(admin).get(f"/t/{trial_tenant.slug}/marketplace/ai-credits/").content.decode()
    assert (last["period_end"], last["next_renewal"]) == ("2026-03-31T00:00:00Z", None)
    assert 'data-testid="next-renewal"' not in page


def test_c18_c21_on_a_contract_a_member_is_not_told_to_ask_the_administrator_to_subscribe(
    ultra_lead, sales, member, client_for
):
    """C18, C21: on AI Ultra (a contract) no administrator can subscribe to AI Plus either, so the
    Plus card tells a member what it tells the administrator (ask sales), not "Ask your account
    administrator to subscribe"."""
    client_for(sales).post(assign_url(ultra_lead), contract_form(credits_per_month="10000"))
    page = html.unescape(client_for(member).get(PAGE).content.decode())
    card = re.search(r'data-testid="plan-credits-plus".*?</article>', page, re.S)
    assert card is not None
    assert "Your plan is contracted with our sales team: ask them to change it." in card.group(0)
    assert "Ask your account administrator to subscribe." not in card.group(0)
