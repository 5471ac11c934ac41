"""Apply subscription updates shows what Immediately charges now and the custom date only when it is
chosen (S18); the Billing tab that opened a checkout in a new tab follows the payment (S15)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing_portal import services
from billing_portal.gateway.base import GatewayError, GatewayInvoicePreview
from billing_portal.models import CheckoutSession
from billing_portal.selectors import WATCH_FOR, CheckoutWatch, checkout_watch
from plans.factories import plan
from plans.models import Product

from .conftest import checkout_open, local_gateway

pytestmark = pytest.mark.django_db

DIALOG = "/t/acme/billing/plans/agents-scale/change/"
PREVIEW = "/t/acme/billing/plans/agents-scale/preview/"
STATUS = "/t/acme/billing/checkout-status/"


def text(response) -> str:
    return response.content.decode()


# --- the dialog ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("htmx", [False, True])
def test_the_custom_date_shows_only_for_on_custom_date_and_works_without_javascript(
    htmx, subscribed, admin, client_for
):
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    page = text(client_for(admin).get(DIALOG, **headers))
    field = re.search(r'<div class="field" data-show-when="when=custom_date"[^>]*>(.*?)</div>', page, re.S)
    assert field is not None
    # Not hidden in the HTML: without JavaScript the field is there, and optional.
    assert " hidden" not in field.group(0)
    assert 'name="custom_date"' in field.group(1)
    assert "required" not in field.group(1)
    assert '<span class="optional">(for On custom date)</span>' in field.group(1)


def test_the_dialog_opens_with_focus_on_the_choice_already_made(subscribed, admin, client_for):
    """S18: "End of the current period" is chosen when the dialog opens; focus starts on it (a
    dialog focuses its autofocus element), not on "Immediately", where Space would change the choice."""
    page = text(client_for(admin).get(DIALOG, HTTP_HX_REQUEST="true"))
    radios = re.findall(r'<input type="radio" name="when" value="(\w+)"[^>]*>', page)
    assert "period_end" in radios
    focused = re.findall(r'<input type="radio" name="when" value="(\w+)"[^>]*\bautofocus\b[^>]*>', page)
    checked = re.findall(r'<input type="radio" name="when" value="(\w+)"[^>]*\bchecked\b[^>]*>', page)
    assert focused == checked == ["period_end"]


def test_the_dialog_fetches_the_preview_of_immediately(subscribed, admin, client_for):
    page = text(client_for(admin).get(DIALOG, HTTP_HX_REQUEST="true"))
    box = re.search(r'<div class="charge-preview-box" data-show-when="when=immediately"[^>]*>', page)
    assert box is not None
    assert f'hx-get="{PREVIEW}"' in box.group(0)
    assert 'hx-trigger="load"' in box.group(0)
    assert 'hx-target="this"' in box.group(0)  # not the form's #dialog-body
    assert f'<a href="{PREVIEW}">See what Immediately charges now</a>' in page  # without JavaScript


# --- On custom date: what the date picked invoices (S18) ----------------------------------------------

# The tester's calendar: a period from 17 Nov to 17 Dec 2026 (30 days), both at 00:00 UTC, so that a
# date picked in the dialog (00:00 UTC) can be the period's very end.
NOV17 = datetime(2026, 11, 17, tzinfo=UTC)


@pytest.fixture
def on_17_nov():
    with time_machine.travel(NOV17, tick=False) as traveller:
        yield traveller


def outlook(client, day: str, **headers) -> str:
    return text(client.get(f"{PREVIEW}?when=custom_date&custom_date={day}", **headers))


def test_the_dialog_fetches_what_the_custom_date_invoices_when_it_changes_s18(
    on_17_nov, subscribed, admin, client_for
):
    page = text(client_for(admin).get(DIALOG, HTTP_HX_REQUEST="true"))
    box = re.search(
        r'<div class="small" data-show-when="when=custom_date" data-testid="custom-date-outlook"[^>]*>', page
    )
    assert box is not None
    assert f'hx-get="{PREVIEW}?when=custom_date"' in box.group(0)
    assert 'hx-trigger="change from:#id_custom_date"' in box.group(0)
    assert 'hx-include="#id_custom_date"' in box.group(0)
    assert 'id="id_custom_date"' in page
    # Without JavaScript: a page where the date is picked.
    assert f'<a href="{PREVIEW}?when=custom_date">See what a custom date invoices</a>' in page
    plain = text(client_for(admin).get(f"{PREVIEW}?when=custom_date"))
    assert re.search(r'<form method="get" action="/t/acme/billing/plans/agents-scale/preview/"', plain)
    assert 'name="custom_date"' in plain
    assert '<input type="hidden" name="when" value="custom_date">' in plain


def test_a_custom_date_within_the_period_says_what_is_invoiced_that_day_and_by_the_renewal_s18(
    on_17_nov, subscribed, admin, client_for
):
    """S18. Failed before the fix (no such words; the dialog said nothing was prorated). Growth to
    Scale on 1 Dec: 16 of the period's 30 days left, (49900 - 19900) * 16/30 = $160.00 charged that
    day, the gateway's estimate with that proration date; the invoice of 17 Dec bills Scale."""
    body = outlook(client_for(admin), "2026-12-01", HTTP_HX_REQUEST="true")
    assert "<html" not in body
    assert re.search(r'data-testid="custom-date-switch">([^<]+)<', body).group(1) == (
        "On 1 Dec 2026 Scale replaces Growth, and the rest of the current period, from 1 Dec 2026 to "
        "17 Dec 2026, is prorated and invoiced that day: a credit for the unused time on Growth, a "
        "charge for the remaining time on Scale."
    )
    assert '<strong data-testid="custom-date-charge">About $160.00 is charged on 1 Dec 2026.</strong>' in body
    assert 'Unused time on Growth after 01 Dec 2026</span> <span class="nowrap">-$106.13' in body
    assert 'Remaining time on Scale after 01 Dec 2026</span> <span class="nowrap">$266.13' in body
    assert re.search(r'data-testid="custom-date-renewal">([^<]+)<', body).group(1) == (
        "The invoice of 17 Dec 2026 then bills Scale's $499.00 for the next month."
    )


def test_a_custom_downgrade_date_says_the_credit_s18(on_17_nov, subscribed, admin, client_for):
    """S18: Growth to Starter on 1 Dec: (4900 - 19900) * 16/30 = $80.00 back, as a credit."""
    body = text(
        client_for(admin).get(
            "/t/acme/billing/plans/agents-starter/preview/?when=custom_date&custom_date=2026-12-01",
            HTTP_HX_REQUEST="true",
        )
    )
    assert (
        '<strong data-testid="custom-date-charge">Nothing is charged on 1 Dec 2026.</strong> You get a '
        "credit of about $80.00 for your next invoices."
    ) in body


def test_a_custom_date_at_the_period_end_says_nothing_is_prorated_s18(
    on_17_nov, subscribed, admin, client_for
):
    body = outlook(client_for(admin), "2026-12-17", HTTP_HX_REQUEST="true")
    assert re.search(r'data-testid="custom-date-switch">([^<]+)<', body).group(1) == (
        "Scale starts when the current period ends, on 17 Dec 2026: nothing is prorated, and the "
        "invoice of 17 Dec 2026 bills Scale's $499.00 for the next month."
    )
    assert "custom-date-charge" not in body


def test_a_custom_date_after_the_period_end_says_the_renewal_bills_the_old_plan_first_s18(
    on_17_nov, subscribed, admin, client_for
):
    """S18, the tester's second report: with 20 Dec the dialog said the invoice of 17 Dec bills
    Scale, and it billed Growth (Starter in the report). Now it says so, and that the rest of the
    period 20 Dec falls in is prorated then (no estimate: Stripe previews the current period only)."""
    body = outlook(client_for(admin), "2026-12-20", HTTP_HX_REQUEST="true")
    assert re.search(r'data-testid="custom-date-renewal">([^<]+)<', body).group(1) == (
        "The invoice of 17 Dec 2026 still bills Growth's $199.00 for the next month, as every "
        "renewal before 20 Dec 2026 does."
    )
    assert re.search(r'data-testid="custom-date-switch">([^<]+)<', body).group(1) == (
        "On 20 Dec 2026 Scale replaces Growth, and the rest of the billing period that date falls in "
        "is prorated and invoiced that day: a credit for the unused time on Growth, a charge for the "
        "remaining time on Scale, worked out on that date. The renewal after it bills Scale's "
        "$499.00 for the next month."
    )
    assert "custom-date-charge" not in body


@pytest.mark.parametrize(
    ("day", "message"),
    [
        ("2026-11-01", "Pick a date in the future."),
        ("", "Pick the date the change applies on."),
        ("2027-12-01", "Pick a date within the next year."),
        ("not-a-date", "Enter a valid date."),
    ],
)
def test_a_custom_date_the_change_would_refuse_is_said_calmly_s18(
    on_17_nov, subscribed, admin, client_for, day, message
):
    response = client_for(admin).get(f"{PREVIEW}?when=custom_date&custom_date={day}", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert f'<span class="muted">{message}</span>' in text(response)


def _used_this_period(tenant, n: int) -> None:
    """`n` billable sessions this period (one real session, the counter set to n)."""
    from sessions_billing.models import UsagePeriod
    from sessions_billing.services import session_start

    session_start(tenant=tenant, conversation_id="used", direction="inbound")
    assert UsagePeriod.objects.filter(tenant=tenant).update(billable_sessions=n) == 1


def test_s25_lowering_the_plan_immediately_below_usage_warns_before_and_as_it_applies(
    subscribed, admin, client_for, live
):
    """S21, S25: a plan changed Immediately keeps this period's billable sessions; when they are above
    the new plan's limit every agent stops at once. The dialog says so beside Immediately, before
    Update subscription, and the change (not refused) says it again as it applies."""
    from django.contrib.messages import get_messages

    from sessions_billing.selectors import usage_for

    tenant = subscribed.tenant
    _used_this_period(tenant, 791)
    resets = usage_for(tenant=tenant).terms.resets_on
    assert resets is not None
    warning = (
        "791 billable sessions are already used this period: above the new limit of 300, all agents stop "
        f"accepting new sessions until the next period starts on {resets:%-d %b %Y}."
    )
    client = client_for(admin)
    starter = "/t/acme/billing/plans/agents-starter/change/"
    dialog = text(client.get(starter, HTTP_HX_REQUEST="true"))
    assert (
        '<div class="flash warning" role="status" data-show-when="when=immediately" '
        f'data-testid="limit-stop-warning">{warning}</div>'
    ) in dialog
    assert 'data-testid="limit-stop-warning"' not in text(client.get(DIALOG, HTTP_HX_REQUEST="true"))  # Scale

    with live():
        done = client.post(starter, {"when": "immediately"}, HTTP_HX_REQUEST="true")
    assert done.status_code == 200, text(done)
    assert "HX-Redirect" in done.headers, text(done)
    flashes = [(m.level_tag, m.message) for m in get_messages(done.wsgi_request)]
    assert flashes == [("success", "You are now on Starter. Your limits are updated."), ("warning", warning)]
    assert not usage_for(tenant=tenant).accepting


def test_the_preview_says_what_immediately_charges_now(subscribed, trial_tenant, admin, client_for):
    """The amount is the gateway's preview of the very change the dialog makes (to the cent)."""
    later = subscribed.current_period_start + timedelta(days=10)
    with time_machine.travel(later, tick=False):
        expected = services.plan_change_preview(
            tenant=trial_tenant, to_plan=plan("agents-scale"), actor=admin
        )
        response = client_for(admin).get(PREVIEW, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = text(response)
    assert "<html" not in body
    period = int((subscribed.current_period_end - subscribed.current_period_start).total_seconds())
    left = int((subscribed.current_period_end - later).total_seconds())
    assert expected.amount_due == round((49900 - 19900) * left / period)  # Scale less Growth, time left
    dollars = f"${expected.amount_due // 100:,}.{expected.amount_due % 100:02d}"
    assert f'<strong data-testid="charge-now">You will be charged {dollars} now</strong>' in body
    assert "Unused time on Growth after" in body
    assert "Remaining time on Scale after" in body


def test_the_preview_of_a_downgrade_says_nothing_is_charged_and_the_credit(subscribed, admin, client_for):
    later = subscribed.current_period_start + timedelta(days=10)
    with time_machine.travel(later, tick=False):
        body = text(
            client_for(admin).get("/t/acme/billing/plans/agents-starter/preview/", HTTP_HX_REQUEST="true")
        )
    period = (subscribed.current_period_end - subscribed.current_period_start).total_seconds()
    left = (subscribed.current_period_end - later).total_seconds()
    credit = round(15000 * left / period)  # (199.00 - 49.00) for the time left
    assert '<strong data-testid="charge-now">Nothing is charged now.</strong>' in body
    assert f"You get a credit of ${credit // 100}.{credit % 100:02d} for your next invoices." in body


def test_a_gateway_failure_is_a_calm_preview_unavailable(subscribed, admin, client_for, monkeypatch):
    def down(self, **kwargs):
        raise GatewayError("The payment provider could not be reached. Try again in a minute.")

    monkeypatch.setattr(type(local_gateway()), "preview_price_change", down)
    response = client_for(admin).get(PREVIEW, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = text(response)
    assert '<p data-testid="preview-unavailable"><strong>Preview unavailable.</strong>' in body
    assert "The payment provider could not be reached." in body
    assert "charge-now" not in body


def test_the_preview_refuses_as_the_change_would(trial_tenant, admin, client_for):
    body = text(client_for(admin).get(PREVIEW, HTTP_HX_REQUEST="true"))
    assert "Preview unavailable." in body
    assert "Subscribe to a paid plan first." in body


def test_the_preview_without_javascript_is_a_page_with_the_way_back(subscribed, admin, client_for):
    body = text(client_for(admin).get(PREVIEW))
    assert "<html" in body
    assert "You will be charged" in body
    assert f'href="{DIALOG}"' in body


@pytest.mark.parametrize("persona", ["member", "finance"])
def test_only_admins_see_the_preview_or_the_checkout_status(persona, request, subscribed, client_for):
    client = client_for(request.getfixturevalue(persona))
    assert client.get(PREVIEW).status_code == 403
    assert client.get(STATUS + "?product=ai_agents").status_code == 403


# --- the tab left behind by the checkout ---------------------------------------------------------------


def test_the_billing_tab_carries_the_watch_for_a_checkout_in_a_new_tab(trial_tenant, admin, client_for):
    now = timezone.now()
    with time_machine.travel(now, tick=False):
        page = text(client_for(admin).get("/t/acme/billing/?product=ai_agents"))
    watch = re.search(r'<div id="checkout-watch"[^>]*>([^<]*)</div>', page)
    assert watch is not None
    assert " hidden " in watch.group(0)
    assert (
        f'data-checkout-watch="{STATUS}?product=ai_agents&amp;since={int(now.timestamp())}"' in watch.group(0)
    )
    assert "data-watch-forms=\"form[target=_blank][action$='/subscribe/']\"" in watch.group(0)
    assert watch.group(1) == "Complete the payment in the new tab — this page updates when it is done."
    # The Subscribe forms it watches open the checkout in a new tab.
    assert re.search(
        r'<form method="post" action="/t/acme/billing/plans/agents-growth/subscribe/" target="_blank">', page
    )


def test_no_watch_for_members_nor_once_paid(subscribed, admin, member, client_for):
    assert "checkout-watch" not in text(client_for(admin).get("/t/acme/billing/?product=ai_agents"))
    assert "checkout-watch" not in text(client_for(member).get("/t/acme/billing/?product=ai_credits"))


def test_status_follows_the_checkout_from_waiting_to_the_updated_page(trial_tenant, admin, client_for, live):
    client = client_for(admin)
    since = int(timezone.now().timestamp()) - 1
    url = f"{STATUS}?product=ai_agents&since={since}"

    waiting = client.get(url, HTTP_HX_REQUEST="true")
    assert waiting.status_code == 200
    body = text(waiting)
    assert 'data-state="waiting"' in body
    assert f'hx-get="{url.replace("&", "&amp;")}" hx-trigger="every 3s" hx-swap="outerHTML"' in body
    assert "Complete the payment in the new tab — this page updates when it is done." in body

    session_id = checkout_open(trial_tenant, admin, "agents-growth")  # the new tab opened the checkout
    assert 'data-state="waiting"' in text(client.get(url, HTTP_HX_REQUEST="true"))
    local_gateway().complete_checkout(session_id)  # paid; its webhooks not applied yet (no commit)
    CheckoutSession.objects.filter(gateway_session_id=session_id).update(status="complete")
    activating = text(client.get(url, HTTP_HX_REQUEST="true"))
    assert 'data-state="activating"' in activating
    assert 'hx-trigger="every 3s"' in activating

    services.checkout_sync(session_id=session_id)  # what the webhook does
    done = client.get(url, HTTP_HX_REQUEST="true")
    assert done.status_code == 200
    assert json.loads(done["HX-Location"]) == {
        "path": "/t/acme/billing/?product=ai_agents",
        "target": "#billing-page",
        "select": "#billing-page",
        "swap": "outerHTML",
    }
    plain = client.get(url)
    assert (plain.status_code, plain["Location"]) == (302, "/t/acme/billing/?product=ai_agents")


def test_status_stops_polling_when_the_checkout_is_canceled(trial_tenant, admin, client_for):
    since = int(timezone.now().timestamp()) - 1
    session_id = checkout_open(trial_tenant, admin, "agents-growth")
    local_gateway().expire_checkout(session_id)
    CheckoutSession.objects.filter(gateway_session_id=session_id).update(status="expired")
    body = text(client_for(admin).get(f"{STATUS}?product=ai_agents&since={since}", HTTP_HX_REQUEST="true"))
    assert 'data-state="closed"' in body
    assert "The checkout was canceled or expired: nothing was charged." in body
    assert "hx-trigger" not in body  # the swap ends the polling
    assert "data-dismissible" in body


def test_an_older_checkout_does_not_decide_and_the_watch_gives_up_after_a_while(trial_tenant, admin):
    product = Product.objects.get(code="ai_agents")
    checkout_open(trial_tenant, admin, "agents-growth")
    CheckoutSession.objects.update(status="expired", created_at=timezone.now() - timedelta(hours=1))
    since = timezone.now() - timedelta(minutes=5)
    assert checkout_watch(tenant=trial_tenant, product=product, since=since) == CheckoutWatch.WAITING
    later = since + WATCH_FOR + timedelta(seconds=1)
    assert (
        checkout_watch(tenant=trial_tenant, product=product, since=since, now=later)
        == CheckoutWatch.TIMED_OUT
    )


# (A NUL never gets this far: it is refused at the door, tests/test_bad_input.py.)
@pytest.mark.parametrize("since", ["", "abc", "9" * 40, "-5", "99999999999", "1e9", "١٢٣"])
def test_status_survives_any_since(since, trial_tenant, admin, client_for):
    response = client_for(admin).get(STATUS, {"product": "ai_agents", "since": since}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert 'data-state="waiting"' in text(response)


def test_status_query_count_is_small_and_fixed(trial_tenant, admin, client_for):
    client = client_for(admin)
    url = f"{STATUS}?product=ai_agents&since={int(timezone.now().timestamp())}"
    client.get(url, HTTP_HX_REQUEST="true")
    with CaptureQueriesContext(connection) as first:
        client.get(url, HTTP_HX_REQUEST="true")
    for _ in range(3):
        checkout_open(trial_tenant, admin, "agents-growth")
    with CaptureQueriesContext(connection) as later:
        client.get(url, HTTP_HX_REQUEST="true")
    assert len(first) == len(later)


@pytest.mark.parametrize(
    ("amount_due", "total", "sentence"),
    [
        (5999, 8999, "You will be charged $59.99 now</strong>"),
        (0, 3000, "Nothing is charged now.</strong>"),
    ],
)
def test_the_preview_names_the_credit_balance_it_applies_s18(
    subscribed, admin, client_for, monkeypatch, amount_due, total, sentence
):
    """A downgrade's credit pays part or all of the next change: the preview says so, as Stripe's
    preview invoice has it (total less the balance applied is what is due), so its lines add up."""

    def preview(self, **kwargs):
        return GatewayInvoicePreview(currency="usd", amount_due=amount_due, total=total)

    monkeypatch.setattr(type(local_gateway()), "preview_price_change", preview)
    body = text(client_for(admin).get(PREVIEW, HTTP_HX_REQUEST="true"))

    assert sentence in body
    applied = "$30.00 of the $89.99." if amount_due else "the $30.00."
    assert f"Your credit balance pays {applied}" in body
