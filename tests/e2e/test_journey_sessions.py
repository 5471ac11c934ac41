"""Browser journey through the session limit (S22-S25, S32): an admin sets a limit on the Session
limit card, the AI product's sessions reach 80% through the API, the card warns, and the Agents
screen says why agents stop at 100% - then that they have stopped."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from billing_portal.demo import start_plan
from billing_portal.services import organization_create
from plans.factories import plan
from tenants.factories import UserFactory
from tenants.services import api_key_create
from tests.e2e.helpers import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def billing_settings(settings):
    settings.DEBUG = True  # the local gateway's checkout answers only in DEBUG
    settings.PAYMENT_GATEWAY = "local"


def test_admin_sets_a_limit_usage_reaches_80_percent_and_agents_say_why_they_stop(
    billing_settings, new_context
):
    admin = UserFactory(email="limit-admin@journey.test")
    tenant = organization_create(name="Limit Journey Co", admin=admin)
    start_plan(tenant=tenant, plan=plan("agents-growth"), actor=admin)
    secret = api_key_create(tenant=tenant, name="agent runtime", actor=admin).secret

    context = new_context()
    page = context.new_page()
    log_in(page, "limit-admin@journey.test")
    page.goto(f"/t/{tenant.slug}/billing/")
    card = page.get_by_test_id("session-limit-card")
    expect(card.get_by_test_id("session-limit")).to_have_text("1,500 billable sessions / period")

    card.get_by_test_id("session-limit-input").fill("0")
    card.get_by_test_id("set-limit").click()
    expect(page.get_by_test_id("session-limit-error")).to_have_text("The value must be greater than zero.")
    page.get_by_test_id("session-limit-input").fill("10")
    page.get_by_test_id("set-limit").click()
    card = page.get_by_test_id("session-limit-card")
    expect(card.get_by_test_id("session-limit")).to_have_text("10 billable sessions / period")
    expect(card.get_by_test_id("limit-source")).to_have_text("Your limit")

    api = context.request
    headers = {"Authorization": f"Bearer {secret}"}
    for i in range(8):
        response = api.post(
            "/api/v1/sessions",
            data={"conversation_id": f"j-{i}", "direction": "inbound", "agent": "support-bot"},
            headers=headers,
        )
        assert response.status == 201, response.text()

    page.reload()
    warning = page.get_by_test_id("limit-warning")
    expect(warning).to_contain_text("Session limit almost reached")
    expect(page.get_by_test_id("limit-usage")).to_have_text("8 of 10")

    page.get_by_role("link", name="Agents", exact=True).first.click()
    expect(page.get_by_role("heading", name="Agents", level=1)).to_be_visible()
    advice = page.get_by_test_id("limit-advice")
    expect(advice).to_contain_text("Session limit almost reached: 8 of 10 billable sessions used.")
    expect(advice).to_contain_text(
        "When the session count reaches the limit, all AI agents stop accepting new sessions."
    )

    for i in range(8, 11):
        api.post(
            "/api/v1/sessions", data={"conversation_id": f"j-{i}", "direction": "inbound"}, headers=headers
        )
    page.reload()
    status = page.get_by_test_id("agents-status")
    expect(status).to_contain_text("AI agents stopped accepting new sessions.")
    expect(status).to_contain_text("Session limit has been reached")
    expect(page.get_by_test_id("advice")).to_contain_text("Check the Session limit card")
    expect(page.get_by_test_id("agent-stopped")).to_have_text("Stopped: limit reached")
