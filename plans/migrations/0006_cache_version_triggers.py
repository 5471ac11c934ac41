# Every write of a subscription or a scheduled change bumps its tenant's cache version, every write of
# the catalog (plans, products) the catalog's: the API's cached entitlements (plans.selectors) are
# never answered after such a change commits (tenants.db_triggers).

from django.db import migrations

from tenants import db_triggers

TABLES: dict[str, db_triggers.Scope] = {
    "plans_subscription": "tenant",
    "plans_scheduledchange": "tenant",
    "plans_plan": "catalog",
    "plans_product": "catalog",
}


class Migration(migrations.Migration):
    dependencies = [("plans", "0005_remove_plan_contact_label"), ("tenants", "0002_cache_version")]

    operations = [
        migrations.RunPython(db_triggers.install(TABLES), db_triggers.uninstall(TABLES), elidable=False),
    ]
