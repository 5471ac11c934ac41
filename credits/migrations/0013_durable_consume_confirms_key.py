# PostgreSQL: the durable procedure now also confirms a request's remembered API key before it writes
# (tenants.key_confirmation): it takes the key's id and the cache versions the request used, and
# answers whether they were current. The procedure of 0012 (a different signature) is dropped.

from dataclasses import replace

from django.db import migrations

from credits.db_functions import CONSUME


class Migration(migrations.Migration):
    dependencies = [("credits", "0012_durable_consume")]

    operations = [replace(CONSUME, tenant_argument=None).uninstall(), CONSUME.install()]
