"""The admission check reads the period's count in the API key's own statement (the key companion of
sessions_billing): one query, and the same answer as the plain read in every arrangement of the
tenant's period rows, including those where the companion cannot tell and the plain read is made.
S12, S25, S32."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from plans.admission import check
from sessions_billing.models import SessionLimit, UsagePeriod
from sessions_billing.selectors import USAGE_COMPANION
from sessions_billing.tests.conftest import paid
from tenants.services import api_key_authenticate

pytestmark = pytest.mark.django_db
ADMISSION = "/entitlements/ai_agents/admission"


def _period(tenant, start, count: int) -> None:
    UsagePeriod.objects.create(
        tenant=tenant, period_start=start, period_end=start + timedelta(days=30), billable_sessions=count
    )


def _plain(tenant) -> dict:
    """The check without the companion: the admission read from the database as before."""
    found = check(tenant=tenant, product="ai_agents", companions={})
    assert found is not None
    return found.details


def _asked(api) -> tuple[dict, int]:
    api.get(ADMISSION)  # the key's last use is recorded at most once a minute: not in the count below
    with CaptureQueriesContext(connection) as ctx:
        answer = api.get(ADMISSION)
    assert answer.status_code == 200
    return answer.json()["details"], len(ctx.captured_queries)


@pytest.mark.parametrize(
    ("rows", "expected", "queries"),
    [
        ([], 0, 1),  # no period yet
        ([(0, 7)], 7, 1),  # this period
        ([(-30, 40), (0, 7)], 7, 1),  # this period and the one before
        ([(-60, 9), (-30, 40)], 0, 1),  # two older periods: a row of this one would have come first
        ([(-30, 40)], 0, 1),  # one older period: every row was read, so this one has none
        ([(-30, 40), (0, 7), (30, 2)], 7, 1),  # a window reported up to 5 minutes ahead opened the next
        ([(-60, 9), (-30, 40), (30, 2)], 0, 1),  # the next period and an older one: this one has none
        ([(30, 2), (60, 1)], 0, 2),  # two later rows (a plan change): the companion cannot tell
        ([(0, 7), (30, 2), (60, 1)], 7, 2),  # this period's row not among the two latest: read plainly
    ],
)
def test_the_companion_answers_as_the_plain_read(tenant, other_tenant, api_for, rows, expected, queries):
    sub = paid(tenant)
    start = sub.current_period_start
    for offset, count in rows:
        _period(tenant, start + timedelta(days=offset), count)
    # Another tenant's rows, in this very period and later, never count here.
    _period(other_tenant, start, 99)
    _period(other_tenant, start + timedelta(days=1), 98)
    details, n = _asked(api_for(tenant))
    assert details["billable_sessions"] == expected
    assert details == _plain(tenant)
    assert n == queries, "the key statement alone, or with the plain read when the companion cannot tell"


def test_the_tenants_own_limit_comes_with_the_key(tenant, other_tenant, api_for):
    paid(tenant)
    SessionLimit.objects.create(tenant=other_tenant, session_limit=3)
    details, n = _asked(api := api_for(tenant))
    assert (details["limit_source"], n) == ("plan", 1)
    assert details == _plain(tenant)
    SessionLimit.objects.create(tenant=tenant, session_limit=5)
    details, n = _asked(api)
    assert (details["session_limit"], details["limit_source"], n) == (5, "tenant", 1)
    assert details == _plain(tenant)


def test_at_the_limit_the_companion_refuses_as_the_plain_read_s25(tenant, api_for):
    sub = paid(tenant)
    SessionLimit.objects.create(tenant=tenant, session_limit=5)
    _period(tenant, sub.current_period_start, 5)
    api = api_for(tenant)
    api.get(ADMISSION)
    with CaptureQueriesContext(connection) as ctx:
        answer = api.get(ADMISSION).json()
    assert (answer["allowed"], answer["code"], len(ctx.captured_queries)) == (
        False,
        "session_limit_reached",
        1,
    )
    plain = check(tenant=tenant, product="ai_agents", companions={})
    assert plain is not None
    assert (plain.allowed, plain.code, plain.message) == (False, answer["code"], answer["message"])


def test_without_a_subscription_there_is_no_period_to_count(tenant, api_for):
    _period(tenant, timezone.now() - timedelta(days=1), 4)
    details, n = _asked(api_for(tenant))
    assert (details["billable_sessions"], n) == (0, 1)
    assert details == _plain(tenant)


def test_only_the_admission_endpoint_reads_the_companion(tenant, api_for):
    paid(tenant)
    secret = api_for(tenant).auth.removeprefix("Bearer ")
    plain = api_key_authenticate(secret)
    assert plain is not None
    assert plain.companions == {}
    with_companions = api_key_authenticate(secret, companions=True)
    assert with_companions is not None
    assert set(with_companions.companions) == {USAGE_COMPANION}
    with CaptureQueriesContext(connection) as ctx:
        api_for(tenant).get("/entitlements")
    assert USAGE_COMPANION not in str(ctx.captured_queries)
    assert "sessions_billing_usageperiod" not in ctx.captured_queries[0]["sql"]
