"""The ticket hot path's hand-written SQL on the embedded default (SQLite, as `make run` uses it):
the suite runs on PostgreSQL, so a subprocess runs the same services on a fresh SQLite database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent.parent

pytestmark = pytest.mark.slow

SCRIPT = """
from datetime import timedelta
from django.utils import timezone
from credits.models import Consumption
from credits.selectors import ticket_credits
from licensing import services
from licensing.models import Client, Ticket
from licensing.rules import ClientFields
from plans.models import Plan, Subscription
from tenants.models import Tenant

now = timezone.now()
plan = Plan.objects.get(code="helpdesk-essentials")
tenant = Tenant.objects.create(name="Lite", slug="lite")
Subscription.objects.create(
    tenant=tenant, product=plan.product, plan=plan, state="active", gateway_subscription_id="sub_lite",
    current_period_start=now - timedelta(days=2), current_period_end=now + timedelta(days=28),
)
assert services.ticket_credits_refresh(tenant=tenant).amount == 60_000
assert services.ticket_credits_refresh(tenant=tenant) is None
fields = ClientFields("Walk-in", "active", "", "Break-fix")
client, created = services.client_upsert(tenant=tenant, external_id="w1", fields=fields, actor=None)
licensed, _ = services.client_upsert(tenant=tenant, external_id="l1", fields=fields, actor=None)
services.license_assign(tenant=tenant, client=licensed, kind="ai", actor=None)
first = services.ticket_qualify(tenant=tenant, ticket_id="T-1", client_id="w1")
assert (first["via"], first["ticket_credits_remaining"]) == ("ticket_credit", 59), first
assert services.ticket_qualify(tenant=tenant, ticket_id="T-1", client_id="w1") == first
assert services.ticket_qualify(tenant=tenant, ticket_id="T-2", client_id="l1")["via"] == "license"
assert Consumption.objects.count() == 1 and Ticket.objects.count() == 2
assert ticket_credits(tenant_id=tenant.pk).remaining == 59
print("SQLITE-OK")
"""


def test_tickets_run_on_the_embedded_sqlite_default(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env |= {"VAR_DIR": str(tmp_path), "DEBUG": "true", "AXES_ENABLED": "false"}
    manage = [sys.executable, str(BASE_DIR / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput"], cwd=BASE_DIR, env=env, check=True, capture_output=True)
    result = subprocess.run(
        [*manage, "shell", "-c", SCRIPT], cwd=BASE_DIR, env=env, capture_output=True, text=True
    )
    assert "SQLITE-OK" in result.stdout, result.stdout + result.stderr
