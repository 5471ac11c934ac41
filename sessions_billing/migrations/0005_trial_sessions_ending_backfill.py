"""S10: a trial that had already used 90% of its sessions before `trial_sessions_ending_at` existed
gets it from its period's 90% email (the trial's second usage email, sent once at that share)."""

from django.db import migrations


def backfill(apps, schema_editor):
    Subscription = apps.get_model("plans", "Subscription")
    UsagePeriod = apps.get_model("sessions_billing", "UsagePeriod")
    trials = Subscription.objects.filter(
        state="trialing", trial_sessions_ending_at__isnull=True, product__code="ai_agents"
    )
    for sub in trials.iterator():
        warned = (
            UsagePeriod.objects.filter(
                tenant_id=sub.tenant_id,
                period_start=sub.current_period_start,
                second_warning_at__isnull=False,
            )
            .values_list("second_warning_at", flat=True)
            .first()
        )
        if warned is not None:
            Subscription.objects.filter(pk=sub.pk).update(trial_sessions_ending_at=warned)


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_billing", "0004_covering_indexes"),
        ("plans", "0009_trial_sessions_ending"),
    ]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
