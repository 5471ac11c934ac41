"""Shared helpers of the billing portal's tests: signing webhook bodies like Stripe, reading the events
the local gateway emitted, and paying a checkout through the local gateway.

In a plain `db` test nothing commits, so the local gateway's deliveries (queued with
`transaction.on_commit`) never run unless the test wraps the step in `live()`, which executes the
on-commit callbacks — the webhook view, then the task that applies the event — as a commit would."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import stripe
from django.test import Client

from billing_portal import services
from billing_portal.gateway import factory
from billing_portal.gateway.local import LocalGateway
from billing_portal.gateway.store import LocalGatewayObject
from billing_portal.models import BillingCustomer
from plans import services as plan_services
from plans.factories import plan
from plans.models import Subscription
from tenants.models import Tenant, User

SECRET = "whsec_test_secret"  # the root conftest's STRIPE_WEBHOOK_SECRET
WEBHOOK_URL = "/billing/webhooks/stripe/"


def sign(payload: bytes, *, timestamp: int | None = None, secret: str = SECRET) -> str:
    """A `Stripe-Signature` header (`t=<unix>,v1=<hex HMAC-SHA256 of "{t}.{payload}">`), made by the
    SDK's own helper."""
    t = int(time.time()) if timestamp is None else timestamp
    return str(stripe.WebhookSignature.generate_signature_header(payload.decode(), secret, t))


def body(event: dict[str, Any]) -> bytes:
    return json.dumps(event, indent=2).encode()


def post_webhook(payload: bytes, signature: str | None, client: Client | None = None):
    headers = {} if signature is None else {"HTTP_STRIPE_SIGNATURE": signature}
    return (client or Client()).post(WEBHOOK_URL, data=payload, content_type="application/json", **headers)


def emitted_events(customer_id: str) -> list[dict[str, Any]]:
    """The events the local gateway emitted about one customer, in the order it emitted them."""
    return [
        row.data
        for row in LocalGatewayObject.objects.filter(object_type="event", customer_id=customer_id).order_by(
            "id"
        )
    ]


def local_gateway() -> LocalGateway:
    gateway = factory.get_gateway()
    assert isinstance(gateway, LocalGateway)
    return gateway


def customer_id_of(tenant: Tenant) -> str:
    return BillingCustomer.objects.get(tenant=tenant).customer_id


def checkout_open(tenant: Tenant, admin: User, plan_code: str) -> str:
    """Open a checkout the way the Subscribe button does; returns the gateway's session id."""
    url = services.checkout_start(
        tenant=tenant, plan=plan(plan_code), actor=admin, success_url="/ok", cancel_url="/back",
        without_security_code=True,  # an AI Credits plan's code is tested on its own
    )  # fmt: skip
    return url.rstrip("/").rsplit("/", 1)[-1]


def live_sub(tenant: Tenant, product: str = "ai_agents") -> Subscription:
    return (
        Subscription.objects.select_related("plan")
        .exclude(state="expired")
        .get(tenant=tenant, product__code=product)
    )


@pytest.fixture
def fresh_gateway():
    """get_gateway() is cached per settings: drop it before and after, so a patched delivery is the
    one the gateway is built with, and the next test gets the real one again."""
    factory.reset()
    yield
    factory.reset()


@pytest.fixture
def live(django_capture_on_commit_callbacks) -> Callable:
    """`with live(): ...` runs the step's on-commit callbacks (webhook deliveries and their processing)."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def trial_tenant(tenant, admin) -> Tenant:
    """Acme on what a new tenant starts on: the AI Agents trial and AI Free."""
    plan_services.tenant_provision(tenant=tenant)
    return tenant


@pytest.fixture
def subscribed(trial_tenant, admin, live) -> Subscription:
    """Acme paid Growth through the local checkout; the webhooks made it active."""
    session_id = checkout_open(trial_tenant, admin, "agents-growth")
    with live():
        local_gateway().complete_checkout(session_id)
    sub = live_sub(trial_tenant)
    assert (sub.plan.code, sub.state) == ("agents-growth", "active")
    return sub
