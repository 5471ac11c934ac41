"""Claims on stored webhook events (issue 6): a worker claims an event with a claim time; a live claim
is never taken by another worker nor listed by the retry sweeper; a claim older than CLAIM_TIMEOUT
(its worker died) is taken again; attempts stop at MAX_ATTEMPTS; and what a stale worker finally
writes never overwrites the result of the newer claim (every write is keyed on `claimed_at`).

Two workers are two real threads on their own PostgreSQL connections; the handler of the event
type is replaced by one that waits, fails or succeeds on cue."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from billing_portal import webhooks
from billing_portal.models import WebhookEvent
from billing_portal.webhooks import CLAIM_TIMEOUT, MAX_ATTEMPTS, webhook_event_process, webhook_events_due

TYPE = "customer.subscription.updated"


def _stored(**fields: Any) -> WebhookEvent:
    return WebhookEvent.objects.create(
        event_id="evt_claims_1",
        type=TYPE,
        object_type="subscription",
        object_id="sub_claims_1",
        payload={"id": "evt_claims_1"},
        event_created=timezone.now(),
        **fields,
    )


def _state(row: WebhookEvent) -> tuple:
    return WebhookEvent.objects.values_list("status", "attempts", "claimed_at", "error").get(pk=row.pk)


class Cue:
    """A handler for the worker thread that waits until released, then succeeds or fails; any
    other thread's call runs `other` at once. Counts the calls."""

    def __init__(self, *, worker_fails: bool, other: Callable[[], None]) -> None:
        self.worker: threading.Thread | None = None
        self.inside = threading.Event()
        self.release = threading.Event()
        self.worker_fails = worker_fails
        self.other = other
        self.calls = 0

    def __call__(self, gateway, row) -> None:
        self.calls += 1
        if threading.current_thread() is not self.worker:
            self.other()
            return
        self.inside.set()
        assert self.release.wait(timeout=20)
        if self.worker_fails:
            raise RuntimeError("the stale worker's late failure")

    def start(self, event_pk: int, now) -> dict[str, Any]:
        """Worker A: claims and applies the event at `now` in its own thread; returns its result box."""
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["result"] = webhook_event_process(event_pk=event_pk, now=now)
            except BaseException as exc:
                box["error"] = exc
            finally:
                connection.close()

        self.worker = threading.Thread(target=run)
        self.worker.start()
        assert self.inside.wait(timeout=20), "worker A never reached the handler"
        return box

    def finish(self) -> None:
        self.release.set()
        assert self.worker is not None
        self.worker.join(timeout=20)


def _ok() -> None:
    return None


def _fail() -> None:
    raise RuntimeError("worker B's failure")


@pytest.mark.django_db(transaction=True)
def test_a_live_claim_is_skipped_by_a_second_worker_and_not_listed_by_the_sweeper(monkeypatch):
    row = _stored()
    cue = Cue(worker_fails=False, other=_ok)
    monkeypatch.setitem(webhooks.HANDLERS, TYPE, cue)
    t0 = timezone.now()

    box = cue.start(row.pk, t0)
    try:
        while_claimed = _state(row)
        # Up to the last moment of the claim, and at it: not stale (stale means strictly older).
        second = [
            webhook_event_process(event_pk=row.pk, now=t0 + CLAIM_TIMEOUT - timedelta(seconds=1)),
            webhook_event_process(event_pk=row.pk, now=t0 + CLAIM_TIMEOUT),
        ]
        listed = [webhook_events_due(now=t0 + timedelta(minutes=m)) for m in (0, 1, 5)]
        listed.append(webhook_events_due(now=t0 + CLAIM_TIMEOUT))
        after_the_second_worker = _state(row)
    finally:
        cue.finish()

    assert while_claimed == ("processing", 1, t0, "")
    assert second == ["skipped", "skipped"]
    assert listed == [[], [], [], []]
    assert after_the_second_worker == while_claimed
    assert box == {"result": "processed"}
    assert cue.calls == 1
    assert _state(row)[:2] == ("processed", 1)


def test_a_claim_older_than_the_timeout_is_listed_and_taken_again(db, monkeypatch):
    t0 = timezone.now() - timedelta(hours=1)
    row = _stored(status="processing", attempts=1, claimed_at=t0)
    calls: list[int] = []
    monkeypatch.setitem(webhooks.HANDLERS, TYPE, lambda gateway, r: calls.append(r.pk))
    t1 = t0 + CLAIM_TIMEOUT + timedelta(seconds=1)

    assert webhook_events_due(now=t0 + CLAIM_TIMEOUT) == []
    assert webhook_events_due(now=t1) == [row.pk]
    assert webhook_event_process(event_pk=row.pk, now=t1) == "processed"

    assert calls == [row.pk]
    row.refresh_from_db()
    assert (row.status, row.attempts, row.claimed_at, row.error) == ("processed", 2, t1, "")
    assert row.processed_at is not None
    assert webhook_events_due(now=t1 + timedelta(hours=1)) == []


def test_attempts_stop_at_max_attempts(db, monkeypatch):
    row = _stored()
    calls: list[int] = []

    def failing(gateway, r) -> None:
        calls.append(r.attempts)
        raise RuntimeError("still broken")

    monkeypatch.setitem(webhooks.HANDLERS, TYPE, failing)
    start = timezone.now()
    due, results = [], []
    for n in range(MAX_ATTEMPTS + 2):
        now = start + n * (CLAIM_TIMEOUT + timedelta(seconds=1))
        due.append(webhook_events_due(now=now))
        results.append(webhook_event_process(event_pk=row.pk, now=now))

    assert MAX_ATTEMPTS == 8
    assert results == ["failed"] * 8 + ["skipped"] * 2
    assert due == [[]] + [[row.pk]] * 7 + [[], []]  # the first: received just now, not yet overdue
    assert calls == list(range(1, 9))  # the handler sees the claim's attempt number
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("failed", 8)
    assert "still broken" in row.error


@pytest.mark.django_db(transaction=True)
def test_a_stale_workers_late_failure_does_not_overwrite_the_newer_claims_success(monkeypatch):
    row = _stored()
    cue = Cue(worker_fails=True, other=_ok)
    monkeypatch.setitem(webhooks.HANDLERS, TYPE, cue)
    t0 = timezone.now()
    t1 = t0 + CLAIM_TIMEOUT + timedelta(seconds=1)

    box = cue.start(row.pk, t0)  # worker A hangs
    try:
        reclaimed = webhook_event_process(event_pk=row.pk, now=t1)  # worker B: A looks dead
        after_b = _state(row)
    finally:
        cue.finish()  # A wakes up and fails

    assert reclaimed == "processed"
    assert after_b == ("processed", 2, t1, "")
    assert box == {"result": "failed"}  # A's own view; its write found no row claimed at t0
    assert _state(row) == ("processed", 2, t1, "")
    assert webhook_events_due(now=t1 + timedelta(hours=1)) == []


@pytest.mark.django_db(transaction=True)
def test_a_stale_workers_late_success_does_not_overwrite_the_newer_claims_failure(monkeypatch):
    row = _stored()
    cue = Cue(worker_fails=False, other=_fail)
    monkeypatch.setitem(webhooks.HANDLERS, TYPE, cue)
    t0 = timezone.now()
    t1 = t0 + CLAIM_TIMEOUT + timedelta(seconds=1)

    box = cue.start(row.pk, t0)
    try:
        reclaimed = webhook_event_process(event_pk=row.pk, now=t1)
    finally:
        cue.finish()

    assert reclaimed == "failed"
    assert box == {"result": "processed"}
    status, attempts, claimed_at, error = _state(row)
    assert (status, attempts, claimed_at) == ("failed", 2, t1)
    assert "worker B's failure" in error
    # Still failed, so the sweeper retries it.
    assert webhook_events_due(now=t1 + timedelta(seconds=1)) == [row.pk]
