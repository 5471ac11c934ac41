"""Metering: 24-hour billable windows, Answered only, late and out-of-order reports, the periods a
window counts in. S04-S07."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from plans.factories import plan
from plans.models import Subscription
from sessions_billing.models import BillableWindow, Conversation, SessionLimit, UsagePeriod
from sessions_billing.selectors import usage_for
from sessions_billing.tests.conftest import paid

pytestmark = pytest.mark.django_db

H = timedelta(hours=1)


def _iso(dt) -> str:
    return dt.isoformat()


def _ms(dt) -> str:
    """A time as the API writes it: milliseconds, Z."""
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_36_hour_conversation_is_one_session_and_two_billable_sessions_s05(
    tenant, growth, admin, api_for, client_for
):
    api = api_for(tenant)
    start = timezone.now() - 40 * H
    assert api.start("c-36h", agent="helper", at=_iso(start)).status_code == 201
    for hours in (1, 12, 23, 30, 36):
        response = api.event("c-36h", "customer_message", at=_iso(start + hours * H))
        assert response.status_code == 200
    body = api.get("/sessions/c-36h").json()
    assert body["billable_sessions"] == 2
    assert body["last_activity_at"] == _ms(start + 36 * H)
    assert usage_for(tenant=tenant).billable_sessions == 2
    assert sorted(BillableWindow.objects.values_list("index", flat=True)) == [0, 1]
    # The Sessions screen shows it as one session with 2 billable sessions.
    page = client_for(admin).get(f"/t/{tenant.slug}/sessions/")
    assert page.content.decode().count('data-testid="session-row"') == 1
    assert (
        '<td class="right" data-label="Billable sessions" data-testid="billable">2</td>'
        in page.content.decode()
    )


def test_an_event_at_exactly_24_hours_opens_window_two_s05(tenant, growth, api_for):
    api = api_for(tenant)
    start = timezone.now() - 30 * H
    api.start("edge", at=_iso(start))
    assert (
        api.event("edge", "agent_message", at=_iso(start + 24 * H - timedelta(microseconds=1))).json()[
            "billable_sessions"
        ]
        == 1
    )
    assert api.event("edge", "agent_message", at=_iso(start + 24 * H)).json()["billable_sessions"] == 2
    window = BillableWindow.objects.get(index=1)
    assert window.starts_at == start + 24 * H


def test_any_event_counts_its_window_without_answered_only(tenant, growth, api_for):
    api = api_for(tenant)
    start = timezone.now() - 50 * H
    api.start("out-1", direction="outbound", at=_iso(start))
    assert api.get("/sessions/out-1").json()["billable_sessions"] == 1  # the start counts window 1
    assert api.event("out-1", "agent_message", at=_iso(start + 49 * H)).json()["billable_sessions"] == 2
    assert usage_for(tenant=tenant).billable_sessions == 2


def test_outbound_without_a_reply_is_not_billed_under_answered_only_s07(tenant, api_for):
    paid(tenant, "agents-starter")  # Starter has Answered only
    api = api_for(tenant)
    start = timezone.now() - 60 * H
    response = api.start("call-1", direction="outbound", agent="outreach", at=_iso(start))
    assert response.status_code == 201
    assert response.json()["billable_sessions"] == 0
    assert response.json()["answered"] is False
    for hours in (1, 25, 49):
        assert (
            api.event("call-1", "agent_message", at=_iso(start + hours * H)).json()["billable_sessions"] == 0
        )
    assert api.event("call-1", "end", at=_iso(start + 50 * H)).json()["ended"] is True
    assert usage_for(tenant=tenant).billable_sessions == 0
    assert BillableWindow.objects.count() == 0


def test_answered_only_bills_the_windows_the_customer_speaks_in_s07(tenant, api_for):
    paid(tenant, "agents-starter")
    api = api_for(tenant)
    start = timezone.now() - 80 * H
    api.start("call-2", direction="outbound", at=_iso(start))
    api.event("call-2", "agent_message", at=_iso(start + 1 * H))
    body = api.event("call-2", "customer_message", at=_iso(start + 30 * H)).json()
    assert (body["billable_sessions"], body["answered"]) == (1, True)
    api.event("call-2", "agent_message", at=_iso(start + 50 * H))  # window 3, agent only: not billed
    assert api.event("call-2", "customer_message", at=_iso(start + 75 * H)).json()["billable_sessions"] == 2
    assert sorted(BillableWindow.objects.values_list("index", flat=True)) == [1, 3]
    # An inbound conversation's first window counts at its start (the customer started it).
    inbound = api.start("chat-1", direction="inbound", at=_iso(start)).json()
    assert (inbound["billable_sessions"], inbound["answered"]) == (1, True)
    assert api.event("chat-1", "agent_message", at=_iso(start + 26 * H)).json()["billable_sessions"] == 1
    assert usage_for(tenant=tenant).billable_sessions == 3


def test_late_and_out_of_order_events_count_the_right_window_once(tenant, growth, api_for):
    api = api_for(tenant)
    start = timezone.now() - 23 * H - 3 * 24 * H  # window 4 is running now
    api.start("late", at=_iso(start))
    api.event("late", "customer_message", at=_iso(start + 3 * 24 * H + H))  # window 4 first
    api.event("late", "customer_message", at=_iso(start + 30 * H))  # then window 2, reported late
    api.event("late", "customer_message", at=_iso(start + 47 * H))  # window 2 again: nothing new
    body = api.get("/sessions/late").json()
    assert body["billable_sessions"] == 3
    assert body["last_activity_at"] == _ms(start + 3 * 24 * H + H)
    assert sorted(BillableWindow.objects.values_list("index", flat=True)) == [0, 1, 3]


def test_a_window_counts_in_the_period_in_which_it_starts(tenant, api_for):
    now = timezone.now()
    sub = paid(tenant, current_period_start=now - 10 * 24 * H, current_period_end=now + 20 * 24 * H)
    api = api_for(tenant)
    started = now - 12 * 24 * H  # before the first period: its window counts in the first period
    api.start("old", at=_iso(started))
    first = UsagePeriod.objects.get(tenant=tenant)
    assert first.period_start == sub.current_period_start
    assert first.billable_sessions == 1
    # The period rolls over: a late event in the previous period's window counts there.
    Subscription.objects.filter(pk=sub.pk).update(
        current_period_start=now - H, current_period_end=now + 30 * 24 * H
    )
    api.event("old", "customer_message", at=_iso(started + 24 * H + H))  # window 2: starts in period 1
    api.event("old", "customer_message", at=_iso(now - 2 * H))  # window 12 started a day ago: period 1
    api.start("new", at=_iso(now))
    periods = list(
        UsagePeriod.objects.filter(tenant=tenant)
        .order_by("period_start")
        .values_list("billable_sessions", flat=True)
    )
    assert periods == [3, 1]
    assert usage_for(tenant=tenant).billable_sessions == 1
    # The earlier period now ends where the new one begins: no overlap.
    assert UsagePeriod.objects.order_by("period_start").first().period_end == now - H


def test_a_late_window_in_a_period_with_no_usage_counts_there_not_in_an_earlier_one(tenant, api_for):
    """S06: a window counts in the period in which it starts, also when nothing else was reported in
    that period (the tenant's counter had no row for it)."""
    now = timezone.now()
    day = 24 * H
    sub = paid(tenant, current_period_start=now - 32 * day, current_period_end=now - 2 * day)
    api = api_for(tenant)
    api.start("long", at=_iso(now - 31 * day))  # period 1 [-32d, -2d)
    # Two roll-overs later, with nothing reported in between: period 3 starts now - 1 h.
    Subscription.objects.filter(pk=sub.pk).update(
        current_period_start=now - H, current_period_end=now + 29 * day
    )
    api.start("today", at=_iso(now))
    # A late message of "long", from a day ago: its window starts in period 2 [-2d, -1h), unrecorded.
    api.event("long", "customer_message", at=_iso(now - day))

    rows = list(
        UsagePeriod.objects.filter(tenant=tenant)
        .order_by("period_start")
        .values_list("period_start", "period_end", "billable_sessions")
    )
    assert rows == [
        (now - 32 * day, now - 2 * day, 1),
        (now - 2 * day, now - H, 1),  # the gap got its own row
        (now - H, now + 29 * day, 1),
    ]
    assert usage_for(tenant=tenant).billable_sessions == 1


def test_end_ends_the_conversation_and_later_events_are_409(tenant, growth, api_for):
    api = api_for(tenant)
    api.start("bye")
    assert api.event("bye", "end").json()["ended"] is True
    response = api.event("bye", "customer_message")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conversation_ended"
    assert api.event("nope", "customer_message").status_code == 404


def test_end_does_not_bill_a_new_window(tenant, growth, api_for):
    """Only activity bills: an `end` reported in a later window closes the conversation, free."""
    api = api_for(tenant)
    start = timezone.now() - 30 * H
    api.start("quiet", at=_iso(start))
    assert api.event("quiet", "end", at=_iso(start + 29 * H)).json()["billable_sessions"] == 1


@pytest.mark.parametrize(
    ("offset", "status"),
    [
        (-35 * 24 * H + timedelta(minutes=1), 201),
        (-35 * 24 * H - timedelta(minutes=1), 422),
        (timedelta(minutes=4), 201),
        (timedelta(minutes=6), 422),
    ],
)
def test_at_may_be_35_days_late_and_5_minutes_early(tenant, api_for, offset, status):
    now = timezone.now()
    paid(tenant, current_period_start=now - 40 * 24 * H, current_period_end=now + 20 * 24 * H)
    api = api_for(tenant)
    with time_machine.travel(now, tick=False):
        response = api.start("t", at=_iso(now + offset))
    assert response.status_code == status
    assert Conversation.objects.count() == (1 if status == 201 else 0)


def test_a_naive_time_is_422_and_stores_nothing(tenant, growth, api_for):
    api = api_for(tenant)
    response = api.start("naive", at="2026-01-01T10:00:00")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"
    assert "at" in response.json()["error"]["message"]
    assert Conversation.objects.count() == 0


def test_the_same_conversation_id_is_one_session_200_the_second_time(tenant, growth, api_for):
    api = api_for(tenant)
    first = api.start("dup", agent="a1")
    second = api.start("dup", agent="a1")
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json() == second.json()
    assert usage_for(tenant=tenant).billable_sessions == 1


def test_tenants_do_not_share_conversation_ids(tenant, other_tenant, growth, api_for):
    paid(other_tenant)
    assert api_for(tenant).start("shared-id").status_code == 201
    assert api_for(other_tenant).start("shared-id").status_code == 201
    assert api_for(other_tenant).get("/sessions/shared-id").json()["billable_sessions"] == 1
    assert UsagePeriod.objects.get(tenant=other_tenant).billable_sessions == 1


def test_plan_answered_only_flag_comes_from_the_plan(tenant):
    assert plan("agents-starter").answered_only is True


def test_a_reply_that_would_bill_past_the_limit_is_402_and_stores_nothing_s07_s22_s25(tenant, api_for):
    """Answered only: a customer's reply to an outbound start opens a new billable session, admitted
    like a start: at the limit it is refused and the conversation stays unanswered and unbilled."""
    paid(tenant, "agents-starter")
    SessionLimit.objects.create(tenant=tenant, session_limit=2)
    api = api_for(tenant)
    assert api.start("in-1").status_code == 201
    for i in range(3):
        assert api.start(f"ob-{i}", "outbound").status_code == 201
    assert api.event("ob-0", "customer_message").status_code == 200  # the last slot
    refused = api.event("ob-1", "customer_message")
    assert refused.status_code == 402
    assert refused.json()["error"]["code"] == "session_limit_reached"
    row = Conversation.objects.get(tenant=tenant, conversation_id="ob-1")
    assert (row.answered, row.billable_sessions, row.last_activity_at) == (False, 0, row.started_at)
    assert api.event("ob-1", "agent_message").status_code == 200  # not billed under Answered only
    assert api.event("ob-0", "customer_message").status_code == 200  # a billed conversation runs on
    usage = api.get("/usage").json()
    assert (usage["billable_sessions"], usage["session_limit"]) == (2, 2)
    assert BillableWindow.objects.filter(tenant=tenant).count() == 2
    # The limit raised: the reply is billed.
    SessionLimit.objects.filter(tenant=tenant).update(session_limit=3)
    answer = api.event("ob-1", "customer_message")
    assert answer.status_code == 200
    assert (answer.json()["billable_sessions"], answer.json()["answered"]) == (1, True)


def test_an_event_dated_before_the_start_is_422_and_stores_nothing(tenant, growth, api_for):
    """S04: nothing ends (or happens) before it started; within 5 minutes of clock skew it does."""
    now = timezone.now()
    api = api_for(tenant)
    api.start("c", at=_iso(now - 2 * H))
    for type in ("end", "customer_message", "agent_message"):
        answer = api.event("c", type, at=_iso(now - 30 * 24 * H))
        assert answer.status_code == 422, type
        assert "before the conversation started" in answer.json()["error"]["message"]
    row = Conversation.objects.get(tenant=tenant, conversation_id="c")
    assert (row.ended_at, row.last_activity_at, row.billable_sessions) == (None, now - 2 * H, 1)
    skewed = api.event("c", "end", at=_iso(now - 2 * H - timedelta(minutes=2)))
    assert skewed.status_code == 200
    assert skewed.json()["ended_at"] == _ms(now - 2 * H)  # never before the start


def test_an_end_reported_out_of_order_never_precedes_the_last_message_s04_s05(tenant, growth, api_for):
    """S04, S05: an `end` dated before a message already recorded (reports out of order) does not
    make the conversation end before its last activity: it ends at that activity."""
    now = timezone.now()
    api = api_for(tenant)
    api.start("ooo", at=_iso(now - 40 * H))
    assert api.event("ooo", "customer_message", at=_iso(now - 10 * H)).status_code == 200
    answer = api.event("ooo", "end", at=_iso(now - 30 * H))
    assert answer.status_code == 200
    body = answer.json()
    assert (body["ended_at"], body["last_activity_at"], body["billable_sessions"]) == (
        _ms(now - 10 * H),
        _ms(now - 10 * H),
        2,
    )
    row = Conversation.objects.get(tenant=tenant, conversation_id="ooo")
    assert row.ended_at == row.last_activity_at == now - 10 * H
