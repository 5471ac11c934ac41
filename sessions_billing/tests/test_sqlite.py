"""The metering SQL on the embedded default (SQLite, as `make run` uses it): the suite runs on
PostgreSQL, so a subprocess runs the same services against a fresh SQLite database."""

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
from django.db.models import Count
from django.utils import timezone
from plans.models import Plan, Subscription
from plans.selectors import entitlements
from sessions_billing import services
from sessions_billing.models import BillableWindow, Conversation, SessionLimit, UsagePeriod
from sessions_billing.selectors import admission_check, usage_for
from tenants.errors import BusinessError
from tenants.models import Tenant

now = timezone.now()
growth = Plan.objects.get(code="agents-growth")
tenant = Tenant.objects.create(name="Lite", slug="lite")
Subscription.objects.create(
    tenant=tenant, product=growth.product, plan=growth, state="active", gateway_subscription_id="sub_lite",
    current_period_start=now - timedelta(days=2), current_period_end=now + timedelta(days=28),
)
SessionLimit.objects.create(tenant=tenant, session_limit=3)
start = now - timedelta(hours=40)
s, created = services.session_start(tenant=tenant, conversation_id="a", direction="inbound", agent="bot", at=start)
assert created and s.billable_sessions == 1 and s.agent == "bot", s
assert services.session_start(tenant=tenant, conversation_id="a", direction="inbound")[1] is False
services.session_start(tenant=tenant, conversation_id="b", direction="outbound", at=now - timedelta(days=3))
services.session_start(tenant=tenant, conversation_id="c", direction="inbound")
try:
    services.session_start(tenant=tenant, conversation_id="d", direction="inbound")
    raise SystemExit("admitted past the limit")
except BusinessError as exc:
    assert exc.code == "session_limit_reached", exc.code
e = services.session_event(tenant=tenant, conversation_id="a", type="customer_message", at=start + timedelta(hours=30))
assert e.billable_sessions == 2 and e.last_activity_at == start + timedelta(hours=30), e
e = services.session_event(tenant=tenant, conversation_id="a", type="agent_message", at=start + timedelta(hours=1))
assert e.billable_sessions == 2 and e.last_activity_at == start + timedelta(hours=30), e
assert services.session_event(tenant=tenant, conversation_id="a", type="end").ended
try:
    services.session_event(tenant=tenant, conversation_id="a", type="agent_message")
    raise SystemExit("an event after the end was taken")
except BusinessError as exc:
    assert exc.status == 409
usage = usage_for(tenant=tenant)
assert (usage.billable_sessions, usage.session_limit) == (4, 3), usage
check = admission_check(tenant, entitlements(tenant=tenant)["ai_agents"], None, {})
assert (check.allowed, check.code) == (False, "session_limit_reached"), check
windows = BillableWindow.objects.count()
assert sum(UsagePeriod.objects.values_list("billable_sessions", flat=True)) == windows == 4
assert sum(Conversation.objects.values_list("billable_sessions", flat=True)) == windows
print("SQLITE-OK")
"""


def test_metering_runs_on_the_embedded_sqlite_default(tmp_path):
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
