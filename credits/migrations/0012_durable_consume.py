# PostgreSQL: the consumption's durable procedure (tenants.durable_call). It commits the consumption
# without waiting for the WAL flush, so that the wallet's lock goes to the next consumption at once,
# then waits for the flush before it returns: the API answers only a consumption that is on disk.

from dataclasses import replace

from django.db import migrations

from credits.db_functions import CONSUME


class Migration(migrations.Migration):
    dependencies = [("credits", "0011_consumption_tenant_client_index")]

    # As it was installed here, before it confirmed remembered API keys (0013).
    operations = [replace(CONSUME, tenant_argument=None).install()]
