# PostgreSQL: the durable procedure now also confirms a request's remembered API key before it writes
# (tenants.key_confirmation): it takes the key's id and the cache versions the request used, and
# answers whether they were current. The procedure of 0008 (a different signature) is dropped.

from dataclasses import replace

from django.db import migrations

from licensing.db_functions import QUALIFY


class Migration(migrations.Migration):
    dependencies = [("licensing", "0008_durable_qualify")]

    operations = [replace(QUALIFY, tenant_argument=None).uninstall(), QUALIFY.install()]
