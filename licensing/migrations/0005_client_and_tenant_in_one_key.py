# One foreign key for a ticket's client and tenant, (client_id, tenant_id) -> the client's
# (id, tenant_id), instead of one each: it also holds that the ticket's tenant is its client's, and its
# check locks (FOR KEY SHARE) only the client's row, not the tenant's row, which every concurrent write
# of the tenant would lock too. PostgreSQL only: the embedded SQLite default keeps no constraint on
# these two columns (the services set them). Added NOT VALID (new rows are checked at once, without
# a scan that would hold up every ticket); migration 0006 checks the rows already there.

import django.db.models.deletion
from django.db import migrations, models


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "ALTER TABLE licensing_ticket ADD CONSTRAINT ticket_client_of_tenant FOREIGN KEY (client_id, tenant_id) "
            "REFERENCES licensing_client (id, tenant_id) DEFERRABLE INITIALLY DEFERRED NOT VALID"
        )


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "ALTER TABLE licensing_ticket DROP CONSTRAINT IF EXISTS ticket_client_of_tenant"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("licensing", "0004_ticket_qualify_function"),
        ("tenants", "0003_security_code"),
    ]

    operations = [
        migrations.AlterField(
            model_name="ticket",
            name="client",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="tickets",
                to="licensing.client",
            ),
        ),
        migrations.AlterField(
            model_name="ticket",
            name="tenant",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="tenants.tenant",
            ),
        ),
        migrations.AddConstraint(
            model_name="client",
            constraint=models.UniqueConstraint(fields=("id", "tenant"), name="client_id_tenant_unique"),
        ),
        migrations.RunPython(forward, backward, elidable=False),
    ]
