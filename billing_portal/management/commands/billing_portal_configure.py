"""Create or update the customer portal configurations at the payment gateway and record them, so
that Manage opens the portal as Allowance needs it rather than as the Dashboard's default is set:
the default one (card updates, invoices, cancel at period end; no plan switching, no pause) and the
one without cancel that a tenant with an AI Credits package gets (C20: package deactivation is
requested from Customer Success only). Safe to run again."""

import json

from django.core.management.base import BaseCommand

from billing_portal.models import PortalConfiguration
from billing_portal.services import PORTALS, portal_configure


class Command(BaseCommand):
    help = "Create or update the gateway's customer portal configurations used by Manage."

    def handle(self, *args, **options) -> None:
        out = {}
        for purpose in PortalConfiguration.Purpose:
            configuration_id, created = portal_configure(purpose=purpose)
            portal = PORTALS[purpose]
            out[str(purpose)] = {
                "configuration": configuration_id,
                "recorded": "created" if created else "updated",
                "payment_methods": portal.payment_methods,
                "invoice_history": portal.invoice_history,
                "cancel": "at_period_end" if portal.cancel_at_period_end else "off",
                "plan_switching": portal.plan_switching,
                "pause": portal.pause,
            }
        # The default's keys at the top level, as before; each purpose under its own name.
        self.stdout.write(json.dumps(out[PortalConfiguration.Purpose.DEFAULT] | out))
