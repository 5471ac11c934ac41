"""A contracted subscription's end is its contract's (`contract_start` sets it since): the ones
assigned before get it too, so every page says when they end and that they have ended."""

from django.db import migrations
from django.db.models import OuterRef, Subquery


def forwards(apps, schema_editor):
    Subscription = apps.get_model("plans", "Subscription")
    Contract = apps.get_model("plans", "Contract")
    ends = Contract.objects.filter(subscription=OuterRef("pk")).values("ends_at")[:1]
    Subscription.objects.filter(contract__isnull=False, ends_at__isnull=True).update(ends_at=Subquery(ends))


class Migration(migrations.Migration):
    dependencies = [
        ("plans", "0009_trial_sessions_ending"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
