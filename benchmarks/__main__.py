"""`python -m benchmarks` (make bench). Creates its own PostgreSQL database, migrates, seeds a hot
tenant with an API key, starts gunicorn (2 sync workers, DEBUG off, Stripe never called) on Redis,
runs wrk with 8 connections against each scenario after a warm-up, prints the table and checks
that nothing was over-admitted. Figures, not a pass/fail on time; it fails only on a wrong count.

The credit consumption is also measured beside a raw PostgreSQL transaction (one conditional UPDATE of
one row and one INSERT, from pgbench with 8 clients) in the same run. The machine's load average is
printed with the table: other processes on the machine move every absolute figure.

Environment: BENCH_DATABASE_URL (postgres://postgres@127.0.0.1:5432/allowance_bench),
BENCH_REDIS_URL (redis://127.0.0.1:6379/15), BENCH_DURATION (seconds per scenario, 10),
BENCH_PORT (8765), BENCH_ONLY (a comma-separated list of words: only the scenarios whose name holds one
of them are measured, beside /healthz; every scenario is still seeded and checked)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
DB_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/allowance_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
DURATION = int(os.environ.get("BENCH_DURATION", "10"))
PORT = int(os.environ.get("BENCH_PORT", "8765"))
ONLY = [w.strip() for w in os.environ.get("BENCH_ONLY", "").split(",") if w.strip()]
CONNECTIONS = 8
HOT_KEY = "alw_benchhot_hot-tenant-key-for-benchmarks-only"
LIMITED_KEY = "alw_benchlim_limited-tenant-key-for-benchmarks"
LIMITED_LIMIT = 100

SERVER_ENV = {
    "DATABASE_URL": DB_URL,
    "REDIS_URL": REDIS_URL,
    "DEBUG": "false",
    "SECRET_KEY": "bench-secret-key-not-for-production-0123456789-abcdefghijklmnopqrstuvwxyz",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "SECURE_SSL_REDIRECT": "false",
    # The Stripe gateway is configured but never called: nothing on these paths talks to it.
    "PAYMENT_GATEWAY": "stripe",
    "STRIPE_SECRET_KEY": "sk_test_bench_never_called",
    "STRIPE_WEBHOOK_SECRET": "whsec_bench_never_called",
    "LOG_LEVEL": "WARNING",
    "AXES_ENABLED": "false",
    "DATABASE_CONN_MAX_AGE": "600",
    # Pages need their static files collected (DEBUG off: the manifest names them).
    "STATIC_ROOT": str(ROOT / "var" / "bench-static"),
}


def _recreate_database() -> None:
    import psycopg

    url = urlparse(DB_URL)
    name = url.path.lstrip("/")
    admin = DB_URL.replace(f"/{name}", "/postgres", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def _django() -> None:
    os.environ.update(SERVER_ENV)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def _seed(ctx: dict) -> None:
    from datetime import timedelta

    from django.core.management import call_command
    from django.utils import timezone

    from plans.models import Plan, Subscription
    from sessions_billing.models import SessionLimit
    from tenants.audit import SYSTEM
    from tenants.models import Tenant
    from tenants.services import api_key_create

    call_command("migrate", verbosity=0, interactive=False)
    call_command("collectstatic", verbosity=0, interactive=False)
    now = timezone.now()
    scale = Plan.objects.get(code="agents-scale")
    Plan.objects.filter(pk=scale.pk).update(
        session_limit=10_000_000
    )  # the hot tenant is never capped by its plan
    for slug, key, limit in (("hot", HOT_KEY, ctx["hot_limit"]), ("limited", LIMITED_KEY, LIMITED_LIMIT)):
        tenant = Tenant.objects.create(name=f"Bench {slug}", slug=slug)
        Subscription.objects.create(
            tenant=tenant,
            product=scale.product,
            plan=scale,
            state=Subscription.State.ACTIVE,
            current_period_start=now - timedelta(days=1),
            current_period_end=now + timedelta(days=29),
            gateway_subscription_id=f"sub_bench_{slug}",
        )
        api_key_create(tenant=tenant, name="bench", actor=SYSTEM, secret=key)
        SessionLimit.objects.create(tenant=tenant, session_limit=limit)
        ctx[slug if slug == "limited" else "tenant"] = tenant
    ctx["limited_limit"] = LIMITED_LIMIT


def _analyze() -> None:
    """The planner's statistics, as autovacuum keeps them on a server that runs it (this machine's
    PostgreSQL may run without it): ANALYZE each table that autovacuum's default threshold would
    (more than 50 + 10% of its rows changed since its last analysis; `pg_stat_user_tables`). Without
    it the estimates of a table that the seed or an earlier scenario filled are guesses (thousands
    of consumptions taken for none). A table still empty is left alone, as autovacuum leaves it:
    analyzed empty, a long-lived connection would keep plans that scan it whole as it grows."""
    import psycopg

    due = (
        "SELECT s.schemaname, s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
        "WHERE s.n_mod_since_analyze > 50 + 0.1 * GREATEST(c.reltuples, 0)"
    )
    with psycopg.connect(DB_URL, autocommit=True) as conn:
        for schema, table in conn.execute(due).fetchall():
            conn.execute(f'ANALYZE "{schema}"."{table}"')


def _server() -> subprocess.Popen:
    env = {**os.environ, **SERVER_ENV}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi",
            "--workers",
            "2",
            "--worker-class",
            "sync",
            "--bind",
            f"127.0.0.1:{PORT}",
            "--log-level",
            "warning",
            "--access-logfile",
            "/dev/null",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    for _ in range(100):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/healthz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("gunicorn did not answer /healthz")


def _wrk(path: str, lua: str, key: str, seconds: int, prefix: str, connections: int = CONNECTIONS) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua or "")
        if key:
            script.write(f'\nwrk.headers["Authorization"] = "Bearer {key}"\n')
    cmd = [
        "wrk",
        "-t",
        str(min(2, connections)),
        "-c",
        str(connections),
        "--timeout",
        "10s",
        "-d",
        f"{seconds}s",
        "--latency",
        "-s",
        script.name,
        f"http://127.0.0.1:{PORT}{path}",
        "--",
        prefix,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)
    try:
        return _parse(out)
    except (AttributeError, KeyError) as exc:
        raise SystemExit(f"wrk's output for {path} could not be read ({exc!r}):\n{out}") from exc


def _probe(scenario) -> list[str]:
    """A page answers itself (200 with its text), not a redirect to the login page."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{PORT}{scenario.path}", headers={"Cookie": scenario.cookie}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as r:  # noqa: S310 (our own server)
            body = r.read().decode()
            status, final = r.status, r.geturl()
    except OSError as exc:
        return [f"{scenario.name}: {exc}"]
    if status != 200 or scenario.expect not in body or final != f"http://127.0.0.1:{PORT}{scenario.path}":
        return [f"{scenario.name}: answered {status} at {final} without {scenario.expect!r}"]
    return []


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _parse(out: str) -> dict:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+(?:us|ms|s))$", out, re.M))

    def pct(p: str) -> float:
        m = re.match(r"([\d.]+)(us|ms|s)", lat[p])
        assert m
        return _ms(m.group(1), m.group(2))

    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    sock = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return {"rps": rps, "p50": pct("50"), "p99": pct("99"), "requests": total, "errors": non2xx + sock}


def main() -> int:
    if shutil.which("wrk") is None:
        print("wrk is not installed. Install it with:  apt-get install wrk  (Debian/Ubuntu)", file=sys.stderr)
        return 2
    if shutil.which("pgbench") is None:
        print(
            "pgbench is not installed. Install it with:  apt-get install postgresql-client", file=sys.stderr
        )
        return 2
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    from benchmarks.scenarios import HOT_LIMIT, LIMIT_SCENARIO, SCENARIOS

    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"Preparing {DB_URL} (migrate, seed) ...", flush=True)
    _recreate_database()
    _django()
    ctx: dict = {"hot_limit": HOT_LIMIT, "database_url": DB_URL}
    _seed(ctx)
    for scenario in SCENARIOS:
        if scenario.seed:
            scenario.seed(ctx)
    from django.db import connections

    _analyze()
    connections.close_all()
    proc = _server()
    rows = []
    problems: list[str] = []
    try:
        # The machine is shared: each endpoint is measured right after its own /healthz run and
        # compared with it, so a change of load between endpoints does not skew the ratios.
        health = SCENARIOS[0]
        for scenario in SCENARIOS:
            if scenario.expect:
                problems += _probe(scenario)
        if problems:
            raise SystemExit("PROBLEMS:\n  " + "\n  ".join(problems))
        for i, scenario in enumerate(SCENARIOS):
            if ONLY and i and not any(word in scenario.name for word in ONLY):
                continue
            key = HOT_KEY if scenario.auth else ""
            conns = scenario.connections or CONNECTIONS
            _analyze()  # the rows the scenarios before it wrote
            if scenario.run is None:
                # warm-up (connections, prepared statements, the caches)
                _wrk(scenario.path, scenario.lua, key, 2, f"warm{i}", conns)
            beside = _wrk(health.path, "", "", max(3, DURATION // 2), f"health{i}")
            if scenario.run is not None:
                result = scenario.run(ctx, DURATION, f"run{i}")
            else:
                result = _wrk(scenario.path, scenario.lua, key, DURATION, f"run{i}", conns)
            rows.append((scenario.name, result | {"healthz": beside["rps"]}))
            print(
                f"  {scenario.name}: {result['rps']:.0f} req/s (/healthz just before: {beside['rps']:.0f})",
                flush=True,
            )
        beside = _wrk(health.path, "", "", max(3, DURATION // 2), "health-limit")
        result = _wrk(LIMIT_SCENARIO.path, LIMIT_SCENARIO.lua, LIMITED_KEY, 3, "limit")
        rows.append((LIMIT_SCENARIO.name, result | {"healthz": beside["rps"]}))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    for scenario in [*SCENARIOS, LIMIT_SCENARIO]:
        problems += scenario.check(ctx)
    connections.close_all()

    print()
    print(
        f"gunicorn 2 sync workers, wrk {CONNECTIONS} connections, {DURATION}s per endpoint, {os.cpu_count()} CPUs, "
        f"load average before/after: {load_before} / {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    header = (
        f"| {'endpoint':<46} | {'req/s':>8} | {'p50 ms':>7} | {'p99 ms':>7} | {'errors':>8} "
        f"| {'/healthz req/s':>14} | {'x /healthz':>10} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, r in rows:
        print(
            f"| {name:<46} | {r['rps']:>8.0f} | {r['p50']:>7.2f} | {r['p99']:>7.2f} | {r['errors']:>8} "
            f"| {r['healthz']:>14.0f} | {r['rps'] / r['healthz']:>10.2f} |"
        )
    print()
    by_name = dict(rows)
    consume = by_name.get("POST /api/v1/credits/consume (one hot wallet)")
    raw = by_name.get("raw PostgreSQL UPDATE + INSERT (pgbench)")
    if consume and raw:
        print(
            f"Credit consumption beside the raw UPDATE + INSERT transaction: {consume['rps'] / raw['rps']:.2f}x "
            f"({consume['rps']:.0f} vs {raw['rps']:.0f} per second); "
            f"{ctx.get('consumed', 0)} consumptions, balance exact."
        )
    print(
        f"Sessions admitted in the run: {ctx.get('admitted', 0)}; at the limit: exactly {LIMITED_LIMIT} expected."
    )
    print(f"Tickets that took a ticket credit in the run: {ctx.get('tickets', 0)} (one consumption each).")
    if problems:
        print("PROBLEMS:\n  " + "\n  ".join(problems))
        return 1
    print("No over-admission; every counter equals its rows.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
