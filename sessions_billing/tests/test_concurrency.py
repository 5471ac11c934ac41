"""Admission and events under real concurrency (threads, PostgreSQL): N parallel starts against a
limit L admit exactly L; one conversation id from 10 threads is one session; parallel events never
count a window twice."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from sessions_billing import services
from sessions_billing.models import BillableWindow, Conversation, SessionLimit, UsagePeriod
from sessions_billing.tests.conftest import paid
from tenants.errors import BusinessError

pytestmark = pytest.mark.django_db(transaction=True)


def _race(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run work(i) in n threads released together; each result is the return value or the error."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BusinessError as exc:
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _outcome(result: Any) -> str:
    if isinstance(result, BusinessError):
        return f"{result.status} {result.code}"
    return "created" if result[1] else "existing"


def test_parallel_starts_against_a_limit_admit_exactly_the_limit(tenant):
    paid(tenant)
    SessionLimit.objects.create(tenant=tenant, session_limit=7)
    services.session_start(
        tenant=tenant, conversation_id="first", direction="inbound"
    )  # the period's row exists
    results = _race(
        20, lambda i: services.session_start(tenant=tenant, conversation_id=f"p{i}", direction="inbound")
    )
    assert Counter(map(_outcome, results)) == {"created": 6, "402 session_limit_reached": 14}
    assert UsagePeriod.objects.get(tenant=tenant).billable_sessions == 7
    assert Conversation.objects.filter(tenant=tenant).count() == 7
    assert BillableWindow.objects.filter(tenant=tenant).count() == 7


def test_parallel_first_starts_of_a_period_create_one_counter(tenant):
    paid(tenant)
    SessionLimit.objects.create(tenant=tenant, session_limit=5)
    results = _race(
        12, lambda i: services.session_start(tenant=tenant, conversation_id=f"f{i}", direction="inbound")
    )
    assert Counter(map(_outcome, results)) == {"created": 5, "402 session_limit_reached": 7}
    assert list(UsagePeriod.objects.filter(tenant=tenant).values_list("billable_sessions", flat=True)) == [5]


def test_one_conversation_id_from_10_threads_is_one_session(tenant):
    paid(tenant)
    results = _race(
        10,
        lambda i: services.session_start(
            tenant=tenant, conversation_id="same", direction="inbound", agent="bot"
        ),
    )
    assert Counter(map(_outcome, results)) == {"created": 1, "existing": 9}
    assert Conversation.objects.filter(tenant=tenant).count() == 1
    assert UsagePeriod.objects.get(tenant=tenant).billable_sessions == 1
    assert {r[0].billable_sessions for r in results} == {1}


def test_parallel_events_never_count_a_window_twice(tenant):
    paid(tenant)
    start = timezone.now() - timedelta(hours=50)
    services.session_start(tenant=tenant, conversation_id="busy", direction="inbound", at=start)
    at = [start + timedelta(hours=24 + (i % 24)) for i in range(10)] + [
        start + timedelta(hours=48, minutes=i) for i in range(10)
    ]
    results = _race(
        20,
        lambda i: services.session_event(
            tenant=tenant, conversation_id="busy", type="customer_message", at=at[i]
        ),
    )
    assert not [r for r in results if isinstance(r, BusinessError)]
    conv = Conversation.objects.get(tenant=tenant, conversation_id="busy")
    assert conv.billable_sessions == 3
    assert sorted(BillableWindow.objects.filter(conversation=conv).values_list("index", flat=True)) == [
        0,
        1,
        2,
    ]
    assert UsagePeriod.objects.get(tenant=tenant).billable_sessions == 3


def test_an_end_racing_messages_leaves_consistent_counters(tenant):
    paid(tenant)
    start = timezone.now() - timedelta(hours=30)
    services.session_start(tenant=tenant, conversation_id="race", direction="inbound", at=start)

    def work(i: int):
        kind = "end" if i == 0 else "agent_message"
        return services.session_event(
            tenant=tenant, conversation_id="race", type=kind, at=start + timedelta(hours=25)
        )

    results = _race(8, work)
    conv = Conversation.objects.get(tenant=tenant, conversation_id="race")
    assert conv.ended_at is not None
    assert all(isinstance(r, services.Session) or r.status == 409 for r in results)
    windows = BillableWindow.objects.filter(conversation=conv).count()
    assert conv.billable_sessions == windows
    assert UsagePeriod.objects.get(tenant=tenant).billable_sessions == windows


def test_parallel_replies_under_answered_only_bill_exactly_the_slots_left_s07_s25(tenant):
    """Answered only: 12 customers reply at once to outbound starts with 3 slots left; exactly 3
    replies are billed, the others are refused and store nothing."""
    paid(tenant, "agents-starter")
    SessionLimit.objects.create(tenant=tenant, session_limit=4)
    services.session_start(tenant=tenant, conversation_id="first", direction="inbound")
    for i in range(12):
        services.session_start(tenant=tenant, conversation_id=f"ob{i}", direction="outbound")
    results = _race(
        12,
        lambda i: services.session_event(tenant=tenant, conversation_id=f"ob{i}", type="customer_message"),
    )
    outcomes = Counter(f"{r.status} {r.code}" if isinstance(r, BusinessError) else "billed" for r in results)
    assert outcomes == {"billed": 3, "402 session_limit_reached": 9}
    assert UsagePeriod.objects.get(tenant=tenant).billable_sessions == 4
    assert BillableWindow.objects.filter(tenant=tenant).count() == 4
    assert Conversation.objects.filter(tenant=tenant, answered=True).count() == 4


def test_parallel_replies_in_one_conversation_bill_it_once(tenant):
    paid(tenant, "agents-starter")
    services.session_start(tenant=tenant, conversation_id="ob", direction="outbound")
    results = _race(
        8, lambda i: services.session_event(tenant=tenant, conversation_id="ob", type="customer_message")
    )
    assert all(not isinstance(r, BusinessError) for r in results), results
    assert Conversation.objects.get(tenant=tenant, conversation_id="ob").billable_sessions == 1
    assert UsagePeriod.objects.get(tenant=tenant).billable_sessions == 1


def test_parallel_messages_in_a_new_window_all_answer_the_committed_count(tenant):
    """Ten customer messages at once in a conversation's second 24-hour window: one bills it, and
    every answer says 2 billable sessions, the count stored once the window is billed — not the 1
    an event read before the event that billed it committed."""
    paid(tenant)
    start = timezone.now() - timedelta(hours=30)
    services.session_start(tenant=tenant, conversation_id="new-window", direction="inbound", at=start)
    results = _race(
        10,
        lambda i: services.session_event(
            tenant=tenant, conversation_id="new-window", type="customer_message"
        ),
    )
    assert [r.billable_sessions for r in results] == [2] * 10
    assert Conversation.objects.get(tenant=tenant, conversation_id="new-window").billable_sessions == 2


def test_a_message_whose_window_a_parallel_message_billed_answers_the_committed_count(tenant, monkeypatch):
    """The interleaving of the race above, forced: B's message is recorded (count 1, window not
    billed), A's message bills the window and commits (count 2), then B finds the window billed.
    B answers 2, as the conversation then stands."""
    paid(tenant)
    start = timezone.now() - timedelta(hours=30)
    services.session_start(tenant=tenant, conversation_id="ab", direction="inbound", at=start)
    a_done = threading.Event()
    b_recorded = threading.Event()
    period_for = services._period_for

    def paused(*args: Any) -> Any:
        if threading.current_thread().name == "B":
            b_recorded.set()
            assert a_done.wait(10)
        return period_for(*args)

    monkeypatch.setattr(services, "_period_for", paused)
    results: dict[str, Any] = {}

    def message(name: str) -> None:
        try:
            if name == "A":
                assert b_recorded.wait(10)
            results[name] = services.session_event(
                tenant=tenant, conversation_id="ab", type="customer_message"
            ).billable_sessions
        finally:
            if name == "A":
                a_done.set()
            connection.close()

    threads = [threading.Thread(target=message, args=(name,), name=name) for name in ("B", "A")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {"A": 2, "B": 2}
    assert BillableWindow.objects.filter(conversation__conversation_id="ab").count() == 2
    assert UsagePeriod.objects.get(tenant=tenant).billable_sessions == 2
