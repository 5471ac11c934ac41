"""The local gateway plays Stripe: Stripe-shaped objects, Stripe's events in Stripe's order, signed
so that Stripe's own SDK accepts them, delivered only after the change commits."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stripe
from django.db import connection, transaction

from billing_portal.gateway.base import GatewayError, WebhookSignatureError
from billing_portal.gateway.local import LocalGateway, add_months
from billing_portal.gateway.local.core import WhenRetriesExhausted
from billing_portal.gateway.local.objects import ts as objects_ts
from billing_portal.gateway.store import LocalGatewayObject
from billing_portal.gateway.stripe_gateway import (
    checkout_session_from_stripe,
    event_from_stripe,
    invoice_from_stripe,
    schedule_from_stripe,
    subscription_from_stripe,
)

SECRET = "whsec_local_test_secret"
START = datetime(2027, 1, 15, 12, 0, tzinfo=UTC)
PRICES = {
    "price_basic": (1000, "usd", "month"),
    "price_pro": (3000, "usd", "month"),
    "price_pro_yearly": (30000, "usd", "year"),
}
MAPPERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "subscription": subscription_from_stripe,
    "invoice": invoice_from_stripe,
    "checkout.session": checkout_session_from_stripe,
    "subscription_schedule": schedule_from_stripe,
}


@dataclass
class Local:
    """The gateway with a movable clock and a mailbox of delivered (payload, signature) pairs."""

    capture: Any
    now: datetime = START
    sent: list[tuple[bytes, str]] = field(default_factory=list)
    gateway: LocalGateway = field(init=False)

    def __post_init__(self) -> None:
        self.gateway = LocalGateway(
            webhook_secret=SECRET,
            deliver=lambda payload, header: self.sent.append((payload, header)),
            base_url="http://testserver",
            price_catalog=PRICES.__getitem__,
            clock=lambda: self.now,
        )

    def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call a gateway method as a request would: its deliveries run when it commits."""
        with self.capture(execute=True):
            return getattr(self.gateway, method)(*args, **kwargs)

    def events(self) -> list[dict[str, Any]]:
        """The delivered events, each checked the way the webhook view and Stripe's SDK check them,
        and each object mapped to the boundary's dataclasses; the mailbox is emptied."""
        out = []
        for payload, header in self.sent:
            assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header)
            verified = self.gateway.verify_webhook(payload=payload, signature_header=header)
            sdk_event = stripe.Webhook.construct_event(payload, header, SECRET)
            event = json.loads(payload)
            assert sdk_event.id == verified.id == event["id"]
            assert event_from_stripe(event) == verified
            assert re.fullmatch(r"evt_local_[0-9a-f]+", event["id"])
            assert event["object"] == "event"
            assert event["livemode"] is False
            assert event["pending_webhooks"] == 1
            assert event["api_version"] == stripe.api_version
            assert set(event) >= {
                "id",
                "object",
                "api_version",
                "created",
                "livemode",
                "pending_webhooks",
                "type",
                "data",
            }
            obj = event["data"]["object"]
            mapper = MAPPERS.get(obj["object"])
            if mapper is not None:
                mapper(obj)  # the Stripe gateway's mapping reads every object we emit
            out.append(event)
        self.sent.clear()
        return out

    def types(self) -> list[str]:
        return [event["type"] for event in self.events()]

    def open_checkout(self, *, key: str = "cs", customer_id: str = "") -> tuple[str, Any]:
        """A bare customer (unless given) and an open checkout session for price_pro."""
        customer_id = customer_id or self(
            "create_customer", email="", name="", metadata={}, idempotency_key="c"
        )
        session = self(
            "create_checkout_session",
            customer_id=customer_id,
            price_id="price_pro",
            success_url="s",
            cancel_url="c",
            client_reference_id="",
            metadata={},
            idempotency_key=key,
        )
        return customer_id, session

    def subscribe(self, price_id: str = "price_pro") -> tuple[str, Any]:
        customer_id = self(
            "create_customer",
            email="admin@acme.test",
            name="Acme",
            metadata={"tenant": "1"},
            idempotency_key=f"customer-{price_id}",
        )
        session = self(
            "create_checkout_session",
            customer_id=customer_id,
            price_id=price_id,
            success_url="http://testserver/billing/?session={CHECKOUT_SESSION_ID}",
            cancel_url="http://testserver/billing/",
            client_reference_id="7",
            metadata={"tenant": "1"},
            idempotency_key=f"checkout-{price_id}",
        )
        sub = self("complete_checkout", session.id)
        self.sent.clear()
        return customer_id, sub


@pytest.fixture
def local(db, django_capture_on_commit_callbacks) -> Local:
    return Local(capture=django_capture_on_commit_callbacks)


def count(object_type: str) -> int:
    return LocalGatewayObject.objects.filter(object_type=object_type).count()


# --- signatures --------------------------------------------------------------------------------------


def test_events_are_signed_like_stripe_and_verified_like_stripe(local):
    customer_id, _ = local.subscribe()
    local("set_card", customer_id, failing=False, last4="4242")  # a one-off invoice charges the customer's
    local.sent.clear()
    local(
        "charge_one_off",
        customer_id=customer_id,
        amount=500,
        currency="usd",
        description="Credit pack",
        metadata={},
        idempotency_key="pack-1",
    )
    payload, header = local.sent[0]
    assert local.events()  # LocalGateway.verify_webhook and stripe.Webhook.construct_event accept them

    verify = local.gateway.verify_webhook
    with pytest.raises(WebhookSignatureError):
        verify(payload=payload.replace(b"invoice", b"invoicf"), signature_header=header)
    with pytest.raises(WebhookSignatureError):
        verify(payload=payload, signature_header="")
    with pytest.raises(WebhookSignatureError):
        verify(payload=payload, signature_header="garbage")
    with pytest.raises(WebhookSignatureError):
        verify(payload=payload, signature_header=header.split(",")[0])  # no v1
    other = LocalGateway(webhook_secret="whsec_other", deliver=lambda *a: None)
    with pytest.raises(WebhookSignatureError):
        other.verify_webhook(payload=payload, signature_header=header)

    # Stripe's rules: any of several v1 signatures may match; a stale timestamp is refused.
    fresh = stripe.WebhookSignature.generate_signature_header(payload.decode(), SECRET, int(time.time()))
    assert (
        verify(payload=payload, signature_header=f"{fresh},v1={'0' * 64}").type == json.loads(payload)["type"]
    )
    stale = stripe.WebhookSignature.generate_signature_header(
        payload.decode(), SECRET, int(time.time()) - 301
    )
    with pytest.raises(WebhookSignatureError, match="tolerance"):
        verify(payload=payload, signature_header=stale)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, stale, SECRET)
    not_event = b'{"object": "invoice", "id": "in_1"}'
    signed = stripe.WebhookSignature.generate_signature_header(not_event.decode(), SECRET, int(time.time()))
    with pytest.raises(WebhookSignatureError):
        verify(payload=not_event, signature_header=signed)


def _customer(local: Local) -> str:
    return str(LocalGatewayObject.objects.filter(object_type="customer").latest("id").object_id)


def test_events_go_out_only_after_commit(local, django_capture_on_commit_callbacks):
    with (  # noqa: PT012
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        local.gateway.create_customer(email="a@b.c", name="A", metadata={}, idempotency_key="k1")
        local.gateway.set_card(_customer(local), failing=False, last4="4242")
        raise RuntimeError("the request failed")
    assert local.sent == []
    assert count("customer") == 0
    customer_id, _ = local.subscribe()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        local.gateway.fail_next_payment(local.gateway.list_subscriptions(customer_id=customer_id)[0].id)
    assert local.sent == []
    assert len(callbacks) == 3
    for callback in callbacks:
        callback()
    assert [e["type"] for e in local.events()] == [
        "invoice.finalized",
        "invoice.payment_failed",
        "customer.subscription.updated",
    ]


def test_late_delivery_keeps_events_until_the_clock_then_sends_them_newest_first_and_twice(
    db, django_capture_on_commit_callbacks
):
    """The switch for what Stripe may do after a failed or slow delivery: events arrive late, out
    of order and more than once (https://docs.stripe.com/webhooks#event-ordering). A change that rolls
    back leaves nothing to deliver."""
    sent: list[tuple[bytes, str]] = []
    gateway = LocalGateway(
        webhook_secret=SECRET,
        deliver=lambda payload, header: sent.append((payload, header)),
        price_catalog=PRICES.__getitem__,
        clock=lambda: START,
        delivery="late",
    )
    with django_capture_on_commit_callbacks(execute=True):
        customer_id = gateway.create_customer(email="", name="", metadata={}, idempotency_key="c")
        session = gateway.create_checkout_session(
            customer_id=customer_id,
            price_id="price_pro",
            success_url="s",
            cancel_url="c",
            client_reference_id="",
            metadata={},
            idempotency_key="cs",
        )
        gateway.complete_checkout(session.id)
    with (  # noqa: PT012
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        gateway.expire_checkout(
            gateway.create_checkout_session(
                customer_id=customer_id,
                price_id="price_pro",
                success_url="s",
                cancel_url="c",
                client_reference_id="",
                metadata={},
                idempotency_key="cs-rolled-back",
            ).id
        )
        raise RuntimeError("the request failed")
    assert sent == []

    with django_capture_on_commit_callbacks(execute=True):
        assert gateway.advance(START) == 0  # nothing fell due; the kept events go out
    emitted = [e["type"] for e in (json.loads(p) for p, _ in sent)]
    assert emitted == [
        "checkout.session.completed",
        "checkout.session.completed",
        "invoice.paid",
        "invoice.paid",
        "invoice.finalized",
        "invoice.finalized",
        "customer.subscription.created",
        "customer.subscription.created",
    ]
    for payload, header in sent:  # signed as Stripe signs them
        assert stripe.Webhook.construct_event(payload, header, SECRET).id == json.loads(payload)["id"]
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert gateway.deliver_late() == 0
    assert sent == []


# --- checkout ----------------------------------------------------------------------------------------


def test_checkout_completion_creates_subscription_and_paid_invoice_with_four_events(local):
    customer_id = local(
        "create_customer",
        email="admin@acme.test",
        name="Acme",
        metadata={"tenant": "1"},
        idempotency_key="c-1",
    )
    assert re.fullmatch(r"cus_local_[0-9a-f]+", customer_id)
    session = local(
        "create_checkout_session",
        customer_id=customer_id,
        price_id="price_pro",
        success_url="http://testserver/ok",
        cancel_url="http://testserver/no",
        client_reference_id="42",
        metadata={"tenant": "1"},
        idempotency_key="cs-1",
    )
    assert re.fullmatch(r"cs_local_[0-9a-f]+", session.id)
    assert session.url == f"http://testserver/dev/billing/checkout/{session.id}/"
    assert session.status == "open"
    assert session.customer_id == customer_id
    assert session.client_reference_id == "42"
    assert local.sent == []

    sub = local("complete_checkout", session.id)

    assert re.fullmatch(r"sub_local_[0-9a-f]+", sub.id)
    assert (sub.status, sub.price_id, sub.customer_id) == ("active", "price_pro", customer_id)
    assert sub.current_period_start == START
    assert sub.current_period_end == datetime(2027, 2, 15, 12, 0, tzinfo=UTC)
    assert sub.metadata == {"tenant": "1"}
    invoice = local.gateway.retrieve_invoice(sub.latest_invoice_id)
    suffix = customer_id.removeprefix("cus_local_")
    assert invoice.number == f"LOCAL-{suffix}-0001"
    assert (invoice.status, invoice.billing_reason, invoice.subscription_id) == (
        "paid",
        "subscription_create",
        sub.id,
    )
    assert (invoice.total, invoice.amount_paid, invoice.amount_remaining, invoice.currency) == (
        3000,
        3000,
        0,
        "usd",
    )
    assert invoice.paid_at == START
    assert invoice.hosted_invoice_url == f"http://testserver/dev/billing/invoices/{invoice.id}/"
    assert invoice.invoice_pdf == ""
    # Checkout keeps the card on the subscription, not as the customer's default for invoices.
    stored_sub = LocalGatewayObject.objects.get(object_id=sub.id).data
    card = LocalGatewayObject.objects.get(object_id=stored_sub["default_payment_method"]).data
    assert (card["card"]["last4"], card["customer"]) == ("4242", customer_id)
    customer = LocalGatewayObject.objects.get(object_id=customer_id).data
    assert customer["invoice_settings"]["default_payment_method"] is None
    assert [(line.amount, line.period_start, line.period_end) for line in invoice.lines] == [
        (3000, START, sub.current_period_end)
    ]
    done = local.gateway.retrieve_checkout_session(session.id)
    assert (done.status, done.subscription_id, done.customer_id) == ("complete", sub.id, customer_id)

    events = local.events()
    assert [e["type"] for e in events] == [
        "customer.subscription.created",
        "invoice.finalized",
        "invoice.paid",
        "checkout.session.completed",
    ]
    created, finalized, paid, completed = (e["data"]["object"] for e in events)
    assert created["items"]["data"][0]["price"]["id"] == "price_pro"
    assert created["items"]["data"][0]["current_period_end"] == int(sub.current_period_end.timestamp())
    assert finalized["status"] == "open"
    assert paid["status"] == "paid"
    assert paid["parent"]["subscription_details"]["subscription"] == sub.id
    assert paid["status_transitions"]["paid_at"] == int(START.timestamp())
    assert completed["subscription"] == sub.id
    assert completed["customer"] == customer_id
    assert completed["client_reference_id"] == "42"

    # Completing again (the stand-in page reloaded) changes nothing.
    assert local("complete_checkout", session.id) == sub
    assert local.sent == []
    assert count("subscription") == 1
    assert count("invoice") == 1


def test_a_declining_card_at_checkout_creates_nothing(local):
    _, session = local.open_checkout()
    with pytest.raises(GatewayError) as exc:
        local("complete_checkout", session.id, card="declines", last4="0002")
    assert exc.value.code == "card_declined"
    assert exc.value.message == "Your card was declined."
    # A card that asks for 3D Secure is refused until the customer confirms it on the page.
    with pytest.raises(GatewayError) as exc:
        local("complete_checkout", session.id, card="requires_action", last4="3184")
    assert (exc.value.code, exc.value.message) == (
        "authentication_required",
        "Your bank asks you to confirm this payment.",
    )
    assert count("subscription") == count("invoice") == count("event") == count("payment_method") == 0
    assert local.sent == []
    assert local.gateway.retrieve_checkout_session(session.id).status == "open"
    # A working card: the same session goes through.
    assert local("complete_checkout", session.id).status == "active"


def test_expired_checkout_cannot_complete(local):
    customer_id, session = local.open_checkout()
    expired = local("expire_checkout", session.id)
    assert (expired.status, expired.url) == ("expired", "")
    assert local.types() == ["checkout.session.expired"]
    assert local("expire_checkout", session.id).status == "expired"
    assert local.sent == []
    with pytest.raises(GatewayError):
        local("complete_checkout", session.id)
    # Sessions left open expire after 24 hours on the clock tick.
    _, other = local.open_checkout(key="cs2", customer_id=customer_id)
    assert local("advance", START + timedelta(hours=23)) == 0
    assert local("advance", START + timedelta(hours=24)) == 1
    assert local.gateway.retrieve_checkout_session(other.id).status == "expired"


def test_a_checkout_past_its_expiry_cannot_complete_before_the_tick_marks_it(local):
    """As at Stripe: a session cannot be paid after its expires_at, whether or not anything has
    marked it expired yet."""
    customer_id, session = local.open_checkout()
    local.now = START + timedelta(hours=24, seconds=1)  # the tick has not run
    assert local.gateway.retrieve_checkout_session(session.id).status == "open"
    with pytest.raises(GatewayError) as refused:
        local("complete_checkout", session.id)
    assert refused.value.code == "checkout_session_expired"
    assert local.gateway.list_subscriptions(customer_id=customer_id) == []


def test_unknown_ids_and_prices_are_gateway_errors(local):
    with pytest.raises(GatewayError) as exc:
        local.gateway.retrieve_subscription("sub_local_nope")
    assert exc.value.code == "resource_missing"
    customer_id = local("create_customer", email="", name="", metadata={}, idempotency_key="c")
    with pytest.raises(GatewayError) as exc:
        local(
            "create_checkout_session",
            customer_id=customer_id,
            price_id="price_nope",
            success_url="s",
            cancel_url="c",
            client_reference_id="",
            metadata={},
            idempotency_key="cs",
        )
    assert exc.value.code == "resource_missing"


# --- idempotency -------------------------------------------------------------------------------------


def test_idempotency_keys_return_the_same_objects(local):
    first = local("create_customer", email="a@b.c", name="A", metadata={}, idempotency_key="tenant-1")
    assert local("create_customer", email="a@b.c", name="A", metadata={}, idempotency_key="tenant-1") == first
    assert count("customer") == 1
    with pytest.raises(GatewayError) as exc:
        local("create_customer", email="other@b.c", name="A", metadata={}, idempotency_key="tenant-1")
    assert exc.value.code == "idempotency_error"

    args = {
        "customer_id": first,
        "price_id": "price_pro",
        "success_url": "s",
        "cancel_url": "c",
        "client_reference_id": "",
        "metadata": {},
        "idempotency_key": "checkout-9",
    }
    assert local("create_checkout_session", **args) == local("create_checkout_session", **args)
    assert count("checkout.session") == 1

    sub = local("complete_checkout", local("create_checkout_session", **args).id)
    local("set_card", first, failing=False, last4="4242")
    local.now = START + timedelta(days=10)
    change = {"subscription_id": sub.id, "price_id": "price_pro_yearly", "idempotency_key": "change-1"}
    assert local("change_subscription_price", **change) == local("change_subscription_price", **change)
    charge = {
        "customer_id": first,
        "amount": 700,
        "currency": "usd",
        "description": "Pack",
        "metadata": {},
        "idempotency_key": "pack-1",
    }
    assert local("charge_one_off", **charge) == local("charge_one_off", **charge)
    schedule = {
        "subscription_id": sub.id,
        "price_id": "price_pro",
        "at": START + timedelta(days=40),
        "idempotency_key": "sched-1",
    }
    assert local("schedule_subscription_change", **schedule) == local(
        "schedule_subscription_change", **schedule
    )
    cancel = {"subscription_id": sub.id, "at_period_end": False, "idempotency_key": "cancel-1"}
    assert local("cancel_subscription", **cancel) == local("cancel_subscription", **cancel)
    # One creation each: checkout invoice, one proration invoice, one one-off invoice; one schedule.
    assert count("invoice") == 3
    assert count("subscription_schedule") == 1
    types = local.types()
    assert types.count("invoice.paid") == 3
    assert types.count("customer.subscription.deleted") == 1


def test_a_key_replays_its_first_answer_error_included_for_24_hours(local):
    """Stripe saves the first answer of a key, errors included, and replays it whatever happened
    since; other parameters with the key are refused; after 24 hours the key is new again
    (https://docs.stripe.com/api/idempotent_requests)."""
    _, sub = local.subscribe()
    schedule = local(
        "schedule_subscription_change",
        subscription_id=sub.id,
        price_id="price_basic",
        at=sub.current_period_end,
        idempotency_key="s",
    )
    cancel = {"subscription_id": sub.id, "at_period_end": True, "idempotency_key": "cancel-1"}
    with pytest.raises(GatewayError) as refused:
        local("cancel_subscription", **cancel)
    assert refused.value.code == "subscription_schedule_managed"
    local("release_schedule", schedule.id, idempotency_key="release-1")
    local.sent.clear()

    # The schedule is gone, but the key keeps its error: nothing is canceled, nothing emitted.
    with pytest.raises(GatewayError) as replayed:
        local("cancel_subscription", **cancel)
    assert (replayed.value.code, replayed.value.message) == (refused.value.code, refused.value.message)
    assert local.gateway.retrieve_subscription(sub.id).cancel_at_period_end is False
    assert local.sent == []
    # A new attempt is a new key.
    canceled = local("cancel_subscription", **(cancel | {"idempotency_key": "cancel-2"}))
    assert canceled.cancel_at_period_end is True

    # A replay is the object as the first request left it, not as it is now.
    resumed = local("resume_subscription", subscription_id=sub.id, idempotency_key="resume-1")
    assert resumed.cancel_at_period_end is False
    local("cancel_subscription", **(cancel | {"idempotency_key": "cancel-3"}))
    assert local("resume_subscription", subscription_id=sub.id, idempotency_key="resume-1") == resumed
    assert local.gateway.retrieve_subscription(sub.id).cancel_at_period_end is True

    # Other parameters with a used key: refused, and the key keeps its first answer.
    with pytest.raises(GatewayError) as reused:
        local("cancel_subscription", **(cancel | {"at_period_end": False}))
    assert reused.value.code == "idempotency_error"

    # 24 hours after its first use the key is forgotten: the same request runs again.
    first = local("create_customer", email="a@b.c", name="A", metadata={}, idempotency_key="cust-1")
    local.now = START + timedelta(hours=23, minutes=59)
    assert local("create_customer", email="a@b.c", name="A", metadata={}, idempotency_key="cust-1") == first
    local.now = START + timedelta(hours=24)
    second = local("create_customer", email="a@b.c", name="A", metadata={}, idempotency_key="cust-1")
    assert second != first
    assert count("customer") == 3  # local.subscribe's, then two under the same key a day apart


def test_an_operation_refused_midway_keeps_none_of_its_writes_but_keeps_its_answer(local):
    """A decline undoes nothing it should keep: the open invoice and its events stay (Stripe
    finalizes, then fails to collect); the replay answers the same decline."""
    customer_id, _ = local.subscribe()
    local("set_card", customer_id, failing=True, last4="0002")
    local.sent.clear()
    charge = {
        "customer_id": customer_id,
        "amount": 500,
        "currency": "usd",
        "description": "Pack",
        "metadata": {},
        "idempotency_key": "pack-9",
    }
    with pytest.raises(GatewayError) as declined:
        local("charge_one_off", **charge)
    assert declined.value.code == "card_declined"
    assert local.types() == ["invoice.finalized", "invoice.payment_failed"]
    with pytest.raises(GatewayError):
        local("charge_one_off", **charge)
    assert local.sent == []
    assert count("invoice") == 2


# --- plan changes ------------------------------------------------------------------------------------


def test_change_price_switches_now_and_invoices_the_prorated_difference(local):
    _customer_id, sub = local.subscribe("price_basic")  # 10.00/month, Jan 15 -> Feb 15 (31 days)
    local.now = START + timedelta(days=10)  # 21 of 31 days left

    changed = local(
        "change_subscription_price", subscription_id=sub.id, price_id="price_pro", idempotency_key="up"
    )

    assert changed.price_id == "price_pro"
    assert changed.status == "active"
    assert (changed.current_period_start, changed.current_period_end) == (
        sub.current_period_start,
        sub.current_period_end,
    )
    invoice = local.gateway.retrieve_invoice(changed.latest_invoice_id)
    assert invoice.total == round(2000 * 21 / 31) == 1355
    assert sum(line.amount for line in invoice.lines) == invoice.total
    assert (invoice.status, invoice.billing_reason, invoice.amount_paid) == (
        "paid",
        "subscription_update",
        1355,
    )
    assert invoice.number.endswith("-0002")
    events = local.events()
    assert [e["type"] for e in events] == [
        "customer.subscription.updated",
        "invoice.finalized",
        "invoice.paid",
    ]
    previous = events[0]["data"]["previous_attributes"]
    assert previous["items"]["data"][0]["price"]["id"] == "price_basic"

    # A downgrade switches too and is invoiced now (always_invoice), with a negative total: nothing is
    # charged, the credit goes to the customer's balance (https://docs.stripe.com/billing/customer/balance).
    down = local(
        "change_subscription_price", subscription_id=sub.id, price_id="price_basic", idempotency_key="down"
    )
    assert down.price_id == "price_basic"
    credit = local.gateway.retrieve_invoice(down.latest_invoice_id)
    assert down.latest_invoice_id != invoice.id
    assert (credit.status, credit.total, credit.amount_due, credit.amount_paid) == ("paid", -1355, 0, 0)
    assert (credit.starting_balance, credit.ending_balance) == (0, -1355)
    assert local.types() == ["customer.subscription.updated", "invoice.finalized", "invoice.paid"]
    # The same price again: nothing at all.
    local("change_subscription_price", subscription_id=sub.id, price_id="price_basic", idempotency_key="same")
    assert local.sent == []


def test_an_unpaid_upgrade_applies_anyway_by_default_and_waits_when_asked_to(local):
    """Stripe's payment_behavior (https://docs.stripe.com/billing/subscriptions/pending-updates):
    allow_incomplete (its default) switches the price and leaves the subscription past due;
    pending_if_incomplete keeps the old price, with the change in pending_update until the invoice is
    paid (at most 23 hours); error_if_incomplete refuses the change."""
    _, sub = local.subscribe("price_basic")
    local("expire_card", sub.id)
    local.now = START + timedelta(days=10)

    with pytest.raises(GatewayError) as refused:
        local(
            "change_subscription_price",
            subscription_id=sub.id,
            price_id="price_pro",
            idempotency_key="error",
            payment_behavior="error_if_incomplete",
        )
    assert refused.value.code == "card_declined"
    assert local.gateway.retrieve_subscription(sub.id).price_id == "price_basic"
    assert (count("invoice"), local.sent) == (1, [])

    waiting = local(
        "change_subscription_price",
        subscription_id=sub.id,
        price_id="price_pro",
        idempotency_key="pending",
        payment_behavior="pending_if_incomplete",
    )
    assert (waiting.status, waiting.price_id) == ("active", "price_basic")
    assert waiting.pending_update is not None
    assert waiting.pending_update.price_id == "price_pro"
    assert waiting.pending_update.expires_at == local.now + timedelta(hours=23)
    invoice = local.gateway.retrieve_invoice(waiting.latest_invoice_id)
    assert (invoice.status, invoice.total, invoice.billing_reason) == ("open", 1355, "subscription_update")
    assert local.types() == ["invoice.finalized", "invoice.payment_failed", "customer.subscription.updated"]
    assert local("advance", local.now + timedelta(hours=22)) == 0  # not retried by itself

    local.now += timedelta(hours=2)
    local("pay_on_hosted_page", invoice.id)
    applied = local.gateway.retrieve_subscription(sub.id)
    assert (applied.status, applied.price_id, applied.pending_update) == ("active", "price_pro", None)
    assert local.types() == [
        "invoice.paid",
        "customer.subscription.pending_update_applied",
        "customer.subscription.updated",
    ]

    # Left unpaid, the update expires after 23 hours: its invoice is voided, the price stays. (Not
    # a downgrade and back: the downgrade's credit would pay the upgrade.)
    up = local(
        "change_subscription_price",
        subscription_id=sub.id,
        price_id="price_pro_yearly",
        idempotency_key="up-again",
        payment_behavior="pending_if_incomplete",
    )
    assert up.pending_update is not None
    local.sent.clear()
    assert local("advance", local.now + timedelta(hours=23)) == 1
    expired = local.gateway.retrieve_subscription(sub.id)
    assert (expired.price_id, expired.pending_update) == ("price_pro", None)
    assert local.gateway.retrieve_invoice(up.latest_invoice_id).status == "void"
    assert local.types() == ["invoice.voided", "customer.subscription.pending_update_expired"]

    # allow_incomplete: the new price now, the subscription past due on the unpaid invoice.
    applied_anyway = local(
        "change_subscription_price",
        subscription_id=sub.id,
        price_id="price_pro_yearly",
        idempotency_key="allow",
    )
    assert (applied_anyway.price_id, applied_anyway.status) == ("price_pro_yearly", "past_due")


def test_change_to_another_interval_restarts_the_cycle(local):
    _, sub = local.subscribe("price_pro")
    local.now = START + timedelta(days=10)
    changed = local(
        "change_subscription_price",
        subscription_id=sub.id,
        price_id="price_pro_yearly",
        idempotency_key="yearly",
    )
    assert changed.current_period_start == local.now
    assert changed.current_period_end == add_months(local.now, 12)
    invoice = local.gateway.retrieve_invoice(changed.latest_invoice_id)
    assert invoice.total == 30000 - round(3000 * 21 / 31)


def test_scheduled_change_applies_at_its_date_on_advance(local):
    _, sub = local.subscribe("price_pro")
    end = sub.current_period_end
    schedule = local(
        "schedule_subscription_change",
        subscription_id=sub.id,
        price_id="price_basic",
        at=end,
        idempotency_key="sched",
    )
    assert re.fullmatch(r"sub_sched_local_[0-9a-f]+", schedule.id)
    assert (schedule.subscription_id, schedule.status) == (sub.id, "active")
    assert local.gateway.retrieve_subscription(sub.id).schedule_id == schedule.id
    assert local.types() == ["subscription_schedule.created", "customer.subscription.updated"]
    with pytest.raises(GatewayError) as exc:  # one schedule at a time, as at Stripe
        local(
            "schedule_subscription_change",
            subscription_id=sub.id,
            price_id="price_basic",
            at=end,
            idempotency_key="sched-again",
        )
    assert exc.value.code == "subscription_schedule_exists"

    assert local("advance", end - timedelta(seconds=1)) == 0
    assert local.sent == []
    assert local("advance", end) == 2  # the subscription and its schedule

    after = local.gateway.retrieve_subscription(sub.id)
    assert (after.price_id, after.schedule_id, after.status) == ("price_basic", "", "active")
    assert (after.current_period_start, after.current_period_end) == (end, add_months(end, 1))
    renewal = local.gateway.retrieve_invoice(after.latest_invoice_id)
    assert (renewal.billing_reason, renewal.total, renewal.status) == ("subscription_cycle", 1000, "paid")
    events = local.events()
    assert [e["type"] for e in events] == [
        "customer.subscription.updated",
        "subscription_schedule.completed",
        "invoice.finalized",
        "invoice.paid",
        "customer.subscription.updated",
    ]
    assert events[1]["data"]["object"]["status"] == "completed"
    assert local("advance", end) == 0
    assert local.sent == []


def test_a_schedule_keeps_the_subscriptions_card_in_its_phases(local):
    """A schedule made from a subscription carries its settings into the phases, and the phase that
    starts sets them on the subscription: a phase without the card would leave it without one."""
    _, sub = local.subscribe("price_pro")
    card = LocalGatewayObject.objects.get(object_id=sub.id).data["default_payment_method"]
    schedule = local(
        "schedule_subscription_change",
        subscription_id=sub.id,
        price_id="price_basic",
        at=sub.current_period_end,
        idempotency_key="s",
    )
    stored = LocalGatewayObject.objects.get(object_id=schedule.id).data
    assert [p["default_payment_method"] for p in stored["phases"]] == [card, card]
    local("advance", sub.current_period_end)
    after = LocalGatewayObject.objects.get(object_id=sub.id).data
    assert (after["default_payment_method"], after["items"]["data"][0]["price"]["id"]) == (
        card,
        "price_basic",
    )
    assert (
        local.gateway.retrieve_invoice(local.gateway.retrieve_subscription(sub.id).latest_invoice_id).status
        == "paid"
    )


def test_scheduled_downgrade_mid_period_credits_the_unused_difference_at_the_switch_s18(local):
    """S18, On custom date. Failed before the fix: the phase switched the price without a proration
    (no invoice), so the customer lost what they had paid for the rest of the period. Now, as Stripe
    does for a phase with proration_behavior=always_invoice: the switch prorates from its own moment
    (not the clock tick's) to the period's end and invoices that at once; a negative total is paid
    from nothing and credited to the customer's balance, as an immediate downgrade's is."""
    customer_id, sub = local.subscribe("price_pro")  # 30.00/month, Jan 15 -> Feb 15 (31 days)
    at = START + timedelta(days=5)  # 26 of the 31 days left
    schedule = local(
        "schedule_subscription_change",
        subscription_id=sub.id,
        price_id="price_basic",
        at=at,
        idempotency_key="s",
    )
    stored = LocalGatewayObject.objects.get(object_id=schedule.id).data
    assert [p["proration_behavior"] for p in stored["phases"]] == ["none", "always_invoice"]
    local.sent.clear()
    assert local("advance", at + timedelta(hours=1)) == 2
    after = local.gateway.retrieve_subscription(sub.id)
    assert after.price_id == "price_basic"
    assert after.current_period_end == sub.current_period_end  # the period goes on
    assert count("invoice") == 2
    credit = local.gateway.retrieve_invoice(after.latest_invoice_id)
    # (1000 - 3000) * 26/31 cents, rounded once; the lines: 3000 * 26/31 back, 1000 * 26/31 charged.
    assert (credit.billing_reason, credit.status, credit.total, credit.amount_due, credit.amount_paid) == (
        "subscription_update",
        "paid",
        -1677,
        0,
        0,
    )
    assert [(line.description, line.amount) for line in credit.lines] == [
        ("Unused time on price_pro after 20 Jan 2027", -2516),
        ("Remaining time on price_basic after 20 Jan 2027", 839),
    ]
    assert {(line.period_start, line.period_end) for line in credit.lines} == {(at, sub.current_period_end)}
    assert (credit.created, credit.starting_balance, credit.ending_balance) == (at, 0, -1677)
    assert LocalGatewayObject.objects.get(object_id=customer_id).data["balance"] == -1677
    assert count("charge") == 1  # the first payment only
    assert local.types() == [
        "customer.subscription.updated",
        "subscription_schedule.completed",
        "invoice.finalized",
        "invoice.paid",
    ]
    # The renewal is paid from the credit first.
    local("advance", sub.current_period_end)
    renewal = local.gateway.retrieve_invoice(local.gateway.retrieve_subscription(sub.id).latest_invoice_id)
    assert (renewal.billing_reason, renewal.total, renewal.amount_due) == ("subscription_cycle", 1000, 0)
    assert LocalGatewayObject.objects.get(object_id=customer_id).data["balance"] == -677


def test_scheduled_upgrade_mid_period_invoices_the_prorated_difference_at_the_switch_s18(local):
    """S18, On custom date. Failed before the fix: the bigger price ran from the date to the period's
    end for nothing. The switch's invoice is what the preview with that proration date said, to the
    cent, and it is charged at the switch."""
    _, sub = local.subscribe("price_basic")  # 10.00/month, Jan 15 -> Feb 15 (31 days)
    at = START + timedelta(days=5)  # 26 of the 31 days left
    preview = local.gateway.preview_price_change(subscription_id=sub.id, price_id="price_pro", at=at)
    local(
        "schedule_subscription_change",
        subscription_id=sub.id,
        price_id="price_pro",
        at=at,
        idempotency_key="s",
    )
    local.sent.clear()
    local("advance", at + timedelta(days=2))
    after = local.gateway.retrieve_subscription(sub.id)
    assert (after.price_id, after.status, after.current_period_end) == (
        "price_pro",
        "active",
        sub.current_period_end,
    )
    invoice = local.gateway.retrieve_invoice(after.latest_invoice_id)
    # (3000 - 1000) * 26/31 cents, rounded once: 1000 * 26/31 back, 3000 * 26/31 charged.
    assert (invoice.billing_reason, invoice.status, invoice.total, invoice.amount_paid, invoice.created) == (
        "subscription_update",
        "paid",
        1677,
        1677,
        at,
    )
    assert [line.amount for line in invoice.lines] == [-839, 2516]
    assert (preview.amount_due, preview.total) == (1677, 1677)
    assert [line.amount for line in preview.lines] == [-839, 2516]
    assert count("charge") == 2
    assert local.types() == [
        "customer.subscription.updated",
        "subscription_schedule.completed",
        "invoice.finalized",
        "invoice.paid",
    ]


def test_a_declined_payment_at_the_switch_takes_the_dunning_path_s18(local):
    """S18, S26. The switch applies whether or not its invoice is paid (a schedule has no pending
    update): a declined card leaves the invoice open on the retry schedule and the subscription past
    due, as a declined renewal does; the retry that succeeds makes it active."""
    _, sub = local.subscribe("price_basic")
    at = START + timedelta(days=5)
    local(
        "schedule_subscription_change",
        subscription_id=sub.id,
        price_id="price_pro",
        at=at,
        idempotency_key="s",
    )
    local("expire_card", sub.id)
    local.sent.clear()
    local("advance", at)
    after = local.gateway.retrieve_subscription(sub.id)
    assert (after.price_id, after.status) == ("price_pro", "past_due")
    stored = LocalGatewayObject.objects.get(object_id=after.latest_invoice_id).data
    assert (stored["status"], stored["total"], stored["attempt_count"]) == ("open", 1677, 1)
    assert stored["next_payment_attempt"] == int((at + timedelta(days=3)).timestamp())
    assert local.types() == [
        "customer.subscription.updated",
        "subscription_schedule.completed",
        "invoice.finalized",
        "invoice.payment_failed",
        "customer.subscription.updated",
    ]
    local("advance", at + timedelta(days=3))  # the first retry, on the same declining card
    assert LocalGatewayObject.objects.get(object_id=stored["id"]).data["attempt_count"] == 2
    local("pay_on_hosted_page", stored["id"])
    assert local.gateway.retrieve_invoice(stored["id"]).status == "paid"
    assert local.gateway.retrieve_subscription(sub.id).status == "active"


def test_a_switch_after_the_period_end_prorates_within_the_period_it_falls_in_s18(local):
    """S18: a custom date past the current period's end. The renewal bills the old price; the switch
    prorates what is left of the next period (Feb 15 -> Mar 15, 28 days) from its moment."""
    _, sub = local.subscribe("price_basic")
    at = sub.current_period_end + timedelta(days=5)  # Feb 20 12:00: 23 of the 28 days left
    with pytest.raises(GatewayError):  # as Stripe: a proration date within the current period only
        local.gateway.preview_price_change(subscription_id=sub.id, price_id="price_pro", at=at)
    local(
        "schedule_subscription_change",
        subscription_id=sub.id,
        price_id="price_pro",
        at=at,
        idempotency_key="s",
    )
    local("advance", at + timedelta(hours=1))
    after = local.gateway.retrieve_subscription(sub.id)
    assert (after.price_id, after.current_period_start, after.current_period_end) == (
        "price_pro",
        sub.current_period_end,
        add_months(sub.current_period_end, 1),
    )
    invoices = sorted(
        (
            local.gateway.retrieve_invoice(row.object_id)
            for row in LocalGatewayObject.objects.filter(object_type="invoice")
        ),
        key=lambda inv: inv.number,
    )
    assert [(inv.billing_reason, inv.total, inv.status) for inv in invoices] == [
        ("subscription_create", 1000, "paid"),
        ("subscription_cycle", 1000, "paid"),  # the renewal of Feb 15, on the old price
        ("subscription_update", 1643, "paid"),  # (3000 - 1000) * 23/28, at the switch
    ]


def test_released_schedule_changes_nothing_later(local):
    _, sub = local.subscribe("price_pro")
    schedule = local(
        "schedule_subscription_change",
        subscription_id=sub.id,
        price_id="price_basic",
        at=sub.current_period_end,
        idempotency_key="s",
    )
    local.sent.clear()
    assert local("release_schedule", schedule.id, idempotency_key="r") is None
    assert local("release_schedule", schedule.id, idempotency_key="r") is None  # a retry
    assert local.types() == ["subscription_schedule.released", "customer.subscription.updated"]
    assert local.gateway.retrieve_subscription(sub.id).schedule_id == ""
    with pytest.raises(GatewayError):
        local("release_schedule", schedule.id, idempotency_key="r2")  # already released, as at Stripe
    local("advance", sub.current_period_end)
    assert local.gateway.retrieve_subscription(sub.id).price_id == "price_pro"


# --- cancellation ------------------------------------------------------------------------------------


def test_cancel_at_period_end_then_advance_deletes(local):
    _, sub = local.subscribe()
    local.now = START + timedelta(days=3)
    canceled = local("cancel_subscription", subscription_id=sub.id, at_period_end=True, idempotency_key="x")
    assert canceled.status == "active"
    assert canceled.cancel_at_period_end
    assert canceled.canceled_at == local.now
    assert canceled.cancel_at == sub.current_period_end
    assert local.types() == ["customer.subscription.updated"]

    assert local("advance", sub.current_period_end) == 1
    ended = local.gateway.retrieve_subscription(sub.id)
    assert (ended.status, ended.ended_at) == ("canceled", sub.current_period_end)
    assert count("invoice") == 1  # no renewal
    events = local.events()
    assert [e["type"] for e in events] == ["customer.subscription.deleted"]
    assert local("advance", sub.current_period_end + timedelta(days=90)) == 0


def test_resume_undoes_cancel_at_period_end(local):
    _, sub = local.subscribe()
    local("cancel_subscription", subscription_id=sub.id, at_period_end=True, idempotency_key="x")
    local.sent.clear()
    resumed = local("resume_subscription", subscription_id=sub.id, idempotency_key="r")
    assert (resumed.cancel_at_period_end, resumed.cancel_at, resumed.canceled_at) == (False, None, None)
    assert local.types() == ["customer.subscription.updated"]
    # A retry with the same key, or a resume of what is not canceled, changes and emits nothing.
    local("resume_subscription", subscription_id=sub.id, idempotency_key="r")
    local("resume_subscription", subscription_id=sub.id, idempotency_key="r2")
    assert local.types() == []
    with pytest.raises(GatewayError) as exc:  # the same key for another subscription, as at Stripe
        local("resume_subscription", subscription_id="sub_local_other", idempotency_key="r")
    assert exc.value.code == "idempotency_error"
    local("advance", sub.current_period_end)
    assert local.gateway.retrieve_subscription(sub.id).status == "active"


def test_an_ended_subscription_cannot_be_resumed(local):
    _, sub = local.subscribe()
    local("cancel_subscription", subscription_id=sub.id, at_period_end=False, idempotency_key="x")
    local.sent.clear()
    with pytest.raises(GatewayError) as exc:
        local("resume_subscription", subscription_id=sub.id, idempotency_key="r")
    assert (exc.value.code, exc.value.message) == (
        "subscription_canceled",
        "A canceled subscription cannot be resumed.",
    )
    assert local.types() == []
    assert local.gateway.retrieve_subscription(sub.id).status == "canceled"


def test_cancel_now_deletes_at_once(local):
    _, sub = local.subscribe()
    local.now = START + timedelta(days=3)
    ended = local("cancel_subscription", subscription_id=sub.id, at_period_end=False, idempotency_key="x")
    assert (ended.status, ended.ended_at, ended.canceled_at) == ("canceled", local.now, local.now)
    assert local.types() == ["customer.subscription.deleted"]
    with pytest.raises(GatewayError):
        local(
            "change_subscription_price", subscription_id=sub.id, price_id="price_basic", idempotency_key="y"
        )


def test_cancel_at_period_end_is_refused_while_a_schedule_holds_the_subscription(local):
    _, sub = local.subscribe()
    local(
        "schedule_subscription_change",
        subscription_id=sub.id,
        price_id="price_basic",
        at=sub.current_period_end,
        idempotency_key="s",
    )
    with pytest.raises(GatewayError) as exc:
        local("cancel_subscription", subscription_id=sub.id, at_period_end=True, idempotency_key="x")
    assert exc.value.code == "subscription_schedule_managed"


# --- failed payments -----------------------------------------------------------------------------------


def test_failed_payment_makes_past_due_and_is_retried_on_the_schedule_not_by_a_new_card(local):
    """Checkout's card is the subscription's own; the portal's new card becomes the customer's
    default, which the subscription does not use, and adding it pays nothing: the next retry still
    charges the subscription's card (https://docs.stripe.com/api/subscriptions/object#subscription_object-default_payment_method)."""
    customer_id, sub = local.subscribe()
    local.now = START + timedelta(days=7)

    invoice = local("fail_next_payment", sub.id)

    assert (invoice.status, invoice.attempt_count, invoice.billing_reason) == (
        "open",
        1,
        "subscription_cycle",
    )
    assert (invoice.amount_due, invoice.amount_paid, invoice.amount_remaining) == (3000, 0, 3000)
    overdue = local.gateway.retrieve_subscription(sub.id)
    assert overdue.status == "past_due"
    assert overdue.latest_invoice_id == invoice.id
    assert (overdue.current_period_start, overdue.current_period_end) == (local.now, add_months(local.now, 1))
    assert local.types() == ["invoice.finalized", "invoice.payment_failed", "customer.subscription.updated"]
    stored = LocalGatewayObject.objects.get(object_id=invoice.id).data
    assert stored["next_payment_attempt"] == int((local.now + timedelta(days=3)).timestamp())
    assert local.gateway.customer_overview(customer_id)["subscriptions"][0]["card"]["failing"] is True

    local.now += timedelta(days=1)
    local("set_card", customer_id, failing=False, last4="4242")
    assert local.types() == ["payment_method.attached", "customer.updated"]
    assert local.gateway.retrieve_invoice(invoice.id).status == "open"  # nothing paid by itself
    overview = local.gateway.customer_overview(customer_id)
    assert overview["card"] == {
        "id": overview["card"]["id"],
        "brand": "visa",
        "last4": "4242",
        "failing": False,
        "requires_action": False,
    }

    # The retry, three days after the failure, charges the subscription's own card again.
    assert local("advance", START + timedelta(days=10)) == 1
    retried = local.gateway.retrieve_invoice(invoice.id)
    assert (retried.status, retried.attempt_count) == ("open", 2)
    assert local.types() == ["invoice.payment_failed"]
    assert local.gateway.retrieve_subscription(sub.id).status == "past_due"

    # Paid on the hosted invoice page: the subscription recovers.
    local.now = START + timedelta(days=11)
    local("pay_open_invoices", customer_id)
    paid = local.gateway.retrieve_invoice(invoice.id)
    assert (paid.status, paid.amount_paid, paid.amount_remaining, paid.paid_at) == (
        "paid",
        3000,
        0,
        local.now,
    )
    assert local.gateway.retrieve_subscription(sub.id).status == "active"
    assert local.types() == ["invoice.paid", "customer.subscription.updated"]


def test_renewal_on_a_declining_card_goes_past_due_and_pay_open_invoices_recovers(local):
    customer_id, sub = local.subscribe()
    local("expire_card", sub.id)
    assert local("advance", sub.current_period_end) == 1
    overdue = local.gateway.retrieve_subscription(sub.id)
    assert overdue.status == "past_due"
    assert local.types() == ["invoice.finalized", "invoice.payment_failed", "customer.subscription.updated"]
    paid = local("pay_open_invoices", customer_id)
    assert [invoice.id for invoice in paid] == [overdue.latest_invoice_id]
    assert local.gateway.retrieve_subscription(sub.id).status == "active"
    assert local.types() == ["invoice.paid", "customer.subscription.updated"]


@pytest.mark.parametrize(
    ("setting", "status", "last_event"),
    [
        ("unpaid", "unpaid", "customer.subscription.updated"),
        ("cancel", "canceled", "customer.subscription.deleted"),
        ("past_due", "past_due", "invoice.payment_failed"),
    ],
)
def test_retries_follow_the_schedule_then_the_accounts_setting_decides(local, setting, status, last_event):
    """Retries 3, 5 and 7 days after the previous attempt (not all at once); when the last one fails
    the subscription is marked unpaid, canceled or left past due, as the account's setting says."""
    local.gateway.when_retries_exhausted = WhenRetriesExhausted(setting)
    customer_id, sub = local.subscribe()
    local("expire_card", sub.id)
    due = sub.current_period_end
    local("advance", due)
    invoice_id = local.gateway.retrieve_subscription(sub.id).latest_invoice_id
    local.sent.clear()
    attempts = []
    for day in (2, 3, 7, 8, 14, 15):
        local("advance", due + timedelta(days=day))
        attempts.append(local.gateway.retrieve_invoice(invoice_id).attempt_count)
    assert attempts == [1, 2, 2, 3, 3, 4]  # at +3, +8 (3+5) and +15 (3+5+7) days
    types = local.types()
    assert types.count("invoice.payment_failed") == 3
    assert types[-1] == last_event
    after = local.gateway.retrieve_subscription(sub.id)
    assert after.status == status
    stored = LocalGatewayObject.objects.get(object_id=invoice_id).data
    assert (stored["status"], stored["next_payment_attempt"]) == ("open", None)
    if setting != "unpaid":
        return
    # Unpaid: the next period is invoiced but not attempted; settling the balance restores it.
    local("advance", after.current_period_end)
    assert local.types() == ["invoice.finalized", "customer.subscription.updated"]
    assert [i.status for i in local.gateway.list_invoices(customer_id=customer_id)][:2] == ["open", "open"]
    local("pay_open_invoices", customer_id)
    assert local.gateway.retrieve_subscription(sub.id).status == "active"


def test_a_card_that_asks_for_confirmation_waits_for_the_customer(local):
    """SCA: a renewal on a card that needs 3D Secure sends invoice.payment_action_required with the
    hosted invoice page and is not retried; the customer confirms there and the invoice is paid."""
    _, session = local.open_checkout()
    sub = local("complete_checkout", session.id, card="requires_action", last4="3184", confirmed=True)
    assert sub.status == "active"
    local.sent.clear()

    assert local("advance", sub.current_period_end) == 1
    events = local.events()
    assert [e["type"] for e in events] == [
        "invoice.finalized",
        "invoice.payment_action_required",
        "customer.subscription.updated",
    ]
    invoice = events[1]["data"]["object"]
    assert invoice["hosted_invoice_url"] == f"http://testserver/dev/billing/invoices/{invoice['id']}/"
    assert (invoice["status"], invoice["next_payment_attempt"]) == ("open", None)
    assert local.gateway.retrieve_subscription(sub.id).status == "past_due"
    assert local("advance", sub.current_period_end + timedelta(days=20)) == 0  # no retry
    with pytest.raises(GatewayError) as exc:
        local("pay_invoice", invoice["id"], idempotency_key="pay-1")
    assert exc.value.code == "authentication_required"
    assert local.types() == ["invoice.payment_action_required"]  # the attempt is recorded

    paid = local("confirm_payment", invoice["id"])
    assert paid.status == "paid"
    assert local.gateway.retrieve_subscription(sub.id).status == "active"
    assert local.types() == ["invoice.paid", "customer.subscription.updated"]


def test_pay_invoice_charges_the_card_stripe_would_and_keeps_its_answer(local):
    """invoices.pay: a decline is an error and a recorded attempt; the same key answers the same;
    a new attempt after the card is fixed is a new key."""
    customer_id, sub = local.subscribe()
    invoice = local("fail_next_payment", sub.id)
    with pytest.raises(GatewayError) as exc:
        local("pay_invoice", invoice.id, idempotency_key="pay-1")
    assert exc.value.code == "card_declined"
    assert local.gateway.retrieve_invoice(invoice.id).attempt_count == 2
    LocalGatewayObject.objects.filter(object_id=sub.id).update(
        data=dict(LocalGatewayObject.objects.get(object_id=sub.id).data, default_payment_method=None)
    )
    local("set_card", customer_id, failing=False, last4="4242")
    with pytest.raises(GatewayError):
        local("pay_invoice", invoice.id, idempotency_key="pay-1")  # the kept answer
    local.sent.clear()
    assert local("pay_invoice", invoice.id, idempotency_key="pay-2").status == "paid"
    assert local.types() == ["invoice.paid", "customer.subscription.updated"]
    with pytest.raises(GatewayError) as exc:
        local("pay_invoice", invoice.id, idempotency_key="pay-3")
    assert exc.value.code == "invoice_already_paid"


def test_a_customer_may_hold_two_subscriptions_to_the_same_price(local):
    """Stripe does not stop a second checkout from completing: two live subscriptions, two paid
    invoices (what defect 1 of issue 7 is about)."""
    customer_id, first = local.subscribe()
    args = {
        "customer_id": customer_id,
        "price_id": "price_pro",
        "success_url": "s",
        "cancel_url": "c",
        "client_reference_id": "",
        "metadata": {},
    }
    second_session = local("create_checkout_session", **args, idempotency_key="second")
    second = local("complete_checkout", second_session.id)
    assert second.id != first.id
    subs = local.gateway.list_subscriptions(customer_id=customer_id)
    assert sorted((s.status, s.price_id) for s in subs) == [("active", "price_pro"), ("active", "price_pro")]
    assert [i.status for i in local.gateway.list_invoices(customer_id=customer_id)] == ["paid", "paid"]


def test_charge_one_off_pays_or_is_declined(local):
    customer_id, _ = local.subscribe()
    local("set_card", customer_id, failing=False, last4="4242")  # the customer's default pays one-offs
    local.sent.clear()
    invoice = local(
        "charge_one_off",
        customer_id=customer_id,
        amount=1500,
        currency="USD",
        description="1,000 credits",
        metadata={"pack": "small"},
        idempotency_key="pack-1",
    )
    assert (invoice.status, invoice.total, invoice.currency, invoice.subscription_id) == (
        "paid",
        1500,
        "usd",
        "",
    )
    assert [(line.description, line.amount) for line in invoice.lines] == [("1,000 credits", 1500)]
    assert invoice.metadata == {"pack": "small"}
    assert invoice.billing_reason == "manual"
    assert local.types() == ["invoice.finalized", "invoice.paid"]

    local("set_card", customer_id, failing=True, last4="0002")
    local.sent.clear()
    with pytest.raises(GatewayError) as exc:
        local(
            "charge_one_off",
            customer_id=customer_id,
            amount=1500,
            currency="usd",
            description="1,000 credits",
            metadata={},
            idempotency_key="pack-2",
        )
    assert exc.value.code == "card_declined"
    declined = local.gateway.list_invoices(customer_id=customer_id)[0]
    assert (declined.status, declined.attempt_count) == ("open", 1)
    assert local.types() == ["invoice.finalized", "invoice.payment_failed"]


def balance_transactions(customer_id: str) -> list[tuple[str, int, int, str | None, str | None]]:
    """The customer's balance ledger: (type, amount, ending balance, invoice, credit note), oldest first."""
    return [
        (
            row.data["type"],
            row.data["amount"],
            row.data["ending_balance"],
            row.data["invoice"],
            row.data["credit_note"],
        )
        for row in LocalGatewayObject.objects.filter(
            object_type="customer_balance_transaction", customer_id=customer_id
        ).order_by("id")
    ]


def test_a_credit_note_credits_the_customer_balance_and_the_next_invoice_uses_it(local):
    """A post-payment credit note whose amount is credited to the customer's balance (Stripe's
    credit_amount, https://docs.stripe.com/api/credit_notes/create): the balance goes to -1200 (a
    credit owed to the customer), a customer balance transaction of type credit_note records it, and
    the renewal is finalized with that credit applied, charging the card 1800 of 3000
    (https://docs.stripe.com/billing/customer/balance). Failed before the fix: the balance stayed 0
    and the renewal charged 3000."""
    customer_id, sub = local.subscribe()
    first = local.gateway.retrieve_invoice(sub.latest_invoice_id)

    note = local("issue_credit_note", first.id, amount=1200, memo="Goodwill")

    customer = LocalGatewayObject.objects.get(object_id=customer_id, object_type="customer").data
    assert customer["balance"] == -1200
    [(kind, amount, ending, invoice, credit_note)] = balance_transactions(customer_id)
    assert (kind, amount, ending, invoice, credit_note) == ("credit_note", -1200, -1200, None, note["id"])
    assert (
        note["customer_balance_transaction"]
        == LocalGatewayObject.objects.get(object_type="customer_balance_transaction").object_id
    )
    assert (note["type"], note["amount"], note["post_payment_amount"], note["pre_payment_amount"]) == (
        "post_payment",
        1200,
        1200,
        0,
    )
    assert (note["invoice"], note["memo"], note["status"]) == (first.id, "Goodwill", "issued")
    credited = local.gateway.retrieve_invoice(first.id)
    assert (credited.status, credited.amount_paid, credited.credited) == ("paid", 3000, 1200)
    assert local.types() == ["credit_note.created"]

    local("advance", sub.current_period_end + timedelta(hours=1))
    renewal = local.gateway.retrieve_invoice(local.gateway.retrieve_subscription(sub.id).latest_invoice_id)
    assert (renewal.status, renewal.total, renewal.amount_due, renewal.amount_paid) == (
        "paid",
        3000,
        1800,
        1800,
    )
    assert (renewal.starting_balance, renewal.ending_balance) == (-1200, 0)
    charges = LocalGatewayObject.objects.filter(object_type="charge", customer_id=customer_id).order_by("id")
    assert [row.data["amount"] for row in charges] == [3000, 1800]
    assert balance_transactions(customer_id)[1:] == [("applied_to_invoice", 1200, 0, renewal.id, None)]
    assert LocalGatewayObject.objects.get(object_id=customer_id, object_type="customer").data["balance"] == 0


def test_a_credit_note_beyond_what_the_invoice_has_left_to_credit_is_refused_and_changes_nothing(local):
    customer_id, sub = local.subscribe()
    invoice_id = sub.latest_invoice_id
    local("issue_credit_note", invoice_id, amount=2000)
    local.sent.clear()

    for amount in (1001, 0, -5):
        with pytest.raises(GatewayError) as refused:
            local("issue_credit_note", invoice_id, amount=amount)
        assert refused.value.code == "parameter_invalid"

    assert local.gateway.retrieve_invoice(invoice_id).credited == 2000
    assert (
        LocalGatewayObject.objects.get(object_id=customer_id, object_type="customer").data["balance"] == -2000
    )
    assert (count("credit_note"), count("customer_balance_transaction"), local.sent) == (1, 1, [])
    last = local("issue_credit_note", invoice_id, amount=1000)  # exactly what is left
    assert last["number"].endswith("-CN-02")
    assert local.gateway.retrieve_invoice(invoice_id).credited == 3000


def test_credit_invoice_to_balance_credits_once_per_key_and_invoice_credited_to_balance_counts_it(local):
    """The boundary's credit note (credit_amount = amount, https://docs.stripe.com/api/credit_notes/create):
    its key replays the first answer, a refusal included, and what the invoice's notes credited to
    the balance is read back, so a retry with a new key can ask for only what is still owed."""
    customer_id, sub = local.subscribe()
    invoice_id = sub.latest_invoice_id
    assert local.gateway.invoice_credited_to_balance(invoice_id) == 0

    def credit(amount: int, key: str):
        return local(
            "credit_invoice_to_balance",
            invoice_id,
            amount=amount,
            reason="duplicate",
            memo="Back to the balance",
            metadata={"invoice": invoice_id},
            idempotency_key=key,
        )

    note = credit(700, "credit-1")
    assert (note.invoice_id, note.amount, note.credited_to_balance, note.currency) == (
        invoice_id,
        700,
        700,
        "usd",
    )
    assert credit(700, "credit-1") == note  # the same key: the first answer, nothing credited again
    with pytest.raises(GatewayError) as reused:
        credit(800, "credit-1")
    assert reused.value.code == "idempotency_error"
    stored = LocalGatewayObject.objects.get(object_type="credit_note").data
    assert (stored["reason"], stored["memo"], stored["metadata"]) == (
        "duplicate",
        "Back to the balance",
        {"invoice": invoice_id},
    )
    assert (
        LocalGatewayObject.objects.get(object_id=customer_id, object_type="customer").data["balance"] == -700
    )
    local("issue_credit_note", invoice_id, amount=300)
    assert local.gateway.invoice_credited_to_balance(invoice_id) == 1000

    with pytest.raises(GatewayError) as refused:
        credit(2001, "credit-2")  # 2000 is left to credit
    assert refused.value.code == "parameter_invalid"
    with pytest.raises(GatewayError):
        credit(2001, "credit-2")  # the key replays the refusal
    assert (count("credit_note"), local.gateway.invoice_credited_to_balance(invoice_id)) == (2, 1000)


# --- the clock -----------------------------------------------------------------------------------------


def test_advance_twice_renews_once(local):
    _, sub = local.subscribe()
    moment = sub.current_period_end + timedelta(hours=1)
    assert local("advance", moment) == 1
    assert count("invoice") == 2
    assert local.types() == ["invoice.finalized", "invoice.paid", "customer.subscription.updated"]
    assert local("advance", moment) == 0
    assert count("invoice") == 2
    assert local.sent == []
    renewed = local.gateway.retrieve_subscription(sub.id)
    assert renewed.current_period_start == sub.current_period_end


def test_advance_over_several_periods_bills_each_and_keeps_the_anchor_day(local):
    local.now = datetime(2027, 1, 31, 9, 0, tzinfo=UTC)
    _, sub = local.subscribe()
    assert sub.current_period_end == datetime(2027, 2, 28, 9, 0, tzinfo=UTC)
    local("advance", datetime(2027, 4, 1, tzinfo=UTC))
    after = local.gateway.retrieve_subscription(sub.id)
    assert after.current_period_start == datetime(2027, 3, 31, 9, 0, tzinfo=UTC)  # back on the 31st
    assert after.current_period_end == datetime(2027, 4, 30, 9, 0, tzinfo=UTC)
    invoices = local.gateway.list_invoices(customer_id=sub.customer_id)
    assert [invoice.billing_reason for invoice in invoices] == [
        "subscription_cycle",
        "subscription_cycle",
        "subscription_create",
    ]
    assert [invoice.number[-4:] for invoice in invoices] == ["0003", "0002", "0001"]
    since = local.gateway.list_invoices(
        customer_id=sub.customer_id, created_since=datetime(2027, 3, 1, tzinfo=UTC)
    )
    assert len(since) == 1


def test_add_months_clamps_the_day():
    assert add_months(datetime(2027, 1, 31, tzinfo=UTC), 1) == datetime(2027, 2, 28, tzinfo=UTC)
    assert add_months(datetime(2028, 1, 31, tzinfo=UTC), 1) == datetime(2028, 2, 29, tzinfo=UTC)
    assert add_months(datetime(2027, 11, 30, tzinfo=UTC), 3) == datetime(2028, 2, 29, tzinfo=UTC)
    assert add_months(datetime(2028, 2, 29, tzinfo=UTC), 12) == datetime(2029, 2, 28, tzinfo=UTC)


# --- portal --------------------------------------------------------------------------------------------


def test_portal_url_and_customer_overview(local):
    customer_id, sub = local.subscribe()
    url = local.gateway.create_portal_session(
        customer_id=customer_id, return_url="http://testserver/billing/?tab=1"
    )
    [session] = LocalGatewayObject.objects.filter(object_type="billing_portal.session")
    assert (
        url == f"http://testserver/dev/billing/portal/{customer_id}/?session={session.object_id}"
        "&return=http%3A%2F%2Ftestserver%2Fbilling%2F%3Ftab%3D1"
    )
    assert session.data["configuration"] is None  # the account's default: cancel offered
    features = local.gateway.portal_session_features(customer_id=customer_id, session_id=session.object_id)
    assert features["subscription_cancel"]["enabled"] is True
    local(
        "schedule_subscription_change",
        subscription_id=sub.id,
        price_id="price_basic",
        at=sub.current_period_end,
        idempotency_key="s",
    )
    local.now = START + timedelta(days=1)
    assert (
        local.gateway.customer_overview(customer_id)["card"] is None
    )  # Checkout's card is the subscription's
    local("set_card", customer_id, failing=False, last4="1881")
    local(
        "charge_one_off",
        customer_id=customer_id,
        amount=500,
        currency="usd",
        description="Pack",
        metadata={},
        idempotency_key="p",
    )
    overview = local.gateway.customer_overview(customer_id)
    assert (overview["email"], overview["name"]) == ("admin@acme.test", "Acme")
    assert overview["card"]["last4"] == "1881"
    assert overview["card"]["failing"] is False
    [row] = overview["subscriptions"]
    assert (row["card"]["last4"], row["card"]["failing"]) == ("4242", False)
    assert (row["id"], row["price_id"], row["status"], row["amount"], row["interval"]) == (
        sub.id,
        "price_pro",
        "active",
        3000,
        "month",
    )
    assert (row["scheduled_price_id"], row["scheduled_at"]) == ("price_basic", sub.current_period_end)
    assert [invoice.billing_reason for invoice in overview["invoices"]] == ["manual", "subscription_create"]
    assert overview["has_open_invoices"] is False
    local("fail_next_payment", sub.id)
    assert local.gateway.customer_overview(customer_id)["has_open_invoices"] is True


def test_a_portal_session_expires_unvisited_after_the_visit_window_and_visited_after_its_lifetime(local):
    """Stripe: portal sessions "are short-lived and will expire if the customer does not visit the
    URL" (https://docs.stripe.com/api/customer_portal/sessions/object), with no number given; the
    stand-in's are PORTAL_SESSION_VISIT_WINDOW unvisited and PORTAL_SESSION_LIFETIME in all, on the
    gateway's clock. Failed before the fix: sessions never expired."""
    from billing_portal.gateway.local.checkout import (
        MSG_PORTAL_SESSION_EXPIRED,
        PORTAL_SESSION_LIFETIME,
        PORTAL_SESSION_VISIT_WINDOW,
    )

    customer_id, _ = local.subscribe()
    visited, unvisited = (
        local.gateway.create_portal_session(customer_id=customer_id, return_url="http://testserver/b/")
        .split("session=")[1]
        .split("&")[0]
        for _ in range(2)
    )
    [created] = {
        row.data["created"] for row in LocalGatewayObject.objects.filter(object_type="billing_portal.session")
    }
    assert created == objects_ts(START)

    def visit(session_id: str) -> dict[str, Any]:
        return local.gateway.visit_portal_session(customer_id=customer_id, session_id=session_id)

    local.now = START + PORTAL_SESSION_VISIT_WINDOW - timedelta(seconds=1)
    assert visit(visited)["subscription_cancel"]["enabled"] is True
    local.now = START + PORTAL_SESSION_VISIT_WINDOW
    with pytest.raises(GatewayError) as expired:
        visit(unvisited)
    assert (expired.value.code, expired.value.message) == (
        "portal_session_expired",
        MSG_PORTAL_SESSION_EXPIRED,
    )
    assert visit(visited)["invoice_history"]["enabled"] is True  # visited in time: still open
    local.now = START + PORTAL_SESSION_LIFETIME - timedelta(seconds=1)
    visit(visited)
    local.now = START + PORTAL_SESSION_LIFETIME
    with pytest.raises(GatewayError) as over:
        visit(visited)
    assert over.value.code == "portal_session_expired"
    # Not a session of this customer, or none: no session at all.
    for customer, session in ((customer_id, "bps_local_forged"), ("cus_local_other", visited)):
        with pytest.raises(GatewayError) as missing:
            local.gateway.visit_portal_session(customer_id=customer, session_id=session)
        assert missing.value.code == "resource_missing"
    assert local.sent == []  # visiting emits nothing


def test_a_schedule_after_the_period_end_renews_first_then_switches(local):
    _, sub = local.subscribe("price_pro")
    at = sub.current_period_end + timedelta(days=3)
    local(
        "schedule_subscription_change",
        subscription_id=sub.id,
        price_id="price_basic",
        at=at,
        idempotency_key="s",
    )
    local.sent.clear()
    assert local("advance", at) == 2
    after = local.gateway.retrieve_subscription(sub.id)
    assert after.price_id == "price_basic"
    renewal, credit = (
        local.gateway.retrieve_invoice(row.object_id)
        for row in LocalGatewayObject.objects.filter(object_type="invoice").order_by("id")[1:]
    )
    assert (renewal.billing_reason, renewal.total) == ("subscription_cycle", 3000)  # on the old price
    # S18: the switch prorates what is left of the period it falls in (25 of Feb 15 -> Mar 15's 28
    # days): (1000 - 3000) * 25/28, credited to the customer's balance.
    assert (credit.billing_reason, credit.total, credit.status) == ("subscription_update", -1786, "paid")
    assert local.types() == [
        "invoice.finalized",
        "invoice.paid",
        "customer.subscription.updated",
        "customer.subscription.updated",
        "subscription_schedule.completed",
        "invoice.finalized",
        "invoice.paid",
    ]


# --- concurrency: real transactions, two connections -----------------------------------------------------


def _in_parallel(*calls: Callable[[], Any]) -> list[Any]:
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait()
            results[index] = call()
        except Exception as exc:  # reported to the test below
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


@pytest.mark.django_db(transaction=True)
def test_concurrent_advances_renew_once_and_concurrent_creates_make_one_customer():
    sent: list[tuple[bytes, str]] = []
    lock = threading.Lock()

    def deliver(payload: bytes, header: str) -> None:
        with lock:
            sent.append((payload, header))

    gateway = LocalGateway(
        webhook_secret=SECRET, deliver=deliver, price_catalog=PRICES.__getitem__, clock=lambda: START
    )
    ids = _in_parallel(
        *[lambda: gateway.create_customer(email="a@b.c", name="A", metadata={}, idempotency_key="same")] * 2
    )
    assert ids[0] == ids[1]
    assert count("customer") == 1
    session = gateway.create_checkout_session(
        customer_id=ids[0],
        price_id="price_pro",
        success_url="s",
        cancel_url="c",
        client_reference_id="",
        metadata={},
        idempotency_key="cs",
    )
    sub = gateway.complete_checkout(session.id)
    sent.clear()
    moment = sub.current_period_end + timedelta(minutes=1)
    changed = _in_parallel(lambda: gateway.advance(moment), lambda: gateway.advance(moment))
    assert sorted(changed) == [0, 1]
    assert count("invoice") == 2
    assert [json.loads(payload)["type"] for payload, _ in sent] == [
        "invoice.finalized",
        "invoice.paid",
        "customer.subscription.updated",
    ]


# --- a subscription paid with the saved card (Subscribe Now, C09/C11) ----------------------------------


def _customer_with_card(local: Local, card: str) -> str:
    customer_id = local("create_customer", email="", name="", metadata={}, idempotency_key=f"c-{card}")
    local("set_card", customer_id, card=card, last4="4242")
    local.sent.clear()
    return customer_id


def _create(local: Local, customer_id: str, key: str = "sub-1") -> Any:
    return local(
        "create_subscription",
        customer_id=customer_id,
        price_id="price_pro",
        metadata={"tenant_id": "1"},
        idempotency_key=key,
    )


def test_create_subscription_pays_the_first_invoice_with_the_saved_card(local):
    customer_id = _customer_with_card(local, "pays")

    sub = _create(local, customer_id)

    assert (sub.status, sub.price_id, sub.metadata) == ("active", "price_pro", {"tenant_id": "1"})
    invoice = local.gateway.retrieve_invoice(sub.latest_invoice_id)
    assert (invoice.status, invoice.billing_reason, invoice.subscription_id) == (
        "paid",
        "subscription_create",
        sub.id,
    )
    assert [line.period_start for line in invoice.lines] == [sub.current_period_start]
    assert local.types() == [
        "customer.subscription.created",
        "invoice.finalized",
        "invoice.paid",
        "customer.subscription.updated",
    ]
    # The same key again answers the same subscription and makes nothing new.
    assert _create(local, customer_id).id == sub.id
    assert count("subscription") == 1
    assert local.sent == []


def test_create_subscription_declined_leaves_it_canceled_and_nothing_owed_to_collect(local):
    customer_id = _customer_with_card(local, "declines")

    with pytest.raises(GatewayError) as exc:
        _create(local, customer_id)

    assert (exc.value.code, exc.value.message) == ("card_declined", "Your card was declined.")
    [sub] = local.gateway.list_subscriptions(customer_id=customer_id)
    assert sub.status == "canceled"
    invoice = local.gateway.retrieve_invoice(sub.latest_invoice_id)
    assert (invoice.status, invoice.attempt_count) == ("open", 1)
    assert LocalGatewayObject.objects.get(object_id=invoice.id).data["next_payment_attempt"] is None
    assert local.types() == [
        "customer.subscription.created",
        "invoice.finalized",
        "invoice.payment_failed",
        "customer.subscription.deleted",
    ]
    with pytest.raises(GatewayError):  # the key replays its answer
        _create(local, customer_id)
    assert count("subscription") == 1


def test_create_subscription_needing_3d_secure_waits_incomplete_then_expires_after_23_hours(local):
    customer_id = _customer_with_card(local, "requires_action")

    sub = _create(local, customer_id)

    assert sub.status == "incomplete"
    invoice = local.gateway.retrieve_invoice(sub.latest_invoice_id)
    assert invoice.hosted_invoice_url == f"http://testserver/dev/billing/invoices/{invoice.id}/"
    assert local.types()[-1] == "invoice.payment_action_required"
    assert local("advance", local.now + timedelta(hours=22)) == 0
    assert local("advance", local.now + timedelta(hours=23)) == 1
    assert local.gateway.retrieve_subscription(sub.id).status == "incomplete_expired"
    assert local.gateway.retrieve_invoice(invoice.id).status == "void"


def test_create_subscription_confirmed_on_the_hosted_page_turns_active(local):
    customer_id = _customer_with_card(local, "requires_action")
    sub = _create(local, customer_id)
    local.sent.clear()

    local("confirm_payment", sub.latest_invoice_id)

    assert local.gateway.retrieve_subscription(sub.id).status == "active"
    assert local.types() == ["invoice.paid", "customer.subscription.updated"]


# --- voiding an invoice ----------------------------------------------------------------------------------


def _declined_one_off(local: Local, key: str = "pack-1") -> tuple[str, str]:
    customer_id = _customer_with_card(local, "declines")
    with pytest.raises(GatewayError):
        local(
            "charge_one_off",
            customer_id=customer_id,
            amount=1500,
            currency="usd",
            description="1,000 credits",
            metadata={"extra_pack": "extra-1000"},
            idempotency_key=key,
        )
    [invoice] = local.gateway.list_invoices(customer_id=customer_id)
    local.sent.clear()
    return customer_id, invoice.id


def test_a_declined_one_off_is_retried_on_the_schedule_until_it_is_voided(local):
    customer_id, invoice_id = _declined_one_off(local)
    row = LocalGatewayObject.objects.get(object_id=invoice_id)
    assert (row.data["status"], row.data["next_payment_attempt"]) == (
        "open",
        objects_ts(START + timedelta(days=3)),
    )
    local("set_card", customer_id, card="pays", last4="4242")
    local.sent.clear()

    voided = local("void_invoice", invoice_id, idempotency_key="void-1")

    assert (voided.status, voided.amount_remaining, voided.amount_paid) == ("void", 0, 0)
    assert local.types() == ["invoice.voided"]
    data = LocalGatewayObject.objects.get(object_id=invoice_id).data
    assert data["next_payment_attempt"] is None
    assert data["status_transitions"]["voided_at"] == objects_ts(START)
    # The retry that would have collected it on the new card never runs; nor can it be paid on its page.
    assert local("advance", START + timedelta(days=30)) == 0
    assert local("pay_on_hosted_page", invoice_id).status == "void"
    assert local.gateway.retrieve_invoice(invoice_id).amount_paid == 0
    assert "invoice.paid" not in local.types()


def test_void_invoice_replays_its_key_and_refuses_a_void_or_paid_invoice_as_stripe_does(local):
    customer_id, invoice_id = _declined_one_off(local)
    local("void_invoice", invoice_id, idempotency_key="void-1")
    local.sent.clear()

    assert local("void_invoice", invoice_id, idempotency_key="void-1").status == "void"  # replayed
    assert local.sent == []
    with pytest.raises(GatewayError) as again:
        local("void_invoice", invoice_id, idempotency_key="void-2")
    assert again.value.code == "status_transition_invalid"

    local("set_card", customer_id, card="pays", last4="4242")
    paid = local(
        "charge_one_off",
        customer_id=customer_id,
        amount=1500,
        currency="usd",
        description="1,000 credits",
        metadata={},
        idempotency_key="pack-2",
    )
    local.sent.clear()
    with pytest.raises(GatewayError) as refused:
        local("void_invoice", paid.id, idempotency_key="void-3")
    assert refused.value.code == "status_transition_invalid"
    assert local.gateway.retrieve_invoice(paid.id).status == "paid"
    assert local.sent == []
