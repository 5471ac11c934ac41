"""Browser journeys for the pages of issue 6 (part 5), in Chromium: the Billing tab that opened a
checkout in a new tab follows the payment (S15), Apply subscription updates shows the custom date only
when chosen and what Immediately charges (S18), messages close, and the Overview dashboard fits a
phone."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from billing_portal.demo import start_plan
from billing_portal.factories import InvoiceFactory
from billing_portal.services import organization_create
from plans.factories import SubscriptionFactory, plan
from plans.models import Subscription
from tenants.factories import UserFactory
from tests.e2e.helpers import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

POLL_MS = 15_000  # the watch asks every 3 s; leave room for a slow machine


@pytest.fixture
def billing_settings(settings):
    settings.DEBUG = True  # the local gateway's stand-in pages answer only in DEBUG
    settings.PAYMENT_GATEWAY = "local"


def _tenant(email: str, name: str, plan_code: str | None = None):
    admin = UserFactory(email=email)
    tenant = organization_create(name=name, admin=admin)  # the AI Agents trial and AI Free
    if plan_code:
        start_plan(tenant=tenant, plan=plan(plan_code), actor=admin)
    return tenant


def test_the_tab_that_opened_checkout_updates_itself_when_the_payment_completes(
    billing_settings, new_context
):
    """S15: Subscribe opens the checkout in a new tab; the Billing tab left behind says so and swaps
    in the paid plan once the payment lands, without a reload."""
    tenant = _tenant("watch-admin@journey.test", "Watch Journey Co")
    context = new_context()
    page = context.new_page()
    log_in(page, "watch-admin@journey.test")
    page.goto(f"/t/{tenant.slug}/billing/?product=ai_agents")
    expect(page.get_by_test_id("badge")).to_have_text("Trial subscription")
    expect(page.get_by_test_id("checkout-watch")).to_be_hidden()

    with context.expect_page() as checkout_info:
        page.get_by_test_id("subscribe-agents-growth").click()
    checkout = checkout_info.value
    watch = page.get_by_test_id("checkout-watch")
    expect(watch).to_be_visible()
    expect(watch).to_have_text("Complete the payment in the new tab — this page updates when it is done.")

    expect(checkout.get_by_test_id("dev-checkout")).to_contain_text("Growth")
    checkout.get_by_test_id("dev-pay").click()
    expect(checkout.get_by_test_id("badge")).to_have_text("Active subscription")

    # The first tab, never reloaded by the test: the watch brought the paid plan in.
    expect(page.get_by_test_id("badge")).to_have_text("Active subscription", timeout=POLL_MS)
    expect(page.get_by_test_id("subscription-card")).to_contain_text("Growth")
    expect(page.get_by_test_id("checkout-watch")).to_have_count(0)
    assert page.url.endswith(f"/t/{tenant.slug}/billing/?product=ai_agents")


def test_a_checkout_canceled_in_the_new_tab_is_said_calmly_in_the_first(billing_settings, new_context):
    tenant = _tenant("cancel-admin@journey.test", "Cancel Journey Co")
    context = new_context()
    page = context.new_page()
    log_in(page, "cancel-admin@journey.test")
    page.goto(f"/t/{tenant.slug}/billing/?product=ai_agents")

    with context.expect_page() as checkout_info:
        page.get_by_test_id("subscribe-agents-starter").click()
    checkout = checkout_info.value
    checkout.get_by_role("button", name="Cancel").click()
    expect(checkout.get_by_text("Checkout canceled: nothing was charged.")).to_be_visible()

    watch = page.get_by_test_id("checkout-watch")
    expect(watch).to_contain_text(
        "The checkout was canceled or expired: nothing was charged.", timeout=POLL_MS
    )
    expect(page.get_by_test_id("badge")).to_have_text("Trial subscription")
    watch.get_by_role("button", name="Dismiss this message").click()
    expect(page.get_by_test_id("checkout-watch")).to_have_count(0)


def test_the_dialog_shows_the_custom_date_only_when_chosen_and_what_immediately_charges(
    billing_settings, new_context
):
    """S18: the custom date appears with On custom date, and a date picked says what it invoices;
    Immediately shows the preview's amount."""
    tenant = _tenant("dialog-admin@journey.test", "Dialog Journey Co", "agents-growth")
    page = new_context().new_page()
    log_in(page, "dialog-admin@journey.test")
    page.goto(f"/t/{tenant.slug}/billing/?product=ai_agents")

    page.get_by_test_id("subscribe-agents-scale").click()
    dialog = page.get_by_test_id("change-dialog")
    expect(dialog).to_be_visible()
    custom_date = dialog.get_by_test_id("custom-date-field")
    preview = dialog.get_by_test_id("charge-preview")
    expect(dialog.get_by_role("radio", name="End of the current period")).to_be_checked()
    expect(custom_date).to_be_hidden()
    expect(preview).to_be_hidden()

    dialog.get_by_role("radio", name="On custom date").check()
    expect(custom_date).to_be_visible()
    expect(preview).to_be_hidden()
    # S18: picking a date fetches what that date invoices (Stripe's preview with a proration date).
    outlook = dialog.get_by_test_id("custom-date-outlook")
    expect(outlook).to_be_visible()
    on = (timezone.now() + timedelta(days=10)).date()
    custom_date.locator("input").fill(on.isoformat())
    custom_date.locator("input").dispatch_event("change")
    expect(outlook.get_by_test_id("custom-date-switch")).to_contain_text(
        f"On {on.day} {on:%b %Y} Scale replaces Growth, and the rest of the current period"
    )
    expect(outlook.get_by_test_id("custom-date-charge")).to_have_text(
        re.compile(rf"About \$\d+\.\d\d is charged on {on.day} {on:%b %Y}\.")
    )

    dialog.get_by_role("radio", name="Immediately").check()
    expect(custom_date).to_be_hidden()
    expect(preview).to_be_visible()
    # Growth was bought moments ago: Scale less Growth for (nearly) the whole period.
    expect(preview.get_by_test_id("charge-now")).to_have_text(
        re.compile(r"You will be charged \$(299\.\d\d|300\.00) now")
    )
    expect(preview).to_contain_text("Unused time on Growth after")
    expect(preview).to_contain_text("Remaining time on Scale after")

    dialog.get_by_role("radio", name="End of the current period").check()
    expect(preview).to_be_hidden()
    expect(custom_date).to_be_hidden()


def test_a_success_message_can_be_dismissed(billing_settings, new_context):
    tenant = _tenant("flash-admin@journey.test", "Flash Journey Co", "agents-starter")
    page = new_context().new_page()
    log_in(page, "flash-admin@journey.test")
    page.goto(f"/t/{tenant.slug}/billing/?product=ai_agents")
    page.get_by_test_id("subscribe-agents-growth").click()
    dialog = page.get_by_test_id("change-dialog")
    dialog.get_by_label("End of the current period").check()
    dialog.get_by_test_id("update-subscription").click()

    flash = page.locator(".flash.success")
    expect(flash).to_contain_text("Growth starts on")
    flash.get_by_role("button", name="Dismiss this message").click()
    expect(page.locator(".flash.success")).to_have_count(0)
    expect(page.get_by_test_id("upcoming-card")).to_be_visible()  # only the message went


def test_the_overview_dashboard_fits_a_phone(new_context, tenant, admin):
    """The dashboard at 390 px: alerts first, every tile readable, nothing scrolls sideways."""
    now = timezone.now()
    SubscriptionFactory(
        tenant=tenant,
        state=Subscription.State.PAST_DUE,
        payment_failed_at=now,
        grace_until=now + timedelta(days=7),
    )
    SubscriptionFactory(tenant=tenant, plan=plan("credits-plus"))
    SubscriptionFactory(
        tenant=tenant,
        plan=plan("helpdesk-pro"),
        state=Subscription.State.CANCELED,
        ends_at=now + timedelta(days=9),
    )
    InvoiceFactory(tenant=tenant, number="ACME-LONG-INVOICE-NUMBER-000000001", status="open")

    page = new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True).new_page()
    log_in(page, admin.email)
    page.goto(f"/t/{tenant.slug}/")

    expect(page.get_by_test_id("alert-payment_issue")).to_be_visible()
    expect(page.get_by_test_id("alert-canceled")).to_be_visible()
    for tile in (
        "tile-product-ai_agents",
        "tile-product-ai_credits",
        "tile-product-helpdesk_ai",
        "tile-next-invoice",
    ):
        expect(page.get_by_test_id(tile)).to_be_visible()
    alert_box = page.get_by_test_id("alert-payment_issue").bounding_box()
    first_tile = page.get_by_test_id("tile-product-ai_agents").bounding_box()
    assert alert_box is not None
    assert first_tile is not None
    assert alert_box["y"] < first_tile["y"]  # alerts first
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the Overview scrolls sideways on a phone by {overflow}px"


@pytest.mark.parametrize("path", ["agents/", "sessions/", "invoices/"])
def test_tables_stack_as_cards_on_a_phone(new_context, tenant, admin, path):
    """At 390 px the Agents, Sessions and Invoices tables read as one card per row with their labels
    (S04, S06, S32, S35): the billable sessions, whether agents accept new sessions, Issued and
    Total are on screen, and nothing scrolls sideways."""
    from sessions_billing.services import session_start

    SubscriptionFactory(tenant=tenant, plan=plan("agents-growth"))
    session_start(
        tenant=tenant,
        conversation_id="a-rather-long-conversation-id-from-the-product-0001",
        direction="inbound",
        agent="customer-support-assistant",
    )
    InvoiceFactory(tenant=tenant, number="ACME-LONG-INVOICE-NUMBER-000000001", status="open")

    page = new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True).new_page()
    log_in(page, admin.email)
    page.goto(f"/t/{tenant.slug}/{path}")
    table = page.locator("table").last
    expect(table).to_be_visible()
    scrolls = page.evaluate(
        """() => [document.documentElement.scrollWidth - document.documentElement.clientWidth,
                 ...[...document.querySelectorAll('.table-wrap')].map(w => w.scrollWidth - w.clientWidth)]"""
    )
    assert max(scrolls) <= 0, f"{path} scrolls sideways on a phone: {scrolls}"
    for cell in table.locator("tbody tr:first-child td[data-label]:visible").all():
        box = cell.bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= 390, f"{cell.get_attribute('data-label')} is cut off"


def test_the_dev_mailbox_wraps_long_email_bodies(settings, new_context, tenant, admin):
    """`make run`'s dev mailbox at 1280 px: an email's long lines and links wrap inside the page
    instead of making it scroll sideways (C10: the security code is read there)."""
    from django.core.mail import EmailMessage

    from tenants.dev_mailbox import TENANT_HEADER, record

    settings.DEBUG = True  # the dev mailbox exists only in DEBUG
    link = "https://allowance.example/t/acme/accounts/reset/" + "x" * 240 + "/"
    long_line = "Your security code is 123456. " + "This sentence runs on without a break " * 12
    record(
        EmailMessage(
            "A long email",
            f"{long_line}\n\n{link}\n",
            to=[admin.email],
            headers={TENANT_HEADER: tenant.slug},
        )
    )
    page = new_context(viewport={"width": 1280, "height": 800}).new_page()
    log_in(page, admin.email)
    page.goto(f"/t/{tenant.slug}/dev/mailbox/")
    expect(page.get_by_test_id("dev-mail-body")).to_contain_text("123456")
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the dev mailbox scrolls sideways by {overflow}px"
    body = page.get_by_test_id("dev-mail-body").evaluate("el => el.scrollWidth - el.clientWidth")
    assert body <= 0, f"an email body scrolls sideways by {body}px"
