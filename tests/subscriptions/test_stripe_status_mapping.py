"""Every status a Stripe subscription can have maps explicitly to the plans app's PaymentStatus and
then to our state — and a paused or unpaid subscription never grants access (S28, S34).
https://docs.stripe.com/billing/subscriptions/overview#subscription-statuses"""

from __future__ import annotations

from dataclasses import replace

import pytest

from billing_portal.services import STRIPE_STATUS, subscription_facts
from plans import services as plan_services
from plans.payments import PaymentStatus
from plans.selectors import entitlements
from tests.subscriptions.helpers import gateway, live, subscribe

pytestmark = pytest.mark.django_db

# Stripe's status -> (our payment status, our subscription state, may new work start?)
EXPECTED = {
    "incomplete": (PaymentStatus.PENDING, "active", True),  # nothing applied: the paid row stays as it was
    "incomplete_expired": (PaymentStatus.ENDED, "expired", False),
    "trialing": (PaymentStatus.PAID, "active", True),
    "active": (PaymentStatus.PAID, "active", True),
    "past_due": (PaymentStatus.PAYMENT_FAILED, "past_due", True),  # the grace period runs (S26)
    "unpaid": (PaymentStatus.PAYMENT_OVERDUE, "suspended", False),
    "paused": (PaymentStatus.PAUSED, "suspended", False),
    "canceled": (PaymentStatus.ENDED, "expired", False),
}


def test_every_stripe_status_has_an_explicit_mapping():
    assert set(STRIPE_STATUS) == set(EXPECTED)
    assert {status: STRIPE_STATUS[status] for status in EXPECTED} == {
        status: expected[0] for status, expected in EXPECTED.items()
    }


def test_an_unknown_status_is_an_error_not_active(org, capture):
    paid = subscribe(tenant=org.tenant, actor=org.founder, plan_code="agents-growth", capture=capture)
    gw = gateway().retrieve_subscription(paid.gateway_subscription_id)
    with pytest.raises(ValueError, match="unknown subscription status 'suspended_by_aliens'"):
        subscription_facts(replace(gw, status="suspended_by_aliens"))


@pytest.mark.parametrize("status", list(EXPECTED))
def test_each_status_decides_state_and_access(org, capture, status):
    """S26, S28, S33, S34: what each status means for the card and for admission."""
    paid = subscribe(tenant=org.tenant, actor=org.founder, plan_code="agents-growth", capture=capture)
    gw = replace(gateway().retrieve_subscription(paid.gateway_subscription_id), status=status)
    payment_status, state, allowed = EXPECTED[status]

    facts = subscription_facts(gw)
    assert facts.status == payment_status
    plan_services.subscription_apply_facts(tenant=org.tenant, gw=facts)

    paid.refresh_from_db()
    assert paid.state == state
    ent = entitlements(tenant=org.tenant)["ai_agents"]
    assert (ent.refusal is None) == allowed
    if status in ("unpaid", "paused"):
        assert ent.refusal.code == "payment_overdue"
        assert ent.refusal.message == "Your payment is overdue and the grace period has expired."
        assert ent.badge == "Payment issue"
    if state == "active":
        assert live(org.tenant).pk == paid.pk
