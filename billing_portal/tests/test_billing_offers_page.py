"""The Billing tab renders what plans.offers decides: each plan card's button or the sentence that
replaces it, the subscription card's Manage, Resume and hint, the change dialog's choices up front,
Resume end to end through the local gateway, and a pinned query count. S14-S20, S26-S29, S34, C18, C21."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from billing_portal import services
from billing_portal.models import WebhookEvent
from plans.factories import plan
from plans.models import Lead
from plans.selectors import MSG_OVERDUE
from tenants.models import AuditEvent

from .conftest import live_sub, local_gateway

pytestmark = pytest.mark.django_db

BILLING = "/t/acme/billing/"
ASK = "Ask your account administrator to subscribe."
CANCELED = "Your subscription is canceled. Resume it to change plans."
OVERDUE = f"{MSG_OVERDUE} Click Manage to settle the failed payment."
PAYMENT_FAILED = "Your last payment failed. Update your payment method (Manage) before changing plans."
SCHEDULED = "A plan change is already scheduled. Cancel it first."


def day(moment) -> str:
    return f"{moment.day} {moment:%b %Y}"


def cards(response) -> dict[str, tuple[str, list[str], str]]:
    """Per plan card: (the offer's action, the buttons and links it shows, its sentence)."""
    assert response.status_code == 200
    page = response.content.decode()
    found = {}
    for code, action, body in re.findall(
        r'data-testid="offer-([\w-]+)" data-action="(\w+)">(.*?)</div>\s*</article>', page, re.S
    ):
        buttons = [
            re.sub(r"\s+", " ", label).strip()
            for label in re.findall(r"<(?:button|a)\b[^>]*>([^<]*)</(?:button|a)>", body)
        ]
        buttons += ["Request received"] if 'data-testid="request-received"' in body else []
        reason = re.search(r'data-testid="reason-[\w-]+">([^<]*)<', body)
        found[code] = (action, buttons, reason.group(1) if reason else "")
    return found


def card_actions(response) -> tuple[list[str], str]:
    page = response.content.decode()
    block = re.search(r'data-testid="card-actions">(.*?)</div>', page, re.S)
    if block is None:
        return [], ""
    buttons = re.findall(r"<button[^>]*>([^<]*)</button>", block.group(1))
    hint = re.search(r'data-testid="manage-hint">([^<]*)<', block.group(1))
    return buttons, hint.group(1) if hint else ""


@pytest.fixture
def debug(settings):
    settings.DEBUG = True  # the local gateway's portal stand-in
    return settings


def fail_payment(subscribed, live):
    with live():
        local_gateway().fail_next_payment(subscribed.gateway_subscription_id)


def cancel(subscribed, live):
    with live():
        local_gateway().cancel_subscription(
            subscription_id=subscribed.gateway_subscription_id, at_period_end=True, idempotency_key="c1"
        )


# --- the plan cards, per state and role -------------------------------------------------------------


def test_on_the_trial_admins_subscribe_and_members_register_interest(
    trial_tenant, admin, member, finance, client_for
):
    """S14-S16, C18, C21"""
    assert cards(client_for(admin).get(BILLING)) == {
        "agents-starter": ("subscribe", ["Subscribe"], ""),
        "agents-growth": ("subscribe", ["Subscribe"], ""),
        "agents-scale": ("subscribe", ["Subscribe"], ""),
        "agents-enterprise": ("contact", ["Book a demo"], ""),
    }
    for persona in (member, finance):
        assert cards(client_for(persona).get(BILLING)) == {
            "agents-starter": ("interest", ["Register interest"], ASK),
            "agents-growth": ("interest", ["Register interest"], ASK),
            "agents-scale": ("interest", ["Register interest"], ASK),
            "agents-enterprise": ("contact", ["Book a demo"], ""),
        }
    assert card_actions(client_for(admin).get(BILLING)) == ([], "")


def test_ai_credits_on_the_free_trial_offer_only_register_interest(trial_tenant, admin, client_for):
    """C19, C05, C16: AI Free is current; Plus is interest only while the tenant is on the trial."""
    assert cards(client_for(admin).get(BILLING + "?product=ai_credits")) == {
        "credits-free": ("current", ["Current plan"], ""),
        "credits-plus": (
            "interest",
            ["Register interest"],
            "During the free trial you can only register interest in AI Plus.",
        ),
        "credits-ultra": ("contact", ["Speak with Specialist"], ""),
    }


def test_ai_credits_without_a_trial_offer_subscribe_now(tenant, admin, client_for):
    """C09, C22: no trial — Plus says Subscribe Now; AI Free is never bought. C18: an admin may
    register interest in Plus too, beside Subscribe Now."""
    assert cards(client_for(admin).get(BILLING + "?product=ai_credits")) == {
        "credits-free": ("none", [], "AI Free is included for new organizations and cannot be bought."),
        "credits-plus": ("subscribe", ["Subscribe Now", "Register interest"], ""),
        "credits-ultra": ("contact", ["Speak with Specialist"], ""),
    }


def test_paid_plans_offer_the_change_dialog_and_manage(subscribed, admin, client_for):
    """S17, S18, S30"""
    response = client_for(admin).get(BILLING)
    assert cards(response) == {
        "agents-starter": ("change", ["Subscribe"], ""),
        "agents-growth": ("current", ["Current plan"], ""),
        "agents-scale": ("change", ["Subscribe"], ""),
        "agents-enterprise": ("contact", ["Book a demo"], ""),
    }
    assert 'href="/t/acme/billing/plans/agents-scale/change/"' in response.content.decode()
    assert card_actions(response) == (
        ["Manage", "Cancel subscription"],
        "Payment methods, invoices, cancel subscription",
    )


def test_payment_issue_refuses_changes_until_the_payment_is_fixed(
    subscribed, admin, member, client_for, live
):
    """S26, S27: the cards say why instead of a button the service would refuse."""
    fail_payment(subscribed, live)
    response = client_for(admin).get(BILLING)
    assert cards(response) == {
        "agents-starter": ("change", [], PAYMENT_FAILED),
        "agents-growth": ("current", ["Current plan"], ""),
        "agents-scale": ("change", [], PAYMENT_FAILED),
        "agents-enterprise": ("contact", ["Book a demo"], ""),
    }
    assert card_actions(response) == (["Manage"], "Update your payment method to fix the failed payment.")
    assert card_actions(client_for(member).get(BILLING)) == (
        [],
        "Ask your account administrator to update the payment method.",
    )


def test_overdue_shows_the_overdue_sentence_instead_of_a_button(subscribed, admin, client_for, live):
    """S28, S34: a suspended tenant's admin is not shown a button that would be refused."""
    fail_payment(subscribed, live)
    with live():
        services.billing_tick(now=timezone.now() + timedelta(days=8))
    assert live_sub(subscribed.tenant).state == "suspended"
    response = client_for(admin).get(BILLING)
    assert cards(response) == {
        "agents-starter": ("change", [], OVERDUE),
        "agents-growth": ("current", ["Current plan"], ""),
        "agents-scale": ("change", [], OVERDUE),
        "agents-enterprise": ("contact", ["Book a demo"], ""),
    }
    assert card_actions(response) == (["Manage"], "Settle the failed payment to restore access.")
    assert not re.search(r"/billing/plans/[\w-]+/(change|subscribe)/", response.content.decode())


def test_canceled_offers_resume_to_admins_and_says_what_is_possible(
    subscribed, admin, member, client_for, live
):
    """S29: Resume on the card (admins); the other plans wait for it; members ask their admin."""
    cancel(subscribed, live)
    ends = day(live_sub(subscribed.tenant).ends_at)
    response = client_for(admin).get(BILLING)
    assert cards(response) == {
        "agents-starter": ("change", [], CANCELED),
        "agents-growth": ("resume", ["Resume"], ""),
        "agents-scale": ("change", [], CANCELED),
        "agents-enterprise": ("contact", ["Book a demo"], ""),
    }
    assert card_actions(response) == (
        ["Resume", "Manage"],
        f"Resume to keep your plan after {ends}, or let it end.",
    )
    response = client_for(member).get(BILLING)
    assert cards(response)["agents-growth"] == (
        "ask_admin",
        [],
        "Your subscription is canceled. Ask your account administrator to resume it.",
    )
    assert card_actions(response) == (
        [],
        f"Your plan ends on {ends}. Ask your account administrator to resume it.",
    )


def test_billing_tab_query_count_is_pinned(subscribed, admin, client_for, django_assert_num_queries):
    """Session and user (2), membership (1), the product asked for (1), entitlements (1), open leads
    (1), the catalog (1), the trial grant (1), the open invoices that wait for the customer (1), the
    tenant switcher (1), the product tabs (1), the session usage of the card (4: sessions_billing's
    terms and counter), the sidebar's AI Credits quick access (1, credits C03), and the session's save
    (3, with its savepoint): the same for any history (see test_billing_views)."""
    client = client_for(admin)
    client.get(BILLING)
    with django_assert_num_queries(15):
        assert client.get(BILLING).status_code == 200


# --- the change dialog ------------------------------------------------------------------------------


def test_the_dialog_shows_only_immediately_while_a_change_is_scheduled(
    subscribed, trial_tenant, admin, client_for, live
):
    """S18, S19: said before the dialog is filled in, not after."""
    with live():
        services.plan_change(
            tenant=trial_tenant,
            to_plan=plan("agents-scale"),
            when="period_end",
            custom_date=None,
            actor=admin,
        )
    for headers in ({}, {"HTTP_HX_REQUEST": "true"}):
        page = (
            client_for(admin).get("/t/acme/billing/plans/agents-starter/change/", **headers).content.decode()
        )
        choices = re.findall(
            r'<label class="choice"><input type="radio" name="when" value="(\w+)"[^>]*?( disabled)?( checked)?>',
            page,
        )
        assert choices == [
            ("immediately", "", " checked"),
            ("period_end", " disabled", ""),
            ("custom_date", " disabled", ""),
        ]
        assert re.findall(r'data-testid="when-reason-(\w+)">([^<]*)<', page) == [
            ("period_end", SCHEDULED),
            ("custom_date", SCHEDULED),
        ]
        assert 'data-testid="update-subscription"' in page


def test_the_dialog_says_a_custom_date_change_is_prorated_and_invoiced_that_day_s18(
    subscribed, admin, client_for
):
    """S18. Failed before the fix, whose words ("On a custom date nothing is prorated: … the invoice
    of <period end> bills Scale's $499.00") were false twice over: the switch is prorated and
    invoiced on its date, and a date after the period's end leaves that invoice on Growth."""
    page = client_for(admin).get("/t/acme/billing/plans/agents-scale/change/").content.decode()
    end = day(subscribed.current_period_end)
    note = re.search(r'data-testid="custom-date-note">([^<]+)<', page)
    assert note is not None
    assert note.group(1) == (
        f"On a custom date Scale starts that day (at 00:00 UTC; on {end}, at the renewal itself), "
        "and the rest of the billing period that date falls "
        "in is prorated and invoiced then, as Immediately is now: a credit for the unused time on "
        f"Growth, a charge for the remaining time on Scale. For a date before {end}, the invoice of "
        f"{end} then bills Scale's $499.00 for the next month; for a later date, renewals bill "
        "Growth until then."
    )
    assert "nothing is prorated" not in page


def test_the_dialog_of_a_canceled_subscription_says_why_and_offers_no_update(
    subscribed, admin, client_for, live
):
    """S29: "Your subscription is canceled. Resume it to change plans." up front, nothing to submit."""
    cancel(subscribed, live)
    response = client_for(admin).get("/t/acme/billing/plans/agents-scale/change/")
    assert response.status_code == 409
    page = response.content.decode()
    assert re.search(rf'data-testid="change-error">{re.escape(CANCELED)}<', page)
    assert 'data-testid="update-subscription"' not in page
    assert 'name="when"' not in page


# --- sales requests refused through the rule ----------------------------------------------------------


def test_an_admin_who_can_buy_is_pointed_at_subscribe_instead_of_a_lead(trial_tenant, admin, client_for):
    client = client_for(admin)
    response = client.post("/t/acme/billing/plans/agents-growth/contact/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert re.search(
        r'data-testid="plan-refused">You can subscribe to Growth yourself: click Subscribe\.<',
        response.content.decode(),
    )
    response = client.post("/t/acme/billing/plans/agents-growth/contact/")
    assert response["Location"] == "/t/acme/billing/?product=ai_agents"
    assert "You can subscribe to Growth yourself: click Subscribe." in client.get(BILLING).content.decode()
    assert Lead.objects.count() == 0


# --- Resume end to end --------------------------------------------------------------------------------


def test_cancel_in_the_portal_then_resume_on_the_card_is_active_at_once_and_audited(
    debug, subscribed, trial_tenant, admin, client_for, live
):
    """S29, S30: Canceled subscription with Resume → click → Active subscription, before any webhook."""
    client = client_for(admin)
    portal = client.post("/t/acme/billing/manage/", {"product": "ai_agents"})["Location"]
    with live():
        client.post(portal, {"action": "cancel", "subscription": subscribed.gateway_subscription_id})
    page = client.get(BILLING)
    assert re.search(r'data-testid="badge">Canceled subscription<', page.content.decode())
    assert cards(page)["agents-growth"] == ("resume", ["Resume"], "")

    with live():
        response = client.post("/t/acme/billing/resume/", {"product": "ai_agents"})
        # Applied from the gateway's answer in the request itself: Active before the webhook runs.
        assert live_sub(trial_tenant).state == "active"
    # Then the customer.subscription.updated Stripe sends arrives and changes nothing more.
    assert (
        WebhookEvent.objects.filter(type="customer.subscription.updated").latest("id").status == "processed"
    )
    activated = AuditEvent.objects.filter(tenant=trial_tenant, action="subscription.activated")
    assert list(activated.values_list("actor_label", flat=True)) == [
        "admin@acme.test",
        "system",
    ]  # now, at checkout

    assert response["Location"] == "/t/acme/billing/?product=ai_agents"
    page = client.get(response["Location"])
    body = page.content.decode()
    assert re.search(r'data-testid="badge">Active subscription<', body)
    assert "Your Growth subscription is active again and will renew." in body
    assert cards(page)["agents-growth"] == ("current", ["Current plan"], "")
    sub = live_sub(trial_tenant)
    assert (sub.state, sub.canceled_at, sub.ends_at) == ("active", None, None)
    assert local_gateway().retrieve_subscription(sub.gateway_subscription_id).cancel_at_period_end is False
    resumed = AuditEvent.objects.get(tenant=trial_tenant, action="subscription.resumed")
    assert (resumed.actor_user, resumed.target_label, resumed.data) == (admin, "Growth", {"state": "active"})

    # A second click (the page was stale) changes nothing and says why.
    response = client.post("/t/acme/billing/resume/", {"product": "ai_agents"})
    assert (
        "Your subscription is not canceled: there is nothing to resume."
        in client.get(BILLING).content.decode()
    )
    assert AuditEvent.objects.filter(tenant=trial_tenant, action="subscription.resumed").count() == 1


@pytest.mark.parametrize("persona", ["member", "finance"])
def test_members_cannot_resume(persona, request, subscribed, client_for, live):
    cancel(subscribed, live)
    response = client_for(request.getfixturevalue(persona)).post(
        "/t/acme/billing/resume/", {"product": "ai_agents"}
    )
    assert response.status_code == 403
    assert live_sub(subscribed.tenant).state == "canceled"
