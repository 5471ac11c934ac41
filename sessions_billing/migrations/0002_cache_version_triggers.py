# A tenant's own session limit is cached with its entitlements (sessions_billing.terms): setting or
# resetting it bumps the tenant's cache version (tenants.db_triggers).

from django.db import migrations

from tenants import db_triggers

TABLES: dict[str, db_triggers.Scope] = {"sessions_billing_sessionlimit": "tenant"}


class Migration(migrations.Migration):
    dependencies = [("sessions_billing", "0001_initial"), ("tenants", "0002_cache_version")]

    operations = [
        migrations.RunPython(db_triggers.install(TABLES), db_triggers.uninstall(TABLES), elidable=False),
    ]
