"""The Stripe gateway against a real Stripe account in test mode, with test clocks: the behaviours
the local stand-in models (README.md beside it), checked where they are decided.

Optional: skipped unless STRIPE_TEST_SECRET_KEY holds a test-mode secret key (sk_test_…). It needs
the internet, creates its own products, prices and a customer on a test clock in that account, and
deletes the test clock (with everything attached to it) at the end. Run it with

    STRIPE_TEST_SECRET_KEY=sk_test_… make test PYTEST_ARGS="-m stripe_test_mode"

Test clocks: https://docs.stripe.com/billing/testing/test-clocks. Test cards:
https://docs.stripe.com/testing#cards (pm_card_visa pays, pm_card_chargeCustomerFail attaches and
then declines every charge, pm_card_authenticationRequired asks for 3D Secure on every payment).

No database: only the gateway and Stripe."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import stripe

from billing_portal.gateway.base import GatewayError, PortalSettings
from billing_portal.gateway.stripe_gateway import PINNED_API_VERSION, StripeGateway

KEY = os.environ.get("STRIPE_TEST_SECRET_KEY", "")

pytestmark = [
    pytest.mark.stripe_test_mode,
    pytest.mark.skipif(
        not KEY.startswith(("sk_test_", "rk_test_")),
        reason="set STRIPE_TEST_SECRET_KEY to a Stripe test-mode key to run the test-mode suite",
    ),
]


@dataclass
class Account:
    client: stripe.StripeClient
    gateway: StripeGateway
    clock_id: str
    customer_id: str
    starter: str  # price ids
    growth: str
    run: str  # a prefix for this run's idempotency keys

    def key(self, name: str) -> str:
        return f"{self.run}:{name}"

    def now(self) -> datetime:
        frozen = self.client.v1.test_helpers.test_clocks.retrieve(self.clock_id).frozen_time
        return datetime.fromtimestamp(frozen, tz=UTC)

    def advance(self, to: datetime) -> None:
        """Move the test clock and wait until Stripe has run everything that fell due."""
        self.client.v1.test_helpers.test_clocks.advance(
            self.clock_id, params={"frozen_time": int(to.timestamp())}
        )
        for _ in range(120):
            if self.client.v1.test_helpers.test_clocks.retrieve(self.clock_id).status == "ready":
                return
            time.sleep(1)
        raise AssertionError("the test clock did not finish advancing in two minutes")

    def card(self, test_card: str) -> str:
        """Attach one of Stripe's test cards to the customer; returns the new payment method's id."""
        return self.client.v1.payment_methods.attach(test_card, params={"customer": self.customer_id}).id

    def subscribe(self, price: str, card: str) -> str:
        """A subscription paid by `card`, saved on the subscription, as Checkout saves it."""
        return self.client.v1.subscriptions.create(
            params={
                "customer": self.customer_id,
                "items": [{"price": price}],
                "default_payment_method": card,
                "payment_behavior": "error_if_incomplete",
            }
        ).id


@pytest.fixture(scope="module")
def account() -> Iterator[Account]:
    client = stripe.StripeClient(KEY, stripe_version=PINNED_API_VERSION)
    run = f"allowance-test-mode-{uuid.uuid4().hex[:10]}"
    start = datetime.now(tz=UTC).replace(microsecond=0)
    clock = client.v1.test_helpers.test_clocks.create(
        params={"frozen_time": int(start.timestamp()), "name": run}
    )
    product = client.v1.products.create(params={"name": f"Agents ({run})"})
    prices = {
        name: client.v1.prices.create(
            params={
                "product": product.id,
                "unit_amount": amount,
                "currency": "usd",
                "recurring": {"interval": "month"},
            }
        ).id
        for name, amount in (("starter", 4900), ("growth", 19900))
    }
    customer = client.v1.customers.create(
        params={"email": "admin@acme.test", "name": "Acme", "test_clock": clock.id, "metadata": {"run": run}}
    )
    try:
        yield Account(
            client=client,
            gateway=StripeGateway(api_key=KEY, webhook_secret="whsec_unused_here"),
            clock_id=clock.id,
            customer_id=customer.id,
            starter=prices["starter"],
            growth=prices["growth"],
            run=run,
        )
    finally:
        client.v1.test_helpers.test_clocks.delete(clock.id)  # and the customer, its subscriptions
        client.v1.products.update(product.id, params={"active": False})


def test_the_card_saved_on_the_subscription_moves_to_the_customer(account: Account) -> None:
    """Defect 2: afterwards the customer's default is the card that pays."""
    sub_id = account.subscribe(account.starter, account.card("pm_card_visa"))
    before = account.gateway.retrieve_subscription(sub_id)
    assert before.default_payment_method

    after = account.gateway.adopt_subscription_card(
        subscription_id=sub_id, idempotency_key=account.key("adopt")
    )

    assert after.default_payment_method == ""
    assert (
        account.gateway.retrieve_customer(account.customer_id).default_payment_method
        == before.default_payment_method
    )
    account.gateway.cancel_subscription(
        subscription_id=sub_id, at_period_end=False, idempotency_key=account.key("end-1")
    )


def test_an_unpaid_upgrade_waits_in_pending_update_and_keeps_the_price(account: Account) -> None:
    """Defect 3: payment_behavior=pending_if_incomplete on a card that declines."""
    sub_id = account.subscribe(account.starter, account.card("pm_card_visa"))
    account.client.v1.subscriptions.update(
        sub_id, params={"default_payment_method": account.card("pm_card_chargeCustomerFail")}
    )

    waiting = account.gateway.change_subscription_price(
        subscription_id=sub_id,
        price_id=account.growth,
        idempotency_key=account.key("upgrade"),
        payment_behavior="pending_if_incomplete",
    )

    assert (waiting.status, waiting.price_id) == ("active", account.starter)
    assert waiting.pending_update is not None
    assert waiting.pending_update.price_id == account.growth
    assert waiting.pending_update.expires_at <= account.now() + timedelta(hours=23, minutes=1)
    account.gateway.cancel_subscription(
        subscription_id=sub_id, at_period_end=False, idempotency_key=account.key("end-2")
    )


def test_a_schedule_keeps_the_phase_settings_and_switches_at_its_date(account: Account) -> None:
    """Defects 5 and 6: the schedule made from the subscription, updated with the current phase
    restated unchanged; a second attempt finds it (ours, the same change) instead of making another;
    at the date the test clock applies the new price."""
    card = account.card("pm_card_visa")
    sub_id = account.subscribe(account.starter, card)
    at = account.now() + timedelta(days=10)

    schedule = account.gateway.schedule_subscription_change(
        subscription_id=sub_id, price_id=account.growth, at=at, idempotency_key=account.key("schedule-1")
    )
    again = account.gateway.schedule_subscription_change(
        subscription_id=sub_id, price_id=account.growth, at=at, idempotency_key=account.key("schedule-2")
    )
    assert again.id == schedule.id
    phases = account.client.v1.subscription_schedules.retrieve(schedule.id).to_dict()["phases"]
    assert [p.get("default_payment_method") for p in phases] == [card, card]

    account.advance(at + timedelta(hours=1))

    assert account.gateway.retrieve_subscription(sub_id).price_id == account.growth
    assert account.gateway.retrieve_schedule(schedule.id).status in ("released", "completed")
    account.gateway.cancel_subscription(
        subscription_id=sub_id, at_period_end=False, idempotency_key=account.key("end-3")
    )


def test_a_failed_renewal_is_paid_by_invoices_pay_once_a_new_card_is_the_default(account: Account) -> None:
    """Retries, not at once; the new default card pays through invoices.pay; refunds are summed."""
    sub_id = account.subscribe(account.starter, account.card("pm_card_visa"))
    account.gateway.adopt_subscription_card(subscription_id=sub_id, idempotency_key=account.key("adopt-4"))
    account.client.v1.customers.update(
        account.customer_id,
        params={"invoice_settings": {"default_payment_method": account.card("pm_card_chargeCustomerFail")}},
    )
    renewal = account.gateway.retrieve_subscription(sub_id).current_period_end
    account.advance(renewal + timedelta(hours=2))
    overdue = account.gateway.retrieve_subscription(sub_id)
    assert overdue.status == "past_due"
    invoice = account.gateway.retrieve_invoice(overdue.latest_invoice_id)
    assert (invoice.status, invoice.attempt_count) == ("open", 1)

    account.client.v1.customers.update(
        account.customer_id,
        params={"invoice_settings": {"default_payment_method": account.card("pm_card_visa")}},
    )
    paid = account.gateway.pay_invoice(invoice.id, idempotency_key=account.key("pay-4"))
    assert paid.status == "paid"
    assert account.gateway.retrieve_subscription(sub_id).status == "active"

    refunded = account.gateway.refund_invoice(invoice.id, idempotency_key=account.key("refund-4"))
    assert refunded == invoice.amount_due
    assert account.gateway.invoice_refunded(invoice.id) == invoice.amount_due
    account.gateway.cancel_subscription(
        subscription_id=sub_id, at_period_end=False, idempotency_key=account.key("end-4")
    )


def test_a_declined_invoice_payment_is_the_cardholders_message(account: Account) -> None:
    sub_id = account.subscribe(account.starter, account.card("pm_card_visa"))
    account.gateway.adopt_subscription_card(subscription_id=sub_id, idempotency_key=account.key("adopt-5"))
    account.client.v1.customers.update(
        account.customer_id,
        params={"invoice_settings": {"default_payment_method": account.card("pm_card_chargeCustomerFail")}},
    )
    account.advance(account.gateway.retrieve_subscription(sub_id).current_period_end + timedelta(hours=2))
    invoice_id = account.gateway.retrieve_subscription(sub_id).latest_invoice_id

    with pytest.raises(GatewayError) as declined:
        account.gateway.pay_invoice(invoice_id, idempotency_key=account.key("pay-5"))

    assert declined.value.code == "card_declined"
    account.gateway.cancel_subscription(
        subscription_id=sub_id, at_period_end=False, idempotency_key=account.key("end-5")
    )


def test_the_portal_configuration_is_created_once_and_named_by_sessions(account: Account) -> None:
    marker = {"managed_by": "allowance", "installation": account.run}
    settings = PortalSettings(headline="Allowance test mode")
    first = account.gateway.configure_portal(
        settings=settings, marker=marker, idempotency_key=account.key("portal-1")
    )
    second = account.gateway.configure_portal(
        settings=settings, marker=marker, idempotency_key=account.key("portal-2")
    )
    assert first == second
    config = account.client.v1.billing_portal.configurations.retrieve(first).to_dict()
    assert config["features"]["subscription_cancel"]["mode"] == "at_period_end"
    assert config["features"]["subscription_update"]["enabled"] is False
    url = account.gateway.create_portal_session(
        customer_id=account.customer_id, return_url="https://example.com/billing", configuration_id=first
    )
    assert url.startswith("https://billing.stripe.com/")
    account.client.v1.billing_portal.configurations.update(first, params={"active": False})


def test_an_open_checkout_can_be_expired_and_no_longer_paid(account: Account) -> None:
    session = account.gateway.create_checkout_session(
        customer_id=account.customer_id,
        price_id=account.starter,
        success_url="https://example.com/ok?session_id={CHECKOUT_SESSION_ID}",
        cancel_url="https://example.com/no",
        client_reference_id="test-mode",
        metadata={"run": account.run},
        idempotency_key=account.key("checkout"),
    )
    assert session.status == "open"
    expired = account.gateway.expire_checkout_session(session.id, idempotency_key=account.key("expire"))
    assert (expired.status, expired.url) == ("expired", "")
