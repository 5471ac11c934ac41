"""The Session limit card and its API: paid plans only; Set limit (> 0, at most the plan's base
limit), Reset limit; admins; audited; 80% and 100% warnings on the card and by email once per
period; the downgrade rule. S22-S25."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.utils import timezone

from plans.factories import plan
from plans.models import Subscription
from sessions_billing import services
from sessions_billing.models import SessionLimit
from sessions_billing.selectors import usage_for
from sessions_billing.tests.conftest import paid
from tenants.models import AuditEvent, Notification

pytestmark = pytest.mark.django_db

CARD = 'data-testid="session-limit-card"'


def _billing(client, tenant):
    return client.get(f"/t/{tenant.slug}/billing/?product=ai_agents")


def _set(client, tenant, value, htmx: bool = False):
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    return client.post(
        f"/t/{tenant.slug}/billing/session-limit/", {"session_limit": value, "action": "set"}, **headers
    )


def _fill(tenant, n: int, offset: int = 0) -> None:
    for i in range(offset, offset + n):
        services.session_start(tenant=tenant, conversation_id=f"s{i}", direction="inbound")


def _limit_mail(tenant) -> list[str]:
    return sorted(
        Notification.objects.filter(tenant=tenant, template="session_limit_warning").values_list(
            "subject", flat=True
        )
    )


def test_the_card_shows_the_plans_base_limit_by_default_s23(tenant, admin, growth, client_for):
    page = _billing(client_for(admin), tenant).content.decode()
    assert CARD in page
    assert '<dd data-testid="session-limit">1,500 billable sessions / period</dd>' in page
    assert '<span class="badge" data-testid="limit-source">Plan\'s base limit</span>' in page
    assert "Reset limit" not in page


def test_set_limit_then_reset_limit_returns_to_the_base_s23(tenant, admin, growth, client_for):
    client = client_for(admin)
    response = _set(client, tenant, "1000")
    assert response.status_code == 302
    assert SessionLimit.objects.get(tenant=tenant).session_limit == 1000
    page = _billing(client, tenant).content.decode()
    assert '<dd data-testid="session-limit">1,000 billable sessions / period</dd>' in page
    assert "Reset limit" in page
    assert "The session limit is now 1,000 billable sessions per period." in page
    response = client.post(f"/t/{tenant.slug}/billing/session-limit/", {"action": "reset"})
    assert response.status_code == 302
    assert not SessionLimit.objects.filter(tenant=tenant).exists()
    assert usage_for(tenant=tenant).session_limit == 1500
    actions = list(
        AuditEvent.objects.filter(tenant=tenant, action__startswith="session_limit")
        .order_by("pk")
        .values_list("action", "actor_label", "data")
    )
    assert actions == [
        ("session_limit.set", "admin@acme.test", {"from": "plan (1500)", "to": 1000}),
        ("session_limit.reset", "admin@acme.test", {"from": 1000, "to": "plan (1500)"}),
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "The value must be greater than zero."),
        ("-3", "The value must be greater than zero."),
        ("1.5", "Enter a whole number greater than zero."),
        ("abc", "Enter a whole number greater than zero."),
        ("", "Enter the maximum number of sessions."),
        ("99999999999999999999", "Enter a smaller number."),
        (
            "1501",
            "The session limit cannot be above your plan&#x27;s base limit of 1,500 sessions. Upgrade your plan for more sessions.",
        ),
    ],
)
def test_the_limit_must_be_a_whole_number_greater_than_zero_s23(
    tenant, admin, growth, client_for, value, message
):
    response = _set(client_for(admin), tenant, value, htmx=True)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert 'aria-invalid="true"' in response.content.decode()
    assert not SessionLimit.objects.filter(tenant=tenant).exists()
    assert not AuditEvent.objects.filter(tenant=tenant, action__startswith="session_limit").exists()


def test_only_admins_set_the_limit(tenant, member, finance, growth, client_for):
    for user in (member, finance):
        assert _set(client_for(user), tenant, "10").status_code == 403
    page = _billing(client_for(member), tenant).content.decode()
    assert "Only administrators can change the session limit." in page
    assert not SessionLimit.objects.exists()


def test_the_trial_has_no_limit_card_s22(tenant, admin, trial, client_for):
    client = client_for(admin)
    page = _billing(client, tenant).content.decode()
    assert CARD not in page
    assert '<dd data-testid="trial-sessions-left">50</dd>' in page
    response = _set(client, tenant, "10")
    assert response.status_code == 302
    assert not SessionLimit.objects.exists()


def test_80_and_100_percent_warnings_on_the_card_and_by_email_once_per_period_s24(
    tenant, admin, growth, client_for
):
    client = client_for(admin)
    _set(client, tenant, "10")
    _fill(tenant, 7)
    page = _billing(client, tenant).content.decode()
    assert 'data-testid="limit-warning"' not in page
    assert _limit_mail(tenant) == []
    _fill(tenant, 1, offset=7)  # 8 of 10: 80%
    page = _billing(client, tenant).content.decode()
    assert "<strong>Session limit almost reached</strong>" in page
    assert _limit_mail(tenant) == ["Session limit almost reached · Acme Corp"]
    _fill(tenant, 1, offset=8)
    _fill(tenant, 1, offset=9)  # 10 of 10
    page = _billing(client, tenant).content.decode()
    assert "<strong>Session limit has been reached</strong>" in page
    assert _limit_mail(tenant) == [
        "Session limit almost reached · Acme Corp",
        "Session limit has been reached · Acme Corp",
    ]
    # Raising and lowering the limit again in the same period sends nothing new.
    _set(client, tenant, "100")
    _set(client, tenant, "11")
    assert len(_limit_mail(tenant)) == 2
    # The next period warns afresh.
    now = timezone.now()
    Subscription.objects.filter(pk=growth.pk).update(
        current_period_start=now, current_period_end=now + timedelta(days=30)
    )
    _fill(tenant, 9, offset=10)
    assert len(_limit_mail(tenant)) == 3


def test_lowering_the_limit_below_usage_warns_at_once(tenant, admin, growth, client_for):
    _fill(tenant, 9)
    _set(client_for(admin), tenant, "9")
    assert _limit_mail(tenant) == [
        "Session limit almost reached · Acme Corp",
        "Session limit has been reached · Acme Corp",
    ]


@pytest.mark.parametrize("htmx", [True, False])
def test_s25_set_limit_says_before_and_as_it_applies_that_a_limit_below_usage_stops_every_agent(
    tenant, admin, growth, client_for, htmx
):
    """S25: at the limit all agents stop accepting new sessions until the limit is raised or the
    counter resets. Before Set limit the form says how many are used; a limit below that is set (not
    refused) and its answer warns that every agent stops now, until the next period."""
    _fill(tenant, 9)
    client = client_for(admin)
    before = _billing(client, tenant).content.decode()
    assert (
        '<p class="small" data-testid="limit-used-hint">9 billable sessions are already '
        "used this period: a limit at or below that stops all AI agents at once.</p>" in before
    )
    resets = (growth.current_period_end).strftime("%-d %b %Y")
    answer = _set(client, tenant, "5", htmx=htmx)
    flashes = [(m.level_tag, m.message) for m in get_messages(answer.wsgi_request)]
    if not htmx:  # read on the Billing tab the plain form returns to
        flashes = [(m.level_tag, m.message) for m in get_messages(client.get(answer.url).wsgi_request)]
    assert flashes == [
        ("success", "The session limit is now 5 billable sessions per period."),
        (
            "warning",
            "9 billable sessions are already used this period: above the new limit of 5, all agents "
            f"stop accepting new sessions until the next period starts on {resets}.",
        ),
    ]
    if htmx:  # shown with the card it swaps, out of band
        assert '<div id="messages" class="messages" hx-swap-oob="true">' in answer.content.decode()
        assert "above the new limit of 5, all agents stop" in answer.content.decode()
    assert SessionLimit.objects.get(tenant=tenant).session_limit == 5  # warned, not refused
    assert not usage_for(tenant=tenant).accepting


def test_s25_a_limit_above_usage_sets_without_a_stop_warning(tenant, admin, growth, client_for):
    _fill(tenant, 9)
    answer = _set(client_for(admin), tenant, "10", htmx=True)
    body = answer.content.decode()
    assert "The session limit is now 10 billable sessions per period." in body  # out of band
    assert "the new limit" not in body


def test_a_downgrade_applies_the_lower_base_and_an_upgrade_brings_the_limit_back(
    tenant, admin, client_for, api_for
):
    sub = paid(tenant, "agents-scale")
    client = client_for(admin)
    _set(client, tenant, "1000")
    Subscription.objects.filter(pk=sub.pk).update(plan=plan("agents-starter"))  # base 300
    usage = api_for(tenant).get("/usage").json()
    assert (usage["session_limit"], usage["limit_source"]) == (300, "plan")
    page = _billing(client, tenant).content.decode()
    assert 'data-testid="limit-capped"' in page
    assert "Your limit of 1,000 is above this plan's base limit, so the base limit of 300 applies." in page
    Subscription.objects.filter(pk=sub.pk).update(plan=plan("agents-growth"))
    usage = api_for(tenant).get("/usage").json()
    assert (usage["session_limit"], usage["limit_source"]) == (1000, "tenant")


def test_the_api_sets_and_resets_the_limit_with_the_key_as_actor(tenant, admin, growth, api_for):
    api = api_for(tenant)
    response = api.put("/usage/session-limit", {"session_limit": 120})
    assert response.status_code == 200
    assert (response.json()["session_limit"], response.json()["limit_source"]) == (120, "tenant")
    event = AuditEvent.objects.get(tenant=tenant, action="session_limit.set")
    assert event.actor_type == "api_key"
    assert event.actor_label.startswith("API key agent runtime")
    for bad in (0, -1, "12", 1.5, None, True, 2**40):
        response = api.put("/usage/session-limit", {"session_limit": bad})
        assert response.status_code == 422, bad
        assert response.json()["error"]["code"] == "invalid_request"
    assert (
        api.put("/usage/session-limit", {"session_limit": 1501}).json()["error"]["code"] == "limit_above_plan"
    )
    assert SessionLimit.objects.get(tenant=tenant).session_limit == 120
    # The reset takes no body: a field sent anyway is refused and the limit stays.
    refused = api._send("delete", "/usage/session-limit", {"limit_source": "plan"})
    assert (refused.status_code, refused.json()["error"]["message"]) == (
        422,
        "limit_source: Extra inputs are not permitted",
    )
    assert SessionLimit.objects.get(tenant=tenant).session_limit == 120
    response = api.delete("/usage/session-limit")
    assert (response.status_code, response.json()["session_limit"], response.json()["limit_source"]) == (
        200,
        1500,
        "plan",
    )


def test_set_and_reset_limit_by_htmx_update_the_subscription_cards_sessions_count_too_s06_s23(
    tenant, admin, growth, client_for
):
    """S06, S23: after Set limit / Reset limit (htmx) the Session limit card and the subscription
    card's Sessions count say the same limit: the count comes back out of band with the card."""
    _fill(tenant, 3)
    client = client_for(admin)
    page = _billing(client, tenant).content.decode()
    assert 'id="usage-facts"' in page
    assert 'data-testid="sessions-count">3 <span class="muted small">of 1,500</span>' in page

    body = _set(client, tenant, "1000", htmx=True).content.decode()
    assert body.index(CARD) < body.index('<div id="usage-facts" hx-swap-oob="true">')
    assert 'data-testid="limit-usage">3 of 1,000</dd>' in body
    assert 'data-testid="sessions-count">3 <span class="muted small">of 1,000</span>' in body

    body = client.post(
        f"/t/{tenant.slug}/billing/session-limit/", {"action": "reset"}, HTTP_HX_REQUEST="true"
    ).content.decode()
    assert 'data-testid="limit-usage">3 of 1,500</dd>' in body
    assert '<div id="usage-facts" hx-swap-oob="true">' in body
    assert 'data-testid="sessions-count">3 <span class="muted small">of 1,500</span>' in body


def test_a_canceled_plans_limit_does_not_reset_the_card_says_when_the_plan_expires_s25_s29(
    tenant, admin, client_for
):
    """S25, S29: canceled at the end of its period, the plan has no next period: the Session limit
    card says when the plan expires instead of "Resets on", and at the limit it names no reset."""
    ends = timezone.now() + timedelta(days=29)
    paid(
        tenant,
        state=Subscription.State.CANCELED,
        canceled_at=timezone.now(),
        ends_at=ends,
        current_period_end=ends,
    )
    client = client_for(admin)
    assert _set(client, tenant, "2").status_code == 302
    _fill(tenant, 2)
    page = _billing(client, tenant).content.decode()
    card = page[page.index(CARD) : page.index("</article>", page.index(CARD))]
    assert "Resets on" not in card
    assert f'<dt>Plan expires on</dt><dd data-testid="limit-plan-expires-on">{ends:%-d %b %Y}</dd>' in card
    assert "next billing period" not in card
    assert "All AI agents stop accepting new sessions until the limit is increased." in card
    refusal = usage_for(tenant=tenant).refusal
    assert refusal is not None
    assert "next billing period" not in refusal.message


def test_an_active_plans_limit_resets_on_the_next_period_s25(tenant, admin, growth, client_for):
    page = _billing(client_for(admin), tenant).content.decode()
    assert (
        f'<dt>Resets on</dt><dd data-testid="limit-resets-on">{growth.current_period_end:%-d %b %Y}</dd>'
        in page
    )
    assert "Plan expires on" not in page
