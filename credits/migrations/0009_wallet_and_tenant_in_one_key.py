# One foreign key for a ledger row's wallet and tenant, (wallet_id, tenant_id) -> the wallet's
# (id, tenant_id), instead of one each: it also holds that the row's tenant is its wallet's, and its
# check locks (FOR KEY SHARE) only the wallet row, which a write of the ledger has locked already,
# not the tenant's row, which every concurrent write of the tenant would lock too. PostgreSQL only:
# the embedded SQLite default keeps no constraint on these two columns (the services set them).
# Added NOT VALID (new rows are checked at once, without a scan that would hold up every write of
# the ledger); migration 0010 checks the rows already there.

import django.db.models.deletion
from django.db import migrations, models

COMPOSITE = [
    ("credits_consumption", "consumption_wallet_of_tenant"),
    ("credits_entry", "entry_wallet_of_tenant"),
]


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for table, name in COMPOSITE:
            schema_editor.execute(
                f"ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY (wallet_id, tenant_id) "
                "REFERENCES credits_wallet (id, tenant_id) DEFERRABLE INITIALLY DEFERRED NOT VALID"
            )


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for table, name in COMPOSITE:
            schema_editor.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("credits", "0008_grant_swept_at"),
        ("tenants", "0003_security_code"),
    ]

    operations = [
        migrations.AlterField(
            model_name="consumption",
            name="tenant",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="tenants.tenant",
            ),
        ),
        migrations.AlterField(
            model_name="consumption",
            name="wallet",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="consumptions",
                to="credits.wallet",
            ),
        ),
        migrations.AlterField(
            model_name="entry",
            name="tenant",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="tenants.tenant",
            ),
        ),
        migrations.AlterField(
            model_name="entry",
            name="wallet",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="entries",
                to="credits.wallet",
            ),
        ),
        migrations.AddConstraint(
            model_name="wallet",
            constraint=models.UniqueConstraint(fields=("id", "tenant"), name="wallet_id_tenant_unique"),
        ),
        migrations.RunPython(forward, backward, elidable=False),
    ]
