# The cache versions of the integration API's answers (tenants.cache) and, on PostgreSQL, the
# functions the apps' triggers call to bump them (tenants.db_triggers).

from django.db import migrations, models

from tenants import db_triggers


class Migration(migrations.Migration):
    dependencies = [
        ("tenants", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="CacheVersion",
            fields=[
                ("scope", models.BigIntegerField(primary_key=True, serialize=False)),
                ("version", models.BigIntegerField()),
            ],
        ),
        migrations.RunPython(db_triggers.functions_install, db_triggers.functions_uninstall, elidable=False),
    ]
