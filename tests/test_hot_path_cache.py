"""The integration API's per-process caches (tenants.cache) are never answered from after a change
that matters has committed, nor after a time boundary has passed (DESIGN "The hot path").

Each test warms the caches with the API (the same answer twice), makes the change (through the
service where there is one, otherwise a plain queryset write, which no Python hook could see) or
moves the clock, and calls the API at once. `test_another_process_*` does the same with a second
process that kept its own caches."""

from __future__ import annotations

import json
import multiprocessing
import random
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
import time_machine
from django.db import connection, connections
from django.test import Client
from django.utils import timezone

from credits.factories import grant, on_plus
from plans.factories import ScheduledChangeFactory, SubscriptionFactory, plan
from plans.models import Plan, Product, ScheduledChange, Subscription
from plans.selectors import entitlements
from sessions_billing.models import SessionLimit
from sessions_billing.services import session_limit_reset, session_limit_set
from tenants.cache import Versions, clear_all
from tenants.models import ApiKey, CacheVersion, Tenant
from tenants.services import api_key_create, api_key_revoke

ENTITLEMENTS = "/api/v1/entitlements"
ADMISSION = "/api/v1/entitlements/ai_agents/admission"


class Api:
    def __init__(self, secret: str) -> None:
        self.client = Client()
        self.auth = f"Bearer {secret}"

    def get(self, path: str) -> Any:
        return self.client.get(path, HTTP_AUTHORIZATION=self.auth)

    def post(self, path: str, body: dict) -> Any:
        return self.client.post(
            path, data=json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=self.auth
        )

    def agents(self) -> dict:
        response = self.get(ENTITLEMENTS)
        assert response.status_code == 200, response.content
        return response.json()["products"]["ai_agents"]

    def admission(self) -> dict:
        response = self.get(ADMISSION)
        assert response.status_code == 200, response.content
        return response.json()

    def start(self, conversation_id: str) -> Any:
        return self.post("/api/v1/sessions", {"conversation_id": conversation_id, "direction": "inbound"})

    def warm(self) -> None:
        """Every cached answer, twice: the second comes from the caches."""
        for _ in range(2):
            self.agents()
            self.admission()


@pytest.fixture(autouse=True)
def _fresh_caches():
    clear_all()
    yield
    clear_all()


@pytest.fixture
def api(tenant, admin) -> Api:
    return Api(api_key_create(tenant=tenant, name="runtime", actor=admin).secret)


def growth(tenant: Tenant, **fields: Any) -> Subscription:
    now = timezone.now()
    defaults = {
        "current_period_start": now - timedelta(days=1),
        "current_period_end": now + timedelta(days=29),
    }
    return SubscriptionFactory(tenant=tenant, plan=plan("agents-growth"), **(defaults | fields))


def _served_from_cache(api: Api) -> None:
    """The warm answers really come from the caches: GET /entitlements is the key's query and
    nothing else; so is the admission check, whose key query also reads the period's count and the
    tenant's limit (the sessions_billing key companion)."""
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        api.agents()
    assert len(ctx.captured_queries) == 1, [q["sql"][:60] for q in ctx.captured_queries]
    with CaptureQueriesContext(connection) as ctx:
        api.admission()
    assert len(ctx.captured_queries) == 1, [q["sql"][:60] for q in ctx.captured_queries]


# --- writes ---------------------------------------------------------------------------------------


def test_a_revoked_key_is_refused_at_once(tenant, admin, api):
    growth(tenant)
    api.warm()
    api_key_revoke(tenant=tenant, api_key=ApiKey.objects.get(tenant=tenant), actor=admin)
    assert api.get(ENTITLEMENTS).status_code == 401
    assert api.get(ADMISSION).status_code == 401


def test_a_cancellation_is_answered_at_once(tenant, api):
    sub = growth(tenant)
    api.warm()
    _served_from_cache(api)
    Subscription.objects.filter(pk=sub.pk).update(
        state=Subscription.State.CANCELED,
        canceled_at=timezone.now(),
        ends_at=timezone.now() - timedelta(seconds=1),
    )
    assert api.agents()["refusal"]["code"] == "subscription_ended"
    assert (api.admission()["allowed"], api.admission()["code"]) == (False, "subscription_ended")
    assert api.start("after-cancel").status_code == 402


def test_an_expiry_and_a_suspension_are_answered_at_once(tenant, api):
    sub = growth(tenant)
    api.warm()
    Subscription.objects.filter(pk=sub.pk).update(state=Subscription.State.SUSPENDED)
    assert api.admission()["code"] == "payment_overdue"
    Subscription.objects.filter(pk=sub.pk).update(state=Subscription.State.EXPIRED, ended_at=timezone.now())
    assert api.admission()["code"] == "subscription_ended"
    assert api.agents()["badge"] == "Expired subscription"


def test_a_plan_change_is_answered_at_once(tenant, api):
    sub = growth(tenant)
    api.warm()
    Subscription.objects.filter(pk=sub.pk).update(plan=plan("agents-scale"))
    assert api.agents()["plan_code"] == "agents-scale"
    assert api.admission()["details"]["session_limit"] == plan("agents-scale").session_limit


def test_a_new_subscription_is_answered_at_once(tenant, api):
    api.warm()
    assert api.agents()["state"] == "none"
    growth(tenant)
    assert api.agents()["state"] == "active"
    assert api.start("first").status_code == 201


def test_a_scheduled_change_and_its_cancellation_are_answered_at_once(tenant, api):
    sub = growth(tenant)
    api.warm()
    change = ScheduledChangeFactory(subscription=sub, to_plan=plan("agents-starter"))
    assert api.agents()["upcoming"]["plan_code"] == "agents-starter"
    ScheduledChange.objects.filter(pk=change.pk).delete()
    assert api.agents()["upcoming"] is None


def test_a_session_limit_set_and_reset_are_answered_at_once_S23(tenant, admin, api):
    growth(tenant)
    assert api.start("one").status_code == 201
    api.warm()
    session_limit_set(tenant=tenant, session_limit=1, actor=admin)
    assert api.admission()["details"] == {
        "billable_sessions": 1,
        "session_limit": 1,
        "limit_source": "tenant",
    }
    assert api.start("two").status_code == 402  # the start's cached limit is the new one
    session_limit_reset(tenant=tenant, actor=admin)
    assert api.admission()["details"]["session_limit"] == plan("agents-growth").session_limit
    assert api.start("two").status_code == 201
    SessionLimit.objects.create(tenant=tenant, session_limit=2)  # a plain write, no service
    assert api.start("three").status_code == 402


def _counting_checker(product: str) -> tuple[list[int], Any]:
    """The product's registered admission checker, wrapped to count its calls."""
    from plans import admission as registry

    original, calls = registry._CHECKERS[product], []

    def counted(*args: Any) -> Any:
        calls.append(1)
        return original(*args)

    return calls, mock.patch.dict(registry._CHECKERS, {product: counted})


def test_an_admission_asked_again_with_the_same_inputs_is_its_kept_answer_and_a_new_count_is_not(
    tenant, admin, api
):
    """The admission's kept answer (plans.api._ADMISSIONS) is sent again only for the same cached
    entitlements and the same companions' values: a session started in between, a limit set, a plan
    change, each is answered at once."""
    growth(tenant)
    calls, patched = _counting_checker("ai_agents")
    with patched:
        first = api.get(ADMISSION).content
        assert api.get(ADMISSION).content == first
        assert len(calls) == 1  # the second was the kept answer

        assert api.start("one").status_code == 201
        assert api.admission()["details"]["billable_sessions"] == 1
        assert len(calls) == 2
        session_limit_set(tenant=tenant, session_limit=1, actor=admin)
        refused = api.admission()
        assert (refused["allowed"], refused["code"], refused["details"]["session_limit"]) == (
            False,
            "session_limit_reached",
            1,
        )
        Subscription.objects.filter(tenant=tenant).update(plan=plan("agents-scale"))  # a plain write
        assert api.admission()["plan_code"] == "agents-scale"
    assert len(calls) == 4


def test_admissions_of_two_products_asked_in_turn_are_each_kept(tenant, api):
    """The kept answers are per product: asking about AI Credits in between does not drop the AI
    Agents answer."""
    growth(tenant)
    calls, patched = _counting_checker("ai_agents")
    with patched:
        first = api.get(ADMISSION).content
        for _ in range(2):
            assert api.get("/api/v1/entitlements/ai_credits/admission").status_code == 200
            assert api.get(ADMISSION).content == first
    assert len(calls) == 1


def test_an_admission_that_read_the_database_is_never_kept(tenant, api):
    """Helpdesk AI's check reads the license counts and the ticket credits after the key: nothing
    in the key's statement tells whether they changed, so each call asks the checker."""
    SubscriptionFactory(tenant=tenant, plan=plan("helpdesk-essentials"))
    calls, patched = _counting_checker("helpdesk_ai")
    with patched:
        for _ in range(3):
            assert api.get("/api/v1/entitlements/helpdesk_ai/admission").status_code == 200
    assert len(calls) == 3


def test_a_catalog_change_is_answered_at_once_for_every_tenant(tenant, other_tenant, admin, api):
    """Staff edit a plan's limit or a product's name in the admin: the catalog's version moves."""
    growth(tenant)
    growth(other_tenant)
    other = Api(api_key_create(tenant=other_tenant, name="runtime", actor=admin).secret)
    api.warm()
    other.warm()
    Plan.objects.filter(code="agents-growth").update(session_limit=7)
    assert api.agents()["limits"]["session_limit"] == 7
    assert other.admission()["details"]["session_limit"] == 7
    Product.objects.filter(code="ai_agents").update(name="Agents (renamed)")
    assert entitlements(tenant=tenant)["ai_agents"].product_name == "Agents (renamed)"
    credits = Plan.objects.get(code="credits-plus")
    Plan.objects.filter(pk=credits.pk).update(extra_packs_allowed=not credits.extra_packs_allowed)
    on_plus(tenant)
    body = api.get(ENTITLEMENTS).json()["products"]["ai_credits"]
    assert body["limits"]["extra_packs_allowed"] is (not credits.extra_packs_allowed)


def test_a_renamed_tenant_is_answered_with_its_new_slug(tenant, api):
    growth(tenant)
    api.warm()
    Tenant.objects.filter(pk=tenant.pk).update(slug="acme-renamed")
    assert api.get(ENTITLEMENTS).json()["tenant"] == "acme-renamed"


def test_every_write_that_matters_bumps_the_version_in_its_transaction(tenant, admin):
    """The triggers themselves: a subscription, a scheduled change, a session limit (the tenant's
    version), a plan or a product (the catalog's); a rolled-back write bumps nothing."""
    from django.db import transaction

    def versions() -> tuple[int, int]:
        rows = dict(CacheVersion.objects.values_list("scope", "version"))
        return rows.get(tenant.pk, 0), rows.get(CacheVersion.CATALOG, 0)

    seen = [versions()]
    sub = growth(tenant)
    seen.append(versions())
    ScheduledChangeFactory(subscription=sub, to_plan=plan("agents-scale"))
    seen.append(versions())
    SessionLimit.objects.create(tenant=tenant, session_limit=3)
    seen.append(versions())
    assert [t for t, _ in seen] == sorted(set(t for t, _ in seen)), seen  # each write: a new version
    catalog = versions()[1]
    Plan.objects.filter(code="agents-scale").update(name="Scale")
    assert versions()[1] > catalog
    before = versions()

    def change_then_fail() -> None:
        with transaction.atomic():
            SessionLimit.objects.filter(tenant=tenant).update(session_limit=4)
            raise RuntimeError

    with pytest.raises(RuntimeError):
        change_then_fail()
    assert versions() == before


# --- time -----------------------------------------------------------------------------------------


def test_a_trial_end_is_answered_at_the_instant_it_passes_without_any_write(tenant, api):
    now = timezone.now()
    with time_machine.travel(now, tick=False) as clock:
        SubscriptionFactory(
            tenant=tenant,
            plan=plan("agents-trial"),
            state=Subscription.State.TRIALING,
            current_period_start=now - timedelta(days=13),
            current_period_end=now + timedelta(hours=1),
            trial_ends_at=now + timedelta(hours=1),
        )
        api.warm()
        assert api.admission()["allowed"] is True
        clock.move_to(now + timedelta(hours=1))
        assert api.admission()["code"] == "subscription_ended"
        assert api.agents()["badge"] == "Expired subscription"
        assert api.start("late").status_code == 402


def test_trial_ending_soon_and_the_days_left_turn_at_their_instant(tenant, api):
    now = timezone.now()
    with time_machine.travel(now, tick=False) as clock:
        ends = now + timedelta(days=3, hours=2)
        SubscriptionFactory(
            tenant=tenant,
            plan=plan("agents-trial"),
            state=Subscription.State.TRIALING,
            current_period_start=now - timedelta(days=10),
            current_period_end=ends,
            trial_ends_at=ends,
        )
        api.warm()
        first = api.agents()
        assert (first["badge"], first["trial_days_left"]) == ("Trial subscription", 4)
        clock.move_to(ends - timedelta(days=3))  # S10: from 3 days before the end
        assert api.agents()["badge"] == "Trial ending soon"
        clock.move_to(ends - timedelta(days=2, seconds=1))
        assert api.agents()["trial_days_left"] == 3
        clock.move_to(ends - timedelta(days=2, seconds=1) + timedelta(microseconds=1))
        assert api.agents()["trial_days_left"] == 2


def test_a_grace_period_end_and_a_cancellation_end_are_answered_at_their_instant(
    tenant, other_tenant, admin, api
):
    now = timezone.now()
    with time_machine.travel(now, tick=False) as clock:
        growth(tenant, state=Subscription.State.PAST_DUE, grace_until=now + timedelta(days=2))
        growth(
            other_tenant,
            state=Subscription.State.CANCELED,
            canceled_at=now,
            ends_at=now + timedelta(days=5),
        )
        other = Api(api_key_create(tenant=other_tenant, name="runtime", actor=admin).secret)
        api.warm()
        other.warm()
        assert (api.admission()["allowed"], other.admission()["allowed"]) == (True, True)
        clock.move_to(now + timedelta(days=2))
        assert api.admission()["code"] == "payment_overdue"
        assert other.admission()["allowed"] is True
        clock.move_to(now + timedelta(days=5))
        assert other.admission()["code"] == "subscription_ended"


def test_the_cached_answer_holds_until_valid_until_and_no_longer():
    """Against the uncached computation, at random instants: every answer computed at t0 is the
    answer at any t in [t0, valid_until); `valid_until` is where some answer may change."""
    from plans.selectors import _entitlement, _turns

    rng = random.Random(20261129)
    product = Product(id=1, code="ai_agents", name="AI Agents")
    trial, paid = Plan(product=product, code="t", name="Trial", kind=Plan.Kind.TRIAL), plan_for_test()
    start = timezone.now()
    for _ in range(300):
        t0 = start + timedelta(seconds=rng.randint(0, 20 * 86400), microseconds=rng.randint(0, 999_999))
        end = start + timedelta(seconds=rng.randint(0, 20 * 86400), microseconds=rng.randint(0, 999_999))
        state = rng.choice(["trialing", "active", "past_due", "canceled"])
        sub = Subscription(
            id=1,
            product=product,
            plan=trial if state == "trialing" else paid,
            state=state,
            current_period_start=start,
            current_period_end=end + timedelta(days=rng.randint(0, 3)),
            trial_ends_at=end if state == "trialing" else None,
            grace_until=end if state == "past_due" else None,
            ends_at=end if state == "canceled" else None,
        )
        sub.upcoming_changes = []  # type: ignore[attr-defined]
        until = min(_turns(sub, t0), default=None)
        first = _entitlement(product, sub, t0).as_dict()
        probes = [t0 + (until - t0) * rng.random() for _ in range(5)] if until else []
        if until:
            probes.append(until - timedelta(microseconds=1))
        for t in probes:
            if t >= t0:
                assert _entitlement(product, sub, t).as_dict() == first, (state, t0, t, until)


def plan_for_test() -> Plan:
    product = Product(id=1, code="ai_agents", name="AI Agents")
    return Plan(product=product, code="g", name="Growth", kind=Plan.Kind.SELF_SERVE, session_limit=1500)


def test_the_cached_bytes_are_what_ninja_renders(tenant, api):
    """The encoded answer sent from the cache is byte for byte the first (uncached) one, and the
    schema's validation of it (what ninja would send for the dict)."""
    from ninja.responses import NinjaJSONEncoder

    from plans.api import EntitlementsOut

    sub = growth(tenant)
    ScheduledChangeFactory(subscription=sub, to_plan=plan("agents-scale"))
    first = api.get(ENTITLEMENTS)
    second = api.get(ENTITLEMENTS)
    assert first.content == second.content
    assert first["Content-Type"] == second["Content-Type"] == "application/json; charset=utf-8"
    body = json.loads(first.content)
    again = json.dumps(EntitlementsOut.model_validate(body).model_dump(), cls=NinjaJSONEncoder)
    assert again.encode() == first.content


def test_the_cache_answers_only_the_versions_it_was_computed_under(tenant):
    """A tenant object loaded anywhere but the API's key carries no versions: never the cache."""
    sub = growth(tenant)
    versions = Versions(tenant=999_999_999, catalog=1)
    assert entitlements(tenant=tenant, versions=versions)["ai_agents"].state == "active"
    Subscription.objects.filter(pk=sub.pk).update(state=Subscription.State.EXPIRED)
    assert entitlements(tenant=tenant)["ai_agents"].state == "expired"  # no versions: the database
    # the same versions (as a request that read them before the change would): the cached answer
    assert entitlements(tenant=tenant, versions=versions)["ai_agents"].state == "active"


# --- another process ------------------------------------------------------------------------------


def _child(conn: Any, secret: str) -> None:
    """A second process serving the API with caches of its own: GET a path for each message."""
    connections.close_all()
    client = Client()
    while (path := conn.recv()) is not None:
        response = client.get(path, HTTP_AUTHORIZATION=f"Bearer {secret}")
        conn.send((response.status_code, response.json()))
    connections.close_all()
    conn.close()


@pytest.mark.django_db(transaction=True)
def test_another_process_answers_every_change_at_once(tenant, admin):
    sub = growth(tenant)
    key = api_key_create(tenant=tenant, name="runtime", actor=admin)
    connections.close_all()
    ctx = multiprocessing.get_context("fork")
    parent, child_end = ctx.Pipe()
    process = ctx.Process(target=_child, args=(child_end, key.secret))
    process.start()

    def ask(path: str) -> tuple[int, dict]:
        parent.send(path)
        return parent.recv()

    try:
        for _ in range(2):  # warm the child's caches
            assert ask(ADMISSION)[1]["allowed"] is True
            assert ask(ENTITLEMENTS)[1]["products"]["ai_agents"]["state"] == "active"
        SessionLimit.objects.create(tenant=tenant, session_limit=1)
        assert ask(ADMISSION)[1]["details"]["session_limit"] == 1
        Plan.objects.filter(code="agents-growth").update(session_limit=5)
        assert ask(ENTITLEMENTS)[1]["products"]["ai_agents"]["limits"]["session_limit"] == 5
        Subscription.objects.filter(pk=sub.pk).update(state=Subscription.State.SUSPENDED)
        assert ask(ADMISSION)[1]["code"] == "payment_overdue"
        assert ask(ENTITLEMENTS)[1]["products"]["ai_agents"]["badge"] == "Payment issue"
        api_key_revoke(tenant=tenant, api_key=key.api_key, actor=admin)
        assert ask(ENTITLEMENTS)[0] == 401
    finally:
        parent.send(None)
        process.join(timeout=30)
    assert process.exitcode == 0


def test_credits_consumption_follows_the_plan_at_once(tenant, api):
    """The consumption's refusal comes from the cached entitlements: an expired plan refuses at once."""
    sub = on_plus(tenant)
    grant(tenant, 10)
    body = {"feature": "smart_response", "quantity": 1}
    assert api.post("/api/v1/credits/consume", body | {"idempotency_key": "a"}).status_code == 201
    assert api.post("/api/v1/credits/consume", body | {"idempotency_key": "b"}).status_code == 201
    Subscription.objects.filter(pk=sub.pk).update(state=Subscription.State.EXPIRED)
    refused = api.post("/api/v1/credits/consume", body | {"idempotency_key": "c"})
    assert (refused.status_code, refused.json()["error"]["code"]) == (402, "subscription_ended")
    # a retry of a key answered before the change still gets its first answer
    assert api.post("/api/v1/credits/consume", body | {"idempotency_key": "a"}).status_code == 200


# --- the embedded SQLite default ---------------------------------------------------------------

SQLITE_SCRIPT = """
import json
from datetime import timedelta
from django.test import Client
from django.utils import timezone
from credits.factories import grant, on_plus
from plans.models import Plan, Subscription
from sessions_billing.models import SessionLimit
from tenants.audit import SYSTEM
from tenants.models import CacheVersion, Tenant
from tenants.services import api_key_create

now = timezone.now()
growth = Plan.objects.get(code="agents-growth")
tenant = Tenant.objects.create(name="Lite", slug="lite")
sub = Subscription.objects.create(
    tenant=tenant, product=growth.product, plan=growth, state="active", gateway_subscription_id="sub_lite",
    current_period_start=now - timedelta(days=1), current_period_end=now + timedelta(days=29),
)
secret = api_key_create(tenant=tenant, name="k", actor=SYSTEM).secret
client, auth = Client(), {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
def get(path):
    return client.get(path, **auth).json()
for _ in range(2):
    assert get("/api/v1/entitlements")["products"]["ai_agents"]["state"] == "active"
    assert get("/api/v1/entitlements/ai_agents/admission")["allowed"] is True
before = CacheVersion.objects.get(scope=tenant.pk).version
Subscription.objects.filter(pk=sub.pk).update(state="suspended")
assert CacheVersion.objects.get(scope=tenant.pk).version > before
assert get("/api/v1/entitlements")["products"]["ai_agents"]["badge"] == "Payment issue"
assert get("/api/v1/entitlements/ai_agents/admission")["code"] == "payment_overdue"
Subscription.objects.filter(pk=sub.pk).update(state="active")
SessionLimit.objects.create(tenant=tenant, session_limit=1)
start = client.post("/api/v1/sessions", json.dumps({"conversation_id": "a", "direction": "inbound"}),
                    content_type="application/json", **auth)
assert start.status_code == 201, start.content
assert get("/api/v1/entitlements/ai_agents/admission")["code"] == "session_limit_reached"
Plan.objects.filter(pk=growth.pk).update(session_limit=5000)
assert get("/api/v1/entitlements")["products"]["ai_agents"]["limits"]["session_limit"] == 5000
plus = on_plus(tenant)
grant(tenant, 1)
body = {"feature": "ai_review", "quantity": 3, "idempotency_key": "r-1"}
consumed = client.post("/api/v1/credits/consume", json.dumps(body), content_type="application/json", **auth)
assert (consumed.status_code, consumed.json()["balance"]) == (201, "0.7"), consumed.content
again = client.post("/api/v1/credits/consume", json.dumps(body), content_type="application/json", **auth)
assert (again.status_code, again.json()) == (200, consumed.json())
Subscription.objects.filter(pk=plus.pk).update(state="expired")
refused = client.post("/api/v1/credits/consume", json.dumps(body | {"idempotency_key": "r-2"}),
                      content_type="application/json", **auth)
assert refused.json()["error"]["code"] == "subscription_ended", refused.content
print("SQLITE-CACHE-OK")
"""


@pytest.mark.slow
def test_the_cache_versions_and_the_plain_paths_work_on_the_embedded_sqlite_default(tmp_path):
    """SQLite (make run): the triggers' equivalents bump the versions, the API answers each change at
    once, a session start and a consumption take the plain path."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    base = Path(__file__).resolve().parent.parent
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env |= {"VAR_DIR": str(tmp_path), "DEBUG": "true", "AXES_ENABLED": "false"}
    manage = [sys.executable, str(base / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput"], cwd=base, env=env, check=True, capture_output=True)
    result = subprocess.run(
        [*manage, "shell", "-c", SQLITE_SCRIPT], cwd=base, env=env, capture_output=True, text=True
    )
    assert "SQLITE-CACHE-OK" in result.stdout, result.stdout + result.stderr
