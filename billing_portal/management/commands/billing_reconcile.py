"""Re-read subscriptions and recent invoices from the payment gateway and repair local state
(for missed or failed webhooks)."""

import json

from django.core.management.base import BaseCommand, CommandParser

from billing_portal.services import billing_reconcile


class Command(BaseCommand):
    help = "Repair local billing state from the payment gateway."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since-days", type=int, default=35, help="How far back to re-read invoices")

    def handle(self, *args, **options) -> None:
        report = billing_reconcile(since_days=options["since_days"])
        self.stdout.write(json.dumps(report.as_dict()))
        # What was skipped, one line each, for the operator (the reconcile went on without it).
        for failure in report.failures:
            self.stderr.write(f"{failure['tenant']}: {failure['object']}: {failure['error']}")
