# AI Free lasts 3 calendar months (C05), not 90 days: Plan.validity_months, set on the catalog's AI
# Free where staff left its 90 days as the catalog made them. Subscriptions started before keep the
# end they were given.

from django.db import migrations, models


def three_months(apps, schema_editor):
    Plan = apps.get_model("plans", "Plan")
    Plan.objects.filter(code="credits-free", validity_days=90, validity_months__isnull=True).update(
        validity_months=3
    )


class Migration(migrations.Migration):
    dependencies = [("plans", "0006_cache_version_triggers")]

    operations = [
        migrations.AddField(
            model_name="plan",
            name="validity_months",
            field=models.PositiveSmallIntegerField(
                blank=True,
                help_text="A free plan's validity in calendar months, when set, instead of its days "
                "(AI Free: 3 months, C05; a day the last month lacks is its last day).",
                null=True,
            ),
        ),
        migrations.RunPython(three_months, migrations.RunPython.noop),
    ]
