"""The gateway's webhook endpoint (DESIGN principle 4): verified before anything is stored, stored by
event id, applied once, and — since each handler re-reads its object from the gateway — delivered
twice, three times or in any order, it ends in the same state.

The events are the ones the local gateway emitted (LocalGatewayObject rows of type "event"), signed
here like Stripe signs them and POSTed to the real endpoint."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from billing_portal import services
from billing_portal.gateway import factory
from billing_portal.gateway.store import LocalGatewayObject
from billing_portal.models import CheckoutSession, Invoice, InvoiceLine, WebhookEvent
from billing_portal.tasks import retry_webhook_events
from billing_portal.webhooks import HANDLERS, webhook_event_process
from plans.factories import plan
from plans.models import Plan, ScheduledChange, Subscription
from tenants.models import AuditEvent, Tenant

from .conftest import (
    body,
    checkout_open,
    customer_id_of,
    emitted_events,
    live_sub,
    local_gateway,
    post_webhook,
    sign,
)


def world(tenant: Tenant) -> dict[str, Any]:
    """Everything a webhook can change for the tenant, without the clock-dependent bookkeeping
    (processed_at, completed_at, resolved_at)."""
    return {
        "subscriptions": sorted(
            Subscription.objects.filter(tenant=tenant).values_list(
                "pk",
                "product__code",
                "plan__code",
                "state",
                "gateway_subscription_id",
                "current_period_start",
                "current_period_end",
                "trial_ends_at",
                "payment_failed_at",
                "grace_until",
                "canceled_at",
                "ends_at",
                "ended_at",
            )
        ),
        "invoices": sorted(
            Invoice.objects.filter(tenant=tenant).values_list(
                "gateway_invoice_id",
                "number",
                "status",
                "billing_reason",
                "subtotal",
                "total",
                "amount_due",
                "amount_paid",
                "amount_remaining",
                "period_start",
                "period_end",
                "issued_at",
                "paid_at",
            )
        ),
        "invoice_lines": sorted(
            InvoiceLine.objects.filter(invoice__tenant=tenant).values_list(
                "invoice__number", "position", "description", "amount", "period_start", "period_end"
            )
        ),
        "scheduled_changes": sorted(
            ScheduledChange.objects.filter(tenant=tenant).values_list("pk", "to_plan__code", "status")
        ),
        "checkouts": sorted(CheckoutSession.objects.filter(tenant=tenant).values_list("pk", "status")),
        "audit": sorted(
            Counter(AuditEvent.objects.filter(tenant=tenant).values_list("action", flat=True)).items()
        ),
    }


def subscription_state(tenant: Tenant) -> list[tuple]:
    return sorted(
        Subscription.objects.filter(tenant=tenant).values_list("pk", "plan__code", "state", "updated_at")
    )


# --- verification: a body that is not exactly what the gateway signed stores nothing -----------------


@pytest.fixture
def completion(trial_tenant, admin) -> bytes:
    """A real, unsent checkout.session.completed: paid at the gateway, our endpoint not yet told."""
    session_id = checkout_open(trial_tenant, admin, "agents-growth")
    local_gateway().complete_checkout(session_id)  # not live(): the delivery never runs
    (event,) = [
        e for e in emitted_events(customer_id_of(trial_tenant)) if e["type"] == "checkout.session.completed"
    ]
    return body(event)


def _one_byte_changed(payload: bytes) -> bytes:
    """The same event with one character of its id changed: still valid JSON, a different event."""
    at = payload.index(b'"evt_local_') + len(b'"evt_local_')
    return payload[:at] + (b"0" if payload[at : at + 1] != b"0" else b"1") + payload[at + 1 :]


def _retimed(signature: str) -> str:
    """The same v1 under a fresher t: a replay dressed up as new."""
    t, v1 = signature.split(",")
    return f"t={int(t.removeprefix('t=')) + 10},{v1}"


TAMPERED = {
    "signed_with_another_secret": lambda p: (p, sign(p, secret="whsec_attacker")),
    "stale_timestamp": lambda p: (
        p,
        sign(p, timestamp=int(time.time()) - 301),
    ),  # STRIPE_WEBHOOK_TOLERANCE = 300 s
    "one_byte_of_the_payload_changed": lambda p: (_one_byte_changed(p), sign(p)),
    "timestamp_swapped_after_signing": lambda p: (p, _retimed(sign(p, timestamp=int(time.time()) - 10))),
    "v1_missing": lambda p: (p, f"t={int(time.time())}"),
    "header_missing": lambda p: (p, None),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_unverifiable_delivery_is_400_and_stores_nothing(case, completion, trial_tenant, live):
    payload, signature = TAMPERED[case](completion)
    before = world(trial_tenant)
    subs_before = subscription_state(trial_tenant)

    with live():
        response = post_webhook(payload, signature)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_signature"
    assert WebhookEvent.objects.count() == 0
    assert subscription_state(trial_tenant) == subs_before
    assert world(trial_tenant) == before
    assert live_sub(trial_tenant).state == "trialing"


def test_the_same_delivery_properly_signed_is_applied(completion, trial_tenant, live):
    """The control for the cases above: the untampered body within the tolerance does change things."""
    with live():
        response = post_webhook(completion, sign(completion, timestamp=int(time.time()) - 280))

    assert response.status_code == 200
    assert response.json() == {"received": True, "duplicate": False, "status": "received"}
    row = WebhookEvent.objects.get(event_id=json.loads(completion)["id"])
    assert (row.type, row.status, row.attempts, row.error) == (
        "checkout.session.completed",
        "processed",
        1,
        "",
    )
    assert row.tenant == trial_tenant
    sub = live_sub(trial_tenant)
    assert (sub.plan.code, sub.state) == ("agents-growth", "active")


def test_a_header_with_several_v1_signatures_is_accepted_if_one_matches(completion, trial_tenant, live):
    """Stripe sends one v1 per active secret while a secret is being rolled."""
    good = sign(completion)
    t, v1 = good.split(",")
    with live():
        response = post_webhook(completion, f"{t},v1={'0' * 64},{v1}")

    assert response.status_code == 200
    assert WebhookEvent.objects.get(event_id=json.loads(completion)["id"]).status == "processed"


# --- every handled type, three times -------------------------------------------------------------------


def _synthetic_event(event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"evt_test_{event_type.replace('.', '_')}",
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(time.time()),
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def _gateway_object(object_type: str, customer_id: str) -> dict[str, Any]:
    return (
        LocalGatewayObject.objects.filter(object_type=object_type, customer_id=customer_id)
        .order_by("id")
        .first()
        .data
    )


# Handlers that re-read a subscription (directly, or through its checkout or invoice). The others —
# refunds, credit notes, disputes, a deleted customer — have tests of their own (test_payments_after.py).
NOT_ABOUT_A_SUBSCRIPTION = {
    "charge.refunded",
    "charge.dispute.created",
    "credit_note.created",
    "credit_note.updated",
    "credit_note.voided",
    "customer.deleted",
}


def test_every_handled_event_type_is_covered_here_or_has_its_own_test():
    assert set(HANDLERS) >= NOT_ABOUT_A_SUBSCRIPTION


@pytest.mark.parametrize("event_type", sorted(set(HANDLERS) - NOT_ABOUT_A_SUBSCRIPTION))
def test_every_handled_event_type_delivered_three_times_is_applied_once(
    event_type, trial_tenant, admin, live
):
    gateway = local_gateway()
    session_id = checkout_open(trial_tenant, admin, "agents-growth")
    sub_id = gateway.complete_checkout(session_id).id
    gateway.schedule_subscription_change(
        subscription_id=sub_id,
        price_id="price_local_agents_scale",
        at=timezone.now() + timedelta(days=10),
        idempotency_key="test-schedule",
    )
    customer_id = customer_id_of(trial_tenant)
    object_type = {
        "checkout": "checkout.session",
        "customer": "customer" if event_type == "customer.updated" else "subscription",
        "invoice": "invoice",
        "subscription_schedule": "subscription_schedule",
    }[event_type.split(".")[0]]
    if object_type == "customer":
        # The customer.updated handler re-reads the customer; the subscription comes from the sync
        # that the checkout's own events run (delivered here by the first one's processing).
        with live():
            services.checkout_sync(session_id=session_id)
    payload = body(_synthetic_event(event_type, _gateway_object(object_type, customer_id)))

    answers, states = [], []
    for _ in range(3):
        with live():
            response = post_webhook(payload, sign(payload))
        answers.append((response.status_code, response.json()["duplicate"]))
        states.append(world(trial_tenant))

    assert answers == [(200, False), (200, True), (200, True)]
    row = WebhookEvent.objects.get(event_id=f"evt_test_{event_type.replace('.', '_')}")
    assert (row.type, row.status, row.attempts, row.error) == (event_type, "processed", 1, "")
    assert states[0] == states[1] == states[2]
    # Whatever the type, the handler re-read the subscription: the trial became Growth, once.
    sub = live_sub(trial_tenant)
    assert (sub.plan.code, sub.state, sub.gateway_subscription_id) == ("agents-growth", "active", sub_id)
    actions = Counter(AuditEvent.objects.filter(tenant=trial_tenant).values_list("action", flat=True))
    assert (actions["subscription.converted"], actions["subscription.activated"]) == (1, 1)
    if object_type in ("invoice", "checkout.session", "customer"):
        # A completed checkout also mirrors the subscription's first invoice: the page that the
        # customer returns to shows it without waiting for invoice.paid.
        invoice = Invoice.objects.get(tenant=trial_tenant)
        assert (invoice.status, invoice.total, invoice.amount_paid, invoice.lines.count()) == (
            "paid",
            19900,
            19900,
            1,
        )
    else:
        assert Invoice.objects.count() == 0
    if object_type == "checkout.session":
        assert CheckoutSession.objects.get(tenant=trial_tenant).status == "complete"


# --- a whole subscription's life, replayed in any order --------------------------------------------


@pytest.fixture
def history(subscribed, trial_tenant, admin) -> list[dict[str, Any]]:
    """Acme paid Growth (applied live). Then, while our endpoint hears nothing, the subscription lives
    on at the gateway: a renewal fails, is paid, a change to Scale is scheduled from the Billing tab
    and released at the gateway, the subscription is canceled at period end and deleted when the
    period ends. What webhooks derive is then reset (no events, no invoices, the checkout open); the
    subscription row keeps the gateway id the checkout gave it — an ended subscription our database
    never heard of is deliberately not recorded, so without it every order would trivially agree.
    Returns every event the gateway emitted about the customer, in its order."""
    gateway = local_gateway()
    customer_id = customer_id_of(trial_tenant)
    sub_id = subscribed.gateway_subscription_id
    gateway.fail_next_payment(sub_id)
    gateway.pay_open_invoices(customer_id)
    change = services.plan_change(
        tenant=trial_tenant, to_plan=plan("agents-scale"), when="period_end", custom_date=None, actor=admin
    ).scheduled
    assert change is not None
    assert change.status == "scheduled"
    gateway.release_schedule(change.gateway_schedule_id, idempotency_key="released-at-the-gateway")
    gateway.cancel_subscription(subscription_id=sub_id, at_period_end=True, idempotency_key="portal-cancel")
    period_end = gateway.retrieve_subscription(sub_id).current_period_end
    assert gateway.advance(now=period_end + timedelta(seconds=1)) == 1
    assert gateway.retrieve_subscription(sub_id).status == "canceled"

    WebhookEvent.objects.all().delete()
    Invoice.objects.all().delete()
    CheckoutSession.objects.update(status="open", completed_at=None)
    events = emitted_events(customer_id)
    assert [e["type"] for e in events] == [
        "customer.subscription.created",  # checkout completion
        "invoice.finalized",
        "invoice.paid",
        "checkout.session.completed",
        "customer.updated",  # the card Checkout saved on the subscription moves to the customer
        "customer.subscription.updated",
        "invoice.finalized",  # renewal failure
        "invoice.payment_failed",
        "customer.subscription.updated",
        "invoice.paid",  # payment
        "customer.subscription.updated",
        "subscription_schedule.created",  # scheduled change
        "customer.subscription.updated",
        "subscription_schedule.released",
        "customer.subscription.updated",
        "customer.subscription.updated",  # cancel at period end
        "customer.subscription.deleted",
    ]
    return events


def _replay(events: list[dict[str, Any]], live) -> list[tuple[int, bool]]:
    client = Client()
    answers = []
    for event in events:
        payload = body(event)
        with live():
            response = post_webhook(payload, sign(payload), client)
        answers.append((response.status_code, response.json()["duplicate"]))
    return answers


def _in_isolation(fn):
    """Run `fn` and undo everything it wrote (a savepoint), returning its result."""
    sid = transaction.savepoint_create()
    try:
        return fn()
    finally:
        transaction.savepoint_rollback(sid)


def test_a_subscriptions_events_in_any_order_or_repeated_end_in_the_same_state(history, trial_tenant, live):
    """DESIGN principle 4: the handlers re-read the gateway's objects, so the order of delivery and
    repeats cannot matter. S is the state after delivering the events in the gateway's order; five
    shuffled orders and a shuffled triple delivery, each from the same starting point, end in S."""
    base = world(trial_tenant)

    def deliver(events):
        answers = _replay(events, live)
        rows = list(WebhookEvent.objects.values_list("status", "attempts"))
        return answers, rows, world(trial_tenant)

    # The order the gateway emitted them: the reference state S.
    answers, rows, final = _in_isolation(lambda: deliver(history))
    assert answers == [(200, False)] * len(history)
    assert rows == [("processed", 1)] * len(history)
    assert final != base

    (paid,) = [s for s in final["subscriptions"] if s[4]]  # the one with a gateway subscription
    assert paid[2:4] == ("agents-growth", "expired")
    assert paid[12] == local_gateway().retrieve_subscription(paid[4]).ended_at  # ended_at: the gateway's
    assert sorted((i[3], i[2], i[5], i[7], i[8]) for i in final["invoices"]) == [
        ("subscription_create", "paid", 19900, 19900, 0),
        ("subscription_cycle", "paid", 19900, 19900, 0),
    ]
    assert [c[2] for c in final["scheduled_changes"]] == ["canceled"]
    assert [c[1] for c in final["checkouts"]] == ["complete"]

    # Five shuffled orders, then every event three times in a shuffled order: the same state.
    for seed in range(5):
        shuffled = random.Random(seed).sample(history, len(history))
        assert shuffled != history
        answers, rows, state = _in_isolation(lambda events=shuffled: deliver(events))
        assert rows == [("processed", 1)] * len(history), f"seed {seed}"
        assert state == final, f"seed {seed}"
    tripled = random.Random(99).sample(history * 3, 3 * len(history))
    answers, rows, state = _in_isolation(lambda: deliver(tripled))
    assert sorted(answers).count((200, False)) == len(history)
    assert sorted(answers).count((200, True)) == 2 * len(history)
    assert rows == [("processed", 1)] * len(history)
    assert state == final


# --- concurrency: ten deliveries of one event at once ----------------------------------------------


@pytest.fixture
def recorded(monkeypatch, fresh_gateway) -> list[tuple[bytes, str]]:
    """Deliveries are recorded instead of sent: the gateway is rebuilt with this delivery."""
    sent: list[tuple[bytes, str]] = []
    monkeypatch.setattr(factory.WIRING, "deliver", lambda payload, header: sent.append((payload, header)))
    return sent


def _race(n: int, work) -> tuple[list[Any], list[BaseException]]:
    barrier = threading.Barrier(n)
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(work())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results, errors


@pytest.mark.django_db(transaction=True)
def test_the_same_event_delivered_by_ten_threads_at_once_is_applied_once(recorded, tenant, admin):
    # No trial: the checkout starts a new subscription ("subscription.started").
    session_id = checkout_open(tenant, admin, "agents-growth")
    local_gateway().complete_checkout(session_id)
    (payload,) = [p for p, _ in recorded if json.loads(p)["type"] == "checkout.session.completed"]
    signature = sign(payload)

    def deliver() -> tuple[int, bool]:
        response = post_webhook(payload, signature, Client())
        return response.status_code, response.json()["duplicate"]

    results, errors = _race(10, deliver)

    assert errors == []
    assert sorted(results) == [(200, False)] + [(200, True)] * 9
    row = WebhookEvent.objects.get()
    assert (row.status, row.attempts, row.error) == ("processed", 1, "")
    sub = Subscription.objects.get(tenant=tenant)
    assert (sub.plan.code, sub.state) == ("agents-growth", "active")
    assert AuditEvent.objects.filter(tenant=tenant, action="subscription.started").count() == 1
    assert CheckoutSession.objects.get(tenant=tenant).status == "complete"


@pytest.mark.django_db(transaction=True)
def test_ten_workers_processing_one_stored_event_apply_it_once(recorded, tenant, admin):
    session_id = checkout_open(tenant, admin, "agents-growth")
    local_gateway().complete_checkout(session_id)
    (payload,) = [p for p, _ in recorded if json.loads(p)["type"] == "customer.subscription.created"]
    event = json.loads(payload)
    row = WebhookEvent.objects.create(
        event_id=event["id"],
        type=event["type"],
        object_type="subscription",
        object_id=event["data"]["object"]["id"],
        payload=event,
        event_created=timezone.now(),
    )

    results, errors = _race(10, lambda: webhook_event_process(event_pk=row.pk))

    assert errors == []
    assert sorted(results) == ["processed"] + ["skipped"] * 9
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("processed", 1)
    assert Subscription.objects.filter(tenant=tenant).count() == 1
    assert AuditEvent.objects.filter(tenant=tenant, action="subscription.started").count() == 1


# --- failures, retries, unknown types ---------------------------------------------------------------


def test_a_failing_handler_is_stored_as_failed_and_the_retry_applies_it_once_fixed(trial_tenant, admin, live):
    """Staff renamed Growth's price in the catalog: the gateway's subscription names a price we do
    not know. The delivery is still acknowledged; the retry sweeper applies it once the price is back."""
    session_id = checkout_open(trial_tenant, admin, "agents-growth")
    local_gateway().complete_checkout(session_id)
    (event,) = [
        e
        for e in emitted_events(customer_id_of(trial_tenant))
        if e["type"] == "customer.subscription.created"
    ]
    Plan.objects.filter(code="agents-growth").update(stripe_price_id="price_local_agents_growth_v2")
    payload = body(event)

    with live():
        response = post_webhook(payload, sign(payload))

    assert response.status_code == 200
    row = WebhookEvent.objects.get()
    assert (row.status, row.attempts) == ("failed", 1)
    assert "No plan in the catalog has the price 'price_local_agents_growth'" in row.error
    assert live_sub(trial_tenant).state == "trialing"

    # Not fixed yet: the retry fails again and counts the attempt.
    assert retry_webhook_events.delay().get() == 1
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("failed", 2)

    Plan.objects.filter(code="agents-growth").update(stripe_price_id="price_local_agents_growth")
    assert retry_webhook_events.delay().get() == 1
    row.refresh_from_db()
    assert (row.status, row.attempts, row.error) == ("processed", 3, "")
    assert row.processed_at is not None
    sub = live_sub(trial_tenant)
    assert (sub.plan.code, sub.state) == ("agents-growth", "active")

    # Nothing is left to retry; a redelivery is a duplicate.
    assert retry_webhook_events.delay().get() == 0
    with live():
        again = post_webhook(payload, sign(payload))
    assert again.json() == {"received": True, "duplicate": True, "status": "processed"}


def test_the_retry_gives_up_after_eight_attempts(trial_tenant):
    WebhookEvent.objects.create(
        event_id="evt_gave_up",
        type="customer.subscription.updated",
        object_id="sub_missing",
        payload={},
        status="failed",
        attempts=8,
        event_created=timezone.now(),
    )
    assert retry_webhook_events.delay().get() == 0
    assert WebhookEvent.objects.get().attempts == 8


def test_an_unknown_event_type_is_stored_as_ignored(db, live):
    event = _synthetic_event("payout.paid", {"id": "po_local_1", "object": "payout"})
    payload = body(event)

    with live():
        first = post_webhook(payload, sign(payload))
    with live():
        second = post_webhook(payload, sign(payload))

    assert first.status_code == second.status_code == 200
    assert second.json() == {"received": True, "duplicate": True, "status": "ignored"}
    row = WebhookEvent.objects.get()
    assert (row.event_id, row.type, row.status, row.attempts, row.error) == (
        "evt_test_payout_paid",
        "payout.paid",
        "ignored",
        1,
        "",
    )
    assert (row.object_type, row.object_id, row.tenant) == ("payout", "po_local_1", None)


def test_a_signed_body_that_is_not_an_event_is_400(db, live):
    payload = json.dumps({"id": "cus_1", "object": "customer"}).encode()
    with live():
        response = post_webhook(payload, sign(payload))
    assert response.status_code == 400
    assert WebhookEvent.objects.count() == 0


def test_the_webhook_endpoint_answers_only_post(db):
    assert Client().get("/billing/webhooks/stripe/").status_code == 405
