"""At most one live subscription per tenant and product, at the gateway too (issue 7, defect 1).

Each Subscribe click used to open a new checkout session and every one stayed payable: two tabs,
two payments, two active subscriptions and two paid invoices at the gateway, while locally the
first row was marked replaced (and never canceled at the gateway). Now the open session for the
same plan is reused, the others are expired when one completes, and a second subscription that
completes anyway is canceled at once with a full refund, audited, and the admins are told. S15."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from billing_portal import services as billing
from billing_portal.gateway.base import GatewayError
from billing_portal.gateway.store import LocalGatewayObject
from billing_portal.models import CheckoutSession, Invoice
from plans import services as plan_services
from plans.factories import plan
from plans.models import Subscription
from tenants.models import AuditEvent
from tests.subscriptions.helpers import ADMIN_EMAILS, START, customer_id, gateway, live, org_mail

pytestmark = pytest.mark.django_db


def open_checkout(org, code: str) -> str:
    return billing.checkout_start(
        tenant=org.tenant, plan=plan(code), actor=org.founder, success_url="/ok/", cancel_url="/no/"
    )


def session_of(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def gateway_subscriptions(org) -> list[tuple[str, str]]:
    return sorted(
        (row.data["status"], row.data["items"]["data"][0]["price"]["id"])
        for row in LocalGatewayObject.objects.filter(
            object_type="subscription", customer_id=customer_id(org.tenant)
        )
    )


def test_two_tabs_on_the_same_plan_get_the_same_checkout(org, capture):
    """Failed before the fix: the second click opened a second payable session."""
    first = open_checkout(org, "agents-growth")
    second = open_checkout(org, "agents-growth")

    assert first == second
    assert CheckoutSession.objects.filter(tenant=org.tenant).count() == 1
    assert LocalGatewayObject.objects.filter(object_type="checkout.session").count() == 1


def test_a_checkout_that_expired_is_not_offered_again(org, capture):
    first = open_checkout(org, "agents-growth")
    with capture(execute=True):
        gateway().expire_checkout(session_of(first))  # 24 hours passed, or the customer left
    second = open_checkout(org, "agents-growth")

    assert second != first
    assert list(
        CheckoutSession.objects.filter(tenant=org.tenant).order_by("pk").values_list("status", flat=True)
    ) == [
        "expired",
        "open",
    ]


def test_paying_one_checkout_expires_the_tenants_other_open_ones(org, capture):
    """Failed before the fix: the Scale tab stayed payable after Growth was paid."""
    growth = session_of(open_checkout(org, "agents-growth"))
    scale = session_of(open_checkout(org, "agents-scale"))

    with capture(execute=True):
        gateway().complete_checkout(growth)

    assert gateway().retrieve_checkout_session(scale).status == "expired"
    with pytest.raises(GatewayError) as refused:
        gateway().complete_checkout(scale)
    assert refused.value.code == "checkout_session_expired"
    assert dict(CheckoutSession.objects.filter(tenant=org.tenant).values_list("plan__code", "status")) == {
        "agents-growth": "complete",
        "agents-scale": "expired",
    }
    assert gateway_subscriptions(org) == [("active", "price_local_agents_growth")]


def test_a_second_subscription_that_completes_anyway_is_canceled_and_refunded_at_once(org, capture):
    """Both tabs paid before any webhook arrived (so neither could expire the other): the second
    subscription is canceled at the gateway at once, its payment refunded in full, the change
    audited and the admins emailed. Failed before the fix: two active subscriptions and two paid
    invoices at the gateway, the first marked replaced here."""
    growth = session_of(open_checkout(org, "agents-growth"))
    scale = session_of(open_checkout(org, "agents-scale"))
    with capture(execute=False) as deliveries:
        first = gateway().complete_checkout(growth)
        second = gateway().complete_checkout(scale)
    mail.outbox.clear()
    with capture(execute=True):
        for deliver in deliveries:
            deliver()

    assert gateway_subscriptions(org) == [
        ("active", "price_local_agents_growth"),
        ("canceled", "price_local_agents_scale"),
    ]
    kept = live(org.tenant)
    assert (kept.plan.code, kept.state, kept.gateway_subscription_id) == ("agents-growth", "active", first.id)
    assert Subscription.objects.filter(tenant=org.tenant, gateway_subscription_id=second.id).count() == 0
    refunded = LocalGatewayObject.objects.get(
        object_type="charge", data__amount=plan("agents-scale").price_amount
    ).data
    assert (refunded["refunded"], refunded["amount_refunded"]) == (True, plan("agents-scale").price_amount)
    audit = AuditEvent.objects.get(tenant=org.tenant, action="subscription.duplicate_canceled")
    assert audit.data == {
        "subscription": second.id,
        "kept": first.id,
        "refunded": plan("agents-scale").price_amount,
        "returned_to_balance": 0,
        "currency": "usd",
    }
    assert sorted((m.to[0], m.subject) for m in mail.outbox if "canceled and refunded" in m.subject) == [
        (email, "A second AI Agents subscription was canceled and refunded") for email in ADMIN_EMAILS
    ]
    # Its invoice is mirrored as the gateway has it (paid, then refunded).
    assert Invoice.objects.filter(tenant=org.tenant, gateway_subscription_id=second.id).count() == 1


def _both_paid_before_any_webhook(org, capture):
    growth = session_of(open_checkout(org, "agents-growth"))
    scale = session_of(open_checkout(org, "agents-scale"))
    with capture(execute=False) as deliveries:
        gateway().complete_checkout(growth)
        gateway().complete_checkout(scale)
    return deliveries


def _retry_failed_events(capture) -> None:
    """What the sweeper does: every failed event is processed again."""
    from billing_portal import webhooks
    from billing_portal.models import WebhookEvent

    failed = list(WebhookEvent.objects.filter(status="failed").values_list("pk", flat=True))
    assert failed, "the first pass was meant to fail"
    with capture(execute=True):
        for pk in failed:
            webhooks.webhook_event_process(event_pk=pk)


def _duplicate_charge() -> dict:
    return LocalGatewayObject.objects.get(
        object_type="charge", data__amount=plan("agents-scale").price_amount
    ).data


def test_a_duplicate_whose_refund_fails_once_is_refunded_and_canceled_by_the_retry(org, capture, monkeypatch):
    """Refund first, cancel last: a refund that fails leaves the duplicate running, so the event's
    retry finds it again and finishes (before, the cancel had already reached the gateway, and the
    retry no longer saw a duplicate to refund)."""
    deliveries = _both_paid_before_any_webhook(org, capture)
    real = type(gateway()).refund_invoice

    def unreachable(self, invoice_id, *, idempotency_key):
        raise GatewayError("The payment provider could not be reached.", code="gateway_unavailable")

    real_cancel = type(gateway()).cancel_subscription
    cancels: list[str] = []

    def cancel(self, **kwargs):
        cancels.append(kwargs["subscription_id"])
        return real_cancel(self, **kwargs)

    monkeypatch.setattr(type(gateway()), "refund_invoice", unreachable)
    monkeypatch.setattr(type(gateway()), "cancel_subscription", cancel)
    with capture(execute=True):
        for deliver in deliveries:
            deliver()
    # Nothing was canceled at the gateway (Stripe, unlike the stand-in, would keep a cancel that our
    # rolled-back transaction made).
    assert cancels == []
    assert ("active", "price_local_agents_scale") in gateway_subscriptions(org)
    monkeypatch.setattr(type(gateway()), "refund_invoice", real)

    _retry_failed_events(capture)

    assert gateway_subscriptions(org) == [
        ("active", "price_local_agents_growth"),
        ("canceled", "price_local_agents_scale"),
    ]
    charge = _duplicate_charge()
    assert (charge["refunded"], charge["amount_refunded"]) == (True, plan("agents-scale").price_amount)


def _deliver_with_the_cancel_failing(deliveries, capture, monkeypatch) -> None:
    """Deliver the webhooks while the gateway cannot cancel the duplicate (what it did before the
    cancel stays done at Stripe; our transaction, and the local stand-in's, roll back)."""
    real_cancel = type(gateway()).cancel_subscription

    def unreachable(self, **kwargs):
        raise GatewayError("The payment provider could not be reached.", code="gateway_unavailable")

    monkeypatch.setattr(type(gateway()), "cancel_subscription", unreachable)
    with capture(execute=True):
        for deliver in deliveries:
            deliver()
    monkeypatch.setattr(type(gateway()), "cancel_subscription", real_cancel)


def test_a_refund_the_gateway_kept_from_a_failed_try_is_not_made_twice(org, capture, monkeypatch):
    """The refund reached Stripe, then the cancel failed and our transaction rolled back (Stripe
    keeps the refund): the retry sees the invoice refunded and refunds nothing more."""
    deliveries = _both_paid_before_any_webhook(org, capture)
    _deliver_with_the_cancel_failing(deliveries, capture, monkeypatch)
    # The local stand-in rolled back with us; Stripe would have kept the refund: make it again, as Stripe has it.
    [duplicate_invoice] = [
        inv
        for inv in gateway().list_invoices(customer_id=customer_id(org.tenant))
        if inv.amount_paid == plan("agents-scale").price_amount
    ]
    gateway().refund_invoice(duplicate_invoice.id, idempotency_key="kept-by-stripe")
    real_refund = type(gateway()).refund_invoice
    refunds: list[str] = []

    def refund(self, invoice_id, *, idempotency_key):
        refunds.append(invoice_id)
        return real_refund(self, invoice_id, idempotency_key=idempotency_key)

    monkeypatch.setattr(type(gateway()), "refund_invoice", refund)

    _retry_failed_events(capture)

    assert refunds == []  # already refunded at the gateway: not asked again

    charge = _duplicate_charge()
    assert (charge["refunded"], charge["amount_refunded"]) == (True, plan("agents-scale").price_amount)
    assert ("canceled", "price_local_agents_scale") in gateway_subscriptions(org)
    audit = AuditEvent.objects.get(tenant=org.tenant, action="subscription.duplicate_canceled")
    assert audit.data["refunded"] == plan("agents-scale").price_amount


def test_two_checkouts_paid_at_once_after_the_trial_expired_refund_the_duplicate_once(org, clock, capture):
    """S15. The trial had expired, so the kept subscription is a new row, started when its webhook
    was applied, a minute after both were paid: the duplicate's invoice is older than the kept row.
    Failed before the fix: that invoice was skipped (refunded 0, the charge not refunded, both
    invoices Paid) while the email said its payment had been refunded in full."""
    clock.move_to(START + timedelta(days=40))
    with capture(execute=True):
        assert plan_services.trials_expire_due(now=timezone.now()) >= 1
    starter = session_of(open_checkout(org, "agents-starter"))
    growth = session_of(open_checkout(org, "agents-growth"))
    with capture(execute=False) as deliveries:
        duplicate = gateway().complete_checkout(starter)
        first = gateway().complete_checkout(growth)
    clock.move_to(START + timedelta(days=40, minutes=1))  # the webhooks arrive a little later
    mail.outbox.clear()
    with capture(execute=True):
        for deliver in reversed(deliveries):  # Growth's events first: Growth is kept
            deliver()
        for deliver in deliveries:  # a redelivery of every event refunds nothing more
            deliver()

    kept = live(org.tenant)
    assert (kept.plan.code, kept.gateway_subscription_id) == ("agents-growth", first.id)
    assert (
        kept.started_at
        > gateway()
        .retrieve_invoice(Invoice.objects.get(gateway_subscription_id=duplicate.id).gateway_invoice_id)
        .created
    )
    price = plan("agents-starter").price_amount
    charge = LocalGatewayObject.objects.get(object_type="charge", data__amount=price).data
    assert (charge["refunded"], charge["amount_refunded"]) == (True, price)
    assert LocalGatewayObject.objects.filter(object_type="refund", data__charge=charge["id"]).count() == 1
    assert Invoice.objects.get(gateway_subscription_id=duplicate.id).amount_refunded == price
    audit = AuditEvent.objects.get(tenant=org.tenant, action="subscription.duplicate_canceled")
    assert (audit.data["subscription"], audit.data["refunded"]) == (duplicate.id, price)
    assert org_mail("A second AI Agents subscription") == [
        (email, "A second AI Agents subscription was canceled and refunded") for email in ADMIN_EMAILS
    ]


# --- a duplicate paid partly or wholly from the customer's credit balance ------------------------------


def _balance(org) -> int:
    return LocalGatewayObject.objects.get(object_id=customer_id(org.tenant)).data["balance"]


def _credit_then_duplicate(org, capture, *, duplicate_code: str, credit: int):
    """Growth and another plan's checkouts both open; Growth is paid and a goodwill credit note puts
    `credit` on the customer's balance; then the other checkout is paid too, its invoice finalized
    with that credit applied. Returns the undelivered events, Growth and the duplicate."""
    growth = session_of(open_checkout(org, "agents-growth"))
    other = session_of(open_checkout(org, duplicate_code))
    with capture(execute=False) as deliveries:
        first = gateway().complete_checkout(growth)
        gateway().issue_credit_note(first.latest_invoice_id, amount=credit, memo="Goodwill")
        second = gateway().complete_checkout(other)
    assert _balance(org) == min(plan(duplicate_code).price_amount - credit, 0)
    return deliveries, first, second


def _duplicate_invoice(second) -> Invoice:
    return Invoice.objects.get(gateway_subscription_id=second.id)


def _balance_notes(second) -> list[tuple[int, str | None]]:
    """(amount, reason) of the credit notes on the duplicate's invoice."""
    invoice_id = gateway().retrieve_subscription(second.id).latest_invoice_id
    return [
        (row.data["amount"], row.data["reason"])
        for row in LocalGatewayObject.objects.filter(object_type="credit_note", data__invoice=invoice_id)
    ]


def test_a_duplicate_paid_partly_from_the_credit_balance_gives_that_part_back_to_the_balance(org, capture):
    """S15. Scale's invoice ($499.00) was paid $449.00 by the card and $50.00 from the customer's
    credit balance. A refund returns only what the charge collected
    (https://docs.stripe.com/api/refunds/create), so the $50.00 goes back to the balance by a credit
    note with credit_amount (https://docs.stripe.com/api/credit_notes/create); the audit and the
    admins' email say how much went where, and a redelivery of every event gives nothing twice.
    Failed before the fix: only $449.00 came back and the $50.00 of credit was lost, while the email
    said the payments were refunded in full."""
    deliveries, first, second = _credit_then_duplicate(
        org, capture, duplicate_code="agents-scale", credit=5000
    )
    price = plan("agents-scale").price_amount
    assert _balance(org) == 0  # the credit paid part of Scale's invoice
    mail.outbox.clear()
    with capture(execute=True):
        for deliver in deliveries:
            deliver()
        for deliver in deliveries:  # every event again: nothing more is given back
            deliver()

    assert gateway_subscriptions(org) == [
        ("active", "price_local_agents_growth"),
        ("canceled", "price_local_agents_scale"),
    ]
    charge = LocalGatewayObject.objects.get(object_type="charge", data__amount=price - 5000).data
    assert (charge["refunded"], charge["amount_refunded"]) == (True, price - 5000)
    assert _balance(org) == -5000  # the credit is back, once, for the next invoices
    assert _balance_notes(second) == [(5000, "duplicate")]
    assert [
        (row.data["type"], row.data["amount"], row.data["ending_balance"])
        for row in LocalGatewayObject.objects.filter(object_type="customer_balance_transaction").order_by(
            "id"
        )
    ] == [("credit_note", -5000, -5000), ("applied_to_invoice", 5000, 0), ("credit_note", -5000, -5000)]
    audit = AuditEvent.objects.get(tenant=org.tenant, action="subscription.duplicate_canceled")
    assert audit.data == {
        "subscription": second.id,
        "kept": first.id,
        "refunded": price - 5000,
        "returned_to_balance": 5000,
        "currency": "usd",
    }
    mirrored = _duplicate_invoice(second)
    assert (mirrored.total, mirrored.amount_paid, mirrored.credit_applied) == (price, price - 5000, 5000)
    assert (mirrored.amount_refunded, mirrored.amount_credited) == (price - 5000, 5000)
    sent = [m for m in mail.outbox if "canceled and refunded" in m.subject]
    assert sorted((m.to[0], m.subject) for m in sent) == [
        (email, "A second AI Agents subscription was canceled and refunded") for email in ADMIN_EMAILS
    ]
    for message in sent:
        assert "$449.00 refunded to the card" in message.body
        assert (
            "$50.00, which had been paid from your credit balance, returned to that balance" in message.body
        )
        assert "refunded its payments in full" not in message.body
        html = message.alternatives[0][0]
        assert "<strong>$449.00</strong> refunded to the card" in html
        assert "<strong>$50.00</strong>, which had been paid from your credit balance" in html


def test_a_duplicate_paid_wholly_from_the_credit_balance_refunds_nothing_and_returns_it_all_to_the_balance(
    org, capture
):
    """S15. Starter's invoice ($49.00) was paid from a $50.00 credit: no charge to refund, and the
    whole $49.00 goes back to the balance; the email does not claim a card refund."""
    deliveries, _first, second = _credit_then_duplicate(
        org, capture, duplicate_code="agents-starter", credit=5000
    )
    price = plan("agents-starter").price_amount
    assert _balance(org) == price - 5000 == -100
    mail.outbox.clear()
    with capture(execute=True):
        for deliver in deliveries:
            deliver()

    assert ("canceled", "price_local_agents_starter") in gateway_subscriptions(org)
    assert LocalGatewayObject.objects.filter(object_type="refund").count() == 0
    assert _balance(org) == -5000
    assert _balance_notes(second) == [(price, "duplicate")]
    audit = AuditEvent.objects.get(tenant=org.tenant, action="subscription.duplicate_canceled")
    assert (audit.data["refunded"], audit.data["returned_to_balance"]) == (0, price)
    [body] = {m.body for m in mail.outbox if "A second AI Agents subscription" in m.subject}
    assert "It had been paid from your credit balance, not charged to the card: $49.00 was returned" in body
    assert "5 to 10 business days" not in body


def test_a_balance_credit_the_gateway_kept_from_a_failed_try_is_not_given_twice(org, capture, monkeypatch):
    """The refund and the credit note reached Stripe, then the cancel failed and our transaction
    rolled back (Stripe keeps both): the event's retry reads the credit back from the gateway and
    asks for no second one, so the balance is credited once."""
    deliveries, _first, second = _credit_then_duplicate(
        org, capture, duplicate_code="agents-scale", credit=5000
    )
    _deliver_with_the_cancel_failing(deliveries, capture, monkeypatch)
    assert _balance_notes(second) == []  # the stand-in rolled back with us
    # Stripe would have kept them: make them again, as Stripe has them.
    invoice_id = gateway().retrieve_subscription(second.id).latest_invoice_id
    gateway().refund_invoice(invoice_id, idempotency_key="refund-kept-by-stripe")
    gateway().credit_invoice_to_balance(
        invoice_id,
        amount=5000,
        reason="duplicate",
        memo="",
        metadata={},
        idempotency_key="credit-kept-by-stripe",
    )
    real_credit = type(gateway()).credit_invoice_to_balance
    credits: list[str] = []

    def credit(self, invoice_id, **kwargs):
        credits.append(invoice_id)
        return real_credit(self, invoice_id, **kwargs)

    monkeypatch.setattr(type(gateway()), "credit_invoice_to_balance", credit)

    _retry_failed_events(capture)

    assert credits == []  # already credited at the gateway: not asked again
    assert ("canceled", "price_local_agents_scale") in gateway_subscriptions(org)
    assert _balance(org) == -5000
    assert _balance_notes(second) == [(5000, "duplicate")]
    audit = AuditEvent.objects.get(tenant=org.tenant, action="subscription.duplicate_canceled")
    assert audit.data["returned_to_balance"] == 5000
