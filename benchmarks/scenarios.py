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
    # Instead of wrk against the app: run(ctx, seconds, prefix) -> {"rps", "p50", "p99", "requests",
    # "errors"} (a baseline measured straight against the database, e.g. with pgbench).
    run: Callable[[Context, int, str], dict] | None = None
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


# --- credits ----------------------------------------------------------------------------------

HOT_CREDITS = 100_000_000  # thousandths granted to the hot wallet: far more than a run consumes
REVIEW_COST = 100  # one ai_review, in thousandths (0.1 credit)


def _seed_credits(ctx: Context) -> None:
    """The hot tenant on AI Plus with one large plan grant (its wallet is the hot row)."""
    from datetime import timedelta

    from django.utils import timezone

    from credits.models import Source
    from credits.services import credits_grant
    from plans.models import Plan, Subscription

    tenant, now = ctx["tenant"], timezone.now()
    plus = Plan.objects.get(code="credits-plus")
    Subscription.objects.create(
        tenant=tenant,
        product=plus.product,
        plan=plus,
        state=Subscription.State.ACTIVE,
        current_period_start=now - timedelta(days=1),
        current_period_end=now + timedelta(days=29),
        gateway_subscription_id="sub_bench_credits",
    )
    credits_grant(
        tenant=tenant,
        source=Source.PLAN_INCLUDED,
        amount=HOT_CREDITS,
        valid_from=now - timedelta(days=1),
        expires_at=now + timedelta(days=29),
        reference="bench:hot",
    )


def _check_credits(ctx: Context) -> list[str]:
    """The balance is exact: what was granted less 0.1 credit per consumption stored, and every
    grant's remaining is its amount plus its entries."""
    from django.db.models import Sum

    from credits.models import Consumption, Entry, Grant
    from credits.selectors import figures

    tenant = ctx["tenant"]
    # AI credits only: the hot tenant's tickets spend ticket credits (another wallet).
    consumed = Consumption.objects.filter(tenant=tenant, wallet__unit="ai_credit").count()
    balance = figures(tenant_id=tenant.pk).balance
    ctx["consumed"] = consumed
    problems = []
    if balance != HOT_CREDITS - consumed * REVIEW_COST:
        problems.append(
            f"balance {balance} after {consumed} consumptions of {REVIEW_COST} from {HOT_CREDITS}"
        )
    for g in Grant.objects.filter(tenant=tenant):
        entries = Entry.objects.filter(grant=g).aggregate(s=Sum("quantity"))["s"] or 0
        if g.remaining != entries:  # the GRANT entry carries +amount
            problems.append(f"grant {g.pk}: remaining {g.remaining}, entries sum to {entries}")
    return problems


CONSUME = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
function setup(thread) thread:set("tid", tostring(math.random(1, 1e9))) end
function init(args) prefix = (args[1] or "run") .. "-" .. tid end
function request()
  n = n + 1
  return wrk.format(nil, nil, nil,
    '{"feature":"ai_review","quantity":1,"idempotency_key":"' .. prefix .. "-" .. n .. '","client_id":"bench"}')
end
"""

# The floor under a consumption: one conditional UPDATE of one hot row and one INSERT, in one
# transaction, straight from pgbench (8 clients, prepared statements) to the same PostgreSQL.
RAW_TABLES = """
DROP TABLE IF EXISTS bench_raw_entry;
DROP TABLE IF EXISTS bench_raw_wallet;
CREATE TABLE bench_raw_wallet (id bigint PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0));
CREATE TABLE bench_raw_entry (id bigserial PRIMARY KEY, wallet_id bigint NOT NULL REFERENCES bench_raw_wallet,
    quantity bigint NOT NULL, idempotency_key text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (wallet_id, idempotency_key));
INSERT INTO bench_raw_wallet VALUES (1, 100000000000);
"""
RAW_SCRIPT = """\\set k random(1, 9000000000000000)
BEGIN;
UPDATE bench_raw_wallet SET balance = balance - 100 WHERE id = 1 AND balance >= 100;
INSERT INTO bench_raw_entry (wallet_id, quantity, idempotency_key) VALUES (1, -100, (:client_id)::text || '-' || (:k)::text);
END;
"""


def _raw_update_insert(ctx: Context, seconds: int, prefix: str) -> dict:
    import os
    import re
    import subprocess
    import tempfile
    from pathlib import Path

    import psycopg

    url = ctx["database_url"]
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in RAW_TABLES.strip().split(";\n"):
            conn.execute(statement)
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "raw.sql"
        script.write_text(RAW_SCRIPT)
        out = subprocess.run(
            ["pgbench", "-n", "-c", "8", "-j", "2", "-T", str(seconds), "-M", "prepared", "-f", str(script),
             "-l", "--log-prefix", str(Path(tmp) / "log"), url],
            capture_output=True, text=True, check=True, env={**os.environ, "PGAPPNAME": prefix},
        ).stdout  # fmt: skip
        latencies = sorted(
            int(line.split()[2]) for log in Path(tmp).glob("log*") for line in log.read_text().splitlines()
        )
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))  # type: ignore[union-attr]
    failed = int(m.group(1)) if (m := re.search(r"number of failed transactions: (\d+)", out)) else 0

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] / 1000 if latencies else 0.0

    return {"rps": tps, "p50": pct(0.50), "p99": pct(0.99), "requests": len(latencies), "errors": failed}


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
        "POST /api/v1/credits/consume (one hot wallet)",
        "/api/v1/credits/consume",
        lua=CONSUME,
        seed=_seed_credits,
        check=_check_credits,
    ),
    Scenario("raw PostgreSQL UPDATE + INSERT (pgbench)", "", run=_raw_update_insert),
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
