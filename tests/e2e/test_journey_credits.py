"""Browser journey for AI credits (issue 9, part A), in Chromium and under the Content-Security-
Policy: consumption through the API shows in AI Statistics' chart (drawn by the vendored Chart.js
from app.js, no inline script), and the three ways into the AI Credits page (C02 to C04) lead there."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from playwright.sync_api import expect

from credits.factories import grant, on_plus
from credits.models import Source
from tenants.factories import MembershipFactory, TenantFactory, UserFactory
from tenants.models import Role
from tenants.services import api_key_create
from tests.e2e.helpers import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_consumption_through_the_api_shows_in_ai_statistics_and_every_way_leads_to_ai_credits(new_context):
    tenant = TenantFactory(name="Chart Journey Co", slug="chart-journey")
    admin = MembershipFactory(
        tenant=tenant, role=Role.ADMIN, user=UserFactory(email="charts@journey.test")
    ).user
    on_plus(tenant)
    grant(tenant, 100, source=Source.PLAN_RENEWAL)
    secret = api_key_create(tenant=tenant, name="runtime", actor=admin).secret
    api = Client()
    for i, (feature, quantity) in enumerate([("smart_response", 80), ("ai_review", 5)]):
        response = api.post(
            "/api/v1/credits/consume",
            data=json.dumps(
                {"feature": feature, "quantity": quantity, "idempotency_key": f"j-{i}", "client_id": "desk"}
            ),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {secret}",
        )
        assert response.status_code == 201

    page = new_context().new_page()
    log_in(page, "charts@journey.test")

    # C03: 80.5 of the period's 100 credits used: the sidebar offers the AI Credits page.
    page.goto(f"/t/{tenant.slug}/")
    expect(page.locator("nav.sidebar").get_by_role("link", name="AI Credits", exact=True)).to_be_visible()

    # C02: the Marketplace banner.
    page.locator("nav.sidebar").get_by_role("link", name="Marketplace").click()
    expect(page.get_by_test_id("ai-credits-banner")).to_be_visible()
    expect(page.get_by_test_id("banner-balance")).to_have_text("19.5 credits")
    page.get_by_test_id("open-ai-credits").click()
    expect(page.get_by_role("heading", name="AI Credits", level=1)).to_be_visible()
    expect(page.get_by_test_id("balance")).to_have_text("19.5 credits")
    expect(page.get_by_test_id("current-plan")).to_be_visible()

    # AI Statistics: the chart is drawn (Chart.js under the CSP), the figures are the API's.
    page.locator("nav.sidebar").get_by_role("link", name="AI Statistics").click()
    expect(page.get_by_test_id("range-total")).to_have_text("80.5 credits")
    expect(page.locator("canvas[data-chart]")).to_have_attribute("data-drawn", "true")
    assert page.evaluate(
        "window.Chart.getChart(document.querySelector('canvas[data-chart]')).data.datasets.map(d => d.data.at(-1))"
    ) == [0.5, 80]

    # C04: the permanent way to the purchase page.
    page.get_by_test_id("buy-credits-link").get_by_role("link", name="Go to AI Credits").click()
    assert page.url.endswith(f"/t/{tenant.slug}/marketplace/ai-credits/")
    expect(page.get_by_role("heading", name="AI Credits", level=1)).to_be_visible()
