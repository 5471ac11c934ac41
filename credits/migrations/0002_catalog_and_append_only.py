"""The feature costs (C08) and extra packs a fresh installation starts with, and, on PostgreSQL, a
trigger that refuses any UPDATE of a ledger entry (entries are append-only)."""

from django.db import migrations

APPEND_ONLY = """
CREATE OR REPLACE FUNCTION credits_entry_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'credits_entry is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER credits_entry_no_update BEFORE UPDATE ON credits_entry
    FOR EACH ROW EXECUTE FUNCTION credits_entry_append_only();
"""
DROP_APPEND_ONLY = """
DROP TRIGGER IF EXISTS credits_entry_no_update ON credits_entry;
DROP FUNCTION IF EXISTS credits_entry_append_only();
"""


def seed(apps, schema_editor):
    from credits.catalog import ensure_credit_catalog

    ensure_credit_catalog(apps.get_model("credits", "FeatureCost"), apps.get_model("credits", "ExtraPack"))


def append_only(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(APPEND_ONLY)


def drop_append_only(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_APPEND_ONLY)


class Migration(migrations.Migration):
    dependencies = [("credits", "0001_initial")]

    operations = [
        migrations.RunPython(seed, migrations.RunPython.noop),
        migrations.RunPython(append_only, drop_append_only),
    ]
