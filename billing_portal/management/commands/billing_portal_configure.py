"""Create or update the customer portal configuration at the payment gateway and record it, so that
Manage opens the portal as Allowance needs it (card updates, invoices, cancel at period end; no plan
switching, no pause) rather than as the Dashboard's default is set. Safe to run again."""

import json

from django.core.management.base import BaseCommand

from billing_portal.services import PORTAL, portal_configure


class Command(BaseCommand):
    help = "Create or update the gateway's customer portal configuration used by Manage."

    def handle(self, *args, **options) -> None:
        configuration_id, created = portal_configure()
        self.stdout.write(
            json.dumps(
                {
                    "configuration": configuration_id,
                    "recorded": "created" if created else "updated",
                    "payment_methods": PORTAL.payment_methods,
                    "invoice_history": PORTAL.invoice_history,
                    "cancel": "at_period_end" if PORTAL.cancel_at_period_end else "off",
                    "plan_switching": PORTAL.plan_switching,
                    "pause": PORTAL.pause,
                }
            )
        )
