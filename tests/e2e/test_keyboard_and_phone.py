"""Found by trying the pages as a keyboard user and on a 375 px phone: Escape in a dialog opened from a
row's menu hands focus back, Back after a filter shows the filters of the URL it returns to, a role
changed from the keyboard keeps focus on its select, and the "not allowed" page fits a phone."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tenants.factories import MembershipFactory, TenantFactory, UserFactory
from tenants.models import Role
from tests.e2e.helpers import log_in, msp_partner

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 375, "height": 812}


@pytest.fixture
def partner():
    return msp_partner("Keyboard MSP", "keyboard-msp", admin_email="kb-admin@journey.test")


def test_escape_in_a_dialog_opened_from_a_row_menu_returns_focus_to_the_menu(partner, new_context):
    page = new_context().new_page()
    log_in(page, "kb-admin@journey.test")
    page.goto(f"/t/{partner.slug}/licenses/")
    row = page.get_by_test_id("client-row").filter(has_text="Fabrikam Dental")
    row.get_by_test_id("row-actions").focus()
    page.keyboard.press("Enter")
    edit = row.get_by_role("link", name="Edit client")
    edit.focus()
    page.keyboard.press("Enter")
    dialog = page.locator("dialog#dialog")
    expect(dialog).to_have_attribute("open", "")
    expect(dialog.get_by_label("Name")).to_be_focused()

    page.keyboard.press("Escape")
    expect(dialog).not_to_have_attribute("open", "")
    # Focus went back to the opener, not to the page's start (the menu must still be open to take it).
    expect(edit).to_be_focused()
    page.keyboard.press("Escape")
    expect(row.get_by_test_id("row-actions")).to_be_focused()


def test_back_after_a_filter_shows_the_filters_of_the_url_it_returns_to(partner, new_context):
    page = new_context().new_page()
    log_in(page, "kb-admin@journey.test")
    page.goto(f"/t/{partner.slug}/licenses/")
    search = page.get_by_test_id("client-search")
    status = page.locator("#client-filters select[name=status]")
    page.wait_for_function("() => !!window.htmx")
    search.fill("Fabrikam")
    expect(page).to_have_url(re.compile(r"q=Fabrikam"))
    status.select_option("inactive")
    expect(page).to_have_url(re.compile(r"status=inactive"))
    expect(page.get_by_test_id("client-row")).to_have_count(0)

    page.go_back()
    expect(page).to_have_url(re.compile(r"q=Fabrikam&status=&"))
    expect(page.get_by_test_id("client-row")).to_have_count(1)
    expect(search).to_have_value("Fabrikam")
    expect(status).to_have_value("")

    page.go_forward()
    expect(page).to_have_url(re.compile(r"status=inactive"))
    expect(status).to_have_value("inactive")


def test_a_role_changed_from_the_keyboard_keeps_focus_on_its_select(new_context, tenant, admin, member):
    page = new_context().new_page()
    log_in(page, admin.email)
    page.goto(f"/t/{tenant.slug}/team/")
    role = page.get_by_label(f"Role of {member.email}")
    role.focus()
    page.keyboard.press("ArrowDown")  # member -> finance, saved at once (htmx swaps the whole team)
    expect(role).to_have_value("finance")
    expect(
        page.get_by_test_id("member-row").filter(has_text=member.email).get_by_role("combobox")
    ).to_have_value("finance")
    expect(role).to_be_focused()


def test_the_not_allowed_page_fits_a_phone(new_context):
    tenant = TenantFactory(name="Lumen Marketplace International", slug="lumen-intl")
    MembershipFactory(tenant=tenant, user=UserFactory(email="kb-member@journey.test"), role=Role.MEMBER)
    page = new_context(viewport=PHONE).new_page()
    log_in(page, "kb-member@journey.test")
    page.goto(f"/t/{tenant.slug}/team/")
    expect(page.get_by_test_id("error-page")).to_be_visible()
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the 403 page scrolls sideways on a phone by {overflow}px"
