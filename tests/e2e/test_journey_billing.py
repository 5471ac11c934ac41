"""Browser journeys through the Billing tab, in Chromium, with the local payment gateway's hosted
checkout and portal stand-ins (DEBUG on, as in `make run`). S15, S17-S20, S26, S30."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from billing_portal.demo import start_plan
from billing_portal.services import organization_create
from plans.factories import plan
from plans.models import Subscription
from tenants.factories import UserFactory
from tests.e2e.helpers import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def billing_settings(settings):
    settings.DEBUG = True  # the local gateway's stand-in pages answer only in DEBUG
    settings.PAYMENT_GATEWAY = "local"


def _tenant(email: str, name: str, plan_code: str | None = None):
    admin = UserFactory(email=email)
    tenant = organization_create(name=name, admin=admin)  # starts on the AI Agents trial
    if plan_code:
        start_plan(tenant=tenant, plan=plan(plan_code), actor=admin)
    return tenant


def test_trial_tenant_subscribes_through_checkout_and_sees_active(billing_settings, new_context):
    """S15, S30: Subscribe opens the hosted checkout in a new tab; paying makes the plan active."""
    tenant = _tenant("trial-admin@journey.test", "Trial Journey Co")
    context = new_context()
    page = context.new_page()
    log_in(page, "trial-admin@journey.test")
    page.goto(f"/t/{tenant.slug}/billing/")
    expect(page.get_by_test_id("badge")).to_have_text("Trial subscription")
    expect(page.get_by_test_id("trial-days-left")).to_have_text("14")

    with context.expect_page() as checkout_info:
        page.get_by_test_id("subscribe-agents-growth").click()
    checkout = checkout_info.value
    expect(checkout.get_by_test_id("dev-checkout")).to_contain_text("Growth")
    checkout.get_by_test_id("dev-pay").click()

    expect(checkout.get_by_test_id("badge")).to_have_text("Active subscription")
    expect(checkout.get_by_test_id("subscription-card")).to_contain_text("Next billing date")
    page.reload()
    expect(page.get_by_test_id("badge")).to_have_text("Active subscription")


def test_schedule_a_change_for_period_end_then_cancel_it(billing_settings, new_context):
    """S18, S19, S20: Apply subscription updates → Upcoming subscription card → Cancel scheduled plan."""
    tenant = _tenant("change-admin@journey.test", "Change Journey Co", "agents-starter")
    page = new_context().new_page()
    log_in(page, "change-admin@journey.test")
    page.goto(f"/t/{tenant.slug}/billing/")
    expect(page.get_by_test_id("badge")).to_have_text("Active subscription")

    page.get_by_test_id("subscribe-agents-scale").click()
    dialog = page.get_by_test_id("change-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Apply subscription updates")
    for choice in ("Immediately", "End of the current period", "On custom date"):
        expect(dialog.get_by_role("radio", name=choice)).to_be_visible()
    dialog.get_by_label("End of the current period").check()
    dialog.get_by_test_id("update-subscription").click()

    upcoming = page.get_by_test_id("upcoming-card")
    expect(upcoming).to_contain_text("Upcoming subscription")
    expect(upcoming).to_contain_text("Scale")
    period_end = Subscription.objects.get(
        tenant=tenant, product__code="ai_agents", state="active"
    ).current_period_end
    expect(upcoming.get_by_test_id("starts-on")).to_have_text(f"{period_end.day} {period_end:%b %Y}")
    expect(page.get_by_test_id("badge")).to_have_text("Active subscription")  # still on Starter

    upcoming.get_by_role("link", name="Cancel").click()
    confirm = page.get_by_test_id("cancel-scheduled-dialog")
    expect(confirm).to_contain_text("Cancel scheduled plan")
    confirm.get_by_test_id("confirm-cancel-scheduled").click()
    expect(page.get_by_text("The scheduled change to Scale is canceled.")).to_be_visible()
    expect(page.get_by_test_id("upcoming-card")).to_have_count(0)


def test_failed_payment_in_the_portal_shows_payment_issue_and_banner(billing_settings, new_context):
    """S17, S26: Manage opens the portal in a new tab; a failed payment shows Payment issue and the banner."""
    tenant = _tenant("portal-admin@journey.test", "Portal Journey Co", "agents-growth")
    context = new_context()
    page = context.new_page()
    log_in(page, "portal-admin@journey.test")
    page.goto(f"/t/{tenant.slug}/billing/")

    with context.expect_page() as portal_info:
        page.get_by_test_id("manage").click()
    portal = portal_info.value
    expect(portal.get_by_test_id("dev-portal")).to_contain_text("Payment Method")
    portal.get_by_test_id("dev-fail-next-payment").first.click()
    expect(portal.get_by_text("The next payment was attempted and declined.")).to_be_visible()

    page.reload()
    expect(page.get_by_test_id("badge")).to_have_text("Payment issue")
    banner = page.get_by_test_id("payment-pending")
    expect(banner).to_contain_text("Payment pending")
    expect(banner).to_contain_text("Access continues until")


def test_cancel_in_the_portal_then_resume_on_the_card(billing_settings, new_context):
    """S29, S30: the portal cancels at period end; the card says Canceled subscription and offers
    Resume; one click and it is Active again."""
    tenant = _tenant("resume-admin@journey.test", "Resume Journey Co", "agents-growth")
    context = new_context()
    page = context.new_page()
    log_in(page, "resume-admin@journey.test")
    page.goto(f"/t/{tenant.slug}/billing/")

    with context.expect_page() as portal_info:
        page.get_by_test_id("manage").click()
    portal = portal_info.value
    portal.on("dialog", lambda dialog: dialog.accept())  # "Cancel the subscription at the end of the period?"
    portal.get_by_test_id("dev-cancel").click()
    expect(portal.get_by_text("Your subscription will be canceled at the end of the period.")).to_be_visible()

    page.reload()
    expect(page.get_by_test_id("badge")).to_have_text("Canceled subscription")
    expect(page.get_by_test_id("manage-hint")).to_contain_text("Resume to keep your plan after")
    expect(page.get_by_test_id("reason-agents-scale")).to_have_text(
        "Your subscription is canceled. Resume it to change plans."
    )
    page.get_by_test_id("resume").click()

    expect(page.get_by_test_id("badge")).to_have_text("Active subscription")
    expect(page.get_by_text("Your Growth subscription is active again and will renew.")).to_be_visible()
    expect(page.get_by_test_id("subscribe-agents-scale")).to_be_visible()  # plan changes are possible again
