# The rows already in the ledger checked against the foreign key that 0009 added NOT VALID: in its
# own transaction, VALIDATE CONSTRAINT takes a lock that lets writes go on while it scans.

from django.db import migrations

NAMES = [("credits_consumption", "consumption_wallet_of_tenant"), ("credits_entry", "entry_wallet_of_tenant")]


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for table, name in NAMES:
            schema_editor.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}")


class Migration(migrations.Migration):
    dependencies = [("credits", "0009_wallet_and_tenant_in_one_key")]

    operations = [migrations.RunPython(forward, migrations.RunPython.noop, elidable=False)]
