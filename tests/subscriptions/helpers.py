"""Helpers shared by the plans tests (not a test module: pytest collects only test_*.py).

Everything goes through the real services and the local gateway; the local gateway's webhooks are
delivered on commit, so every action that talks to it runs inside `capture` (pytest-django's
`django_capture_on_commit_callbacks(execute=True)`), which also sends the queued emails."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.core import mail

from billing_portal import services as billing
from billing_portal.gateway.factory import get_gateway
from billing_portal.gateway.local import LocalGateway
from billing_portal.models import BillingCustomer, WebhookEvent
from plans.factories import plan
from plans.models import Subscription
from tenants.models import Tenant, User

Capture = Callable[..., AbstractContextManager[Any]]

# A fixed start in the past: no date is "today" by accident, and rows other suites commit to the
# shared test database (created on the real clock) are never due for this clock's sweepers.
START = datetime(2021, 3, 10, 9, 0, tzinfo=UTC)
ADMIN_EMAILS = ["cofounder@initech.test", "founder@initech.test"]


@dataclass(frozen=True)
class Org:
    tenant: Tenant
    founder: User  # admin, signed the tenant up
    cofounder: User  # admin
    member: User


def org_mail(subject_part: str = "") -> list[tuple[str, str]]:
    """(recipient, subject) of the emails sent to the org's people, sorted. The sweepers are global
    and the shared test database may hold other suites' committed rows, so mail to anyone else is
    left out."""
    return sorted(
        (m.to[0], m.subject)
        for m in mail.outbox
        if m.to[0].endswith("@initech.test") and subject_part in m.subject
    )


def gateway() -> LocalGateway:
    gw = get_gateway()
    assert isinstance(gw, LocalGateway)
    return gw


def customer_id(tenant: Tenant) -> str:
    return BillingCustomer.objects.get(tenant=tenant).customer_id


def assert_webhooks_applied(tenant: Tenant) -> None:
    """The local gateway delivers robustly (a failing handler is logged, not raised): make a silent
    failure of one of the tenant's events loud."""
    events = WebhookEvent.objects.filter(payload__data__object__customer=customer_id(tenant))
    assert events.exists()
    assert list(events.exclude(status__in=["processed", "ignored"]).values("type", "status", "error")) == []


def subscribe(*, tenant: Tenant, actor: User, plan_code: str, capture: Capture) -> Subscription:
    """Subscribe on the Plans section: the checkout opens, the customer pays on the hosted page, the
    webhooks bring the subscription in. Returns the tenant's live subscription to that product. (An
    AI Credits plan goes through the same checkout here, past its security code: these tests are
    about what follows; the code's own tests are billing_portal's.)"""
    to_plan = plan(plan_code)
    with capture(execute=True):
        url = billing.checkout_start(
            tenant=tenant, plan=to_plan, actor=actor, success_url="/ok/", cancel_url="/no/",
            without_security_code=True,
        )  # fmt: skip
    session_id = url.rstrip("/").rsplit("/", 1)[-1]
    with capture(execute=True):
        gateway().complete_checkout(session_id)
    assert_webhooks_applied(tenant)
    return live(tenant, to_plan.product.code)


def live(tenant: Tenant, product_code: str = "ai_agents") -> Subscription:
    return (
        Subscription.objects.select_related("plan")
        .exclude(state=Subscription.State.EXPIRED)
        .get(tenant=tenant, product__code=product_code)
    )


def subscription_rows(tenant: Tenant) -> list[dict[str, Any]]:
    """Every subscription row of the tenant, minus the write timestamp: a snapshot to compare."""
    return [
        {k: v for k, v in row.items() if k != "updated_at"}
        for row in Subscription.objects.filter(tenant=tenant).order_by("pk").values()
    ]
