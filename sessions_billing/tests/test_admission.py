"""Admission: the refusal order and its exact words, the limit refusing new sessions but not running
ones, the admission check (200 with allowed/code/message), a constant query count. S12, S25, S28,
S32-S34."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from plans.models import Subscription
from sessions_billing import services
from sessions_billing.models import BillableWindow, Conversation, SessionLimit, UsagePeriod
from sessions_billing.tests.conftest import paid

pytestmark = pytest.mark.django_db

ENDED = {
    "code": "subscription_ended",
    "message": "Your subscription has ended. Please upgrade your plan to continue.",
}
OVERDUE = {"code": "payment_overdue", "message": "Your payment is overdue and the grace period has expired."}
ADMISSION = "/entitlements/ai_agents/admission"


def _limit(tenant, value: int) -> None:
    SessionLimit.objects.create(tenant=tenant, session_limit=value)


def _fill(tenant, n: int, prefix: str = "c") -> None:
    for i in range(n):
        services.session_start(tenant=tenant, conversation_id=f"{prefix}{i}", direction="inbound")


def _limit_message(sub: Subscription) -> str:
    return (
        "Session limit has been reached: AI agents accept no new sessions until the limit is increased on the "
        f"Session limit card or the next billing period starts on {sub.current_period_end:%-d %b %Y}."
    )


def _nothing_stored(tenant, conversations: int) -> None:
    assert Conversation.objects.filter(tenant=tenant).count() == conversations
    assert BillableWindow.objects.filter(tenant=tenant).count() == sum(
        UsagePeriod.objects.filter(tenant=tenant).values_list("billable_sessions", flat=True)
    )


def test_no_subscription_is_refused_as_ended_s33(tenant, api_for):
    api = api_for(tenant)
    response = api.start("x")
    assert response.status_code == 402
    assert response.json() == {"error": ENDED}
    assert api.get(ADMISSION).json() | {} == {
        "product": "ai_agents",
        "allowed": False,
        **ENDED,
        "state": "none",
        "plan_code": None,
        "details": {"billable_sessions": 0, "session_limit": None, "limit_source": None},
    }
    _nothing_stored(tenant, 0)


def test_overdue_is_refused_with_the_spec_words_s28_s34(tenant, api_for):
    now = timezone.now()
    paid(tenant, state=Subscription.State.PAST_DUE, grace_until=now - timedelta(minutes=1))
    api = api_for(tenant)
    response = api.start("x")
    assert (response.status_code, response.json()) == (402, {"error": OVERDUE})
    check = api.get(ADMISSION).json()
    assert (check["allowed"], check["code"], check["message"]) == (False, OVERDUE["code"], OVERDUE["message"])
    _nothing_stored(tenant, 0)


def test_payment_issue_within_grace_still_admits_s26(tenant, api_for):
    paid(tenant, state=Subscription.State.PAST_DUE, grace_until=timezone.now() + timedelta(days=3))
    assert api_for(tenant).start("x").status_code == 201


def test_refusal_order_ended_before_overdue_before_limit(tenant, api_for):
    """subscription_ended, then payment_overdue, then session_limit_reached."""
    sub = paid(tenant)
    _limit(tenant, 2)
    _fill(tenant, 2)
    api = api_for(tenant)
    assert api.start("n").json()["error"]["code"] == "session_limit_reached"
    Subscription.objects.filter(pk=sub.pk).update(state=Subscription.State.SUSPENDED)
    assert api.start("n").json() == {"error": OVERDUE}
    Subscription.objects.filter(pk=sub.pk).update(
        state=Subscription.State.CANCELED, ends_at=timezone.now() - timedelta(minutes=1)
    )
    assert api.start("n").json() == {"error": ENDED}
    assert api.get(ADMISSION).json()["code"] == "subscription_ended"
    _nothing_stored(tenant, 2)


def test_limit_reached_refuses_new_sessions_but_not_running_ones_s25(tenant, api_for):
    sub = paid(tenant)
    _limit(tenant, 3)
    api = api_for(tenant)
    start = timezone.now() - timedelta(hours=30)
    for i in range(3):
        assert api.start(f"run-{i}", at=start.isoformat()).status_code == 201
    refused = api.start("new-one")
    assert refused.status_code == 402
    assert refused.json() == {"error": {"code": "session_limit_reached", "message": _limit_message(sub)}}
    _nothing_stored(tenant, 3)
    # A running conversation is never cut off: its second window counts past the limit.
    assert api.event("run-0", "customer_message").json()["billable_sessions"] == 2
    usage = api.get("/usage").json()
    assert (usage["billable_sessions"], usage["session_limit"], usage["limit_source"]) == (4, 3, "tenant")
    assert usage["warnings"] == ["Session limit has been reached"]
    check = api.get(ADMISSION).json()
    assert check == {
        "product": "ai_agents",
        "allowed": False,
        "code": "session_limit_reached",
        "message": _limit_message(sub),
        "state": "active",
        "plan_code": "agents-growth",
        "details": {"billable_sessions": 4, "session_limit": 3, "limit_source": "tenant"},
    }
    # Raising the limit lets new sessions in at once.
    SessionLimit.objects.filter(tenant=tenant).update(session_limit=5)
    assert api.start("new-one").status_code == 201


def test_the_next_period_unblocks_without_anything_running_s25(tenant, api_for):
    sub = paid(tenant)
    _limit(tenant, 1)
    api = api_for(tenant)
    api.start("a")
    assert api.start("b").status_code == 402
    now = timezone.now()
    Subscription.objects.filter(pk=sub.pk).update(
        current_period_start=now, current_period_end=now + timedelta(days=30)
    )
    assert api.start("b").status_code == 201
    assert api.get("/usage").json()["billable_sessions"] == 1


def test_answered_only_admission_counts_billed_windows_only(tenant, api_for):
    paid(tenant, "agents-starter")
    _limit(tenant, 2)
    api = api_for(tenant)
    for i in range(5):  # outbound, no reply: nothing billed, the limit is not reached
        assert api.start(f"out-{i}", direction="outbound").status_code == 201
    api.start("in-1")
    api.event("out-0", "customer_message")
    assert api.get("/usage").json()["billable_sessions"] == 2
    refused = api.start("out-9", direction="outbound")
    assert (refused.status_code, refused.json()["error"]["code"]) == (402, "session_limit_reached")


def test_an_upgrade_recalculates_the_limit_at_once_s21(tenant, api_for):
    sub = paid(tenant, "agents-starter")
    api = api_for(tenant)
    _fill(tenant, 300)
    assert api.start("more").status_code == 402
    from plans.factories import plan

    Subscription.objects.filter(pk=sub.pk).update(plan=plan("agents-growth"))
    assert api.start("more").status_code == 201
    assert api.get(ADMISSION).json()["details"]["session_limit"] == 1500


def test_a_retry_of_an_admitted_session_answers_200_even_when_new_ones_are_refused(tenant, api_for):
    paid(tenant)
    _limit(tenant, 1)
    api = api_for(tenant)
    first = api.start("only")
    assert first.status_code == 201
    again = api.start("only")
    assert (again.status_code, again.json()) == (200, first.json())


def test_admission_query_count_is_constant(tenant, api_for):
    """The API key with the cache versions, then one statement (PostgreSQL's session-start
    function, its own transaction; the entitlements and the tenant's limit come from the cache):
    the same number of queries for the first session of the period's counter and for the
    thousandth."""
    paid(tenant)
    api = api_for(tenant)
    api.start("warm-up")
    counts = []
    for i in range(3):
        with CaptureQueriesContext(connection) as ctx:
            assert api.start(f"q-{i}").status_code == 201
        counts.append(len(ctx.captured_queries))
    _fill(tenant, 200, prefix="bulk")
    with CaptureQueriesContext(connection) as ctx:
        assert api.start("q-late").status_code == 201
    counts.append(len(ctx.captured_queries))
    assert counts == [counts[0]] * 4
    assert counts[0] == 2, [q["sql"][:80] for q in ctx.captured_queries]


def test_events_query_count_is_constant(tenant, api_for):
    """The same for an event in a window already billed — the key, then the conversation's update
    (one statement) — and for one that opens a window: then a short transaction (here a savepoint
    and its release) inserts the window, counts it on the conversation and the period, and reads
    the tenant's limit for the usage emails."""
    now = timezone.now()
    paid(tenant, current_period_start=now - timedelta(days=3), current_period_end=now + timedelta(days=27))
    api = api_for(tenant)
    api.start("e", at=(timezone.now() - timedelta(hours=30)).isoformat())
    with CaptureQueriesContext(connection) as ctx:
        api.event("e", "agent_message", at=(timezone.now() - timedelta(hours=29)).isoformat())
    repeat = len(ctx.captured_queries)
    with CaptureQueriesContext(connection) as ctx:
        api.event("e", "agent_message")  # opens window 2
    new_window = len(ctx.captured_queries)
    assert (repeat, new_window) == (2, 8), [q["sql"][:60] for q in ctx.captured_queries]
