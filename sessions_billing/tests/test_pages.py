"""The Sessions and Agents screens, the Billing tab's live figures, the Overview tile and the
sidebar: exact content, filters that keep the URL, pagination at scale, CSV, and query counts that
do not grow with rows. S04, S06, S09, S32, S35."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone

from plans.models import Subscription
from sessions_billing import services
from sessions_billing.models import Agent, BillableWindow, Conversation, SessionLimit, UsagePeriod
from sessions_billing.tests.conftest import paid
from tests.stacked import stacked_labels

pytestmark = pytest.mark.django_db


def _bulk(tenant, n: int, agent: Agent | None = None) -> None:
    """n conversations straight into the tables (with their windows and the counter)."""
    now = timezone.now()
    services.session_start(tenant=tenant, conversation_id="seed", direction="inbound")
    period = UsagePeriod.objects.get(tenant=tenant)
    convs = Conversation.objects.bulk_create(
        Conversation(
            tenant=tenant,
            conversation_id=f"bulk-{i:06d}",
            agent=agent,
            direction="inbound",
            started_at=now - timedelta(minutes=i + 1),
            last_activity_at=now - timedelta(minutes=i + 1),
            answered=True,
            billable_sessions=1,
        )
        for i in range(n)
    )
    BillableWindow.objects.bulk_create(
        BillableWindow(tenant=tenant, conversation=c, index=0, starts_at=c.started_at, usage_period=period)
        for c in convs
    )
    UsagePeriod.objects.filter(pk=period.pk).update(billable_sessions=n + 1)


def test_sessions_screen_lists_conversations_with_their_figures_s04(tenant, admin, growth, client_for):
    start = timezone.now() - timedelta(hours=30)
    services.session_start(
        tenant=tenant, conversation_id="conv-a", direction="outbound", agent="helper", at=start
    )
    services.session_event(
        tenant=tenant, conversation_id="conv-a", type="customer_message", at=start + timedelta(hours=25)
    )
    page = client_for(admin).get(f"/t/{tenant.slug}/sessions/").content.decode()
    assert page.count('data-testid="session-row"') == 1
    for text in (
        "conv-a",
        "helper",
        "Outbound",
        "Yes",
        '<td class="right" data-label="Billable sessions" data-testid="billable">2</td>',
    ):
        assert text in page
    assert "2 of 1,500" in page  # this period's billable sessions against the limit
    assert 'id="usage-chart-data"' in page  # the chart's data, for static/js/sessions-chart.js
    assert "vendor/chart.js/chart.umd.min.js" in page
    assert "<script>" not in page  # no inline script (CSP)


def test_filters_keep_the_url_and_the_csv_keeps_the_filters(tenant, admin, growth, client_for):
    now = timezone.now()
    services.session_start(
        tenant=tenant, conversation_id="alpha-1", direction="inbound", agent="a", at=now - timedelta(days=2)
    )
    services.session_start(tenant=tenant, conversation_id="beta-1", direction="outbound", agent="b", at=now)
    services.session_start(tenant=tenant, conversation_id="=cmd()", direction="inbound", agent="b", at=now)
    client = client_for(admin)
    page = client.get(f"/t/{tenant.slug}/sessions/?agent=b&q=beta").content.decode()
    assert page.count('data-testid="session-row"') == 1
    assert "beta-1" in page
    assert "alpha-1" not in page
    assert f'href="/t/{tenant.slug}/sessions/export.csv?agent=b&amp;q=beta"' in page
    response = client.get(f"/t/{tenant.slug}/sessions/export.csv?agent=b")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == [
        "conversation_id",
        "agent",
        "direction",
        "started_at",
        "last_activity_at",
        "ended_at",
        "answered",
        "billable_sessions",
    ]
    assert sorted(r[0] for r in rows[1:]) == ["'=cmd()", "beta-1"]
    day = (now - timedelta(days=2)).date().isoformat()
    page = client.get(f"/t/{tenant.slug}/sessions/?since={day}&until={day}").content.decode()
    assert "alpha-1" in page
    assert "beta-1" not in page
    bad = client.get(f"/t/{tenant.slug}/sessions/?since=nope&agent=zzz&q=x").status_code
    assert bad == 200
    assert client.get(f"/t/{tenant.slug}/sessions/?q=%00").status_code == 400  # refused at the door
    assert client.get(f"/t/{tenant.slug}/sessions/?until=9999-12-31&before=1.1&after=x").status_code == 200
    assert client.get(f"/t/{tenant.slug}/sessions/export.csv?until=9999-12-31").status_code == 200


def test_pagination_at_scale_is_keyset_and_constant_in_queries(
    tenant, admin, growth, client_for, django_assert_num_queries
):
    _bulk(tenant, 3000)
    client = client_for(admin)
    client.get(f"/t/{tenant.slug}/sessions/")  # the first visit also saves the session's last tenant
    # 10, and the sidebar's AI Credits quick access (1, credits C03)
    with django_assert_num_queries(11):
        first = client.get(f"/t/{tenant.slug}/sessions/").content.decode()
    assert first.count('data-testid="session-row"') == 50
    older = first.split('data-testid="older"')[0].rsplit("before=", 1)[1].split('"')[0]
    with django_assert_num_queries(11):
        second = client.get(f"/t/{tenant.slug}/sessions/?before={older}").content.decode()
    assert "bulk-000049" in second
    assert "bulk-000048" not in second
    assert "← Newer" in second
    with django_assert_num_queries(5):
        client.get(f"/t/{tenant.slug}/sessions/?before={older}", HTTP_HX_REQUEST="true")


def test_agents_screen_says_whether_agents_accept_sessions_and_why_s32(
    tenant, admin, member, growth, client_for
):
    services.session_start(tenant=tenant, conversation_id="x1", direction="inbound", agent="support-bot")
    services.session_start(tenant=tenant, conversation_id="x2", direction="inbound", agent="support-bot")
    client = client_for(member)
    page = client.get(f"/t/{tenant.slug}/agents/").content.decode()
    assert "AI agents are accepting new sessions." in page
    assert page.count('data-testid="agent-row"') == 1
    assert '<td class="right" data-label="Sessions">2</td>' in page
    SessionLimit.objects.create(tenant=tenant, session_limit=2)
    page = client.get(f"/t/{tenant.slug}/agents/").content.decode()
    assert "AI agents stopped accepting new sessions." in page
    assert "Check the Session limit card: you have reached your session limit." in page
    assert "Stopped: limit reached" in page
    Subscription.objects.filter(pk=growth.pk).update(state="suspended")
    page = client.get(f"/t/{tenant.slug}/agents/").content.decode()
    assert "Your payment is overdue and the grace period has expired." in page
    assert (
        "Click Manage on the subscription card and settle the failed payment in the billing portal." in page
    )
    Subscription.objects.filter(pk=growth.pk).update(state="expired")
    page = client.get(f"/t/{tenant.slug}/agents/").content.decode()
    assert "Your subscription has ended. Please upgrade your plan to continue." in page
    assert "Subscribe to a paid plan in the Plans section." in page


def test_agents_and_sessions_rows_read_as_labelled_cards_on_a_phone_s04_s35(
    tenant, admin, growth, client_for
):
    """At phone width every row stacks as a card (the Manage Licenses pattern): each cell after the
    row's title carries its column's name, so the billable sessions and whether agents accept new
    sessions are never cut off (S04, S06, S32, S35)."""
    services.session_start(tenant=tenant, conversation_id="c1", direction="inbound", agent="support-bot")
    client = client_for(admin)
    agents = client.get(f"/t/{tenant.slug}/agents/").content.decode()
    assert stacked_labels(agents, "agent-row") == [
        [None, "Id", "Sessions", "Billable sessions", "New sessions"]
    ]
    sessions = client.get(f"/t/{tenant.slug}/sessions/").content.decode()
    assert stacked_labels(sessions, "session-row") == [
        [None, "Started", "Last activity", "Agent", "Direction", "Answered", "Billable sessions"]
    ]


def test_agents_screen_query_count_is_constant(tenant, admin, growth, client_for, django_assert_num_queries):
    for i in range(3):
        services.session_start(
            tenant=tenant, conversation_id=f"q{i}", direction="inbound", agent=f"agent-{i}"
        )
    client = client_for(admin)
    client.get(f"/t/{tenant.slug}/agents/")  # the first visit also saves the session's last tenant
    # 10, and the sidebar's AI Credits quick access (1, credits C03)
    with django_assert_num_queries(11):
        client.get(f"/t/{tenant.slug}/agents/")
    for i in range(3, 20):
        services.session_start(
            tenant=tenant, conversation_id=f"q{i}", direction="inbound", agent=f"agent-{i}"
        )
    with django_assert_num_queries(11):
        page = client.get(f"/t/{tenant.slug}/agents/").content.decode()
    assert page.count('data-testid="agent-row"') == 20


def test_an_admin_registers_an_agent(tenant, admin, member, growth, client_for):
    assert client_for(member).post(f"/t/{tenant.slug}/agents/register/", {"key": "x"}).status_code == 403
    response = client_for(admin).post(
        f"/t/{tenant.slug}/agents/register/", {"key": "voice-1", "name": "Voice"}
    )
    assert response.status_code == 302
    assert list(Agent.objects.filter(tenant=tenant).values_list("key", "name")) == [("voice-1", "Voice")]
    assert client_for(admin).post(f"/t/{tenant.slug}/agents/register/", {"key": ""}).status_code == 422
    for fields in ({"key": "bot\u202etxt.exe"}, {"key": "bot-2", "name": "Vo\u2066ice"}):  # tenants.text
        response = client_for(admin).post(f"/t/{tenant.slug}/agents/register/", fields)
        assert response.status_code == 422
        assert "Remove the control characters." in response.content.decode()
    assert Agent.objects.filter(tenant=tenant).count() == 1


def test_billing_tab_shows_the_live_sessions_count_s06(tenant, admin, growth, client_for):
    for i in range(3):
        services.session_start(tenant=tenant, conversation_id=f"b{i}", direction="inbound")
    page = client_for(admin).get(f"/t/{tenant.slug}/billing/").content.decode()
    assert (
        '<div id="usage-facts"><dt>Sessions count</dt><dd data-testid="sessions-count">3 <span class="muted small">of 1,500</span></dd></div>'
        in page
    )
    assert 'data-testid="related-screens"' in page


def test_billing_tab_trial_figures_are_live_s09(tenant, admin, trial, client_for):
    for i in range(46):
        services.session_start(tenant=tenant, conversation_id=f"t{i}", direction="inbound")
    page = client_for(admin).get(f"/t/{tenant.slug}/billing/").content.decode()
    assert '<dd data-testid="trial-sessions-left">4</dd>' in page
    assert '<dd data-testid="trial-days-left">14</dd>' in page
    assert '<span class="badge warning" data-testid="badge">Trial ending soon</span>' in page


def test_overview_tile_and_sidebar(tenant, admin, growth, client_for):
    services.session_start(tenant=tenant, conversation_id="o1", direction="inbound")
    page = client_for(admin).get(f"/t/{tenant.slug}/").content.decode()
    assert 'data-testid="usage-tile"' in page
    assert '<div class="value">1 <span class="muted small">/ 1,500</span></div>' in page
    assert f'<a href="/t/{tenant.slug}/sessions/"' in page
    assert f'<a href="/t/{tenant.slug}/agents/"' in page


def test_pages_are_for_members_only(tenant, other_tenant, outsider, growth, client_for):
    paid(other_tenant)
    client = client_for(outsider)
    for path in ("sessions/", "sessions/export.csv", "agents/"):
        assert client.get(f"/t/{tenant.slug}/{path}").status_code == 404
