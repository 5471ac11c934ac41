"""Activity reads one row per action, with the right verb: a trial's first upgrade is "upgraded",
not also "reactivated" and "changed the plan"; a resume is "resumed", not also "reactivated". The
events each step writes stay in the audit log (it is append-only): the page folds them."""

from __future__ import annotations

import pytest

from billing_portal import services as billing
from tenants.audit import sentence
from tenants.models import AuditEvent
from tenants.selectors import ActivityFilter, activity
from tests.subscriptions.helpers import live, subscribe

pytestmark = pytest.mark.django_db


def subscription_rows(tenant) -> list[str]:
    return [
        sentence(event)
        for event in activity(tenant=tenant, filters=ActivityFilter()).select_related("actor_user")
        if event.action.startswith("subscription.") and event.target_label == "Growth"
    ]


def test_a_trials_first_upgrade_reads_as_one_upgrade_not_a_reactivation(org, capture):
    sub = subscribe(tenant=org.tenant, actor=org.founder, plan_code="agents-growth", capture=capture)

    written = list(
        AuditEvent.objects.filter(tenant=org.tenant, target_type="subscription", target_id=str(sub.pk))
        .exclude(action="subscription.trial_started")
        .order_by("id")
        .values_list("action", "data")
    )
    assert [action for action, _ in written] == [
        "subscription.converted",
        "subscription.activated",
        "subscription.plan_changed",
    ]  # all kept in the log
    assert written[1][1] == {"from": "trialing", "to": "active"}
    assert subscription_rows(org.tenant) == ["System upgraded the subscription to Growth"]

    with capture(execute=True):
        billing.subscription_cancel(tenant=org.tenant, product=sub.product, actor=org.founder)
        billing.subscription_resume(tenant=org.tenant, product=sub.product, actor=org.founder)

    assert live(org.tenant).state == "active"
    rows = subscription_rows(org.tenant)
    founder = org.founder.display_name
    assert rows == [
        f"{founder} resumed Growth: it renews again",
        f"{founder} canceled Growth: it stays active until the end of the period",
        "System upgraded the subscription to Growth",
    ]
    assert AuditEvent.objects.filter(
        tenant=org.tenant, action="subscription.activated", data__from="canceled"
    ).exists()  # written, folded into the resume


@pytest.mark.parametrize(
    ("was", "text"),
    [
        ("trialing", "Growth became active"),
        ("past_due", "System reactivated Growth"),
        ("suspended", "System reactivated Growth"),
        ("canceled", "System resumed Growth: it renews again"),
    ],
)
def test_activation_is_worded_by_the_state_it_left(org, was, text):
    event = AuditEvent(
        tenant=org.tenant,
        actor_type="system",
        actor_label="system",
        action="subscription.activated",
        target_label="Growth",
        data={"from": was, "to": "active"},
    )
    assert sentence(event) == text
