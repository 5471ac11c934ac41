"""The Billing tab (spec 002): the subscription card for every role, the admin-only buttons, the
checkout and portal through the local gateway's stand-ins, the plan-change dialogs, sales requests,
the deployment switch, and a query count that does not grow with history."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, reverse
from django.utils import timezone

from billing_portal import services, urls
from billing_portal.factories import InvoiceFactory
from billing_portal.gateway.store import LocalGatewayObject
from billing_portal.models import BillingCustomer, CheckoutSession, Invoice, WebhookEvent
from plans import services as plan_services
from plans.factories import ScheduledChangeFactory, SubscriptionFactory, plan
from plans.models import Lead, ScheduledChange, Subscription
from tenants.factories import MembershipFactory, TenantFactory, UserFactory
from tenants.models import Role

from .conftest import checkout_open, customer_id_of, live_sub, local_gateway

BILLING = "/t/acme/billing/"


def badge(response) -> str:
    match = re.search(r'data-testid="badge">([^<]+)<', response.content.decode())
    assert match, "no subscription badge on the page"
    return match.group(1)


def day(moment: datetime | date) -> str:
    """A date as the Billing tab shows it ("j M Y")."""
    return f"{moment.day} {moment:%b %Y}"


def text(response) -> str:
    return response.content.decode()


def nothing_changed_snapshot(tenant) -> dict[str, Any]:
    return {
        "checkouts": CheckoutSession.objects.count(),
        "customers": BillingCustomer.objects.count(),
        "gateway_objects": LocalGatewayObject.objects.count(),
        "subscriptions": sorted(
            Subscription.objects.filter(tenant=tenant).values_list("pk", "plan_id", "state")
        ),
        "changes": sorted(ScheduledChange.objects.filter(tenant=tenant).values_list("pk", "status")),
        "invoices": Invoice.objects.count(),
        "webhook_events": WebhookEvent.objects.count(),
    }


@pytest.fixture
def debug(settings):
    """The local gateway's stand-in pages exist only with DEBUG on."""
    settings.DEBUG = True
    return settings


@pytest.fixture
def scheduled(subscribed, trial_tenant, admin, live) -> ScheduledChange:
    """Growth, with a change to Scale scheduled for the end of the period."""
    with live():
        result = services.plan_change(
            tenant=trial_tenant,
            to_plan=plan("agents-scale"),
            when="period_end",
            custom_date=None,
            actor=admin,
        )
    assert result.scheduled is not None
    return result.scheduled


# --- the tab for each role ----------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["admin", "member", "finance"])
def test_billing_tab_shows_the_subscription_card_to_every_role(persona, request, trial_tenant, client_for):
    """S01, S09: every member sees the card; a new tenant is on the trial."""
    response = client_for(request.getfixturevalue(persona)).get(BILLING)

    assert response.status_code == 200
    assert badge(response) == "Trial subscription"
    assert "Trial sessions left" in text(response)
    assert "Trial days left" in text(response)
    for code in ("agents-starter", "agents-growth", "agents-scale", "agents-enterprise"):
        assert f'data-testid="plan-{code}"' in text(response)  # S14


def test_admin_sees_subscribe_buttons_that_open_checkout_in_a_new_tab(trial_tenant, admin, client_for):
    """S15: Subscribe posts to a form that targets a new tab."""
    page = text(client_for(admin).get(BILLING))

    for code in ("agents-starter", "agents-growth", "agents-scale"):
        action = f"/t/acme/billing/plans/{code}/subscribe/"
        assert re.search(rf'<form method="post" action="{action}" target="_blank">', page), code
        assert f'data-testid="subscribe-{code}"' in page
    assert "Ask your account administrator to subscribe" not in page


@pytest.mark.parametrize("persona", ["member", "finance"])
def test_member_and_finance_see_no_subscribe_or_manage_button(persona, request, subscribed, client_for):
    """S18: only admins subscribe or change plans; finance reads. C21: ask the administrator."""
    response = client_for(request.getfixturevalue(persona)).get(BILLING)

    assert response.status_code == 200
    assert badge(response) == "Active subscription"
    page = text(response)
    assert 'data-testid="subscribe-' not in page
    assert 'data-testid="manage"' not in page
    for path in ("/subscribe/", "/billing/manage/", "/change/"):
        assert not re.search(rf'(action|href|hx-get|hx-post)="/t/acme/billing/[^"]*{path}', page), path
    assert "Ask your account administrator to subscribe" in page


def test_admin_of_a_paid_plan_sees_manage_and_subscribe_opens_the_change_dialog(
    subscribed, admin, client_for
):
    page = text(client_for(admin).get(BILLING))

    assert re.search(r'<form method="post" action="/t/acme/billing/manage/" target="_blank"', page)
    assert 'href="/t/acme/billing/plans/agents-scale/change/"' in page  # S18
    assert "Current plan" in page
    assert "Next billing date" in page  # S30


# --- permissions: member and finance can change nothing -----------------------------------------


ADMIN_ACTIONS = [
    ("post", "/t/acme/billing/plans/agents-growth/subscribe/", {}),
    ("post", "/t/acme/billing/plans/agents-scale/subscribe/", {}),
    ("get", "/t/acme/billing/plans/agents-starter/change/", {}),
    ("post", "/t/acme/billing/plans/agents-starter/change/", {"when": "immediately"}),
    ("post", "/t/acme/billing/plans/agents-starter/change/", {"when": "period_end"}),
    ("get", "/t/acme/billing/scheduled/{change}/cancel/", {}),
    ("post", "/t/acme/billing/scheduled/{change}/cancel/", {}),
    ("post", "/t/acme/billing/manage/", {}),
]


@pytest.mark.parametrize("persona", ["member", "finance"])
def test_member_and_finance_are_refused_every_billing_action(
    persona, request, scheduled, trial_tenant, client_for
):
    client = client_for(request.getfixturevalue(persona))
    before = nothing_changed_snapshot(trial_tenant)

    for method, url, data in ADMIN_ACTIONS:
        for headers in ({}, {"HTTP_HX_REQUEST": "true"}):
            response = getattr(client, method)(url.format(change=scheduled.pk), data, **headers)
            assert response.status_code == 403, f"{persona} {method.upper()} {url}: {response.status_code}"

    assert nothing_changed_snapshot(trial_tenant) == before
    assert ScheduledChange.objects.get(pk=scheduled.pk).status == "scheduled"


# --- subscribe and the checkout stand-in --------------------------------------------------------


def test_subscribe_on_the_trial_redirects_to_the_checkout(trial_tenant, admin, client_for):
    response = client_for(admin).post("/t/acme/billing/plans/agents-growth/subscribe/")

    assert response.status_code == 302
    assert re.fullmatch(r"/dev/billing/checkout/cs_local_[0-9a-f]+/", response["Location"])
    session = CheckoutSession.objects.get(tenant=trial_tenant)
    assert (session.plan.code, session.status, session.url) == ("agents-growth", "open", response["Location"])
    assert BillingCustomer.objects.filter(tenant=trial_tenant).count() == 1


def test_subscribing_to_enterprise_is_refused_with_the_reason(trial_tenant, admin, client_for):
    client = client_for(admin)
    response = client.post("/t/acme/billing/plans/agents-enterprise/subscribe/")

    assert response.status_code == 302
    assert response["Location"] == "/t/acme/billing/?product=ai_agents"
    assert "Enterprise is contracted through our sales team." in text(client.get(response["Location"]))
    assert CheckoutSession.objects.count() == 0


def test_paying_on_the_checkout_stand_in_activates_the_subscription(
    debug, trial_tenant, admin, client_for, live
):
    """S15: pay on the hosted checkout; the webhook (not the redirect) makes it Active."""
    client = client_for(admin)
    checkout_url = client.post("/t/acme/billing/plans/agents-growth/subscribe/")["Location"]

    page = client.get(checkout_url)
    assert page.status_code == 200
    assert "Pay Acme Corp's subscription" in text(page)
    assert "$199.00" in text(page)

    with live():
        paid = client.post(checkout_url, {"action": "pay"})

    assert paid.status_code == 302
    # The hosted page returns to the session's success URL, with the session's id, as Stripe's does.
    session_id = CheckoutSession.objects.get(tenant=trial_tenant).gateway_session_id
    assert paid["Location"] == (
        f"http://testserver/t/acme/billing/?product=ai_agents&checkout=success&session_id={session_id}"
    )
    event = WebhookEvent.objects.get(type="checkout.session.completed")
    assert (event.status, event.tenant) == ("processed", trial_tenant)
    billing = client.get(paid["Location"])
    assert badge(billing) == "Active subscription"
    assert "Payment received" in text(billing)  # the checkout=success banner
    sub = live_sub(trial_tenant)
    assert (sub.plan.code, sub.state) == ("agents-growth", "active")
    assert CheckoutSession.objects.get(tenant=trial_tenant).status == "complete"
    assert list(Invoice.objects.filter(tenant=trial_tenant).values_list("status", "total")) == [
        ("paid", 19900)
    ]
    # Paying again (a double submit) changes nothing.
    with live():
        client.post(checkout_url, {"action": "pay"})
    assert Subscription.objects.filter(tenant=trial_tenant).exclude(gateway_subscription_id="").count() == 1
    assert Invoice.objects.count() == 1


def test_the_return_from_checkout_applies_the_paid_session_without_waiting_for_the_webhook(
    debug, trial_tenant, admin, other_tenant, client_for
):
    """Issue 7, defect 10 (failed before the fix: the success URL carried no session id, so the tab
    showed the trial until the webhook came). S15: the success URL carries {CHECKOUT_SESSION_ID};
    the return syncs that session, which must be the tenant's own."""
    client = client_for(admin)
    checkout_url = client.post("/t/acme/billing/plans/agents-growth/subscribe/")["Location"]
    session = CheckoutSession.objects.get(tenant=trial_tenant)
    stored = LocalGatewayObject.objects.get(object_id=session.gateway_session_id).data
    assert stored["success_url"] == (
        "http://testserver/t/acme/billing/?product=ai_agents&checkout=success&session_id={CHECKOUT_SESSION_ID}"
    )

    paid = client.post(checkout_url, {"action": "pay"})  # no live(): no webhook is delivered
    assert paid["Location"] == (
        "http://testserver/t/acme/billing/?product=ai_agents&checkout=success"
        f"&session_id={session.gateway_session_id}"
    )
    assert WebhookEvent.objects.count() == 0
    assert live_sub(trial_tenant).state == "trialing"

    page = client.get(paid["Location"])

    assert badge(page) == "Active subscription"
    assert (live_sub(trial_tenant).plan.code, live_sub(trial_tenant).state) == ("agents-growth", "active")
    assert CheckoutSession.objects.get(pk=session.pk).status == "complete"
    assert list(Invoice.objects.filter(tenant=trial_tenant).values_list("status", "total")) == [
        ("paid", 19900)
    ]

    # Another tenant's session id in the URL is ignored: nothing of theirs is read or applied.
    globex_admin = MembershipFactory(tenant=other_tenant, role=Role.ADMIN, user=UserFactory()).user
    plan_services.tenant_provision(tenant=other_tenant)
    foreign = checkout_open(other_tenant, globex_admin, "agents-starter")
    local_gateway().complete_checkout(foreign)
    for bogus in (foreign, "cs_local_nope", "x" * 300):
        response = client.get(f"{BILLING}?product=ai_agents&checkout=success&session_id={bogus}")
        assert response.status_code == 200
    assert Subscription.objects.filter(tenant=other_tenant).exclude(gateway_subscription_id="").count() == 0


def test_a_declining_card_on_the_checkout_stand_in_is_402_and_creates_nothing(
    debug, trial_tenant, admin, client_for, live
):
    client = client_for(admin)
    checkout_url = client.post("/t/acme/billing/plans/agents-growth/subscribe/")["Location"]
    subs_before = sorted(
        Subscription.objects.filter(tenant=trial_tenant).values_list("pk", "plan_id", "state")
    )

    with live():
        response = client.post(checkout_url, {"action": "decline"})

    assert response.status_code == 402
    assert "Your card was declined." in text(response)
    assert (
        sorted(Subscription.objects.filter(tenant=trial_tenant).values_list("pk", "plan_id", "state"))
        == subs_before
    )
    assert live_sub(trial_tenant).state == "trialing"
    assert (
        LocalGatewayObject.objects.filter(object_type__in=["subscription", "invoice", "event"]).count() == 0
    )
    assert (Invoice.objects.count(), WebhookEvent.objects.count()) == (0, 0)
    assert CheckoutSession.objects.get(tenant=trial_tenant).status == "open"


def test_canceling_on_the_checkout_stand_in_goes_back_with_nothing_charged(
    debug, trial_tenant, admin, client_for, live
):
    client = client_for(admin)
    checkout_url = client.post("/t/acme/billing/plans/agents-growth/subscribe/")["Location"]

    with live():
        response = client.post(checkout_url, {"action": "cancel"})

    assert response["Location"] == "http://testserver/t/acme/billing/?product=ai_agents&checkout=canceled"
    assert "Checkout canceled: nothing was charged." in text(client.get(response["Location"]))
    assert CheckoutSession.objects.get(tenant=trial_tenant).status == "expired"
    assert live_sub(trial_tenant).state == "trialing"


# --- the stand-ins are closed outside DEBUG and to outsiders ---------------------------------------


DEV_URL_NAMES = sorted(
    p.name for p in urls.global_patterns if isinstance(p, URLPattern) and p.name.startswith("dev_")
)


def _dev_urls(session_id: str, customer_id: str, invoice_id: str = "in_local_nope") -> list[str]:
    values = {"session_id": session_id, "customer_id": customer_id, "gateway_invoice_id": invoice_id}
    found = []
    for name in DEV_URL_NAMES:
        pattern = next(p for p in urls.global_patterns if p.name == name)
        params = re.findall(r"<(?:\w+:)?(\w+)>", str(pattern.pattern))
        found.append(reverse(name, kwargs={p: values[p] for p in params}))
    return found


@pytest.fixture
def victim_dev_urls(trial_tenant, admin) -> list[str]:
    paid = local_gateway().complete_checkout(checkout_open(trial_tenant, admin, "agents-starter"))
    session_id = checkout_open(trial_tenant, admin, "agents-growth")
    urls_ = _dev_urls(session_id, customer_id_of(trial_tenant), paid.latest_invoice_id)
    assert len(urls_) == len(DEV_URL_NAMES) == 3
    return urls_


DEV_CALLS = [
    ("get", {}),
    ("post", {"action": "pay"}),
    ("post", {"action": "decline"}),
    ("post", {"action": "cancel"}),
    ("post", {"action": "update_card", "last4": "4242"}),
]


@pytest.mark.parametrize("persona", ["admin", "member", "outsider"])
def test_dev_pages_are_404_for_everyone_with_debug_off(
    persona, request, settings, trial_tenant, victim_dev_urls, client_for, live
):
    settings.DEBUG = False
    client = client_for(request.getfixturevalue(persona))
    before = nothing_changed_snapshot(trial_tenant)

    for url in victim_dev_urls:
        for method, data in DEV_CALLS:
            with live():
                response = getattr(client, method)(url, data)
            assert response.status_code == 404, f"{persona} {method.upper()} {url}"

    assert nothing_changed_snapshot(trial_tenant) == before


@pytest.mark.parametrize("persona", ["outsider", "member", "finance"])
def test_dev_pages_are_404_for_anyone_but_an_admin_of_the_customers_tenant_finance_but_its_invoices(
    persona, request, debug, trial_tenant, victim_dev_urls, client_for, live
):
    client = client_for(request.getfixturevalue(persona))
    before = nothing_changed_snapshot(trial_tenant)
    if persona == "finance":
        # The hosted invoice page opens for finance, who see its link on the invoice page
        # (tests/subscriptions/test_payments_after.py); checkout and the portal stay admin-only.
        victim_dev_urls = [url for url in victim_dev_urls if "/dev/billing/invoices/" not in url]

    for url in victim_dev_urls:
        for method, data in DEV_CALLS:
            with live():
                response = getattr(client, method)(url, data)
            assert response.status_code == 404, f"{persona} {method.upper()} {url}"
            assert "Acme Corp" not in text(response)

    assert nothing_changed_snapshot(trial_tenant) == before


def test_dev_pages_are_404_for_unknown_ids_and_anonymous_users(debug, victim_dev_urls, admin, client_for):
    from django.test import Client

    for url in victim_dev_urls:
        assert Client().get(url).status_code == 404
    for url in _dev_urls("cs_local_nope", "cus_local_nope"):
        assert client_for(admin).get(url).status_code == 404


def test_the_portal_refuses_a_subscription_of_another_customer(
    debug, subscribed, admin, other_tenant, client_for
):
    # Globex has its own customer and subscription at the gateway.
    globex_admin = MembershipFactory(tenant=other_tenant, role=Role.ADMIN, user=UserFactory()).user
    plan_services.tenant_provision(tenant=other_tenant)
    session_id = checkout_open(other_tenant, globex_admin, "agents-starter")
    foreign_sub = local_gateway().complete_checkout(session_id).id
    portal = client_for(admin).post("/t/acme/billing/manage/")["Location"]

    response = client_for(admin).post(portal, {"action": "cancel", "subscription": foreign_sub})

    assert response.status_code == 404
    assert local_gateway().retrieve_subscription(foreign_sub).cancel_at_period_end is False


def test_an_ai_credits_package_cannot_be_canceled_through_the_portal(
    debug, subscribed, trial_tenant, admin, client_for, live
):
    """C20: package deactivation is requested from Customer Success, never self-service. The card
    does not promise cancel; Manage opens a portal session whose configuration has
    subscription_cancel off (made on demand when billing_portal_configure has not run); the
    stand-in shows no Cancel for any subscription (the portal's cancel would reach the package too)
    and refuses a forged one, changing nothing. Failed before the fix: Cancel was offered and
    worked."""
    session_id = checkout_open(trial_tenant, admin, "credits-plus")
    with live():
        local_gateway().complete_checkout(session_id)
    package = live_sub(trial_tenant, "ai_credits")
    assert (package.plan.code, package.state) == ("credits-plus", "active")
    client = client_for(admin)
    card = text(client.get("/t/acme/billing/?product=ai_credits"))
    assert "Payment methods and invoices" in card
    assert "cancel subscription" not in card

    for product in ("ai_credits", "ai_agents"):
        portal_url = client.post("/t/acme/billing/manage/", {"product": product})["Location"]
        portal = client.get(portal_url)
        assert portal.status_code == 200
        assert "AI Plus" in text(portal)
        assert "Cancel subscription" not in text(portal)
        with live():
            refused = client.post(
                portal_url, {"action": "cancel", "subscription": package.gateway_subscription_id}, follow=True
            )
        assert "This portal does not offer cancellation. Nothing was changed." in text(refused)
        assert (
            local_gateway().retrieve_subscription(package.gateway_subscription_id).cancel_at_period_end
            is False
        )
    session = LocalGatewayObject.objects.filter(object_type="billing_portal.session").latest("pk").data
    config = LocalGatewayObject.objects.get(object_id=session["configuration"]).data
    assert config["features"]["subscription_cancel"]["enabled"] is False
    package.refresh_from_db()
    assert (package.state, package.ends_at) == ("active", None)


def test_a_portal_link_without_its_session_is_not_a_portal(
    debug, subscribed, trial_tenant, admin, client_for
):
    """The stand-in's portal is reached through a session, as Stripe's is: a hand-made link (which
    could drop the session's configuration) finds nothing."""
    customer_id = customer_id_of(trial_tenant)
    assert client_for(admin).get(f"/dev/billing/portal/{customer_id}/").status_code == 404
    assert (
        client_for(admin).get(f"/dev/billing/portal/{customer_id}/?session=bps_local_forged").status_code
        == 404
    )


def _portal_session_id(portal_url: str) -> str:
    match = re.search(r"session=(bps_local_[0-9a-f]+)", portal_url)
    assert match, portal_url
    return match.group(1)


def test_a_portal_session_not_visited_in_time_has_expired_and_an_action_posted_to_it_changes_nothing(
    debug, subscribed, trial_tenant, admin, client_for, live
):
    """S29, D04. Stripe's portal sessions "are short-lived and will expire if the customer does not
    visit the URL"; the stand-in's expire PORTAL_SESSION_VISIT_WINDOW after they are made when
    nobody opened them. The page says so, offers nothing but the way back, and a cancel posted to it
    (a kept link, a second tab) is refused without touching anything. Failed before the fix: the
    session worked forever and the cancel went through."""
    from billing_portal.gateway.local.checkout import MSG_PORTAL_SESSION_EXPIRED, PORTAL_SESSION_VISIT_WINDOW

    client = client_for(admin)
    portal_url = client.post("/t/acme/billing/manage/", {"product": "ai_agents"})["Location"]
    sub_id = subscribed.gateway_subscription_id
    before = nothing_changed_snapshot(trial_tenant)

    with time_machine.travel(timezone.now() + PORTAL_SESSION_VISIT_WINDOW, tick=False):
        page = client.get(portal_url)
        with live():
            posted = client.post(portal_url, {"action": "cancel", "subscription": sub_id})

    for response in (page, posted):
        assert response.status_code == 410
        assert MSG_PORTAL_SESSION_EXPIRED in text(response)
        assert MSG_PORTAL_SESSION_EXPIRED == (
            "This portal session has expired. Return to the app and open the portal again."
        )
        assert 'href="http://testserver/t/acme/billing/?product=ai_agents"' in text(response)
        for offered in (
            "Cancel subscription",
            "+ Add payment method",
            "Fail next payment",
            "<h2>Invoices</h2>",
        ):
            assert offered not in text(response)
    assert local_gateway().retrieve_subscription(sub_id).cancel_at_period_end is False
    assert nothing_changed_snapshot(trial_tenant) == before
    assert live_sub(trial_tenant).ends_at is None


def test_a_visited_portal_session_works_until_its_lifetime_is_over(
    debug, subscribed, trial_tenant, admin, client_for, live
):
    """Opened at once (as Manage's redirect does), the session keeps working past the visit window,
    then expires PORTAL_SESSION_LIFETIME after it was made: a cancel posted then is refused."""
    from billing_portal.gateway.local.checkout import PORTAL_SESSION_LIFETIME, PORTAL_SESSION_VISIT_WINDOW

    client = client_for(admin)
    made = timezone.now()
    with time_machine.travel(made, tick=False):
        portal_url = client.post("/t/acme/billing/manage/", {"product": "ai_agents"})["Location"]
        assert client.get(portal_url).status_code == 200
    sub_id = subscribed.gateway_subscription_id

    with time_machine.travel(made + PORTAL_SESSION_VISIT_WINDOW + timedelta(minutes=1), tick=False):
        page = client.get(portal_url)
        assert page.status_code == 200
        assert "Cancel subscription" in text(page)
    with time_machine.travel(made + PORTAL_SESSION_LIFETIME, tick=False):
        with live():
            refused = client.post(portal_url, {"action": "cancel", "subscription": sub_id})
        assert refused.status_code == 410
        assert "This portal session has expired." in text(refused)
        # Manage makes a new session at each click: the next one works.
        fresh_url = client.post("/t/acme/billing/manage/", {"product": "ai_agents"})["Location"]
        assert _portal_session_id(fresh_url) != _portal_session_id(portal_url)
        assert client.get(fresh_url).status_code == 200
    assert local_gateway().retrieve_subscription(sub_id).cancel_at_period_end is False


def test_each_manage_click_opens_its_own_portal_session(debug, subscribed, admin, client_for):
    """S02: Manage on the Billing tab opens the billing portal (payment methods and invoices)."""
    client = client_for(admin)
    urls = [client.post("/t/acme/billing/manage/", {"product": "ai_agents"})["Location"] for _ in range(2)]

    assert len({_portal_session_id(url) for url in urls}) == 2
    pages = [client.get(url) for url in urls]
    assert [page.status_code for page in pages] == [200, 200]
    portal = text(pages[0])
    assert "<h2>Payment Method</h2>" in portal
    assert 'data-testid="dev-update-card"' in portal
    assert "<h2>Invoices</h2>" in portal


def test_a_cancel_is_checked_against_the_configuration_when_it_is_posted_not_when_the_page_was_shown(
    debug, subscribed, trial_tenant, admin, client_for, live, settings
):
    """C20, S29. The page offered Cancel; the session's configuration then turned cancel off (the
    operator ran billing_portal_configure with cancel off, as for a tenant with a package): the cancel
    posted from the page already shown is refused and nothing changes. Likewise a card update and
    paying invoices, once their features are off."""
    from billing_portal.gateway.base import PortalSettings

    services.portal_configure()  # the default configuration: cancel on
    client = client_for(admin)
    portal_url = client.post("/t/acme/billing/manage/", {"product": "ai_agents"})["Location"]
    page = client.get(portal_url)
    assert "Cancel subscription" in text(page)
    assert "+ Add payment method" in text(page)
    marker = {"managed_by": "allowance", "installation": settings.BILLING_INSTALLATION_ID}
    local_gateway().configure_portal(
        settings=PortalSettings(cancel_at_period_end=False, payment_methods=False, invoice_history=False),
        marker=marker,
        idempotency_key="turn-cancel-off",
    )
    sub_id = subscribed.gateway_subscription_id
    customer_id = customer_id_of(trial_tenant)
    before = nothing_changed_snapshot(trial_tenant)

    with live():
        cancel = client.post(portal_url, {"action": "cancel", "subscription": sub_id}, follow=True)
        card = client.post(portal_url, {"action": "update_card", "last4": "4444"}, follow=True)
        pay = client.post(portal_url, {"action": "pay"}, follow=True)

    assert "This portal does not offer cancellation. Nothing was changed." in text(cancel)
    assert "This portal does not offer updating the payment method. Nothing was changed." in text(card)
    assert "This portal does not offer paying invoices. Nothing was changed." in text(pay)
    assert local_gateway().retrieve_subscription(sub_id).cancel_at_period_end is False
    assert local_gateway().customer_overview(customer_id)["card"]["last4"] == "4242"  # not 4444
    assert nothing_changed_snapshot(trial_tenant) == before
    # The page now offers none of them.
    page = client.get(portal_url)
    for gone in ("Cancel subscription", "+ Add payment method", "Pay open invoices", "<h2>Invoices</h2>"):
        assert gone not in text(page)


# --- the portal stand-in: payment methods, failed payments, cancel ---------------------------------


def test_portal_fail_fix_and_cancel_show_on_the_billing_tab(
    debug, subscribed, trial_tenant, admin, client_for, live
):
    """S17, S26, S27, S29 through the Manage button and the portal stand-in."""
    client = client_for(admin)
    manage = client.post("/t/acme/billing/manage/", {"product": "ai_agents"})
    customer_id = customer_id_of(trial_tenant)
    back = quote("http://testserver/t/acme/billing/?product=ai_agents", safe="")
    assert manage.status_code == 302
    assert re.fullmatch(
        rf"/dev/billing/portal/{customer_id}/\?session=bps_local_[0-9a-f]+&return={re.escape(back)}",
        manage["Location"],
    )
    portal_url = manage["Location"]
    portal = client.get(portal_url)
    assert portal.status_code == 200
    for label in (
        "AI Agents — Growth",
        "Payment Method",
        "+ Add payment method",
        "Fail next payment",
        "Cancel subscription",
    ):
        assert label in text(portal)
    sub_id = subscribed.gateway_subscription_id

    # S26: a renewal fails — Payment issue, and the Payment pending banner with the grace date.
    with live():
        assert (
            client.post(portal_url, {"action": "fail_next_payment", "subscription": sub_id}).status_code
            == 302
        )
    page = client.get(BILLING)
    sub = live_sub(trial_tenant)
    assert sub.state == "past_due"
    assert sub.grace_until - sub.payment_failed_at == timedelta(days=7)
    assert badge(page) == "Payment issue"
    assert "Payment pending." in text(page)
    assert f"Access continues until {day(sub.grace_until)}" in text(page)
    assert list(Invoice.objects.order_by("issued_at", "pk").values_list("status", flat=True)) == [
        "paid",
        "open",
    ]

    # S27: a working card settles what is open.
    with live():
        client.post(portal_url, {"action": "update_card", "last4": "4242 4242 4242 4444"})
    page = client.get(BILLING)
    assert badge(page) == "Active subscription"
    assert "Payment pending" not in text(page)
    assert list(Invoice.objects.order_by("issued_at", "pk").values_list("status", flat=True)) == [
        "paid",
        "paid",
    ]
    assert local_gateway().customer_overview(customer_id)["card"]["last4"] == "4444"

    # S29: cancel — Canceled subscription with the date it expires.
    with live():
        client.post(portal_url, {"action": "cancel", "subscription": sub_id})
    page = client.get(BILLING)
    sub = live_sub(trial_tenant)
    assert badge(page) == "Canceled subscription"
    assert sub.ends_at == sub.current_period_end
    assert re.search(rf'data-testid="expires-on">{day(sub.ends_at)}<', text(page))
    assert "Expires on" in text(page)


# --- the plan-change dialogs ------------------------------------------------------------------------


def test_change_dialog_offers_the_three_moments(subscribed, admin, client_for):
    """S18: Apply subscription updates — Immediately, End of the current period, On custom date."""
    client = client_for(admin)
    for headers in ({}, {"HTTP_HX_REQUEST": "true"}):
        response = client.get("/t/acme/billing/plans/agents-scale/change/", **headers)
        assert response.status_code == 200
        page = text(response)
        assert "Apply subscription updates" in page
        labels = re.findall(r'<label class="choice"><input[^>]*> ([^<(]+?)\s*(?:<|$)', page, re.M)
        assert labels == ["Immediately", "End of the current period", "On custom date"]
        assert "Update subscription" in page
    assert "<html" not in page  # the htmx answer is the dialog alone


def test_change_at_period_end_shows_the_upcoming_card_and_cancel_removes_it(
    subscribed, trial_tenant, admin, client_for, live
):
    """S19 then S20."""
    client = client_for(admin)
    with live():
        response = client.post("/t/acme/billing/plans/agents-scale/change/", {"when": "period_end"})
    assert response.status_code == 302
    assert response["Location"] == "/t/acme/billing/?product=ai_agents"

    page = client.get(BILLING)
    change = ScheduledChange.objects.get(tenant=trial_tenant)
    assert (change.to_plan.code, change.status, change.effective_at) == (
        "agents-scale",
        "scheduled",
        subscribed.current_period_end,
    )
    assert badge(page) == "Active subscription"  # the current plan stays until then
    assert 'data-testid="upcoming-card"' in text(page)
    assert "Upcoming subscription" in text(page)
    assert re.search(rf'data-testid="starts-on">{day(change.effective_at)}<', text(page))
    assert "Starts on" in text(page)
    assert f"Scale starts on {day(change.effective_at)}." in text(page)
    assert local_gateway().retrieve_subscription(subscribed.gateway_subscription_id).schedule_id

    cancel_url = f"/t/acme/billing/scheduled/{change.pk}/cancel/"
    dialog = client.get(cancel_url)
    assert dialog.status_code == 200
    assert "Cancel scheduled plan" in text(dialog)
    assert "Cancel scheduled plan" in text(client.get(cancel_url, HTTP_HX_REQUEST="true"))
    with live():
        response = client.post(cancel_url)
    assert response.status_code == 302

    page = client.get(response["Location"])
    assert 'data-testid="upcoming-card"' not in text(page)
    assert "Upcoming subscription" not in text(page)
    assert "The scheduled change to Scale is canceled." in text(page)
    assert ScheduledChange.objects.get(pk=change.pk).status == "canceled"
    assert local_gateway().retrieve_subscription(subscribed.gateway_subscription_id).schedule_id in ("", None)
    assert live_sub(trial_tenant).plan.code == "agents-growth"


def test_change_immediately_switches_the_plan_and_its_limits(
    subscribed, trial_tenant, admin, client_for, live
):
    """S21: the upgrade applies now, with Scale's session limit."""
    client = client_for(admin)
    with live():
        response = client.post("/t/acme/billing/plans/agents-scale/change/", {"when": "immediately"})

    assert response.status_code == 302
    page = client.get(BILLING)
    assert badge(page) == "Active subscription"
    assert "You are now on Scale. Your limits are updated." in text(page)
    assert "5,000 billable sessions / period" in text(page)
    sub = live_sub(trial_tenant)
    assert (sub.pk, sub.plan.code, sub.state) == (subscribed.pk, "agents-scale", "active")
    assert ScheduledChange.objects.count() == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"when": "custom_date", "custom_date": "2020-01-01"}, "Pick a date in the future."),
        ({"when": "custom_date"}, "Pick the date the change applies on."),
        (
            {"when": "custom_date", "custom_date": (date.today() + timedelta(days=400)).isoformat()},
            "Pick a date within the next year.",
        ),
    ],
)
def test_change_with_a_bad_date_is_422_and_changes_nothing(
    data, message, subscribed, trial_tenant, admin, client_for, live
):
    client = client_for(admin)
    before = nothing_changed_snapshot(trial_tenant)

    with live():
        response = client.post("/t/acme/billing/plans/agents-scale/change/", data)

    assert response.status_code == 422
    assert message in text(response)
    assert "Apply subscription updates" in text(response)
    assert nothing_changed_snapshot(trial_tenant) == before


def test_htmx_change_with_an_error_answers_200_with_the_dialog_and_the_error(
    subscribed, trial_tenant, admin, client_for, live
):
    """htmx swaps only 2xx answers: the dialog comes back with its error."""
    before = nothing_changed_snapshot(trial_tenant)

    with live():
        response = client_for(admin).post(
            "/t/acme/billing/plans/agents-scale/change/",
            {"when": "custom_date", "custom_date": "2020-01-01"},
            HTTP_HX_REQUEST="true",
        )

    assert response.status_code == 200
    page = text(response)
    assert 'data-testid="change-dialog"' in page
    assert "Pick a date in the future." in page
    assert "<html" not in page
    assert nothing_changed_snapshot(trial_tenant) == before


def test_htmx_change_on_a_custom_date_redirects_the_client(subscribed, trial_tenant, admin, client_for, live):
    starts = (timezone.now() + timedelta(days=10)).date()
    browser = client_for(admin)
    with live():
        response = browser.post(
            "/t/acme/billing/plans/agents-starter/change/",
            {"when": "custom_date", "custom_date": starts.isoformat()},
            HTTP_HX_REQUEST="true",
        )

    assert response.status_code == 200
    assert response["HX-Redirect"] == "/t/acme/billing/?product=ai_agents"
    # S18: the message says the switch is invoiced, not only when the plan starts.
    shown = text(browser.get("/t/acme/billing/?product=ai_agents"))
    assert (
        f"Starter starts on {starts.day} {starts:%b %Y}: that day the rest of its billing period is "
        "prorated and invoiced." in shown
    )
    change = ScheduledChange.objects.get(tenant=trial_tenant)
    assert (change.to_plan.code, change.effective_at) == (
        "agents-starter",
        datetime.combine(starts, datetime.min.time(), tzinfo=UTC),
    )


def test_s18_a_custom_date_on_the_renewal_day_does_not_say_it_is_prorated(
    subscribed, trial_tenant, admin, client_for, live
):
    """S18: an outsider probe. The renewal's own day, picked On custom date, is the renewal itself
    (nothing prorated, as the dialog's outlook says): the confirmation said "that day the rest of its
    billing period is prorated and invoiced"."""
    renewal = subscribed.current_period_end
    browser = client_for(admin)
    with live():
        response = browser.post(
            "/t/acme/billing/plans/agents-starter/change/",
            {"when": "custom_date", "custom_date": renewal.date().isoformat()},
        )
    assert response.status_code == 302
    assert ScheduledChange.objects.get(tenant=trial_tenant).effective_at == renewal
    shown = text(browser.get("/t/acme/billing/?product=ai_agents"))
    assert f"Starter starts on {renewal.day} {renewal:%b %Y}." in shown
    assert "prorated" not in shown


def test_s29_the_change_dialog_of_a_canceled_current_plan_offers_no_update(
    subscribed, trial_tenant, admin, client_for, live
):
    """S18, S29: an outsider probe. Canceled at period end, the current plan's card offers Resume;
    its Apply subscription updates dialog (opened by URL) said why not, yet still drew the custom
    date field, the charge preview and an Update subscription button that could only be refused."""
    with live():
        services.subscription_cancel(tenant=trial_tenant, product=subscribed.product, actor=admin)
    response = client_for(admin).get("/t/acme/billing/plans/agents-growth/change/")
    assert response.status_code == 409
    page = text(response)
    assert "Your Growth subscription is canceled: click Resume to keep it." in page
    assert 'data-testid="update-subscription"' not in page
    assert 'data-testid="charge-preview"' not in page
    assert 'data-testid="custom-date-field"' not in page


# --- Book a demo, Speak with Specialist ------------------------------------------------------------


def test_book_a_demo_plain_form_redirects_with_request_received(trial_tenant, member, client_for):
    """S16: any member may ask for Enterprise; the card then shows Request received."""
    client = client_for(member)
    page = text(client.get(BILLING))
    assert re.search(r'data-testid="contact-agents-enterprise">Book a demo<', page)

    response = client.post("/t/acme/billing/plans/agents-enterprise/contact/", {"message": "200 agents"})

    assert response.status_code == 302
    assert response["Location"] == "/t/acme/billing/?product=ai_agents"
    page = text(client.get(response["Location"]))
    assert 'data-testid="request-received">Request received<' in page
    assert "Request received. Our team will get in touch." in page
    lead = Lead.objects.get()
    assert (lead.tenant, lead.user, lead.plan.code, lead.kind, lead.message) == (
        trial_tenant,
        member,
        "agents-enterprise",
        "book_demo",
        "200 agents",
    )


def test_book_a_demo_with_htmx_answers_the_partial_and_twice_is_one_lead(trial_tenant, admin, client_for):
    client = client_for(admin)
    for _ in range(2):
        response = client.post("/t/acme/billing/plans/agents-enterprise/contact/", HTTP_HX_REQUEST="true")
        assert response.status_code == 200
        assert 'data-testid="request-received">Request received<' in text(response)
        assert "Our team will get in touch about Enterprise." in text(response)
        assert "<html" not in text(response)
    assert Lead.objects.filter(tenant=trial_tenant).count() == 1


def test_speak_with_specialist_on_the_ai_credits_tab(trial_tenant, finance, client_for):
    """C07, C16: AI Ultra is contracted through sales."""
    client = client_for(finance)
    page = text(client.get(BILLING + "?product=ai_credits"))
    assert re.search(r'data-testid="contact-credits-ultra">Speak with Specialist<', page)

    response = client.post("/t/acme/billing/plans/credits-ultra/contact/", HTTP_HX_REQUEST="true")

    assert 'data-testid="request-received">Request received<' in text(response)
    lead = Lead.objects.get()
    assert (lead.plan.code, lead.kind) == ("credits-ultra", "specialist")
    assert 'data-testid="request-received"' in text(client.get(BILLING + "?product=ai_credits"))


# --- the deployment switch --------------------------------------------------------------------------


def test_billing_tab_is_gone_when_the_deployment_disables_it(settings, trial_tenant, admin, client_for):
    """S03, S31: billing happens outside the portal — the tab 404s and is not in the navigation."""
    client = client_for(admin)
    assert f'href="{BILLING}"' in text(client.get("/t/acme/"))
    settings.BILLING_TAB_ENABLED = False

    assert client.get(BILLING).status_code == 404
    assert client.post("/t/acme/billing/plans/agents-growth/subscribe/").status_code == 404
    assert client.post("/t/acme/billing/manage/").status_code == 404
    assert client.get("/t/acme/billing/plans/agents-growth/change/").status_code == 404
    home = client.get("/t/acme/")
    assert home.status_code == 200
    assert f'href="{BILLING}"' not in text(home)
    assert CheckoutSession.objects.count() == 0


# --- query count ------------------------------------------------------------------------------------


def _billing_queries(client, slug: str) -> int:
    client.get(f"/t/{slug}/billing/")  # warm the session and caches alike for both
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/t/{slug}/billing/")
    assert response.status_code == 200
    return len(queries)


def test_billing_tab_query_count_does_not_grow_with_history(trial_tenant, admin, client_for):
    """A tenant with five past subscriptions, their invoices and past changes costs what a new one does."""
    fresh = TenantFactory(name="Fresh Co", slug="fresh")
    fresh_admin = MembershipFactory(tenant=fresh, role=Role.ADMIN, user=UserFactory()).user
    plan_services.tenant_provision(tenant=fresh)
    now = timezone.now()
    for i in range(5):
        started = now - timedelta(days=60 * (i + 1))
        past = SubscriptionFactory(
            tenant=trial_tenant,
            plan=plan(["agents-starter", "agents-growth", "agents-scale"][i % 3]),
            state="expired",
            started_at=started,
            current_period_start=started,
            current_period_end=started + timedelta(days=30),
            ended_at=started + timedelta(days=30),
        )
        ScheduledChangeFactory(subscription=past, status="canceled")
        InvoiceFactory(
            tenant=trial_tenant, gateway_subscription_id=past.gateway_subscription_id, issued_at=started
        )
    plan_services.lead_create(tenant=trial_tenant, user=admin, plan=plan("agents-enterprise"))

    assert _billing_queries(client_for(admin), "acme") == _billing_queries(client_for(fresh_admin), "fresh")


def test_member_registers_interest_in_a_paid_plan_and_sees_request_received(trial_tenant, member, client_for):
    """C18: a non-administrator cannot buy but can register interest; sending twice keeps one lead."""
    from plans.models import Lead

    client = client_for(member)
    page = text(client.get(BILLING))
    assert 'data-testid="interest-agents-growth"' in page

    for _ in range(2):
        response = client.post("/t/acme/billing/plans/agents-growth/contact/", HTTP_HX_REQUEST="true")
        assert response.status_code == 200
        assert "Request received" in text(response)
    leads = Lead.objects.filter(tenant=trial_tenant, plan__code="agents-growth")
    assert [(lead.kind, lead.user_id) for lead in leads] == [(Lead.Kind.INTEREST, member.pk)]
    page = text(client.get(BILLING))
    assert 'data-testid="interest-agents-growth"' not in page
    assert 'data-testid="request-received"' in page


def test_an_upgrade_whose_payment_fails_says_why_on_the_billing_tab(
    subscribed, trial_tenant, admin, client_for, live
):
    """S18; issue 7, defect 3: the dialog's Immediately on a card that declines keeps the plan and
    tells the admin why, and what makes the change apply."""
    local_gateway().expire_card(subscribed.gateway_subscription_id)
    client = client_for(admin)
    with live():
        response = client.post("/t/acme/billing/plans/agents-scale/change/", {"when": "immediately"})
    assert response.status_code == 302
    page = text(client.get(response["Location"]))
    assert "The payment for Scale did not go through, so you are still on Growth." in page
    assert "Update your payment method (Manage): Scale applies as soon as it is paid" in page
    assert live_sub(trial_tenant).plan.code == "agents-growth"


def test_a_checkout_the_bank_asks_to_confirm_completes_once_confirmed_on_the_page(
    debug, trial_tenant, admin, client_for, live
):
    """SCA at checkout: the hosted page shows the bank's challenge; nothing is created until the
    customer confirms, then the payment goes through and the return applies it."""
    client = client_for(admin)
    checkout_url = client.post("/t/acme/billing/plans/agents-growth/subscribe/")["Location"]

    challenge = client.post(checkout_url, {"action": "pay_3ds"})
    assert challenge.status_code == 200
    assert "Your bank asks you to confirm this payment (3D Secure)." in text(challenge)
    assert LocalGatewayObject.objects.filter(object_type="subscription").count() == 0

    with live():
        confirmed = client.post(checkout_url, {"action": "confirm"})
    assert confirmed.status_code == 302
    assert badge(client.get(confirmed["Location"])) == "Active subscription"


def test_the_change_dialog_without_a_when_says_to_choose_one_and_changes_nothing(
    subscribed, admin, client_for
):
    """S18: a missing or unknown `when` was refused with no words (422, or 200 over htmx)."""
    client = client_for(admin)
    for data, htmx in (({}, False), ({"when": "bogus"}, False), ({}, True), ({"when": "bogus"}, True)):
        headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
        response = client.post("/t/acme/billing/plans/agents-scale/change/", data, **headers)
        assert response.status_code == (200 if htmx else 422)
        assert re.search(r'data-testid="change-error">Choose when the change applies\.<', text(response))
    sub = live_sub(subscribed.tenant)
    assert (sub.plan.code, ScheduledChange.objects.count()) == ("agents-growth", 0)


def test_a_lead_message_over_2000_characters_is_refused_whole(trial_tenant, admin, client_for):
    """S16: the message used to be dropped (stored empty) while the page said "Request received"."""
    client = client_for(admin)
    url = "/t/acme/billing/plans/agents-enterprise/contact/"
    too_long = "x" * 2001
    partial = client.post(url, {"message": too_long}, HTTP_HX_REQUEST="true")
    assert (
        'data-testid="plan-refused">Your message is too long: at most 2,000 characters. Nothing was sent.<'
        in (text(partial))
    )
    assert "Request received" not in text(partial)
    page = client.post(url, {"message": too_long}, follow=True)
    assert "Your message is too long: at most 2,000 characters. Nothing was sent." in text(page)
    assert Lead.objects.count() == 0
    client.post(url, {"message": "y" * 2000})
    assert Lead.objects.get().message == "y" * 2000


def test_the_plain_subscribe_for_each_ai_credits_plan_says_what_its_card_offers(
    subscribed, admin, client_for
):
    """C09, C10, C07: AI Free cannot be bought, AI Plus is subscribed with Subscribe Now and the
    security code, AI Ultra through Speak with Specialist. The plain Subscribe used to point AI Free
    and AI Ultra to a Subscribe Now button they do not have."""
    client = client_for(admin)
    said = {}
    for code in ("credits-free", "credits-plus", "credits-ultra"):
        page = client.post(f"/t/acme/billing/plans/{code}/subscribe/", follow=True)
        said[code] = re.search(r'class="flash error"[^>]*><span>([^<]+)<', page.content.decode()).group(1)
    assert said["credits-free"] == "You are already on AI Free."  # the card's words (Current plan)
    assert said["credits-plus"] == (
        "Subscribe to AI Plus with Subscribe Now on the AI Credits page: it asks for the security code "
        "emailed to you."
    )
    # The card's own words for a contact-sales plan (its button is Speak with Specialist).
    assert said["credits-ultra"] == "AI Ultra is contracted through our sales team."
    assert not CheckoutSession.objects.filter(plan__product__code="ai_credits").exists()
