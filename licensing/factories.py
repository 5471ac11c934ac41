"""factory-boy helpers for the licensing tests: clients, a tenant on a Helpdesk AI plan, and its
cycle's ticket credits granted through the services (never rows written around them)."""

from __future__ import annotations

from datetime import datetime, timedelta

import factory
from django.utils import timezone

from licensing import services
from licensing.models import Client
from plans.factories import SubscriptionFactory, plan
from plans.models import Subscription
from tenants.factories import TenantFactory
from tenants.models import Tenant


class ClientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Client

    tenant = factory.SubFactory(TenantFactory)
    external_id = factory.Sequence(lambda n: f"psa-{n:05d}")
    name = factory.Sequence(lambda n: f"Client {n:05d}")
    status = Client.Status.ACTIVE
    company_type = "Customer"
    agreement_type = "Managed services"


def on_helpdesk(
    tenant: Tenant,
    code: str = "helpdesk-essentials",
    *,
    start: datetime | None = None,
    days: int = 30,
    grant: bool = True,
    **fields: object,
) -> Subscription:
    """An active Helpdesk AI subscription (AI Essentials by default) whose period started at
    `start`; with `grant`, its cycle's ticket credits as billing_portal would have granted them."""
    start = start or timezone.now()
    sub = SubscriptionFactory(
        tenant=tenant,
        plan=plan(code),
        current_period_start=start,
        current_period_end=start + timedelta(days=days),
        **fields,
    )
    if grant:
        services.ticket_credits_refresh(tenant=tenant)
    return sub


def licensed(tenant: Tenant, n: int, kind: str = "ai", **fields: object) -> list[Client]:
    """`n` active clients holding a license of `kind` (written as rows: the caps are not under test)."""
    field = "ai_license_since" if kind == "ai" else "chat_license_since"
    return ClientFactory.create_batch(n, tenant=tenant, **{field: timezone.now()}, **fields)
