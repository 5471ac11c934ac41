"""Browser journey: an admin signs up, invites a member; the member accepts in another browser.

Drives /usr/bin/chromium against the live server; the invitation email is taken from the locmem
outbox (Celery runs eagerly in tests, and the live server shares this process)."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from playwright.sync_api import Page, expect

from tenants.factories import PASSWORD as FACTORY_PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ADMIN_EMAIL = "owner@journey.test"
MEMBER_EMAIL = "member@journey.test"
PASSWORD = "a-long-journey-password-42"
ORGANIZATION = "Journey Labs"
INVITATION_LINK = re.compile(r"https?://\S+/invitations/[^/\s]+/")


def _sidebar(page: Page):
    return page.get_by_role("navigation", name=ORGANIZATION)


def _htmx_loaded(page: Page) -> None:
    assert page.evaluate("typeof htmx") == "object", "htmx.js did not load (static files not served?)"


def test_signup_invite_and_accept(new_context, live_server, settings):
    settings.SITE_URL = live_server.url  # links in emails must point at the live server
    mail.outbox.clear()

    # --- the admin signs up -------------------------------------------------------------------
    admin = new_context().new_page()
    admin.goto("/accounts/signup/")
    expect(admin.get_by_role("heading", name="Create your organization")).to_be_visible()
    admin.get_by_label("Your name").fill("Olivia Owner")
    admin.get_by_label("Work email").fill(ADMIN_EMAIL)
    admin.get_by_label("Password").fill(PASSWORD)
    admin.get_by_label("Organization name").fill(ORGANIZATION)
    admin.get_by_role("button", name="Create account").click()

    expect(admin.get_by_role("heading", level=1, name=ORGANIZATION)).to_be_visible()
    expect(admin.get_by_text(f"Welcome to Allowance. {ORGANIZATION} is ready.")).to_be_visible()
    expect(admin.get_by_test_id("tenant-switcher")).to_contain_text(ORGANIZATION)
    _htmx_loaded(admin)

    # --- ... opens Team from the sidebar and invites a member (htmx) -----------------------------
    _sidebar(admin).get_by_role("link", name="Team").click()
    expect(admin.get_by_role("heading", level=1, name="Team")).to_be_visible()
    _htmx_loaded(admin)
    team_url = admin.url
    admin.get_by_label("Email").fill(MEMBER_EMAIL)
    admin.get_by_label("Role", exact=True).select_option(label="Member")
    with admin.expect_request(lambda r: r.method == "POST" and r.headers.get("hx-request") == "true"):
        admin.get_by_role("button", name="Send invitation").click()

    expect(admin.get_by_text(f"Invitation sent to {MEMBER_EMAIL}.")).to_be_visible()
    invitation = admin.get_by_test_id("invitation-row").filter(has_text=MEMBER_EMAIL)
    expect(invitation).to_be_visible()
    expect(invitation).to_contain_text("Member")
    assert admin.url == team_url, "the invitation was posted by htmx: no navigation"
    expect(admin.get_by_label("Email")).to_have_value("")

    # --- the invitation email -------------------------------------------------------------------
    sent = [m for m in mail.outbox if MEMBER_EMAIL in m.to]
    assert len(sent) == 1, [m.to for m in mail.outbox]
    match = INVITATION_LINK.search(sent[0].body)
    assert match, sent[0].body
    link = match.group(0)
    assert link.startswith(live_server.url), link

    # --- the member accepts in another browser context -----------------------------------------
    member = new_context().new_page()
    member.goto(link)
    expect(member.get_by_role("heading", name=f"Join {ORGANIZATION}")).to_be_visible()
    expect(member.get_by_text(MEMBER_EMAIL)).to_be_visible()
    member.get_by_label("Your name").fill("Max Member")
    member.get_by_label("Choose a password").fill(PASSWORD)
    member.get_by_role("button", name="Set password and join").click()

    expect(member.get_by_role("heading", level=1, name=ORGANIZATION)).to_be_visible()
    expect(member.get_by_text(f"You joined {ORGANIZATION} as Member.")).to_be_visible()
    expect(member.get_by_test_id("tenant-switcher")).to_contain_text(ORGANIZATION)
    expect(member.get_by_text("Your role in this organization: Member")).to_be_visible()
    sidebar = _sidebar(member)
    expect(sidebar.get_by_role("link", name="Overview")).to_be_visible()
    for admin_only in ("Team", "API keys", "Activity"):
        expect(sidebar.get_by_text(admin_only, exact=True)).to_have_count(0)

    # --- back in the admin's browser, the member is on the team ---------------------------------
    admin.reload()
    member_row = admin.get_by_test_id("member-row").filter(has_text="Max Member")
    expect(member_row).to_be_visible()
    expect(member_row).to_contain_text(MEMBER_EMAIL)
    expect(member_row.get_by_role("combobox")).to_have_value("member")
    expect(admin.get_by_test_id("invitation-row")).to_have_count(0)
    expect(admin.get_by_text("No pending invitations.")).to_be_visible()


def test_overview_fits_a_phone(new_context, admin, member, tenant):
    page = new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True).new_page()
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(admin.email)
    page.get_by_label("Password").fill(FACTORY_PASSWORD)
    page.get_by_role("button", name="Log in").click()

    expect(page.get_by_role("heading", level=1, name=tenant.name)).to_be_visible()
    overflow = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert overflow[0] <= overflow[1], f"horizontal scroll on a phone: scrollWidth, clientWidth = {overflow}"

    # The sidebar is folded under a "Menu" toggle (the page comes first); it opens and leads somewhere.
    sidebar = page.get_by_role("navigation", name=tenant.name)
    team = sidebar.get_by_role("link", name="Team")
    expect(team).to_be_hidden()
    sidebar.get_by_text("Menu", exact=True).click()
    expect(team).to_be_visible()
    team.click()
    expect(page.get_by_role("heading", level=1, name="Team")).to_be_visible()
    expect(page.get_by_test_id("member-row").filter(has_text=member.email)).to_be_visible()
    width = page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert width <= 0, f"the Team page scrolls sideways on a phone by {width}px"
