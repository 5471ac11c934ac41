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
    # A page: the cookie wrk sends, and a text its answer must hold (checked once before the run,
    # so a redirect to the login page is never measured as the page).
    cookie: str = ""
    expect: str = ""
    # wrk's connections (None: the harness's 8). One for a page: its latency is then the server's
    # time for it, not the time it waited behind others in the queue of two workers.
    connections: int | None = None


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


# --- licensing ------------------------------------------------------------------------------------

PARTNER_CLIENTS = 10_000  # the hot tenant's client companies (issue 10: the page works for 10,000)
UNLICENSED = 1_000  # the tickets' clients: none holds an AI license, so each ticket takes a credit
TICKET_CREDITS = 10_000_000  # far more than a run consumes (a staff adjustment)
PAGE_SESSION = "benchpartneradminsession0000000000000000"  # the admin's session cookie (seeded)


def _seed_partner(ctx: Context) -> None:
    """The hot tenant is also an MSP partner on AI Essentials: 10,000 clients (10 with an AI
    license), ten million ticket credits, and an admin signed in (a session row with a known key)."""
    from datetime import timedelta

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    from credits import services as credit_services
    from credits.models import Source, Unit
    from licensing.models import Client
    from plans.models import Plan, Subscription
    from tenants.models import Membership, Role, User

    tenant = ctx["tenant"]
    now = timezone.now()
    essentials = Plan.objects.get(code="helpdesk-essentials")
    Subscription.objects.create(
        tenant=tenant,
        product=essentials.product,
        plan=essentials,
        state=Subscription.State.ACTIVE,
        current_period_start=now - timedelta(days=1),
        current_period_end=now + timedelta(days=29),
        gateway_subscription_id="sub_bench_helpdesk",
    )
    kinds = ["Customer"] * 8 + ["Prospect", "Partner"]
    agreements = ["Managed services", "Break-fix", "Block hours", "Project"]
    Client.objects.bulk_create(
        Client(
            tenant=tenant,
            external_id=f"client-{i:05d}",
            name=f"Client company {i:05d}",
            status="inactive" if i % 9 == 8 else "active",
            company_type=kinds[i % len(kinds)],
            agreement_type=agreements[i % len(agreements)],
            ai_license_since=now if i >= PARTNER_CLIENTS - 10 else None,
            created_at=now,
            updated_at=now,
        )
        for i in range(PARTNER_CLIENTS)
    )
    Client.objects.filter(tenant=tenant, external_id__lt=f"client-{UNLICENSED:05d}").update(status="active")
    credit_services.credits_grant(
        tenant=tenant,
        unit=Unit.TICKET_CREDIT,
        source=Source.STAFF_ADJUSTMENT,
        amount=TICKET_CREDITS * 1000,
        expires_at=None,
        note="bench",
    )
    admin = User.objects.create_user("bench-admin@bench.test", "bench-password-not-secret")
    Membership.objects.create(tenant=tenant, user=admin, role=Role.ADMIN)
    data = {
        SESSION_KEY: str(admin.pk),
        BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
        HASH_SESSION_KEY: admin.get_session_auth_hash(),
    }
    Session.objects.create(
        session_key=PAGE_SESSION,
        session_data=SessionStore().encode(data),
        expire_date=now + timedelta(days=1),
    )
    ctx["partner_session"] = (settings.SESSION_COOKIE_NAME, PAGE_SESSION)


def _check_tickets(ctx: Context) -> list[str]:
    from credits.models import Consumption, Unit
    from credits.selectors import ticket_credits
    from licensing.models import Ticket

    tenant = ctx["tenant"]
    tickets = Ticket.objects.filter(tenant=tenant, via="ticket_credit").count()
    spent = Consumption.objects.filter(tenant=tenant, wallet__unit=Unit.TICKET_CREDIT).count()
    left = ticket_credits(tenant_id=tenant.pk).balance
    ctx["tickets"] = tickets
    problems = []
    if not tickets == spent == (TICKET_CREDITS * 1000 - left) // 1000:
        problems.append(
            f"tickets disagree with the ledger: {tickets} tickets, {spent} consumptions, {left} left"
        )
    return problems


PAGE_LUA = f"""
wrk.headers["Cookie"] = "sessionid={PAGE_SESSION}"
"""

TICKET = f"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
function setup(thread) thread:set("tid", tostring(math.random(1, 1e9))) end
function init(args) prefix = (args[1] or "run") .. "-" .. tid end
function request()
  n = n + 1
  return wrk.format(nil, nil, nil,
    '{{"ticket_id":"' .. prefix .. "-" .. n .. '","client_id":"client-' .. string.format("%05d", n % {UNLICENSED}) .. '"}}')
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
    Scenario(
        "POST /api/v1/tickets (unlicensed clients)",
        "/api/v1/tickets",
        lua=TICKET,
        seed=_seed_partner,
        check=_check_tickets,
    ),
    Scenario(
        "GET Manage Licenses, 10,000 clients (1 conn)",
        "/t/hot/licenses/",
        lua=PAGE_LUA,
        auth=False,
        cookie=f"sessionid={PAGE_SESSION}",
        expect="10,000 clients",
        connections=1,
    ),
    Scenario(
        "GET Manage Licenses, filtered (1 conn)",
        "/t/hot/licenses/?q=company+04&status=active&agreement_type=Break-fix&license=no_ai&sort=-name&page=2",
        lua=PAGE_LUA,
        auth=False,
        cookie=f"sessionid={PAGE_SESSION}",
        expect="clients match the filters",
        connections=1,
    ),
]

# Run once more against a tenant whose limit is reached during the run: every refusal is a 402
# (counted as errors), and exactly the limit is admitted.
LIMIT_SCENARIO = Scenario(
    "POST /api/v1/sessions (at the limit: 402s)", "/api/v1/sessions", lua=START_SESSION, check=_check_limit
)
