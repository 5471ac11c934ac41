# PostgreSQL: the ticket question's durable procedure (tenants.durable_call). It commits the ticket
# credit without waiting for the WAL flush, so that the ticket wallet's lock goes to the next ticket
# at once, then waits for the flush before it returns: the API answers only a ticket on disk.

from dataclasses import replace

from django.db import migrations

from licensing.db_functions import QUALIFY


class Migration(migrations.Migration):
    dependencies = [("licensing", "0007_import_preview_changes")]

    # As it was installed here, before it confirmed remembered API keys (0009).
    operations = [replace(QUALIFY, tenant_argument=None).install()]
