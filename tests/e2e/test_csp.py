"""Under the Content-Security-Policy (our origin only, no inline script or style), every page renders
and htmx works: each step's swap is seen on the page, and the browser reports no violation (the
`new_context` fixture fails any browser test on one). The API's documentation page works offline:
Swagger UI comes from our own origin and lists the operations."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from billing_portal.demo import start_plan
from billing_portal.factories import InvoiceFactory
from billing_portal.services import organization_create
from plans.factories import plan
from tenants.factories import UserFactory
from tests.e2e.helpers import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_violation_is_caught(new_context, csp_violations, live_server):
    """The control: an inline script is blocked, and the recorder hears of it."""
    page = new_context().new_page()
    page.goto("/accounts/login/")

    page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.ran = 1';"
        " document.body.append(s); }"
    )

    assert page.evaluate("window.ran") is None
    expect(page.locator("body")).to_be_visible()
    assert any("script-src" in line for line in csp_violations), list(csp_violations)
    csp_violations.clear()  # expected here: the fixture must not fail this test


def test_pages_and_htmx_work_under_the_policy(new_context, csp_violations, settings):
    settings.DEBUG = True  # the local gateway's hosted-page stand-ins answer only in DEBUG
    settings.PAYMENT_GATEWAY = "local"
    admin = UserFactory(email="csp-admin@csp.test")
    tenant = organization_create(name="Policy Co", admin=admin)
    start_plan(tenant=tenant, plan=plan("agents-starter"), actor=admin)
    InvoiceFactory(tenant=tenant, number="POLICY-0001", status="void")
    page = new_context().new_page()
    log_in(page, admin.email)
    assert page.evaluate("typeof htmx") == "object"
    base = f"/t/{tenant.slug}"

    # API keys: the form posts through htmx and the new key is swapped in.
    page.goto(f"{base}/api-keys/")
    page.get_by_label("Key name").fill("Policy key")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_test_id("new-key")).to_contain_text("Policy key")
    assert page.url.endswith("/api-keys/")  # swapped, not navigated

    # Team: an invitation through htmx.
    page.goto(f"{base}/team/")
    page.get_by_label("Email").fill("invitee@csp.test")
    page.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_test_id("invitation-row").filter(has_text="invitee@csp.test")).to_be_visible()

    # Invoices: changing a filter swaps the table (hx-trigger="change") and pushes the URL.
    page.goto(f"{base}/invoices/")
    page.get_by_label("Status").select_option("void")
    expect(page.get_by_test_id("invoice-row")).to_have_count(1)
    expect(page.get_by_test_id("invoice-row")).to_contain_text("POLICY-0001")
    expect(page).to_have_url(re.compile(r"status=void"))

    # Billing: the plan-change dialog is filled by htmx, opened and closed by app.js.
    page.goto(f"{base}/billing/")
    page.get_by_test_id("subscribe-agents-scale").click()
    dialog = page.get_by_test_id("change-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("radio", name="On custom date")).to_be_visible()
    dialog.locator("[data-close-dialog]").click()
    expect(dialog).to_be_hidden()

    # The stand-in portal (it carried an inline style), the Overview, the Activity page, an error page.
    with page.context.expect_page() as portal_info:
        page.goto(f"{base}/billing/")
        page.get_by_test_id("manage").click()
    expect(portal_info.value.get_by_test_id("dev-portal")).to_be_visible()
    settings.DEBUG = False  # our 404 page, not Django's technical one
    for path in (f"{base}/", f"{base}/activity/", f"{base}/no-such-page/"):
        page.goto(path)
        expect(page.locator("header.topbar")).to_be_visible()

    assert list(csp_violations) == []


def test_the_api_docs_work_offline_and_list_the_operations(new_context, live_server):
    context = new_context()
    outside: list[str] = []

    def only_our_origin(route) -> None:
        if route.request.url.startswith(live_server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_our_origin)
    page = context.new_page()

    page.goto("/api/v1/docs")

    expect(page.locator("#swagger-ui .title")).to_contain_text("Allowance integration API")
    for operation in ("/api/v1/tenant", "/api/v1/entitlements", "/api/v1/entitlements/{product}/admission"):
        expect(
            page.locator(".opblock-summary-path", has_text=re.compile(f"^{re.escape(operation)}$"))
        ).to_be_visible()
    page.locator(".opblock-summary-path", has_text="/admission").click()
    responses = page.locator(".opblock.is-open .responses-table tr.response .response-col_status")
    expect(responses).to_have_text(
        ["200", "400", "401", "404", "413", "415", "422"]
    )  # a check: refusals are 200s
    assert outside == []
