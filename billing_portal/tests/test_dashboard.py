"""The Overview is the tenant's dashboard (issue 6, part 5): the alerts that need action first (S10,
S26, S27, S29, S33, S34), one tile per product the tenant uses with its plan, badge (S30) and key date,
and the next invoice for admins and finance. Its query count does not grow with products or invoices."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from billing_portal.factories import InvoiceFactory
from plans import services as plan_services
from plans.factories import ScheduledChangeFactory, SubscriptionFactory, plan
from plans.models import Subscription
from plans.selectors import MSG_ENDED, MSG_OVERDUE
from sessions_billing.models import UsagePeriod
from tenants.factories import MembershipFactory, TenantFactory, UserFactory
from tenants.models import Role

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
OVERVIEW = "/t/acme/"
State = Subscription.State


@pytest.fixture(autouse=True)
def _frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def overview(client) -> str:
    response = client.get(OVERVIEW)
    assert response.status_code == 200
    return response.content.decode()


def block(page: str, testid: str) -> str:
    """The HTML of the element with this data-testid, to its matching closing tag."""
    start = re.search(rf'<(\w+)[^>]*data-testid="{testid}"', page)
    assert start, f"no {testid} on the page"
    tag, depth = start.group(1), 0
    for found in re.finditer(rf"<(/?){tag}\b[^>]*>", page[start.start() :]):
        depth += -1 if found.group(1) else 1
        if depth == 0:
            return page[start.start() : start.start() + found.end()]
    raise AssertionError(f"{testid} is not closed")


def squash(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


def agents(tenant, **fields):
    return SubscriptionFactory(tenant=tenant, plan=plan("agents-growth"), **fields)


# --- alerts ----------------------------------------------------------------------------------------


def test_nothing_to_alert_when_all_is_well(tenant, admin, client_for):
    agents(tenant, current_period_start=NOW - timedelta(days=5), current_period_end=NOW + timedelta(days=25))
    page = overview(client_for(admin))
    assert 'data-testid="tile-billing-alerts"' not in page
    assert 'data-testid="tile-product-ai_agents"' in page


def test_payment_issue_with_the_grace_date_and_manage_for_admins(tenant, admin, member, client_for):
    """S26, S27: the Payment issue alert says until when access continues; admins get Manage."""
    agents(tenant, state=State.PAST_DUE, payment_failed_at=NOW, grace_until=NOW + timedelta(days=7))
    alert = block(overview(client_for(admin)), "alert-payment_issue")
    assert squash(alert).startswith("Payment issue · AI Agents · Growth Payment pending")
    assert 'data-testid="alert-grace-until">6 Dec 2026</strong>' in alert
    assert "Click Manage and update your payment details." in squash(alert)
    assert re.search(
        r'<form method="post" action="/t/acme/billing/manage/" target="_blank">.*'
        r'<input type="hidden" name="product" value="ai_agents"><button type="submit" class="small" '
        r'data-testid="alert-manage">Manage</button></form>',
        alert,
        re.S,
    )
    as_member = block(overview(client_for(member)), "alert-payment_issue")
    assert "alert-manage" not in as_member
    assert "Ask your administrator to update the payment details." in squash(as_member)


def test_payment_overdue_uses_the_spec_message(tenant, admin, client_for):
    """S34, for a suspended subscription and for one past its grace before the sweeper ran."""
    agents(
        tenant,
        state=State.SUSPENDED,
        payment_failed_at=NOW - timedelta(days=8),
        grace_until=NOW - timedelta(days=1),
    )
    alert = block(overview(client_for(admin)), "alert-overdue")
    assert 'class="banner danger alert-row" role="alert"' in alert
    assert MSG_OVERDUE in alert
    assert "Click Manage and settle the failed payment in the billing portal." in squash(alert)
    assert 'data-testid="alert-manage"' in alert


def test_trial_ending_soon_with_days_and_sessions_left(tenant, member, client_for):
    """S09, S10: two days before the end the badge and the alert say Trial ending soon; the alert's
    sessions left are the trial's 50 less the 41 used, as the usage tile and the Billing tab say."""
    with time_machine.travel(NOW - timedelta(days=12), tick=False):
        plan_services.tenant_provision(tenant=tenant)
        sub = Subscription.objects.get(tenant=tenant, product__code="ai_agents")
        UsagePeriod.objects.create(
            tenant=tenant,
            period_start=sub.current_period_start,
            period_end=sub.current_period_end,
            billable_sessions=41,
        )
    page = overview(client_for(member))
    alert = block(page, "alert-trial_ending")
    assert 'data-testid="alert-trial-days">2 days</strong>' in alert
    assert 'data-testid="alert-trial-sessions">9 sessions</strong>' in alert
    assert "Trial: 9 sessions and 2 days left" in squash(block(page, "usage-tile"))
    assert (
        '<a class="button small secondary" href="/t/acme/billing/?product=ai_agents" data-testid="alert-plans">See the plans</a>'
        in alert
    )
    tile = block(page, "tile-product-ai_agents")
    assert 'data-testid="product-badge">Trial ending soon<' in tile
    assert "2 trial days left · ends 1 Dec 2026" in squash(tile)


def test_expired_subscription_links_to_the_plans(tenant, member, client_for):
    """S33: the spec's words and the way to the plans."""
    agents(tenant, state=State.EXPIRED, ended_at=NOW - timedelta(days=3))
    page = overview(client_for(member))
    alert = block(page, "alert-expired")
    assert MSG_ENDED in alert
    assert 'href="/t/acme/billing/?product=ai_agents" data-testid="alert-plans"' in alert
    tile = block(page, "tile-product-ai_agents")
    assert 'data-testid="product-badge">Expired subscription<' in tile
    assert "Ended 26 Nov 2026" in squash(tile)


def test_canceled_subscription_says_when_it_expires_and_offers_resume_as_billing_does(
    tenant, admin, member, client_for
):
    """S29: Canceled subscription with its expiration date, in the Billing tab's words (Expires on)
    and with its action (Resume, the same form), not "click Manage and renew it"."""
    ends = NOW + timedelta(days=10)
    agents(tenant, state=State.CANCELED, canceled_at=NOW, ends_at=ends, current_period_end=ends)
    page = overview(client_for(admin))
    alert = block(page, "alert-canceled")
    assert 'class="banner info alert-row" role="status"' in alert
    assert 'data-testid="alert-ends-on">9 Dec 2026</strong>' in alert
    assert (
        "Growth expires on 9 Dec 2026 ; paid features stay active until then. To keep it, click Resume ."
        in (squash(alert))
    )
    assert "Manage" not in alert
    assert "renew" not in alert
    assert re.search(
        r'<form method="post" action="/t/acme/billing/resume/">.*<input type="hidden" name="product" '
        r'value="ai_agents"><button type="submit" class="small" data-testid="alert-resume">Resume</button>',
        alert,
    )
    assert "Expires on 9 Dec 2026" in squash(block(page, "tile-product-ai_agents"))
    billing = client_for(admin).get("/t/acme/billing/?product=ai_agents").content.decode()
    assert 'data-testid="expires-on">9 Dec 2026</dd>' in billing
    assert 'data-testid="resume">Resume</button>' in billing

    as_member = block(overview(client_for(member)), "alert-canceled")
    assert "alert-resume" not in as_member
    assert "Ask your account administrator to resume it." in squash(as_member)


def test_alerts_come_first_most_urgent_first(tenant, admin, client_for):
    agents(tenant, state=State.EXPIRED, ended_at=NOW - timedelta(days=3))
    SubscriptionFactory(
        tenant=tenant, plan=plan("credits-plus"), state=State.SUSPENDED, grace_until=NOW - timedelta(days=1)
    )
    page = overview(client_for(admin))
    order = re.findall(
        r'data-testid="(alert-(?:overdue|payment_issue|expired|trial_ending|canceled)|dashboard)"', page
    )
    assert order == ["alert-overdue", "alert-expired", "dashboard"]


# --- product tiles -----------------------------------------------------------------------------------


def test_one_tile_per_product_used_with_plan_badge_and_key_date(tenant, member, client_for):
    agents(tenant, current_period_start=NOW - timedelta(days=5), current_period_end=NOW + timedelta(days=25))
    plan_services.free_plan_start(tenant=tenant, plan=plan("credits-free"))
    page = overview(client_for(member))
    tile = block(page, "tile-product-ai_agents")
    assert '<h2 id="product-ai_agents-title" class="tile-title">Growth</h2>' in tile
    assert 'data-testid="product-badge">Active subscription<' in tile
    assert "Next billing date 24 Dec 2026" in squash(tile)
    assert 'href="/t/acme/billing/?product=ai_agents" data-testid="tile-billing-link"' in tile
    credits = block(page, "tile-product-ai_credits")
    assert "AI Free" in credits
    assert "Valid until 28 Feb 2027" in squash(credits)  # 3 calendar months from 29 Nov 2026 (C05)
    assert 'data-testid="tile-product-helpdesk_ai"' not in page  # never used: no tile


def test_an_upcoming_change_shows_on_the_tile_and_prices_the_next_invoice(tenant, finance, client_for):
    sub = agents(
        tenant, current_period_start=NOW - timedelta(days=5), current_period_end=NOW + timedelta(days=25)
    )
    ScheduledChangeFactory(
        subscription=sub, to_plan=plan("agents-scale"), effective_at=sub.current_period_end
    )
    page = overview(client_for(finance))
    assert "Scale starts on 24 Dec 2026" in squash(block(page, "tile-product-ai_agents"))
    renewal = block(page, "renewal")
    assert squash(renewal) == "$499.00 on 24 Dec 2026 AI Agents · Scale, every month"
    assert 'data-testid="switch-invoice"' not in page  # at the renewal: nothing prorated before it


def test_s18_a_change_on_a_day_within_the_period_says_that_day_is_invoiced(tenant, finance, client_for):
    """An outsider probe: the tile said only the renewal, though a change scheduled for a day within
    the period is prorated and invoiced on that day, before the renewal."""
    sub = agents(
        tenant, current_period_start=NOW - timedelta(days=5), current_period_end=NOW + timedelta(days=25)
    )
    ScheduledChangeFactory(
        subscription=sub, to_plan=plan("agents-scale"), effective_at=NOW + timedelta(days=2)
    )
    page = overview(client_for(finance))
    assert squash(block(page, "switch-invoice")) == (
        "AI Agents · Scale starts on 1 Dec 2026 : the rest of that billing period is prorated and invoiced that day."
    )
    assert squash(block(page, "renewal")) == "$499.00 on 24 Dec 2026 AI Agents · Scale, every month"


# --- the next invoice --------------------------------------------------------------------------------


def test_next_invoice_for_admins_and_finance_with_the_last_invoice(
    tenant, admin, finance, member, client_for
):
    agents(tenant, current_period_start=NOW - timedelta(days=5), current_period_end=NOW + timedelta(days=25))
    InvoiceFactory(tenant=tenant, number="ACME-0001", issued_at=NOW - timedelta(days=35), total=19900)
    last = InvoiceFactory(
        tenant=tenant, number="ACME-0002", issued_at=NOW - timedelta(days=5), subtotal=19900, status="open"
    )
    for user in (admin, finance):
        tile = block(overview(client_for(user)), "tile-next-invoice")
        assert squash(block(tile, "renewal")) == "$199.00 on 24 Dec 2026 AI Agents · Growth, every month"
        assert f'<a href="/t/acme/invoices/{last.pk}/">ACME-0002</a>' in tile
        assert '<span class="badge warning" data-testid="status">Open</span>' in tile
        assert 'href="/t/acme/invoices/" data-testid="tile-invoices-link"' in tile
    assert 'data-testid="tile-next-invoice"' not in overview(client_for(member))


def test_s26_a_plan_whose_payment_failed_renews_once_its_open_invoice_is_paid(tenant, finance, client_for):
    """It has no next billing date while the payment is overdue: the tile says what the renewal
    waits for and until when, not "No renewal is scheduled."."""
    agents(tenant, state=State.PAST_DUE, payment_failed_at=NOW, grace_until=NOW + timedelta(days=7))
    InvoiceFactory(tenant=tenant, number="ACME-0002", issued_at=NOW, subtotal=19900, status="open")
    tile = block(overview(client_for(finance)), "tile-next-invoice")
    assert "No renewal is scheduled." not in tile
    assert squash(block(tile, "renewal-waits")) == (
        "AI Agents · Growth renews once its open invoice is paid, by 6 Dec 2026 ."  # squash spaces tags
    )


def test_s18_a_credit_balance_left_by_a_downgrade_shows_on_the_next_invoice_tile(tenant, finance, client_for):
    """Found by an outsider probe: after a downgrade's $89.77 credit the tile said $49.00 due on the
    renewal with no word of the credit that pays it first (the gateway applies the balance before
    charging the card: https://docs.stripe.com/billing/customer/balance)."""
    agents(tenant, current_period_start=NOW - timedelta(days=5), current_period_end=NOW + timedelta(days=25))
    InvoiceFactory(tenant=tenant, number="ACME-0001", issued_at=NOW - timedelta(days=5), total=19900)
    down = InvoiceFactory(
        tenant=tenant, number="ACME-0002", issued_at=NOW - timedelta(days=1), status="paid", subtotal=-8977,
        total=-8977, amount_due=0, amount_paid=0, amount_remaining=0, starting_balance=0, ending_balance=-8977,
    )  # fmt: skip
    tile = block(overview(client_for(finance)), "tile-next-invoice")
    assert squash(block(tile, "credit-balance")) == (
        "Your credit balance of $89.77 (after invoice ACME-0002) pays the next invoices before your card is charged."
    )
    InvoiceFactory(
        tenant=tenant, number="ACME-0003", issued_at=NOW, status="paid", subtotal=4900, total=4900,
        amount_due=0, amount_paid=0, amount_remaining=0, starting_balance=down.ending_balance, ending_balance=0,
    )  # fmt: skip
    assert 'data-testid="credit-balance"' not in overview(client_for(finance))  # used up


def test_a_draft_newest_invoice_leaves_the_credit_to_the_finalized_one_before_it(tenant, finance, client_for):
    agents(tenant, current_period_start=NOW - timedelta(days=5), current_period_end=NOW + timedelta(days=25))
    InvoiceFactory(
        tenant=tenant, number="ACME-0002", issued_at=NOW - timedelta(days=1), status="paid", subtotal=-8977,
        total=-8977, amount_due=0, amount_paid=0, amount_remaining=0, starting_balance=0, ending_balance=-8977,
    )  # fmt: skip
    InvoiceFactory(
        tenant=tenant, number="", issued_at=NOW, status="draft", starting_balance=0, ending_balance=0
    )
    tile = block(overview(client_for(finance)), "tile-next-invoice")
    assert "$89.77 (after invoice ACME-0002)" in squash(block(tile, "credit-balance"))


def _downgrade_credit(tenant, credit: int, *, number: str = "ACME-0002", currency: str = "usd"):
    """A downgrade's invoice that left `credit` minor units on the customer's credit balance."""
    return InvoiceFactory(
        tenant=tenant, number=number, issued_at=NOW - timedelta(days=1), status="paid", currency=currency,
        subtotal=-credit, total=-credit, amount_due=0, amount_paid=0, amount_remaining=0,
        starting_balance=0, ending_balance=-credit,
    )  # fmt: skip


def test_the_renewal_says_what_is_due_after_the_credit_balance(tenant, admin, finance, member, client_for):
    """Found by a finance tester on helix: after a downgrade the tile said "Next invoice $49.00 on
    6 Dec" beside "Your credit balance of $89.98 … pays the next invoices": the gateway applies the
    balance before charging the card, so $0.00 of it is due (Stripe's upcoming invoice: its total,
    and amount_due after the customer balance). Failed before the fix: the renewal showed $49.00 only."""
    SubscriptionFactory(
        tenant=tenant, plan=plan("agents-starter"), current_period_start=NOW - timedelta(days=5),
        current_period_end=NOW + timedelta(days=25),
    )  # fmt: skip
    _downgrade_credit(tenant, 8998)
    for user in (admin, finance):
        tile = block(overview(client_for(user)), "tile-next-invoice")
        assert squash(block(tile, "renewal")) == (
            "$49.00 on 24 Dec 2026 · $0.00 due after your credit balance AI Agents · Starter, every month"
        )
        assert squash(block(tile, "credit-balance")) == (
            "Your credit balance of $89.98 (after invoice ACME-0002) pays the next invoices before your "
            "card is charged."
        )
    assert 'data-testid="tile-next-invoice"' not in overview(client_for(member))  # as before: no tile


def test_a_credit_smaller_than_the_renewal_leaves_the_rest_due(tenant, finance, client_for):
    agents(tenant, current_period_start=NOW - timedelta(days=5), current_period_end=NOW + timedelta(days=25))
    _downgrade_credit(tenant, 2000)
    renewal = block(overview(client_for(finance)), "renewal")
    assert squash(block(renewal, "renewal-due")) == "$179.00"  # $199.00 less $20.00 of credit
    assert "$199.00 on 24 Dec 2026 · $179.00 due after your credit balance" in squash(renewal)


def test_the_credit_pays_the_sooner_renewal_first_then_what_is_left_of_the_next(tenant, finance, client_for):
    """Two subscriptions renew: the balance is applied to each invoice as it is finalized, soonest
    first, until it is used up ($150.00: the Plus invoice of $99.00 on 9 Dec, then $51.00 of Growth's
    $199.00 on 24 Dec)."""
    agents(tenant, current_period_start=NOW - timedelta(days=5), current_period_end=NOW + timedelta(days=25))
    SubscriptionFactory(
        tenant=tenant, plan=plan("credits-plus"), current_period_start=NOW - timedelta(days=20),
        current_period_end=NOW + timedelta(days=10),
    )  # fmt: skip
    _downgrade_credit(tenant, 15000)
    page = overview(client_for(finance))
    renewals = [
        squash(found) for found in re.findall(r'data-testid="renewal">(.*?)</div>\s*</div>', page, re.S)
    ]
    assert [r.split(" · $")[1].split(" due")[0] for r in renewals] == ["0.00", "148.00"]
    assert renewals[0].startswith("$99.00 on 9 Dec 2026 · $0.00 due after your credit balance")
    assert renewals[1].startswith("$199.00 on 24 Dec 2026 · $148.00 due after your credit balance")


def test_a_credit_in_another_currency_pays_no_renewal(tenant, finance, client_for):
    """The gateway applies a balance only to invoices in its currency."""
    agents(tenant, current_period_start=NOW - timedelta(days=5), current_period_end=NOW + timedelta(days=25))
    _downgrade_credit(tenant, 8998, currency="eur")
    renewal = block(overview(client_for(finance)), "renewal")
    assert 'data-testid="renewal-due"' not in renewal
    assert squash(renewal) == "$199.00 on 24 Dec 2026 AI Agents · Growth, every month"


def test_without_a_credit_balance_the_renewal_reads_as_before(tenant, finance, client_for):
    agents(tenant, current_period_start=NOW - timedelta(days=5), current_period_end=NOW + timedelta(days=25))
    InvoiceFactory(tenant=tenant, number="ACME-0001", issued_at=NOW - timedelta(days=5), total=19900)
    tile = block(overview(client_for(finance)), "tile-next-invoice")
    assert squash(block(tile, "renewal")) == "$199.00 on 24 Dec 2026 AI Agents · Growth, every month"
    assert 'data-testid="credit-balance"' not in tile


def test_a_refunded_last_invoice_says_it_was_refunded_and_what_stayed_paid(
    tenant, admin, finance, member, client_for
):
    """Found by a finance tester on quill: a duplicate subscription's invoice, refunded in full, was
    the tile's "Last invoice · $199.00 Paid" as if it were an ordinary payment (the gateway keeps a
    refunded invoice paid). The tile keeps the newest invoice (what the Invoices list shows first,
    and what finance has to reconcile) and says what was refunded and what stayed paid. Failed
    before the fix: no amount refunded, no net paid."""
    agents(tenant, current_period_start=NOW - timedelta(days=5), current_period_end=NOW + timedelta(days=25))
    InvoiceFactory(tenant=tenant, number="ACME-0001", issued_at=NOW - timedelta(minutes=2), total=4900)
    InvoiceFactory(
        tenant=tenant,
        number="ACME-0002",
        issued_at=NOW - timedelta(minutes=1),
        total=19900,
        amount_refunded=19900,
    )
    for user in (admin, finance):
        last = block(block(overview(client_for(user)), "tile-next-invoice"), "last-invoice")
        assert squash(last) == "Last invoice ACME-0002 · $199.00 Paid Refunded $199.00 · $0.00 net paid"
    assert 'data-testid="tile-next-invoice"' not in overview(client_for(member))


def test_a_partly_refunded_last_invoice_shows_what_stayed_paid(tenant, finance, client_for):
    InvoiceFactory(tenant=tenant, number="ACME-0003", issued_at=NOW, total=19900, amount_refunded=5000)
    last = block(overview(client_for(finance)), "last-invoice")
    assert (
        squash(last) == "Last invoice ACME-0003 · $199.00 Paid Partially refunded $50.00 · $149.00 net paid"
    )


def test_a_last_invoice_without_refunds_reads_as_before(tenant, finance, client_for):
    InvoiceFactory(tenant=tenant, number="ACME-0004", issued_at=NOW, total=19900)
    last = block(overview(client_for(finance)), "last-invoice")
    assert squash(last) == "Last invoice ACME-0004 · $199.00 Paid"


def test_no_next_invoice_tile_without_paid_plans_or_invoices(tenant, admin, client_for):
    plan_services.tenant_provision(tenant=tenant)
    assert 'data-testid="tile-next-invoice"' not in overview(client_for(admin))


def test_without_a_billing_tab_the_tiles_stay_and_the_billing_links_go(settings, tenant, admin, client_for):
    """S03: on a deployment that bills outside the portal, no link or button leads to a 404."""
    settings.BILLING_TAB_ENABLED = False
    agents(tenant, state=State.PAST_DUE, payment_failed_at=NOW, grace_until=NOW + timedelta(days=7))
    page = overview(client_for(admin))
    assert 'data-testid="alert-payment_issue"' in page
    assert 'data-testid="tile-product-ai_agents"' in page
    assert "/billing/" not in page


# --- the query count ---------------------------------------------------------------------------------


def _admin_of(tenant):
    return MembershipFactory(tenant=tenant, role=Role.ADMIN, user=UserFactory()).user


def test_overview_query_count_is_pinned_and_does_not_grow(client_for, django_assert_num_queries):
    """A tenant with one product and none of history costs what one with every product, alerts,
    scheduled changes and fifty invoices costs."""
    small = TenantFactory(name="Small Co", slug="small")
    small_admin = _admin_of(small)
    SubscriptionFactory(tenant=small)

    big = TenantFactory(name="Big Co", slug="big")
    big_admin = _admin_of(big)
    growth = SubscriptionFactory(tenant=big, state=State.PAST_DUE, grace_until=NOW + timedelta(days=3))
    ScheduledChangeFactory(subscription=growth)
    SubscriptionFactory(tenant=big, plan=plan("credits-plus"))
    SubscriptionFactory(
        tenant=big, plan=plan("helpdesk-pro"), state=State.CANCELED, ends_at=NOW + timedelta(days=9)
    )
    for i in range(5):
        SubscriptionFactory(tenant=big, state=State.EXPIRED, ended_at=NOW - timedelta(days=40 * (i + 1)))
    InvoiceFactory.create_batch(50, tenant=big)
    # The newest: refunded, and leaving a credit balance that the renewals' amounts due are read from.
    InvoiceFactory(
        tenant=big, issued_at=NOW + timedelta(minutes=1), amount_refunded=1000, starting_balance=0,
        ending_balance=-5000,
    )  # fmt: skip

    for slug, user in (("small", small_admin), ("big", big_admin)):
        client = client_for(user)
        client.get(f"/t/{slug}/")  # warm the session
        # 12, the sessions usage tile (1) and the AI credits summary (1: the credits tile and the
        # sidebar's quick access share it)
        with django_assert_num_queries(11):
            response = client.get(f"/t/{slug}/")
        assert response.status_code == 200
    # The big tenant's tile drew what the count is about: an amount due after credit, a refund.
    page = response.content.decode()
    assert 'data-testid="renewal-due"' in page
    assert 'data-testid="last-invoice-net-paid"' in page
