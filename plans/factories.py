"""factory-boy factories for plans. The catalog itself comes from the data migration: use
`plan("agents-growth")` to get a seeded plan."""

from datetime import timedelta

import factory
from django.utils import timezone

from plans.models import Lead, Plan, ScheduledChange, Subscription
from tenants.factories import TenantFactory


def plan(code: str) -> Plan:
    return Plan.objects.select_related("product").get(code=code)


class SubscriptionFactory(factory.django.DjangoModelFactory):
    """A paid, active subscription (by default to AI Agents Growth) as the gateway would have made it."""

    class Meta:
        model = Subscription

    tenant = factory.SubFactory(TenantFactory)
    plan = factory.LazyFunction(lambda: plan("agents-growth"))
    product = factory.LazyAttribute(lambda o: o.plan.product)
    state = Subscription.State.ACTIVE
    started_at = factory.LazyFunction(timezone.now)
    current_period_start = factory.LazyFunction(timezone.now)
    current_period_end = factory.LazyFunction(lambda: timezone.now() + timedelta(days=30))
    gateway_subscription_id = factory.Sequence(lambda n: f"sub_test_{n:06d}")


class ScheduledChangeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ScheduledChange

    subscription = factory.SubFactory(SubscriptionFactory)
    tenant = factory.LazyAttribute(lambda o: o.subscription.tenant)
    to_plan = factory.LazyFunction(lambda: plan("agents-scale"))
    effective_at = factory.LazyAttribute(lambda o: o.subscription.current_period_end)
    gateway_schedule_id = factory.Sequence(lambda n: f"sub_sched_test_{n:06d}")


class LeadFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Lead

    tenant = factory.SubFactory(TenantFactory)
    plan = factory.LazyFunction(lambda: plan("agents-enterprise"))
    kind = Lead.Kind.BOOK_DEMO
