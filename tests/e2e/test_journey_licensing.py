"""Browser journey through Plans & Licenses (L01, L04, L11 to L14): a partner admin searches a client,
opens its actions menu, adds an AI license and sees the header's count change without a reload,
then removes it again; then assigns AI licenses to two clients with the "Assign AI license" picker.
The AI product's ticket through the API then qualifies via the license (L15)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Locator, Page, expect

from licensing.factories import licensed
from tenants.services import api_key_create
from tests.e2e.helpers import log_in, msp_partner

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def partner():
    tenant = msp_partner(
        "Journey MSP", "journey-msp", admin_email="partner-admin@journey.test", clients_before=60
    )
    licensed(tenant, 2, name="Licensed Co")
    return tenant


def test_search_a_client_add_an_ai_license_see_the_header_change_and_remove_it(partner, new_context):
    page = new_context().new_page()
    log_in(page, "partner-admin@journey.test")
    page.locator("nav.sidebar").get_by_role("link", name="Plans & Licenses").click()
    expect(page.get_by_role("heading", name="Plans & Licenses", level=1)).to_be_visible()
    expect(page.get_by_test_id("plan-type")).to_have_text("AI Essentials")
    expect(page.get_by_test_id("ai-licenses")).to_have_text("2 of 10 used")
    expect(page.get_by_test_id("client-row")).to_have_count(50)  # the first page

    page.get_by_test_id("client-search").fill("fabrik")
    rows = page.get_by_test_id("client-row")
    expect(rows).to_have_count(1)
    expect(rows.get_by_test_id("client-name")).to_have_text("Fabrikam Dental")
    expect(page).to_have_url(
        "/t/journey-msp/licenses/?q=fabrik&status=&company_type=&agreement_type=&license=&sort="
    )

    row = page.locator("#clients tr[data-client=fabrikam]")
    # The actions menu closes with Escape (its panel would cover the rows below), focus back on "…".
    row.get_by_test_id("row-actions").click()
    expect(row.get_by_role("button", name="Add AI license")).to_be_visible()
    page.keyboard.press("Escape")
    expect(row.get_by_role("button", name="Add AI license")).to_be_hidden()
    expect(row.get_by_test_id("row-actions")).to_be_focused()
    # ... and when a click lands outside it.
    row.get_by_test_id("row-actions").click()
    page.get_by_role("heading", name="Plans & Licenses", level=1).click()
    expect(row.get_by_role("button", name="Add AI license")).to_be_hidden()

    row.get_by_test_id("row-actions").click()
    row.get_by_role("button", name="Add AI license").click()

    expect(page.get_by_test_id("ai-licenses")).to_have_text("3 of 10 used")
    row = page.locator("#clients tr[data-client=fabrikam]")
    expect(row.get_by_test_id("ai-license")).to_have_text("AI license")
    expect(page.locator("#messages")).to_contain_text("Fabrikam Dental now has an AI license.")
    expect(page.get_by_test_id("client-search")).to_have_value("fabrik")  # no reload: the search stays

    row.get_by_test_id("row-actions").click()
    row.get_by_role("button", name="Remove AI license").click()

    expect(page.get_by_test_id("ai-licenses")).to_have_text("2 of 10 used")
    expect(page.locator("#clients tr[data-client=fabrikam]").get_by_test_id("ai-license")).to_have_text("No")


def _htmx_ready(page: Page, field: Locator) -> None:
    """Wait until htmx has processed `field` (swapped in with a dialog's body): input typed before
    that fires no request."""
    page.wait_for_function(
        "el => !!(el['htmx-internal-data'] && el['htmx-internal-data'].initHash)", arg=field.element_handle()
    )


def test_assign_ai_license_to_several_clients_with_the_picker_then_a_ticket_qualifies(partner, new_context):
    secret = api_key_create(tenant=partner, name="helpdesk", actor=None).secret
    context = new_context()
    page = context.new_page()
    log_in(page, "partner-admin@journey.test")
    page.goto("/t/journey-msp/licenses/")

    page.get_by_test_id("assign-ai-license").click()
    dialog = page.locator("dialog#dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_test_id("licenses-left")).to_contain_text("8 of 10 AI licenses left.")
    _htmx_ready(page, dialog.get_by_test_id("assign-search"))  # typed before htmx bound it: no search
    dialog.get_by_test_id("assign-search").fill("tail")
    expect(dialog.get_by_test_id("pick-fabrikam")).to_have_count(0)
    dialog.get_by_test_id("pick-tailspin").check()
    dialog.get_by_test_id("assign-search").fill("fabrik")  # another search keeps Tailspin ticked
    expect(dialog.get_by_test_id("pick-fabrikam")).to_have_count(1)
    expect(dialog.get_by_test_id("pick-tailspin")).to_be_checked()
    dialog.get_by_test_id("pick-fabrikam").check()
    dialog.get_by_test_id("assign-submit").click()

    expect(dialog).to_be_hidden()
    expect(page.get_by_test_id("ai-licenses")).to_have_text("4 of 10 used")
    expect(page.locator("#messages")).to_contain_text(
        "AI license assigned to Fabrikam Dental, Tailspin Travel."
    )
    page.get_by_test_id("client-search").fill("tailspin")
    expect(page.locator("#clients tr[data-client=tailspin]").get_by_test_id("ai-license")).to_have_text(
        "AI license"
    )

    response = context.request.post(
        "/api/v1/tickets",
        data={"ticket_id": "HD-1", "client_id": "fabrikam"},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert (response.status, response.json()["via"]) == (200, "license")


def test_l11_the_sort_clicked_last_stays_when_searching_and_filtering(partner, new_context):
    """A column's link swaps only the table; the search and filters then send the sort it shows
    (the form's sort input lives in the table), so typing does not fall back to sorting by name."""
    page = new_context().new_page()
    log_in(page, "partner-admin@journey.test")
    page.goto("/t/journey-msp/licenses/")
    page.locator("#clients thead").get_by_role("link", name="Client").click()  # by name: now the other way
    expect(page).to_have_url("/t/journey-msp/licenses/?sort=-name")
    expect(page.get_by_test_id("client-name").first).to_have_text("Tailspin Travel")

    page.get_by_test_id("client-search").fill("client 0")
    expect(page.get_by_test_id("client-row")).to_have_count(10)
    expect(page).to_have_url(
        "/t/journey-msp/licenses/?q=client%200&status=&company_type=&agreement_type=&license=&sort=-name"
    )
    expect(page.get_by_test_id("client-name").first).to_have_text("Client 09")
