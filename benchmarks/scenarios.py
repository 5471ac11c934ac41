"""The benchmark's scenarios. Each app adds its own here: a name, the request wrk sends (a Lua
script for anything but a plain GET), what to seed before, and what to check after.

`seed(ctx)` runs in the harness's Django (the bench database) before the server starts; `check(ctx)`
after the run returns a list of problems (an over-admission, a counter that disagrees with rows)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Context = dict[str, Any]


@dataclass(frozen=True)
class Scenario:
    name: str  # what the table shows, e.g. "POST /api/v1/sessions"
    path: str
    lua: str = ""  # a wrk script (method, headers, body); empty: GET with the API key
    auth: bool = True
    seed: Callable[[Context], None] | None = None
    check: Callable[[Context], list[str]] = field(default=lambda ctx: [])


# --- sessions_billing --------------------------------------------------------------------------

HOT_LIMIT = 5_000_000  # the hot tenant's session limit: far above what a run admits


def _seed_events(ctx: Context) -> None:
    """Running conversations for the events scenario (their first window already billed)."""
    from sessions_billing.services import session_start

    tenant = ctx["tenant"]
    for i in range(200):  # through the service, so the period's counter row exists as in production
        session_start(tenant=tenant, conversation_id=f"ev-{i}", direction="inbound", agent="bench")


def _check_sessions(ctx: Context) -> list[str]:
    from django.db.models import Count, Sum

    from sessions_billing.models import BillableWindow, Conversation, UsagePeriod

    tenant = ctx["tenant"]
    counted = UsagePeriod.objects.filter(tenant=tenant).aggregate(n=Sum("billable_sessions"))["n"] or 0
    windows = BillableWindow.objects.filter(tenant=tenant).count()
    billed = Conversation.objects.filter(tenant=tenant).aggregate(n=Sum("billable_sessions"))["n"] or 0
    problems = []
    if not counted == windows == billed:
        problems.append(
            f"counters disagree with rows: period {counted}, windows {windows}, conversations {billed}"
        )
    if counted > HOT_LIMIT:
        problems.append(f"over-admission: {counted} billable sessions against a limit of {HOT_LIMIT}")
    doubled = (
        BillableWindow.objects.filter(tenant=tenant)
        .values("conversation", "index")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    if doubled.exists():
        problems.append("a window was counted twice")
    ctx["admitted"] = Conversation.objects.filter(tenant=tenant).count()
    return problems


def _check_limit(ctx: Context) -> list[str]:
    from sessions_billing.models import Conversation, UsagePeriod

    tenant = ctx["limited"]
    counted = sum(UsagePeriod.objects.filter(tenant=tenant).values_list("billable_sessions", flat=True))
    admitted = Conversation.objects.filter(tenant=tenant).count()
    if counted != ctx["limited_limit"] or admitted != ctx["limited_limit"]:
        return [f"at the limit: {admitted} admitted, {counted} counted, limit {ctx['limited_limit']}"]
    return []


START_SESSION = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
function setup(thread) thread:set("tid", tostring(math.random(1, 1e9))) end
function init(args) prefix = (args[1] or "run") .. "-" .. tid end
function request()
  n = n + 1
  return wrk.format(nil, nil, nil,
    '{"conversation_id":"' .. prefix .. "-" .. n .. '","direction":"inbound","agent":"bench-agent"}')
end
"""

EVENT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"type":"agent_message"}'
local n = 0
function request()
  n = n + 1
  return wrk.format(nil, "/api/v1/sessions/ev-" .. (n % 200) .. "/events")
end
"""


SCENARIOS: list[Scenario] = [
    Scenario("GET /healthz", "/healthz", auth=False),
    Scenario("GET /api/v1/entitlements", "/api/v1/entitlements"),
    Scenario("GET /api/v1/entitlements/ai_agents/admission", "/api/v1/entitlements/ai_agents/admission"),
    Scenario(
        "POST /api/v1/sessions (new conversations)",
        "/api/v1/sessions",
        lua=START_SESSION,
        check=_check_sessions,
    ),
    Scenario(
        "POST /api/v1/sessions/{id}/events", "/api/v1/sessions/ev-0/events", lua=EVENT, seed=_seed_events
    ),
    Scenario("GET /api/v1/usage", "/api/v1/usage"),
]

# Run once more against a tenant whose limit is reached during the run: every refusal is a 402
# (counted as errors), and exactly the limit is admitted.
LIMIT_SCENARIO = Scenario(
    "POST /api/v1/sessions (at the limit: 402s)", "/api/v1/sessions", lua=START_SESSION, check=_check_limit
)
