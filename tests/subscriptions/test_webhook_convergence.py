"""Gateway facts converge: applying the same subscription object again changes nothing, and an old
event delivered after a newer one still ends in the state the gateway has now, because the handlers
re-read the object (billing_portal.services.subscription_sync) instead of trusting the event body."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db.models import Q

from billing_portal.models import WebhookEvent
from billing_portal.services import subscription_facts, subscription_sync
from plans import services as plan_services
from plans.models import Subscription
from plans.selectors import entitlements
from tenants.models import AuditEvent, Notification
from tests.subscriptions.helpers import (
    ADMIN_EMAILS,
    START,
    assert_webhooks_applied,
    customer_id,
    gateway,
    live,
    org_mail,
    subscribe,
    subscription_rows,
)

pytestmark = pytest.mark.django_db


def customer_events(tenant) -> Q:
    return Q(payload__data__object__customer=customer_id(tenant))


def transition_count(tenant) -> int:
    return AuditEvent.objects.filter(tenant=tenant, action__startswith="subscription.").count()


@pytest.fixture
def paid(org, capture):
    return subscribe(tenant=org.tenant, actor=org.founder, plan_code="agents-growth", capture=capture)


def payloads(callbacks) -> list[dict]:
    """The events the local gateway queued for delivery (each callback sends one signed payload)."""
    return [json.loads(cb.args[0]) for cb in callbacks]


def test_applying_the_same_gateway_object_three_times_gives_the_same_state(org, paid, clock):
    """S29: a redelivered cancellation is applied once."""
    # The gateway changes; its webhooks are not delivered (nothing runs the on-commit queue here).
    gateway().cancel_subscription(
        subscription_id=paid.gateway_subscription_id, at_period_end=True, idempotency_key="test-cancel"
    )
    gw = gateway().retrieve_subscription(paid.gateway_subscription_id)
    assert gw.cancel_at_period_end is True

    plan_services.subscription_apply_facts(tenant=org.tenant, gw=subscription_facts(gw))
    snapshot, transitions = subscription_rows(org.tenant), transition_count(org.tenant)
    assert live(org.tenant).state == "canceled"

    for minutes in (1, 2):  # later redeliveries of the same object
        clock.move_to(START + timedelta(minutes=minutes))
        plan_services.subscription_apply_facts(tenant=org.tenant, gw=subscription_facts(gw))
        assert subscription_rows(org.tenant) == snapshot
        assert transition_count(org.tenant) == transitions


def test_a_repeated_payment_failure_keeps_its_grace_period_and_sends_one_email(org, paid, clock, capture):
    """S26: the grace period starts at the first failure seen, whatever the redeliveries' times."""
    failed_at = START + timedelta(days=10)
    clock.move_to(failed_at)
    gateway().fail_next_payment(paid.gateway_subscription_id)  # not delivered
    gw = gateway().retrieve_subscription(paid.gateway_subscription_id)
    assert gw.status == "past_due"

    with capture(execute=True):
        for hours in (0, 5, 30):
            clock.move_to(failed_at + timedelta(hours=hours))
            plan_services.subscription_apply_facts(tenant=org.tenant, gw=subscription_facts(gw))
    sub = live(org.tenant)
    assert (sub.state, sub.payment_failed_at, sub.grace_until) == (
        "past_due",
        failed_at,
        failed_at + timedelta(days=7),
    )
    assert AuditEvent.objects.filter(tenant=org.tenant, action="subscription.payment_failed").count() == 1
    assert Notification.objects.filter(tenant=org.tenant, template="payment_failed").count() == 2  # 2 admins
    assert org_mail() == [(email, "Payment issue: your Growth payment failed") for email in ADMIN_EMAILS]


def test_an_old_event_after_a_newer_one_ends_in_the_gateways_current_state(org, paid, clock, capture):
    """S29, S30: cancel then resume at the gateway; the webhooks arrive newest first."""
    clock.move_to(START + timedelta(days=2))
    with capture(execute=False) as queued:
        gateway().cancel_subscription(
            subscription_id=paid.gateway_subscription_id, at_period_end=True, idempotency_key="test-cancel"
        )
        gateway().resume_subscription(
            subscription_id=paid.gateway_subscription_id, idempotency_key="test-resume"
        )
    events = payloads(queued)
    assert [(e["type"], e["data"]["object"]["cancel_at_period_end"]) for e in events] == [
        ("customer.subscription.updated", True),  # the old fact: canceled at period end
        ("customer.subscription.updated", False),  # the newer fact: resumed
    ]
    trail = transition_count(org.tenant)

    with capture(execute=True):
        for deliver in reversed(queued):  # newest first, then the stale one
            deliver()
    assert_webhooks_applied(org.tenant)
    assert (
        WebhookEvent.objects.filter(event_id__in=[e["id"] for e in events], status="processed").count() == 2
    )
    sub = live(org.tenant)
    assert (sub.state, sub.canceled_at, sub.ends_at) == ("active", None, None)
    assert entitlements(tenant=org.tenant)["ai_agents"].badge == "Active subscription"
    assert transition_count(org.tenant) == trail  # it never looked canceled

    # A stale trigger for the same subscription (a retry, reconciliation) re-reads and agrees.
    snapshot = subscription_rows(org.tenant)
    assert subscription_sync(gateway(), paid.gateway_subscription_id) == org.tenant
    assert subscription_rows(org.tenant) == snapshot

    # Redelivering every event (same ids) is recognised as duplicates and applies nothing.
    recorded = list(WebhookEvent.objects.filter(customer_events(org.tenant)).order_by("pk").values())
    with capture(execute=True):
        for deliver in queued:
            deliver()
    assert list(WebhookEvent.objects.filter(customer_events(org.tenant)).order_by("pk").values()) == recorded


def test_a_stale_payment_failure_after_the_payment_does_not_reopen_the_issue(org, paid, clock, capture):
    """S26, S27: failure, then payment; the failure's events are delivered last."""
    clock.move_to(START + timedelta(days=10))
    with capture(execute=False) as failure:
        gateway().fail_next_payment(paid.gateway_subscription_id)
    clock.move_to(START + timedelta(days=11))
    with capture(execute=False) as payment:
        gateway().set_card(customer_id(org.tenant), failing=False, last4="4242")
    assert "invoice.payment_failed" in [e["type"] for e in payloads(failure)]
    assert [
        e["data"]["object"]["status"] for e in payloads(failure) if e["type"].startswith("customer.")
    ] == ["past_due"]

    with capture(execute=True):
        for deliver in [*payment, *failure]:
            deliver()
    assert_webhooks_applied(org.tenant)
    sub = live(org.tenant)
    assert (sub.state, sub.payment_failed_at, sub.grace_until) == ("active", None, None)
    assert org_mail() == []  # no payment-issue email for an issue that was already settled
    assert Subscription.objects.filter(tenant=org.tenant, product__code="ai_agents").count() == 1


def test_applying_an_old_object_directly_would_regress(org, paid, capture):
    """The reason the handlers re-read: the old object itself says the opposite of the gateway now."""
    old = gateway().retrieve_subscription(paid.gateway_subscription_id)
    with capture(execute=True):
        gateway().cancel_subscription(
            subscription_id=paid.gateway_subscription_id, at_period_end=True, idempotency_key="test-cancel"
        )
    assert live(org.tenant).state == "canceled"
    plan_services.subscription_apply_facts(tenant=org.tenant, gw=subscription_facts(old))
    assert live(org.tenant).state == "active"  # what replaying a stale body would do
    subscription_sync(gateway(), paid.gateway_subscription_id)
    assert live(org.tenant).state == "canceled"  # re-reading puts it right


def test_events_delivered_late_out_of_order_and_twice_end_in_the_state_the_gateway_has(
    org, clock, capture, settings
):
    """S15, S30: with the stand-in's LATE delivery (newest first, each twice, at the next clock tick)
    a checkout and a cancellation still end as Active then Canceled, each event applied once."""
    from billing_portal.gateway import factory
    from billing_portal.models import BillingCustomer
    from billing_portal.services import checkout_start
    from plans.factories import plan

    settings.LOCAL_GATEWAY_DELIVERY = "late"
    factory.reset()
    try:
        url = checkout_start(
            tenant=org.tenant, plan=plan("agents-growth"), actor=org.founder, success_url="/", cancel_url="/"
        )
        with capture(execute=True):
            sub_id = gateway().complete_checkout(url.rstrip("/").rsplit("/", 1)[-1]).id
        assert live(org.tenant).plan.code == "agents-trial"  # nothing delivered yet
        with capture(execute=True):
            gateway().cancel_subscription(subscription_id=sub_id, at_period_end=True, idempotency_key="k")
        with capture(execute=True):
            gateway().advance(START)
    finally:
        factory.reset()

    sub = live(org.tenant)
    assert (sub.plan.code, sub.state, sub.gateway_subscription_id) == ("agents-growth", "canceled", sub_id)
    customer = BillingCustomer.objects.get(tenant=org.tenant).customer_id
    events = WebhookEvent.objects.filter(payload__data__object__customer=customer)
    assert sorted(events.values_list("type", flat=True)) == [
        "checkout.session.completed",
        "customer.subscription.created",
        "customer.subscription.updated",
        "invoice.finalized",
        "invoice.paid",
    ]
    assert set(events.values_list("status", flat=True)) == {"processed"}
    assert AuditEvent.objects.filter(tenant=org.tenant, action="subscription.canceled").count() == 1
