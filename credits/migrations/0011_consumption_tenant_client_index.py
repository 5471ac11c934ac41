# AI credits used per client (the Manage Licenses column, AI Statistics' top clients) read a
# tenant's consumptions by client and time: without an index on the client they scanned every
# consumption of the period, and the page slowed down as the ledger grew. The tenant's own index
# (tenant_id, which the foreign key asked for) becomes (tenant_id, client_id, created_at): tenant_id
# still leads it, and an insert maintains as many indexes as before.
# Built CONCURRENTLY on PostgreSQL (outside a transaction: the ledger's writes go on while it
# builds), before the old index is dropped.

import django.db.models.deletion
from django.db import migrations, models

INDEX = models.Index(fields=["tenant", "client_id", "created_at"], name="consumption_tenant_client")


def _old_tenant_index(schema_editor, model):
    with schema_editor.connection.cursor() as cursor:
        found = schema_editor.connection.introspection.get_constraints(cursor, model._meta.db_table)
    return [
        name
        for name, info in found.items()
        if info["index"]
        and not info["unique"]
        and not info["primary_key"]
        and info["columns"] == ["tenant_id"]
    ]


def forward(apps, schema_editor):
    model = apps.get_model("credits", "Consumption")
    table = model._meta.db_table
    if schema_editor.connection.vendor == "postgresql":
        # A concurrent build that failed (a deadlock, a cancel) leaves an invalid index of that name,
        # which IF NOT EXISTS would keep: drop it, then build again.
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(
                "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE c.relname = %s AND c.relnamespace = to_regnamespace(current_schema())",
                [INDEX.name],
            )
            found = cursor.fetchone()
        if found is not None and found[0]:
            schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX.name}")
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX.name} ON {table} (tenant_id, client_id, created_at)"
        )
        for name in _old_tenant_index(schema_editor, model):
            schema_editor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
        return
    schema_editor.add_index(model, INDEX)
    for name in _old_tenant_index(schema_editor, model):
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


def backward(apps, schema_editor):
    model = apps.get_model("credits", "Consumption")
    table = model._meta.db_table
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS credits_consumption_tenant_id_6b191774 ON {table} (tenant_id)"
    )
    schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX.name}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("credits", "0010_validate_wallet_of_tenant")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="consumption",
                    name="tenant",
                    field=models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="tenants.tenant",
                    ),
                ),
                migrations.AddIndex(model_name="consumption", index=INDEX),
            ],
            database_operations=[migrations.RunPython(forward, backward, elidable=False)],
        )
    ]
