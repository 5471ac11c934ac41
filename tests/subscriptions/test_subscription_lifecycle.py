"""A paid subscription's whole life, end to end: checkout converts the trial, a failed payment runs
the grace period and then suspends, paying restores, cancelling keeps access to the period end and
then expires, and subscribing again starts a new row. Stripe is the local gateway; its webhooks are
applied through the real webhook view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from billing_portal import services as billing
from billing_portal.models import CheckoutSession, Invoice
from plans import services as plan_services
from plans.factories import SubscriptionFactory, plan
from plans.models import Subscription
from plans.selectors import MSG_ENDED, MSG_OVERDUE, entitlements
from tenants.errors import BusinessError
from tenants.models import AuditEvent
from tests.subscriptions.helpers import ADMIN_EMAILS, START, customer_id, gateway, live, subscribe
from tests.subscriptions.helpers import org_mail as subjects

pytestmark = pytest.mark.django_db

PERIOD_END = datetime(2021, 4, 10, 9, 0, tzinfo=UTC)  # one calendar month after START


def transitions(tenant) -> list[str]:
    """The state-machine audit trail of the tenant's AI Agents subscriptions, oldest first."""
    ids = [
        str(pk)
        for pk in Subscription.objects.filter(tenant=tenant, product__code="ai_agents").values_list(
            "pk", flat=True
        )
    ]
    return list(
        AuditEvent.objects.filter(tenant=tenant, action__startswith="subscription.", target_id__in=ids)
        .order_by("id")
        .values_list("action", flat=True)
    )


@pytest.fixture
def paid(org, capture):
    """The org bought Growth at START through the hosted checkout."""
    return subscribe(tenant=org.tenant, actor=org.founder, plan_code="agents-growth", capture=capture)


def test_checkout_converts_the_trial_row_into_the_paid_subscription(org, capture):
    """S15, S30: Active subscription with its Next billing date; one live row per product."""
    trial = live(org.tenant)
    sub = subscribe(tenant=org.tenant, actor=org.founder, plan_code="agents-growth", capture=capture)

    assert sub.pk == trial.pk  # the same row, now paid
    assert (sub.plan.code, sub.state, sub.trial_ends_at) == ("agents-growth", "active", None)
    assert (sub.current_period_start, sub.current_period_end) == (START, PERIOD_END)
    assert sub.gateway_subscription_id.startswith("sub_local_")
    assert Subscription.objects.filter(tenant=org.tenant, product__code="ai_agents").count() == 1
    assert CheckoutSession.objects.get(tenant=org.tenant).status == "complete"
    invoice = Invoice.objects.get(tenant=org.tenant)
    assert (invoice.status, invoice.total, invoice.billing_reason) == ("paid", 19900, "subscription_create")

    ent = entitlements(tenant=org.tenant)["ai_agents"]
    assert ent.badge == "Active subscription"
    assert ent.next_billing_date == PERIOD_END == ent.period_end
    assert (ent.limits.session_limit, ent.trial_days_left, ent.refusal) == (1500, None, None)
    assert transitions(org.tenant) == [
        "subscription.trial_started",
        "subscription.converted",
        "subscription.activated",
        "subscription.plan_changed",
    ]

    # The database itself refuses a second live subscription to the product.
    with pytest.raises(IntegrityError), transaction.atomic():
        SubscriptionFactory(tenant=org.tenant, plan=plan("agents-scale"))

    # And so does the Plans section: a paid subscriber changes plans instead.
    with pytest.raises(BusinessError) as exc:
        billing.checkout_start(
            tenant=org.tenant, plan=plan("agents-scale"), actor=org.founder, success_url="/", cancel_url="/"
        )
    assert exc.value.code == "already_subscribed"


def test_contact_sales_plan_has_no_checkout(org):
    """S16"""
    with pytest.raises(BusinessError) as exc:
        billing.checkout_start(
            tenant=org.tenant,
            plan=plan("agents-enterprise"),
            actor=org.founder,
            success_url="/",
            cancel_url="/",
        )
    assert (exc.value.code, exc.value.message) == (
        "contact_sales",
        "Enterprise is contracted through our sales team.",
    )
    assert CheckoutSession.objects.filter(tenant=org.tenant).count() == 0


@pytest.mark.parametrize("pay", ["new_card", "pay_open_invoices"])
def test_failed_payment_grace_period_suspension_and_recovery(org, paid, clock, capture, pay):
    """S26, S27, S28, S30, S34. Issue 7, defect 2: "new_card" (the portal's card update) failed
    before the fix — the card Checkout saved on the subscription kept paying, and a new card paid
    nothing by itself."""
    assert settings.GRACE_PERIOD_DAYS == 7
    failed_at = START + timedelta(days=10)
    clock.move_to(failed_at)
    with capture(execute=True):
        gateway().fail_next_payment(paid.gateway_subscription_id)

    sub = Subscription.objects.get(pk=paid.pk)
    assert (sub.state, sub.payment_failed_at, sub.grace_until) == (
        "past_due",
        failed_at,
        failed_at + timedelta(days=7),
    )
    ent = entitlements(tenant=org.tenant)["ai_agents"]
    assert (ent.badge, ent.grace_until, ent.refusal, ent.active) == (
        "Payment issue",
        failed_at + timedelta(days=7),
        None,
        True,
    )
    assert subjects() == [(email, "Payment issue: your Growth payment failed") for email in ADMIN_EMAILS]

    # Six days later: still working; the sweepers (run twice) have nothing to do.
    clock.move_to(failed_at + timedelta(days=6))
    with capture(execute=True):
        assert [billing.billing_tick(now=timezone.now())["grace_expired"] for _ in range(2)] == [0, 0]
    ent = entitlements(tenant=org.tenant)["ai_agents"]
    assert (ent.state, ent.badge, ent.refusal) == ("past_due", "Payment issue", None)
    assert len(subjects()) == 2

    # Past the grace period, before the sweeper: already refused.
    ent = entitlements(tenant=org.tenant, now=failed_at + timedelta(days=7, minutes=1))["ai_agents"]
    assert (ent.refusal.code, ent.refusal.message) == ("payment_overdue", MSG_OVERDUE)

    # Eight days later, after the sweeper: suspended, refused with the spec's words.
    clock.move_to(failed_at + timedelta(days=8))
    with capture(execute=True):
        assert [billing.billing_tick(now=timezone.now())["grace_expired"] for _ in range(2)] == [1, 0]
    ent = entitlements(tenant=org.tenant)["ai_agents"]
    assert ent.state == "suspended"
    assert ent.badge == "Payment issue"
    assert ent.active is False
    assert ent.refusal.message == "Your payment is overdue and the grace period has expired."
    assert subjects() == sorted(
        [(email, "Payment issue: your Growth payment failed") for email in ADMIN_EMAILS]
        + [(email, "Your payment is overdue and the grace period has expired") for email in ADMIN_EMAILS]
    )

    # Settling the payment in the portal restores access at once.
    with capture(execute=True):
        if pay == "new_card":
            gateway().set_card(customer_id(org.tenant), failing=False, last4="4242")
        else:
            gateway().pay_open_invoices(customer_id(org.tenant))
    sub = Subscription.objects.get(pk=paid.pk)
    assert (sub.state, sub.payment_failed_at, sub.grace_until) == ("active", None, None)
    ent = entitlements(tenant=org.tenant)["ai_agents"]
    assert (ent.badge, ent.refusal, ent.active, ent.limits.session_limit) == (
        "Active subscription",
        None,
        True,
        1500,
    )
    # The failed renewal re-anchored the cycle: the next bill is a month after the failure.
    assert ent.next_billing_date == datetime(2021, 4, 20, 9, 0, tzinfo=UTC)
    assert list(
        Invoice.objects.filter(tenant=org.tenant).order_by("issued_at").values_list("status", "total")
    ) == [
        ("paid", 19900),
        ("paid", 19900),
    ]
    assert transitions(org.tenant)[-3:] == [
        "subscription.payment_failed",
        "subscription.suspended",
        "subscription.activated",
    ]
    assert len(subjects()) == 4  # nothing more on recovery


def test_paying_within_the_grace_period_ends_the_payment_issue(org, paid, clock, capture):
    """S26, S27"""
    clock.move_to(START + timedelta(days=10))
    with capture(execute=True):
        gateway().fail_next_payment(paid.gateway_subscription_id)
    clock.move_to(START + timedelta(days=12))
    with capture(execute=True):
        gateway().set_card(customer_id(org.tenant), failing=False, last4="1881")
    clock.move_to(START + timedelta(days=30))
    with capture(execute=True):
        billing.billing_tick(now=timezone.now())
    sub = Subscription.objects.get(pk=paid.pk)
    assert (sub.state, sub.grace_until) == ("active", None)
    assert entitlements(tenant=org.tenant)["ai_agents"].badge == "Active subscription"

    # A later failure is a new payment issue with its own grace period and its own email.
    second = START + timedelta(days=40)
    clock.move_to(second)
    with capture(execute=True):
        gateway().fail_next_payment(paid.gateway_subscription_id)
    sub = Subscription.objects.get(pk=paid.pk)
    assert (sub.state, sub.grace_until) == ("past_due", second + timedelta(days=7))
    assert len(subjects()) == 4


def test_cancel_at_period_end_keeps_access_then_expires(org, paid, clock, capture):
    """S29, S30, S33"""
    asked = START + timedelta(days=3)
    clock.move_to(asked)
    with capture(execute=True):
        gateway().cancel_subscription(
            subscription_id=paid.gateway_subscription_id, at_period_end=True, idempotency_key="test-cancel"
        )
    sub = Subscription.objects.get(pk=paid.pk)
    assert (sub.state, sub.canceled_at, sub.ends_at) == ("canceled", asked, PERIOD_END)
    ent = entitlements(tenant=org.tenant)["ai_agents"]
    assert (ent.badge, ent.ends_at, ent.next_billing_date) == ("Canceled subscription", PERIOD_END, None)
    assert (ent.refusal, ent.limits.session_limit) == (None, 1500)  # paid features stay until the end

    clock.move_to(PERIOD_END - timedelta(minutes=1))
    with capture(execute=True):
        billing.billing_tick(now=timezone.now())
    assert Subscription.objects.get(pk=paid.pk).state == "canceled"
    assert entitlements(tenant=org.tenant)["ai_agents"].active is True

    clock.move_to(PERIOD_END + timedelta(minutes=1))
    with capture(execute=True):
        billing.billing_tick(now=timezone.now())
        billing.billing_tick(now=timezone.now())
    sub = Subscription.objects.get(pk=paid.pk)
    assert (sub.state, sub.ended_at) == ("expired", PERIOD_END)
    ent = entitlements(tenant=org.tenant)["ai_agents"]
    assert (ent.badge, ent.active, ent.refusal.message) == ("Expired subscription", False, MSG_ENDED)
    assert ent.limits.session_limit is None
    assert transitions(org.tenant)[-2:] == ["subscription.canceled", "subscription.expired"]
    # No renewal was billed for the period after the cancellation.
    assert Invoice.objects.filter(tenant=org.tenant).count() == 1

    # Subscribing again is a new row; the ended one stays; the trial does not come back.
    clock.move_to(PERIOD_END + timedelta(days=2))
    again = subscribe(tenant=org.tenant, actor=org.founder, plan_code="agents-scale", capture=capture)
    assert again.pk != paid.pk
    assert again.gateway_subscription_id != paid.gateway_subscription_id
    rows = Subscription.objects.filter(tenant=org.tenant, product__code="ai_agents").order_by("pk")
    assert [(s.pk, s.plan.code, s.state) for s in rows] == [
        (paid.pk, "agents-growth", "expired"),
        (again.pk, "agents-scale", "active"),
    ]
    ent = entitlements(tenant=org.tenant)["ai_agents"]
    assert (ent.subscription_id, ent.badge, ent.limits.session_limit) == (
        again.pk,
        "Active subscription",
        5000,
    )
    with pytest.raises(BusinessError) as exc:
        plan_services.trial_start(tenant=org.tenant, plan=plan("agents-trial"))
    assert exc.value.code == "trial_used"


def test_canceled_subscription_expires_on_our_clock_even_if_the_gateway_is_late(org, paid, clock, capture):
    """S29: our database ends it at ends_at; the gateway's late 'deleted' webhook changes nothing more."""
    with capture(execute=True):
        gateway().cancel_subscription(
            subscription_id=paid.gateway_subscription_id, at_period_end=True, idempotency_key="test-cancel"
        )
    clock.move_to(PERIOD_END + timedelta(minutes=5))
    assert [plan_services.subscriptions_end_due(now=timezone.now()) for _ in range(2)] == [1, 0]
    sub = Subscription.objects.get(pk=paid.pk)
    assert (sub.state, sub.ended_at) == ("expired", PERIOD_END)
    trail = transitions(org.tenant)

    with capture(execute=True):
        billing.gateway_advance(now=timezone.now())  # the gateway catches up
    assert gateway().retrieve_subscription(paid.gateway_subscription_id).status == "canceled"
    sub = Subscription.objects.get(pk=paid.pk)
    assert (sub.state, sub.ended_at) == ("expired", PERIOD_END)
    assert transitions(org.tenant) == trail


def test_resume_before_the_period_end_returns_to_active(org, paid, clock, capture):
    """S29, S30: the portal's Renew undoes the cancellation."""
    with capture(execute=True):
        gateway().cancel_subscription(
            subscription_id=paid.gateway_subscription_id, at_period_end=True, idempotency_key="test-cancel"
        )
    assert entitlements(tenant=org.tenant)["ai_agents"].badge == "Canceled subscription"
    with capture(execute=True):
        gateway().resume_subscription(
            subscription_id=paid.gateway_subscription_id, idempotency_key="test-resume"
        )
    sub = Subscription.objects.get(pk=paid.pk)
    assert (sub.state, sub.canceled_at, sub.ends_at) == ("active", None, None)
    ent = entitlements(tenant=org.tenant)["ai_agents"]
    assert (ent.badge, ent.next_billing_date) == ("Active subscription", PERIOD_END)

    # It renews at the period end instead of ending.
    clock.move_to(PERIOD_END + timedelta(minutes=1))
    with capture(execute=True):
        billing.billing_tick(now=timezone.now())
    sub = Subscription.objects.get(pk=paid.pk)
    assert (sub.state, sub.current_period_start, sub.current_period_end) == (
        "active",
        PERIOD_END,
        datetime(2021, 5, 10, 9, 0, tzinfo=UTC),
    )


def test_immediate_cancellation_expires_at_once(org, paid, clock, capture):
    """S30, S33"""
    now = START + timedelta(days=4)
    clock.move_to(now)
    with capture(execute=True):
        gateway().cancel_subscription(
            subscription_id=paid.gateway_subscription_id,
            at_period_end=False,
            idempotency_key="test-cancel-now",
        )
    sub = Subscription.objects.get(pk=paid.pk)
    assert (sub.state, sub.ended_at) == ("expired", now)
    ent = entitlements(tenant=org.tenant)["ai_agents"]
    assert (ent.badge, ent.refusal.message) == ("Expired subscription", MSG_ENDED)


def test_cancel_renew_cancel_again_through_the_portal(org, paid, client_for, settings, capture):
    """S17, S29: Manage opens the portal; a second cancellation after a renewal cancels again."""
    settings.DEBUG = True  # the portal stand-in exists only with DEBUG and the local gateway
    client = client_for(org.founder)
    portal = client.post(
        reverse("billing_manage", kwargs={"slug": org.tenant.slug}), {"product": "ai_agents"}
    )["Location"]

    def portal_action(action: str) -> str:
        with capture(execute=True):
            response = client.post(portal, {"action": action, "subscription": paid.gateway_subscription_id})
        assert response.status_code == 302
        return live(org.tenant).state

    assert portal_action("cancel") == "canceled"
    assert portal_action("resume") == "active"
    assert portal_action("cancel") == "canceled"
    ent = entitlements(tenant=org.tenant)["ai_agents"]
    assert (ent.badge, ent.ends_at) == ("Canceled subscription", PERIOD_END)


def test_the_card_that_paid_at_checkout_becomes_the_customers_so_the_portal_updates_it(
    org, paid, clock, capture
):
    """S17, S27; issue 7, defect 2: after checkout the card is the customer's default for invoices and
    the subscription has none of its own, so a card added in the portal is the one that pays — and it
    pays what is open at once (invoices.pay on customer.updated), not at the next retry."""
    from billing_portal.gateway.store import LocalGatewayObject

    stored = LocalGatewayObject.objects.get(object_id=paid.gateway_subscription_id).data
    customer = LocalGatewayObject.objects.get(object_id=customer_id(org.tenant)).data
    assert stored["default_payment_method"] is None
    card = LocalGatewayObject.objects.get(
        object_id=customer["invoice_settings"]["default_payment_method"]
    ).data
    assert card["card"]["last4"] == "4242"

    clock.move_to(START + timedelta(days=10))
    with capture(execute=True):
        invoice = gateway().fail_next_payment(paid.gateway_subscription_id)
    assert live(org.tenant).state == "past_due"
    clock.move_to(START + timedelta(days=11))  # before the first retry (3 days after the failure)
    with capture(execute=True):
        gateway().set_card(customer_id(org.tenant), failing=False, last4="1881")
    assert gateway().retrieve_invoice(invoice.id).status == "paid"
    assert (live(org.tenant).state, live(org.tenant).grace_until) == ("active", None)
    assert Invoice.objects.get(gateway_invoice_id=invoice.id).status == "paid"
