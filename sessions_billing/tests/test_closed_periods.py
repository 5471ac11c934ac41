"""A start reported late and dated in a period that is no longer current (an ended trial, last month)
is a new session of the current period: admitted against the current limit and counted there, so a
closed period never goes past its own cap. S08, S12, S22, S25."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from plans.models import Plan, Subscription
from sessions_billing.models import BillableWindow, SessionLimit, UsagePeriod
from sessions_billing.tests.conftest import paid

pytestmark = pytest.mark.django_db

H = timedelta(hours=1)
TRIAL = 5  # the trial's sessions in these tests


def _counts(tenant) -> list[int]:
    return list(
        UsagePeriod.objects.filter(tenant=tenant)
        .order_by("period_start")
        .values_list("billable_sessions", flat=True)
    )


def _trial_started_days_ago(trial) -> Subscription:
    """The trial began 3 days ago, with 5 sessions (its plan's figure, cut short for speed)."""
    now = timezone.now()
    Plan.objects.filter(pk=trial.plan_id).update(session_limit=TRIAL)
    Subscription.objects.filter(pk=trial.pk).update(
        current_period_start=now - 3 * 24 * H,
        trial_ends_at=now + 11 * 24 * H,
        current_period_end=now + 11 * 24 * H,
    )
    trial.refresh_from_db()
    return trial


def _subscribe_after_trial(tenant, trial) -> Subscription:
    """The trial's sessions used (it ended), then a paid plan whose period starts now."""
    now = timezone.now()
    Subscription.objects.filter(pk=trial.pk).update(state=Subscription.State.EXPIRED, ended_at=now - H)
    return paid(tenant, current_period_start=now - H / 2, current_period_end=now + 30 * 24 * H)


def test_backdated_starts_into_an_ended_trial_are_refused_at_the_limit_s12_s25(tenant, trial, api_for):
    trial = _trial_started_days_ago(trial)
    api = api_for(tenant)
    for i in range(TRIAL):
        assert api.start(f"t{i}").status_code == 201
    _subscribe_after_trial(tenant, trial)
    SessionLimit.objects.create(tenant=tenant, session_limit=8)  # above the trial's 5, as in the report
    for i in range(8):
        assert api.start(f"g{i}").status_code == 201
    assert api.start("g-over").status_code == 402
    inside_trial = (trial.current_period_start + H).isoformat()
    after_trial = (timezone.now() - H * 3 / 4).isoformat()  # trial over, before subscribing
    for i in range(5):
        answer = api.start(f"bk{i}", at=inside_trial)
        assert answer.status_code == 402, answer.content
        assert answer.json()["error"]["code"] == "session_limit_reached"
    assert api.start("bk-gap", at=after_trial).status_code == 402
    assert _counts(tenant) == [TRIAL, 8]  # the trial never past its cap
    assert BillableWindow.objects.filter(tenant=tenant).count() == TRIAL + 8
    assert api.get("/usage").json()["billable_sessions"] == 8


def test_a_backdated_start_under_the_limit_counts_in_the_current_period_s06_s22(tenant, trial, api_for):
    trial = _trial_started_days_ago(trial)
    api = api_for(tenant)
    for i in range(TRIAL):
        api.start(f"t{i}")
    _subscribe_after_trial(tenant, trial)
    answer = api.start("late", at=(trial.current_period_start + H).isoformat())
    assert answer.status_code == 201
    assert answer.json()["billable_sessions"] == 1
    assert _counts(tenant) == [TRIAL, 1]
    assert api.get("/usage").json()["billable_sessions"] == 1
    # A retry is its first answer, whatever the limit says now.
    SessionLimit.objects.create(tenant=tenant, session_limit=1)
    assert api.start("late", at=(trial.current_period_start + H).isoformat()).status_code == 200


def test_a_start_dated_in_last_month_counts_against_this_months_limit_s22_s25(tenant, api_for):
    now = timezone.now()
    day = 24 * H
    sub = paid(tenant, current_period_start=now - 20 * day, current_period_end=now + 10 * day)
    SessionLimit.objects.create(tenant=tenant, session_limit=2)
    api = api_for(tenant)
    assert api.start("a").status_code == 201
    Subscription.objects.filter(pk=sub.pk).update(
        current_period_start=now - day, current_period_end=now + 29 * day
    )
    assert api.start("b").status_code == 201
    assert api.start("c").status_code == 201
    # Last month had one session only, but it is closed: a start dated in it is this month's, at the limit.
    refused = api.start("late", at=(now - 5 * day).isoformat())
    assert refused.status_code == 402
    assert refused.json()["error"]["code"] == "session_limit_reached"
    assert _counts(tenant) == [1, 2]
