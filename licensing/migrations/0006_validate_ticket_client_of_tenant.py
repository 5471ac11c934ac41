# The tickets already there checked against the foreign key that 0005 added NOT VALID: in its own
# transaction, VALIDATE CONSTRAINT takes a lock that lets writes go on while it scans.

from django.db import migrations


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE licensing_ticket VALIDATE CONSTRAINT ticket_client_of_tenant")


class Migration(migrations.Migration):
    dependencies = [("licensing", "0005_client_and_tenant_in_one_key")]

    operations = [migrations.RunPython(forward, migrations.RunPython.noop, elidable=False)]
