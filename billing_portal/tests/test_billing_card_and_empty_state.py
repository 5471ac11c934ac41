"""The Billing tab's subscription card and banners as a new user reads them (issue 6, part 5): an
expired card says when it ended, a product the tenant never used is a calm empty state with its
plans, refusal banners only for products the tenant has used, and messages can be dismissed."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from plans import services as plan_services
from plans.factories import SubscriptionFactory, plan
from plans.models import Subscription
from plans.selectors import MSG_ENDED, entitlements

pytestmark = pytest.mark.django_db

NOV29 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


def page(client, product: str = "ai_agents") -> str:
    response = client.get(f"/t/acme/billing/?product={product}")
    assert response.status_code == 200
    return response.content.decode()


def test_expired_card_shows_when_the_subscription_ended_not_its_period_end(tenant, admin, client_for):
    """S30 Expired subscription: a plan canceled on 29 Nov whose period ran to 13 Dec ended on 29 Nov."""
    SubscriptionFactory(
        tenant=tenant,
        plan=plan("agents-growth"),
        state=Subscription.State.EXPIRED,
        current_period_start=datetime(2026, 11, 13, tzinfo=UTC),
        current_period_end=datetime(2026, 12, 13, tzinfo=UTC),
        ended_at=NOV29,
    )
    with time_machine.travel(NOV29 + timedelta(hours=2), tick=False):
        body = page(client_for(admin))
        ent = entitlements(tenant=tenant)["ai_agents"]
    assert ent.ended_at == NOV29
    assert re.search(r'data-testid="badge">Expired subscription<', body)
    assert re.search(r'<dt>Ended</dt><dd data-testid="ended-on">29 Nov 2026</dd>', body)
    assert "13 Dec 2026" not in body


def test_a_trial_past_its_end_but_not_swept_ended_at_the_trial_end(tenant, admin, client_for):
    """S12: before the sweeper runs, the card already says Expired, and when: the trial's end."""
    with time_machine.travel(NOV29, tick=False):
        plan_services.trial_start(tenant=tenant, plan=plan("agents-trial"))
    ends = NOV29 + timedelta(days=14)
    with time_machine.travel(ends + timedelta(days=3), tick=False):
        ent = entitlements(tenant=tenant)["ai_agents"]
        body = page(client_for(admin))
    assert (ent.state, ent.badge, ent.ended_at) == ("trialing", "Expired subscription", ends)
    assert re.search(r'data-testid="ended-on">13 Dec 2026<', body)


def test_a_live_subscription_has_no_ended_at(tenant):
    SubscriptionFactory(tenant=tenant)
    assert entitlements(tenant=tenant)["ai_agents"].ended_at is None
    assert entitlements(tenant=tenant)["ai_credits"].ended_at is None  # never used


@pytest.mark.parametrize("persona", ["admin", "member", "finance"])
def test_a_product_never_used_is_a_calm_empty_state_with_its_plans(persona, request, tenant, client_for):
    """No red banner, no "Not subscribed" (three times before): what the product is, and its plans."""
    user = request.getfixturevalue(persona)
    body = page(client_for(user), "ai_credits")
    assert 'data-testid="empty-state"' in body
    assert "You are not using AI Credits yet" in body
    assert "Credits for Smart Responses and AI Reviewer reviews in the Marketplace." in body
    assert "Not subscribed" not in body
    assert 'role="alert"' not in body
    assert 'class="banner danger"' not in body
    assert "There is no subscription for this product" not in body
    assert 'data-testid="subscription-card"' not in body
    for code in ("credits-free", "credits-plus", "credits-ultra"):
        assert f'data-testid="plan-{code}"' in body
    hint = "Choose a plan below to start." if persona == "admin" else "Your account administrator can start"
    assert hint in body


def test_a_product_used_before_shows_its_refusal_banner_and_card(tenant, admin, client_for):
    """S33: once the tenant has history on a product, the ended plan is an alert (not an empty state)."""
    SubscriptionFactory(tenant=tenant, state=Subscription.State.EXPIRED, ended_at=NOV29)
    body = page(client_for(admin))
    assert 'data-testid="empty-state"' not in body
    assert re.search(
        r'data-testid="subscription-ended" data-dismissible><strong>' + re.escape(MSG_ENDED), body
    )
    assert 'data-testid="subscription-card"' in body


def test_banners_and_flash_messages_carry_an_accessible_close_button(tenant, admin, client_for):
    """Success and error messages can be dismissed: a [data-dismiss] button with an aria-label inside
    the [data-dismissible] box (static/js/app.js removes the box)."""
    SubscriptionFactory(tenant=tenant, state=Subscription.State.EXPIRED, ended_at=NOV29)
    client = client_for(admin)
    # A flash message: the Enterprise plan cannot be bought through checkout.
    response = client.post("/t/acme/billing/plans/agents-enterprise/subscribe/", follow=True)
    body = response.content.decode()
    flash = re.search(
        r'<div class="flash error" role="alert" data-dismissible><span>([^<]+)</span>(.*?)</div>', body, re.S
    )
    assert flash is not None
    assert flash.group(1) == "Enterprise is contracted through our sales team."
    close = '<button type="button" class="dismiss" data-dismiss aria-label="Dismiss this message"'
    assert close in flash.group(2)
    banner = re.search(r'data-testid="subscription-ended" data-dismissible>(.*?)</div>', body, re.S)
    assert banner is not None
    assert close in banner.group(1)
