"""Run every billing sweeper once, synchronously (operators and tests): the local gateway's clock,
trial expiry and reminders, grace periods, subscription ends."""

import json

from django.core.management.base import BaseCommand
from django.utils import timezone

from billing_portal.services import billing_tick


class Command(BaseCommand):
    help = "Run every billing sweeper once, now."

    def handle(self, *args, **options) -> None:
        self.stdout.write(json.dumps(billing_tick(now=timezone.now())))
