# PostgreSQL: the session start's durable procedure (tenants.durable_call). It commits the start
# without waiting for the WAL flush, so that the period counter's lock goes to the next start at
# once, then waits for the flush before it returns; before it writes, it confirms a request's
# remembered API key (tenants.key_confirmation).

from django.db import migrations

from sessions_billing.db_functions import START


class Migration(migrations.Migration):
    dependencies = [("sessions_billing", "0005_trial_sessions_ending_backfill")]

    operations = [START.install()]
