"""Browser journey for AI credits purchases (issue 9, part B), in Chromium, under the Content-Security-
Policy, with the local payment gateway and `make run`'s mail (DEBUG on, the dev mailbox): an admin
with a saved card subscribes to AI Plus with the emailed security code (C09, C10, C11, C23), spends
credits through the API and sees them in AI Statistics, is not offered extra credits while the
balance is sufficient (C12, C24), spends 80% of the period's credits and then buys an extra pack
(C03, C12, C13) and is refused a second one (C14). A wrong code is an error inside the dialog, which stays open (C10)."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from playwright.sync_api import BrowserContext, Locator, expect

from billing_portal.demo import start_plan
from billing_portal.services import organization_create
from config.settings import mail_backend
from plans.factories import plan
from tenants.factories import UserFactory
from tenants.services import api_key_create
from tests.e2e.helpers import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

EMAIL = "credits-buyer@journey.test"


@pytest.fixture
def make_run_settings(settings):
    """As `make run`: DEBUG (the stand-in pages, the dev mailbox), the local gateway, mail to the
    console with a copy in the signed-in user's dev mailbox."""
    settings.DEBUG = True
    settings.PAYMENT_GATEWAY = "local"
    settings.MAILERS = {
        "default": {
            "BACKEND": mail_backend(debug=True, configured="django.core.mail.backends.console.EmailBackend")
        }
    }


def _emailed_code(context: BrowserContext, dialog: Locator, *, emails: int) -> str:
    """The code of the newest email, read where a `make run` user reads it: the dialog's link to the
    dev mailbox (a new tab). `emails`: how many the mailbox holds by now (so a stale one is never read)."""
    with context.expect_page() as opened:
        dialog.get_by_test_id("dev-mailbox-link").click()
    mailbox = opened.value
    expect(mailbox.get_by_test_id("dev-mail")).to_have_count(emails)
    newest = mailbox.get_by_test_id("dev-mail-body").first.inner_text()
    mailbox.close()
    found = re.search(r"\b(\d{6})\b", newest)
    assert found is not None, newest
    return found.group(1)


def test_subscribe_now_with_the_emailed_code_spend_through_the_api_then_buy_one_extra_pack(
    make_run_settings, new_context
):
    admin = UserFactory(email=EMAIL)
    tenant = organization_create(name="Credits Buyer Co", admin=admin)  # AI Agents trial, AI Free
    start_plan(tenant=tenant, plan=plan("agents-growth"), actor=admin)  # its card saved at the gateway
    context = new_context()
    page = context.new_page()
    log_in(page, EMAIL)
    page.goto(f"/t/{tenant.slug}/marketplace/ai-credits/")

    # C09: Subscribe Now opens the confirmation dialog; C10: it emails a code.
    page.get_by_test_id("subscribe-credits-plus").click()
    dialog = page.locator("dialog#dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("heading", name="Subscribe to AI Plus")).to_be_visible()
    dialog.get_by_test_id("send-code").click()
    expect(dialog.get_by_test_id("code-sent")).to_contain_text(EMAIL)
    expect(dialog.get_by_test_id("security-code")).to_be_focused()  # the next thing to do: type it
    code = _emailed_code(context, dialog, emails=1)

    # A wrong code: the error shows in the dialog, which stays open; nothing is bought.
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    dialog.get_by_test_id("security-code").fill(wrong)
    dialog.get_by_test_id("confirm-purchase").click()
    expect(dialog.get_by_test_id("purchase-error")).to_have_text(
        "That security code is not right. 4 tries left."
    )
    expect(dialog).to_be_visible()
    expect(page.get_by_test_id("plan-name")).to_have_text("AI Free")

    # The right one: AI Plus at once, with its 2,000 credits (C11, C23).
    dialog.get_by_test_id("security-code").fill(code)
    dialog.get_by_test_id("confirm-purchase").click()
    expect(page.get_by_test_id("plan-name")).to_have_text("AI Plus")
    expect(dialog).to_be_hidden()
    expect(page.get_by_test_id("balance")).to_have_text("2,000 credits")

    # Consumption through the integration API shows in AI Statistics.
    secret = api_key_create(tenant=tenant, name="runtime", actor=admin).secret
    consumed = Client().post(
        "/api/v1/credits/consume",
        data=json.dumps(
            {"feature": "smart_response", "quantity": 120, "idempotency_key": "j-1", "client_id": "desk"}
        ),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    assert consumed.status_code == 201, consumed.content
    page.locator("nav.sidebar").get_by_role("link", name="AI Statistics").click()
    expect(page.get_by_test_id("range-total")).to_have_text("120 credits")
    expect(page.get_by_test_id("balance")).to_have_text("1,880 credits")

    # C12, C24 (FAQ 7): with most of the period's credits left, no Buy Credits; the page says when.
    page.goto(f"/t/{tenant.slug}/marketplace/ai-credits/")
    expect(page.get_by_test_id("buy-extra-credits")).to_have_count(0)
    expect(page.get_by_test_id("extra-pack-reason")).to_have_text(
        "Extra credits can be bought when your balance runs low: once 80% of this period's plan "
        "credits are used or fewer than 10 credits are available."
    )
    expect(page.locator("nav.sidebar").get_by_role("link", name="AI Credits")).to_have_count(0)
    more = Client().post(
        "/api/v1/credits/consume",
        data=json.dumps({"feature": "smart_response", "quantity": 1480, "idempotency_key": "j-2"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    assert more.status_code == 201, more.content  # 1,600 of 2,000 used: 80%

    # C03, C12, C13: the sidebar's quick access and Buy Credits appear together (one rule); the
    # pack, confirmed with its own code, is active for 30 days.
    page.reload()
    page.locator("nav.sidebar").get_by_role("link", name="AI Credits").click()
    page.get_by_test_id("buy-extra-credits").click()
    expect(dialog.get_by_role("heading", name="Buy extra credits")).to_be_visible()
    dialog.get_by_test_id("pack-extra-500").check()
    dialog.get_by_test_id("send-code").click()
    expect(dialog.get_by_test_id("code-sent")).to_be_visible()
    dialog.get_by_test_id("security-code").fill(_emailed_code(context, dialog, emails=2))
    dialog.get_by_test_id("confirm-purchase").click()
    expect(page.get_by_test_id("extra-pack")).to_have_text("500 credits")
    expires = timezone.now() + timedelta(days=30)
    expect(page.get_by_test_id("extra-pack-expires")).to_have_text(f"{expires.day} {expires:%b %Y}")
    expect(page.get_by_test_id("balance")).to_have_text("900 credits")

    # C14: one at a time — the button is gone and the page says why.
    expect(page.get_by_test_id("buy-extra-credits")).to_have_count(0)
    expect(page.get_by_test_id("extra-pack-reason")).to_contain_text(
        "Only one extra package can be active at a time"
    )
