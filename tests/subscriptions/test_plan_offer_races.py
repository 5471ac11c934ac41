"""Lock, then check, then write: double clicks and parallel requests on real PostgreSQL
transactions, each in its own thread and connection. One change, one gateway call, and every other
answer is the page's clear message — never an IntegrityError 500. S18-S20, S29."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from django.db import connection
from django.test import Client

from billing_portal import services as billing
from billing_portal.gateway.factory import get_gateway
from billing_portal.gateway.local import LocalGateway
from billing_portal.gateway.store import LocalGatewayObject
from billing_portal.models import BillingCustomer, CheckoutSession
from plans import services as plan_services
from plans.factories import plan
from plans.models import ScheduledChange, Subscription
from plans.offers import When
from tenants import services as tenant_services
from tenants.errors import BusinessError
from tenants.factories import UserFactory
from tenants.models import AuditEvent, Tenant, User

pytestmark = pytest.mark.django_db(transaction=True)

PARALLEL = 20


def race(*calls: Callable[[], Any]) -> list[Any]:
    """Run the callables at the same moment in threads; what each returned or raised."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait()
            results[index] = call()
        except Exception as exc:  # reported by the test
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def slowly(module: Any, name: str, seconds: float = 0.2):
    """Make `module.name` linger inside the winner's transaction, so the others arrive while it is
    open (the race the lock must win, made certain rather than likely)."""
    real = getattr(module, name)

    def slow(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        threading.Event().wait(seconds)
        return result

    return mock.patch.object(module, name, side_effect=slow)


class Calls:
    """Counts the calls made to one method of the local gateway (each thread's call included)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.count += 1


def counting(name: str):
    """Count the calls to LocalGateway.<name>: one click, one call — the idempotency key would hide a
    second call's effect, so the number of calls is what shows the lock at work."""
    calls = Calls()
    real = getattr(LocalGateway, name)

    def counted(self: LocalGateway, *args: Any, **kwargs: Any) -> Any:
        calls.add()
        return real(self, *args, **kwargs)

    return mock.patch.object(LocalGateway, name, counted), calls


def gateway_objects(tenant: Tenant, object_type: str) -> list[dict[str, Any]]:
    customer = BillingCustomer.objects.get(tenant=tenant).customer_id
    return [
        row.data
        for row in LocalGatewayObject.objects.filter(object_type=object_type, customer_id=customer).order_by(
            "id"
        )
    ]


@pytest.fixture
def paid() -> tuple[Tenant, User, Subscription]:
    """A tenant on Growth, bought through the local checkout (every step committed)."""
    admin = UserFactory(email="founder@initech.test")
    tenant = tenant_services.tenant_create(name="Initech", admin=admin)
    plan_services.tenant_provision(tenant=tenant, actor=admin)
    url = billing.checkout_start(
        tenant=tenant, plan=plan("agents-growth"), actor=admin, success_url="/", cancel_url="/"
    )
    get_gateway().complete_checkout(url.rstrip("/").rsplit("/", 1)[-1])  # type: ignore[attr-defined]
    sub = Subscription.objects.get(tenant=tenant, product__code="ai_agents", state="active")
    assert sub.plan.code == "agents-growth"
    return tenant, admin, sub


def test_twenty_parallel_end_of_period_changes_schedule_one(paid):
    """S18, S19: 20 POSTs of the dialog at once — one scheduled change, one gateway schedule, and
    19 answers that say a change is already scheduled (the dialog, 422), never a 500."""
    tenant, admin, sub = paid
    clients = []
    for _ in range(PARALLEL):
        client = Client(raise_request_exception=False)
        client.force_login(admin, backend="django.contrib.auth.backends.ModelBackend")
        clients.append(client)
    url = f"/t/{tenant.slug}/billing/plans/agents-scale/change/"
    patch, calls = counting("schedule_subscription_change")

    with patch:
        responses = race(*[lambda c=c: c.post(url, {"when": When.PERIOD_END}) for c in clients])

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [302] + [422] * (PARALLEL - 1), statuses
    for response in responses:
        if response.status_code == 422:
            assert "A plan change is already scheduled. Cancel it first." in response.content.decode()
    change = ScheduledChange.objects.get(tenant=tenant)
    assert (change.status, change.to_plan.code, change.effective_at) == (
        "scheduled",
        "agents-scale",
        sub.current_period_end,
    )
    assert calls.count == 1
    assert len(gateway_objects(tenant, "subscription_schedule")) == 1
    assert AuditEvent.objects.filter(tenant=tenant, action="subscription.change_scheduled").count() == 1


def test_parallel_immediate_changes_switch_the_plan_once(paid):
    """S18, S21: a double click on Update subscription (Immediately) charges one proration."""
    tenant, admin, sub = paid

    def change():
        return billing.plan_change(
            tenant=tenant, to_plan=plan("agents-scale"), when=When.IMMEDIATELY, custom_date=None, actor=admin
        )

    patch, calls = counting("change_subscription_price")
    with patch:
        results = race(*[change] * 5)

    done = [r for r in results if isinstance(r, billing.ChangeResult)]
    refused = [r for r in results if isinstance(r, BusinessError)]
    assert (len(done), len(refused)) == (1, 4), results
    assert {(e.code, e.message) for e in refused} == {("same_plan", "You are already on Scale.")}
    assert calls.count == 1
    assert Subscription.objects.get(pk=sub.pk).plan.code == "agents-scale"
    changed = AuditEvent.objects.filter(
        tenant=tenant, action="subscription.plan_changed", data__to_plan="agents-scale"
    )
    assert list(changed.values_list("actor_user", flat=True)) == [admin.pk]
    invoices = [i for i in gateway_objects(tenant, "invoice") if i["billing_reason"] == "subscription_update"]
    assert len(invoices) == 1


def test_parallel_free_plan_starts_open_one_subscription(db):
    """A double provisioning of AI Free: one subscription, the other a clear refusal (no IntegrityError)."""
    admin = UserFactory(email="founder@initech.test")
    tenant = tenant_services.tenant_create(name="Initech", admin=admin)

    def start():
        return plan_services.free_plan_start(tenant=tenant, plan=plan("credits-free"), actor=admin)

    with slowly(plan_services, "audit"):
        results = race(*[start] * 5)

    started = [r for r in results if isinstance(r, Subscription)]
    refused = [r for r in results if not isinstance(r, Subscription)]
    assert len(started) == 1, results
    assert {(type(e), e.code, e.status) for e in refused} == {(BusinessError, "free_plan_used", 409)}, results
    assert Subscription.objects.filter(tenant=tenant, product__code="ai_credits").count() == 1


def test_parallel_resumes_update_the_gateway_once(paid):
    """S29: Resume clicked twice (or by two admins): one update at the gateway, one audit event; the
    other click is told there is nothing left to resume."""
    tenant, admin, sub = paid
    get_gateway().cancel_subscription(
        subscription_id=sub.gateway_subscription_id, at_period_end=True, idempotency_key="test-cancel"
    )
    assert Subscription.objects.get(pk=sub.pk).state == "canceled"
    updates_before = len(gateway_objects(tenant, "event"))

    def resume():
        return billing.subscription_resume(tenant=tenant, product=sub.product, actor=admin)

    patch, calls = counting("resume_subscription")
    with slowly(billing, "subscription_facts"), patch:
        results = race(*[resume] * 5)

    resumed = [r for r in results if isinstance(r, Subscription)]
    refused = [r for r in results if not isinstance(r, Subscription)]
    assert len(resumed) == 1, results
    assert {(type(e), e.code, e.message) for e in refused} == {
        (BusinessError, "not_canceled", "Your subscription is not canceled: there is nothing to resume.")
    }, results
    assert calls.count == 1
    events = gateway_objects(tenant, "event")[updates_before:]
    assert [(e["type"], e["data"]["previous_attributes"].get("cancel_at_period_end")) for e in events] == [
        ("customer.subscription.updated", True)
    ]
    current = Subscription.objects.get(pk=sub.pk)
    assert (current.state, current.ends_at, current.canceled_at) == ("active", None, None)
    assert AuditEvent.objects.filter(tenant=tenant, action="subscription.resumed").count() == 1


def test_parallel_cancels_of_a_scheduled_plan_release_it_once(paid):
    """S20: Cancel scheduled plan confirmed twice: one release at the gateway, one audit event."""
    tenant, admin, _sub = paid
    change = billing.plan_change(
        tenant=tenant, to_plan=plan("agents-scale"), when=When.PERIOD_END, custom_date=None, actor=admin
    ).scheduled
    assert change is not None

    def undo():
        return billing.scheduled_change_undo(tenant=tenant, change=change, actor=admin)

    patch, calls = counting("release_schedule")
    with slowly(plan_services, "audit"), patch:
        results = race(*[undo] * 5)

    assert all(isinstance(r, ScheduledChange) for r in results), results
    assert {r.status for r in results} == {"canceled"}
    assert calls.count == 1
    releases = [e for e in gateway_objects(tenant, "event") if e["type"] == "subscription_schedule.released"]
    assert len(releases) == 1
    assert AuditEvent.objects.filter(tenant=tenant, action="subscription.change_canceled").count() == 1
    assert ScheduledChange.objects.get(pk=change.pk).status == "canceled"


def test_twenty_parallel_subscribe_clicks_open_one_checkout(db):
    """S15; issue 7, defect 1 (failed before the fix: each click opened its own payable session, so
    paying two tabs made two subscriptions). 20 Subscribe POSTs at once: one checkout session at the
    gateway, one local record, and every click is sent to the same hosted page."""
    admin = UserFactory(email="founder@initech.test")
    tenant = tenant_services.tenant_create(name="Initech", admin=admin)
    plan_services.tenant_provision(tenant=tenant, actor=admin)
    clients = []
    for _ in range(PARALLEL):
        client = Client(raise_request_exception=False)
        client.force_login(admin, backend="django.contrib.auth.backends.ModelBackend")
        clients.append(client)
    url = f"/t/{tenant.slug}/billing/plans/agents-growth/subscribe/"
    patch, calls = counting("create_checkout_session")

    with patch:
        responses = race(*[lambda c=c: c.post(url) for c in clients])

    assert sorted(r.status_code for r in responses) == [302] * PARALLEL
    assert len({r["Location"] for r in responses}) == 1
    assert calls.count == 1
    assert CheckoutSession.objects.filter(tenant=tenant).count() == 1
    assert len(gateway_objects(tenant, "checkout.session")) == 1


def test_the_gateway_customer_is_created_once_whoever_asks_at_the_same_moment():
    """Manage and a checkout at once (or two Manage clicks) for a tenant without a customer yet: the
    creation holds the tenant's lock, so one gateway customer and one row, never an orphan."""
    admin = UserFactory(email="founder@initrode.test")
    tenant = tenant_services.tenant_create(name="Initrode", admin=admin)
    patch, creates = counting("create_customer")

    with patch, slowly(billing, "gateway_write"):
        results = race(*[lambda: billing.customer_ensure(tenant=tenant) for _ in range(4)])

    assert all(isinstance(r, str) for r in results), results
    assert len(set(results)) == 1
    assert creates.count == 1
    assert BillingCustomer.objects.filter(tenant=tenant).count() == 1
