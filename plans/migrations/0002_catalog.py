from django.conf import settings
from django.db import migrations


def create_catalog(apps, schema_editor):
    from plans.catalog import ensure_catalog

    ensure_catalog(
        apps.get_model("plans", "Product"),
        apps.get_model("plans", "Plan"),
        trial_days=settings.TRIAL_DAYS,
        trial_sessions=settings.TRIAL_SESSIONS,
    )


class Migration(migrations.Migration):
    dependencies = [("plans", "0001_initial")]

    operations = [migrations.RunPython(create_catalog, migrations.RunPython.noop)]
