"""The free trial's sessions: Trial sessions left, "Trial ending soon", the 60% and 90% emails once
each, and the trial ending at once when its 50 sessions are used. S08-S12."""

from __future__ import annotations

import pytest
from django.utils import timezone

from plans.models import Subscription
from sessions_billing import services
from sessions_billing.selectors import usage_for
from tenants.errors import BusinessError
from tenants.models import AuditEvent, Notification

pytestmark = pytest.mark.django_db


def _start(tenant, n: int, offset: int = 0) -> None:
    for i in range(offset, offset + n):
        services.session_start(tenant=tenant, conversation_id=f"t{i}", direction="inbound")


def _usage_mail(tenant) -> list[tuple[str, str]]:
    return sorted(
        Notification.objects.filter(tenant=tenant, template="trial_sessions_used").values_list(
            "to_email", "subject"
        )
    )


def test_trial_sessions_left_is_live_and_ending_soon_at_90_percent_s09_s10(tenant, admin, trial):
    assert usage_for(tenant=tenant).trial_sessions_left == 50
    _start(tenant, 44)
    usage = usage_for(tenant=tenant)
    assert (usage.trial_sessions_left, usage.badge, usage.trial_days_left) == (6, "Trial subscription", 14)
    _start(tenant, 1, offset=44)
    usage = usage_for(tenant=tenant)
    assert (usage.trial_sessions_left, usage.badge, usage.badge_tone) == (5, "Trial ending soon", "warning")
    assert usage.warnings == ["Trial ending soon"]


def test_at_90_percent_of_the_trial_sessions_every_badge_says_trial_ending_soon_s10_s30(
    tenant, admin, trial, client_for
):
    """The Billing card, /usage, /entitlements and the Overview tile: one badge, not the card alone
    (an outsider probe found /entitlements and the tile still saying "Trial subscription")."""
    import json
    import re

    from django.test import Client

    from tenants.services import api_key_create

    key = api_key_create(tenant=tenant, name="k", actor=admin).secret
    api = Client(HTTP_AUTHORIZATION=f"Bearer {key}")

    def badges() -> tuple[str, str, str]:
        ents = json.loads(api.get("/api/v1/entitlements").content)
        agents = ents["products"]["ai_agents"]
        overview = client_for(admin).get(f"/t/{tenant.slug}/").content.decode()
        tile = re.search(
            r'aria-labelledby="product-ai_agents-title">.*?data-testid="product-badge">([^<]+)<',
            overview,
            re.S,
        )
        assert tile is not None
        return usage_for(tenant=tenant).badge, agents["badge"], tile.group(1)

    _start(tenant, 44)
    assert badges() == ("Trial subscription",) * 3
    _start(tenant, 1, offset=44)  # 45 of 50: 90%
    assert badges() == ("Trial ending soon",) * 3
    assert Subscription.objects.get(pk=trial.pk).trial_sessions_ending_at is not None


def test_60_and_90_percent_emails_are_sent_once_each_s11(tenant, admin, trial):
    _start(tenant, 29)
    assert _usage_mail(tenant) == []
    _start(tenant, 1, offset=29)  # 30 of 50: 60%
    assert _usage_mail(tenant) == [("admin@acme.test", "You have used 60% of your Acme Corp trial sessions")]
    _start(tenant, 14, offset=30)  # 44
    assert len(_usage_mail(tenant)) == 1
    _start(tenant, 1, offset=44)  # 45: 90%
    _start(tenant, 3, offset=45)
    assert _usage_mail(tenant) == [
        ("admin@acme.test", "You have used 60% of your Acme Corp trial sessions"),
        ("admin@acme.test", "You have used 90% of your Acme Corp trial sessions"),
    ]


def test_the_trial_ends_at_once_at_50_sessions_s12(tenant, admin, trial, api_for, client_for):
    _start(tenant, 49)
    assert Subscription.objects.get(pk=trial.pk).state == "trialing"
    _start(tenant, 1, offset=49)
    sub = Subscription.objects.get(pk=trial.pk)
    assert sub.state == "expired"
    assert sub.ended_at is not None
    event = AuditEvent.objects.get(tenant=tenant, action="subscription.trial_ended")
    assert event.data["reason"] == "sessions"
    assert Notification.objects.filter(tenant=tenant, template="trial_ended").count() == 1
    page = client_for(admin).get(f"/t/{tenant.slug}/billing/").content.decode()
    assert '<span class="badge neutral" data-testid="badge">Expired subscription</span>' in page
    assert f'<dd data-testid="ended-on">{sub.ended_at.day} {sub.ended_at:%b %Y}</dd>' in page
    api = api_for(tenant)
    refused = api.start("t50")
    assert refused.status_code == 402
    assert refused.json()["error"] == {
        "code": "subscription_ended",
        "message": "Your subscription has ended. Please upgrade your plan to continue.",
    }
    usage = api.get("/usage").json()
    assert usage["trial_sessions_left"] is None  # no longer on the trial
    assert api.get("/entitlements/ai_agents/admission").json()["code"] == "subscription_ended"


def test_after_a_paid_plan_ended_the_limit_refusal_says_an_active_paid_plan_is_needed_s22(
    tenant, admin, api_for
):
    """S22: the Session limit is for active paid plans. A tenant whose Growth plan expired is not on
    the free trial: the refusal says an active paid plan is needed, not only "not on the free trial"
    (one message for both, as the API documents the code)."""
    from sessions_billing.tests.conftest import paid

    paid(tenant, state=Subscription.State.EXPIRED, ended_at=timezone.now())
    api = api_for(tenant)
    for response in (
        api.put("/usage/session-limit", {"session_limit": 10}),
        api.delete("/usage/session-limit"),
    ):
        assert response.status_code == 409
        assert response.json()["error"] == {
            "code": "limit_not_available",
            "message": "The session limit is available on active paid plans, not on the free trial.",
        }


def test_the_trial_has_no_session_limit_of_its_own(tenant, admin, trial, api_for):
    api = api_for(tenant)
    response = api.put("/usage/session-limit", {"session_limit": 10})
    assert response.status_code == 409
    assert response.json()["error"] == {
        "code": "limit_not_available",
        "message": "The session limit is available on active paid plans, not on the free trial.",
    }
    assert api.delete("/usage/session-limit").status_code == 409
    usage = api.get("/usage").json()
    assert (
        usage["session_limit"],
        usage["limit_source"],
        usage["trial_sessions_left"],
        usage["trial_days_left"],
    ) == (
        50,
        "plan",
        50,
        14,
    )


def test_an_ended_trial_bills_no_new_window_of_a_running_conversation_s08_s12(tenant, admin, trial):
    """Found by an outsider probe: a conversation still running when the 50th session ended the trial
    billed its next 24-hour window into the ended trial (51 of 50). That window is a new billable
    session, which an ended subscription refuses (402, nothing stored); an event in a window already
    billed, and the end, still go through."""
    from datetime import timedelta

    from django.utils import timezone

    from sessions_billing.models import BillableWindow, Conversation, UsagePeriod

    def counted() -> tuple[int, int]:
        periods = sum(UsagePeriod.objects.filter(tenant=tenant).values_list("billable_sessions", flat=True))
        return periods, BillableWindow.objects.filter(tenant=tenant).count()

    t0 = timezone.now()
    services.session_start(tenant=tenant, conversation_id="running", direction="inbound", now=t0)
    _start(tenant, 49)
    assert Subscription.objects.get(pk=trial.pk).state == "expired"
    before = Conversation.objects.values().get(tenant=tenant, conversation_id="running")

    later = t0 + timedelta(hours=25)
    for kind in ("customer_message", "agent_message"):
        with pytest.raises(BusinessError) as refused:
            services.session_event(tenant=tenant, conversation_id="running", type=kind, at=later, now=later)
        assert (refused.value.code, refused.value.status) == ("subscription_ended", 402)
    assert Conversation.objects.values().get(tenant=tenant, conversation_id="running") == before
    assert counted() == (50, 50)

    same_window = t0 + timedelta(hours=2)
    kept = services.session_event(
        tenant=tenant, conversation_id="running", type="customer_message", at=same_window, now=same_window
    )
    assert kept.billable_sessions == 1
    ended = services.session_event(tenant=tenant, conversation_id="running", type="end", at=later, now=later)
    assert ended.ended
    assert counted() == (50, 50)
