"""The Marketplace, the AI Credits page, AI Statistics (and its CSV), the sidebar's quick access and
the Overview tile: what each persona sees, the three ways in (C02 to C04), exact figures, and
query counts that do not grow with the rows."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client

from credits import services
from credits.factories import grant
from credits.models import Source
from credits.tests.conftest import START
from credits.tests.helpers import consume
from plans.models import Subscription

pytestmark = pytest.mark.django_db

PAGES = {
    "marketplace": "/t/acme/marketplace/",
    "ai_credits": "/t/acme/marketplace/ai-credits/",
    "statistics": "/t/acme/statistics/ai-credits/",
    "csv": "/t/acme/statistics/ai-credits/export.csv",
}


def text(response) -> str:
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return body.decode()


def shown(response, name: str) -> str:
    """The text of the element carrying data-testid=name (tags stripped, spaces collapsed)."""
    match = re.search(
        rf'data-testid="{name}"[^>]*>(.*?)</(?:dd|h2|div|span|strong|td|a)>', text(response), re.S
    )
    assert match, f"no {name}"
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(1)).split())


def sidebar(response) -> list[str]:
    nav = re.search(r'<nav class="sidebar".*?</nav>', text(response), re.S)
    return re.findall(r'<li><a href="[^"]*"[^>]*>([^<]+)</a></li>', nav.group(0)) if nav else []


@pytest.fixture
def used(plus):
    """Acme on AI Plus: 2,000 plan credits and an extra pack, some of it used by two clients."""
    grant(plus, 2000, source=Source.PLAN_RENEWAL, days=30)
    grant(plus, 500, source=Source.EXTRA_PACK, days=20)
    consume(plus, "a", quantity=3, client_id="helpdesk")
    consume(plus, "b", feature="ai_review", quantity=3, client_id="reviews-bot")
    consume(plus, "c", feature="ai_review", quantity=7, client_id="helpdesk")
    return plus


# --- who sees what --------------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["admin", "member", "finance"])
def test_every_role_sees_the_credit_pages(used, persona, request, client_for):
    client = client_for(request.getfixturevalue(persona))
    for url in PAGES.values():
        assert client.get(url).status_code == 200, url


def test_an_outsider_gets_404_and_an_anonymous_visitor_the_login_page(used, outsider, client_for):
    for url in PAGES.values():
        assert client_for(outsider).get(url).status_code == 404
        response = Client().get(url)
        assert (response.status_code, response["Location"].split("?")[0]) == (302, "/accounts/login/")


# --- C02: the Marketplace banner --------------------------------------------------------------------


@pytest.mark.parametrize("state", ["no credits", "credits", "plan ended"])
def test_c02_the_marketplace_always_shows_the_ai_credits_banner(tenant, member, client_for, clock, state):
    if state != "no credits":
        from credits.factories import on_plus

        on_plus(tenant)
        grant(tenant, 12.5)
    if state == "plan ended":
        Subscription.objects.filter(tenant=tenant).update(state="expired")
    response = client_for(member).get(PAGES["marketplace"])
    assert 'data-testid="ai-credits-banner"' in text(response)
    assert '<a class="button" href="/t/acme/marketplace/ai-credits/" data-testid="open-ai-credits">' in text(
        response
    )
    if state == "no credits":
        assert 'data-testid="banner-balance"' not in text(response)
    else:
        assert shown(response, "banner-balance") == "12.5 credits"


# --- C03: the sidebar quick access ----------------------------------------------------------------


def test_c03_the_sidebar_quick_access_appears_at_80_percent_of_the_period_used(
    plus, member, client_for, settings
):
    settings.CREDITS_LOW_BALANCE = 10
    grant(plus, 100, source=Source.PLAN_RENEWAL)
    client = client_for(member)
    consume(plus, "a", quantity=79)
    assert "AI Credits" not in sidebar(client.get("/t/acme/"))
    consume(plus, "b", quantity=1)
    assert sidebar(client.get("/t/acme/")) == [
        "Overview",
        "Billing",
        "Plans &amp; Licenses",  # the sidebar's HTML, as the helper reads it
        "Sessions",
        "Agents",
        "Marketplace",
        "AI Credits",
        "AI Statistics",
    ]


def test_c03_the_quick_access_appears_when_the_balance_is_under_the_setting(
    plus, admin, client_for, settings
):
    settings.CREDITS_LOW_BALANCE = 10
    grant(plus, 10, source=Source.STAFF_ADJUSTMENT, days=None)
    client = client_for(admin)
    assert "AI Credits" not in sidebar(client.get("/t/acme/"))
    consume(plus, "a", feature="ai_review", quantity=1)  # 9.9 left
    assert "AI Credits" in sidebar(client.get("/t/acme/"))


def test_c03_the_quick_access_counts_credits_held_by_open_holds_as_unavailable(
    plus, admin, client_for, settings, clock
):
    """C03 on the available credit (balance - open holds): 100 staff credits with 95 held leave 5
    available, under the setting of 10, though nothing is consumed; the hold's expiry frees them."""
    settings.CREDITS_LOW_BALANCE = 10
    grant(plus, 100, source=Source.STAFF_ADJUSTMENT, days=None)
    client = client_for(admin)
    assert "AI Credits" not in sidebar(client.get("/t/acme/"))
    services.credits_hold(tenant=plus, idempotency_key="h", amount=95_000, ttl_seconds=600)
    assert "AI Credits" in sidebar(client.get("/t/acme/"))
    clock.move_to(START + timedelta(seconds=600))  # the hold has lapsed (even before the sweeper)
    assert "AI Credits" not in sidebar(client.get("/t/acme/"))


def test_c03_no_quick_access_for_a_tenant_that_never_had_credits(tenant, admin, client_for):
    assert "AI Credits" not in sidebar(client_for(admin).get("/t/acme/"))


def test_c03_the_quick_access_appears_once_the_credits_expired(plus, admin, client_for, clock):
    grant(plus, 50, days=90)
    assert "AI Credits" not in sidebar(client_for(admin).get("/t/acme/"))
    clock.move_to(START + timedelta(days=90))
    assert "AI Credits" in sidebar(client_for(admin).get("/t/acme/"))


# --- C04: AI Statistics -----------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["admin", "member", "finance"])
def test_c04_ai_statistics_always_leads_to_the_purchase_page(tenant, persona, request, client_for):
    """Even with no plan and no credits at all."""
    response = client_for(request.getfixturevalue(persona)).get(PAGES["statistics"])
    assert 'data-testid="buy-credits-link"' in text(response)
    assert '<a class="button" href="/t/acme/marketplace/ai-credits/">Go to AI Credits</a>' in text(response)


def test_ai_statistics_shows_consumption_per_feature_balance_sources_and_top_clients(
    used, admin, client_for, clock
):
    clock.move_to(START + timedelta(days=1))
    consume(used, "d", quantity=2, client_id="reviews-bot")
    services.credits_refund(tenant=used, idempotency_key="a")  # refunded today: net of refunds per day
    response = client_for(admin).get(PAGES["statistics"] + "?days=7")
    page = text(response)
    assert shown(response, "balance") == "2,497 credits"
    assert shown(response, "range-total") == "3 credits"
    chart = re.search(r'<script id="usage-data" type="application/json">(.*?)</script>', page).group(1)
    import json

    data = json.loads(chart)
    assert data["labels"] == ["27 Apr", "28 Apr", "29 Apr", "30 Apr", "1 May", "2 May", "3 May"]
    assert data["datasets"] == [
        {"label": "AI Reviewer review", "data": ["0", "0", "0", "0", "0", "1", "0"]},
        {"label": "Smart Response", "data": ["0", "0", "0", "0", "0", "3", "-1"]},
    ]
    grants_table = re.search(r'data-testid="grants-table">(.*?)</table>', page, re.S).group(1)
    rows = [
        " ".join(re.sub(r"<[^>]+>", " ", r).split())
        for r in re.findall(r"<tr>(.*?)</tr>", grants_table, re.S)
    ][1:]
    assert rows == [
        "Plan renewal 1,997 credits of 2,000 credits 1 Jun 2022",
        "Extra pack 500 credits of 500 credits 22 May 2022",
    ]
    clients_table = re.search(r'data-testid="clients-table">(.*?)</table>', page, re.S).group(1)
    rows = [
        " ".join(re.sub(r"<[^>]+>", " ", r).split())
        for r in re.findall(r"<tr>(.*?)</tr>", clients_table, re.S)
    ][1:]
    assert rows == ["reviews-bot 2 2.3 credits", "helpdesk 2 0.7 credits"]


def test_ai_statistics_csv_export_has_every_consumption_of_the_range(used, finance, client_for, clock):
    clock.move_to(START + timedelta(hours=2))
    services.credits_refund(tenant=used, idempotency_key="b")
    response = client_for(finance).get(PAGES["csv"] + "?days=7")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert (
        response["Content-Disposition"]
        == 'attachment; filename="ai-credits-acme-2022-04-26-to-2022-05-02.csv"'
    )
    assert text(response).splitlines() == [
        "time (UTC),feature,quantity,credits,refunded credits,client id,idempotency key,by",
        "2022-05-02 10:00:00,Smart Response,3,3,0,helpdesk,a,system",
        "2022-05-02 10:00:00,AI Reviewer review,3,0.3,0.3,reviews-bot,b,system",
        "2022-05-02 10:00:00,AI Reviewer review,7,0.7,0,helpdesk,c,system",
    ]


def test_an_unknown_range_falls_back_to_30_days(used, admin, client_for):
    response = client_for(admin).get(PAGES["statistics"] + "?days=9999")
    assert '<a href="?days=30" aria-current="page">30 days</a>' in text(response)


# --- the AI Credits page ---------------------------------------------------------------------------


def test_the_ai_credits_page_shows_the_plans_the_current_one_the_balance_renewal_and_the_pack(
    used, member, client_for
):
    """C01: the AI Credits module of the Marketplace, where the plans are seen, subscribed to and managed."""
    response = client_for(member).get(PAGES["ai_credits"])
    page = text(response)
    assert re.findall(r'data-testid="plan-(credits-[a-z]+)"', page) == [
        "credits-free",
        "credits-plus",
        "credits-ultra",
    ]
    assert page.count('data-testid="current-plan"') == 1
    assert re.search(r'data-testid="plan-credits-plus">.*?data-testid="current-plan"', page, re.S)
    assert "<li>50 credits for 3 months</li>" in page
    assert "<li>2,000 credits included</li><li>Automatic monthly renewal</li>" in page
    assert (shown(response, "plan-name"), shown(response, "badge")) == ("AI Plus", "Active subscription")
    assert (shown(response, "balance"), shown(response, "available")) == ("2,496 credits", "2,496 credits")
    assert shown(response, "period-used") == "4 credits of 2,000 credits (&lt;1%)"  # not a misleading 0%
    assert shown(response, "next-renewal") == "1 Jun 2022"
    assert (shown(response, "extra-pack"), shown(response, "extra-pack-expires")) == (
        "500 credits",
        "22 May 2022",
    )
    assert (shown(response, "cost-smart_response"), shown(response, "cost-ai_review")) == (
        "1 credit",
        "0.1 credits",
    )
    assert "contact the Customer Success team" in page  # C20


def test_c05_on_ai_free_the_page_shows_when_the_free_plan_and_its_credits_end(
    tenant, admin, client_for, clock
):
    from plans.factories import SubscriptionFactory, plan

    ends = START + timedelta(days=90)
    free = plan("credits-free")
    SubscriptionFactory(
        tenant=tenant, plan=free, gateway_subscription_id="", current_period_end=ends, ends_at=ends
    )
    services.credits_grant_plan_period(
        tenant=tenant, plan=free, period_start=START, period_end=ends, reference="subscription:free"
    )
    response = client_for(admin).get(PAGES["ai_credits"])
    assert (shown(response, "plan-name"), shown(response, "balance")) == ("AI Free", "50 credits")
    assert shown(response, "valid-until") == "31 Jul 2022"
    assert shown(response, "period-used") == "0 credits of 50 credits (0%)"
    assert 'data-testid="next-renewal"' not in text(response)
    assert re.search(r'data-testid="plan-credits-free">.*?data-testid="current-plan"', text(response), re.S)


def test_the_ai_credits_page_shows_a_held_amount_and_an_ended_plan(used, admin, client_for):
    services.credits_hold(tenant=used, idempotency_key="h", amount=2500)
    Subscription.objects.filter(tenant=used).update(state="expired")
    response = client_for(admin).get(PAGES["ai_credits"])
    assert shown(response, "held") == "2.5 credits"
    assert shown(response, "badge") == "Expired subscription"
    assert "Your subscription has ended. Please upgrade your plan to continue." in shown(response, "refusal")
    assert 'data-testid="current-plan"' not in text(response)


# --- the Overview tile ------------------------------------------------------------------------------


def test_the_overview_tile_shows_the_balance_and_the_period(used, finance, client_for):
    response = client_for(finance).get("/t/acme/")
    assert shown(response, "credits-tile-balance") == "2,496 credits"
    assert "4 credits of 2,000 credits used this period (&lt;1%)" in text(response)


def test_the_overview_tile_shows_what_is_available_as_the_ai_credits_page_does(used, finance, client_for):
    """C03, C15: credits held by work in progress are not available; the tile says so as the AI
    Credits page does (it showed the balance, which held credits cannot be spent from)."""
    services.credits_hold(tenant=used, idempotency_key="h", amount=2500)
    response = client_for(finance).get("/t/acme/")
    assert shown(response, "credits-tile-balance") == "2,493.5 credits"
    assert shown(response, "credits-tile-held") == "2.5 credits"
    assert "reserved by work in progress, of a balance of 2,496 credits" in text(response)


def test_no_credits_tile_for_a_tenant_without_credits(tenant, admin, client_for):
    assert 'data-testid="tile-credits"' not in text(client_for(admin).get("/t/acme/"))


# --- query counts ---------------------------------------------------------------------------------

QUERIES = {"marketplace": 7, "ai_credits": 12, "statistics": 11, "csv": 5}


@pytest.mark.parametrize("page", sorted(QUERIES))
def test_page_queries_are_pinned_and_do_not_grow_with_rows(
    used, admin, client_for, django_assert_num_queries, page
):
    client = client_for(admin)
    client.get(PAGES[page])  # the session's first write is not the page's cost
    with django_assert_num_queries(QUERIES[page]):
        text(client.get(PAGES[page]))
    for i in range(30):
        grant(used, 1, source=Source.STAFF_ADJUSTMENT, days=10 + i)
        consume(used, f"more-{i}", feature="ai_review", quantity=1, client_id=f"client-{i}")
        services.credits_hold(tenant=used, idempotency_key=f"hold-{i}", amount=100)
    with django_assert_num_queries(QUERIES[page]):
        text(client.get(PAGES[page]))


# --- who sees which button (the plan-offer rule, plans.offers) ----------------------------------------


def _on_free(tenant, *, expired: bool = False):
    from plans.factories import SubscriptionFactory, plan

    ends = START + timedelta(days=90)
    return SubscriptionFactory(
        tenant=tenant,
        plan=plan("credits-free"),
        gateway_subscription_id="",
        current_period_end=ends,
        ends_at=ends,
        state="expired" if expired else "active",
    )


def _on_trial(tenant):
    from plans.factories import SubscriptionFactory, plan

    ends = START + timedelta(days=14)
    SubscriptionFactory(
        tenant=tenant,
        plan=plan("agents-trial"),
        gateway_subscription_id="",
        state="trialing",
        trial_ends_at=ends,
        current_period_end=ends,
    )


def offers(response) -> dict[str, tuple[str, str, str]]:
    """plan code → (the card's action, its button's text, its sentence); the second action beside it
    (an admin's Register interest, C18) is left out: `interest_beside` tells it."""
    found = {}
    for code, action, body in re.findall(
        r'data-testid="offer-([a-z-]+)" data-action="([a-z_]+)">(.*?)</div>\s*</article>',
        text(response),
        re.S,
    ):
        body = body.split('<div id="plan-interest-')[0]
        button = re.search(r"<button[^>]*>([^<]*)</button>", body) or re.search(
            r'<a class="button"[^>]*>([^<]*)</a>', body
        )
        reason = re.search(r'data-testid="reason-[a-z-]+">([^<]*)<', body)
        found[code] = (action, button.group(1) if button else "", reason.group(1) if reason else "")
    return found


def test_c09_c16_c17_an_administrator_on_ai_free_can_subscribe_now_to_plus(tenant, admin, client_for, clock):
    """C09, C16, C17, and C18 (every profile may register interest in Plus: beside Subscribe Now)."""
    _on_free(tenant)
    response = client_for(admin).get(PAGES["ai_credits"])
    assert offers(response) == {
        "credits-free": ("current", "", ""),
        "credits-plus": ("subscribe", "Subscribe Now", ""),
        "credits-ultra": ("contact", "Speak with Specialist", ""),
    }
    assert 'href="/t/acme/ai-credits/plans/credits-plus/subscribe/"' in text(response)
    assert 'data-testid="interest-credits-plus">Register interest</button>' in text(response)


@pytest.mark.parametrize("persona", ["member", "finance"])
def test_c18_c21_c24_a_non_administrator_may_only_register_interest_and_is_told_to_ask(
    tenant, persona, request, client_for, clock
):
    _on_free(tenant)
    response = client_for(request.getfixturevalue(persona)).get(PAGES["ai_credits"])
    assert offers(response) == {
        "credits-free": ("current", "", ""),
        "credits-plus": ("interest", "Register interest", "Ask your account administrator to subscribe."),
        "credits-ultra": ("contact", "Speak with Specialist", ""),
    }
    assert "subscribe-credits-plus" not in text(response)


def test_c19_on_a_free_trial_even_an_administrator_can_only_register_interest(
    tenant, admin, client_for, clock
):
    _on_free(tenant)
    _on_trial(tenant)
    action, button, reason = offers(client_for(admin).get(PAGES["ai_credits"]))["credits-plus"]
    assert (action, button) == ("interest", "Register interest")
    assert reason == "During the free trial you can only register interest in AI Plus."


def test_c22_subscribe_now_still_shows_after_ai_free_expired(tenant, admin, client_for, clock):
    _on_free(tenant, expired=True)
    found = offers(client_for(admin).get(PAGES["ai_credits"]))
    assert found["credits-plus"] == ("subscribe", "Subscribe Now", "")
    assert found["credits-free"][0] != "current"


def test_c24_on_plus_the_card_is_current_and_ultra_is_contracted_through_sales(used, admin, client_for):
    found = offers(client_for(admin).get(PAGES["ai_credits"]))
    assert found["credits-plus"][0] == "current"
    assert found["credits-ultra"] == ("contact", "Speak with Specialist", "")
    assert found["credits-free"][1] == ""


def test_c16_speak_with_specialist_records_a_lead_and_the_card_says_request_received(
    tenant, member, client_for, clock
):
    from plans.models import Lead

    _on_free(tenant)
    client = client_for(member)
    response = client.post("/t/acme/billing/plans/credits-ultra/contact/", HTTP_HX_REQUEST="true")
    assert 'data-testid="request-received"' in text(response)
    assert list(Lead.objects.values_list("plan__code", "kind")) == [("credits-ultra", "specialist")]
    assert offers(client.get(PAGES["ai_credits"]))["credits-ultra"][0] == "requested"


@pytest.mark.parametrize(
    ("plan_code", "testid"), [("credits-plus", "interest"), ("credits-ultra", "contact")]
)
def test_c16_c18_without_javascript_register_interest_and_speak_with_specialist_return_to_ai_credits(
    tenant, member, client_for, clock, plan_code, testid
):
    """The plain form (no htmx) carries the page it was posted from: back to AI Credits with the
    message, not to the Billing tab."""
    from plans.models import Lead

    _on_free(tenant)
    client = client_for(member)
    page = text(client.get(PAGES["ai_credits"]))
    form = re.search(
        rf'<form method="post" action="([^"]+)"[^>]*>(?:(?!</form>).)*data-testid="{testid}-{plan_code}"',
        page,
        re.S,
    )
    assert form is not None
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form.group(0)))
    assert fields["next"] == PAGES["ai_credits"]

    answer = client.post(form.group(1), fields)

    assert (answer.status_code, answer["Location"]) == (302, PAGES["ai_credits"])
    assert Lead.objects.filter(plan__code=plan_code).count() == 1
    assert "Request received. Our team will get in touch." in text(client.get(answer["Location"]))


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/t/acme/",
        "//evil.example/t/acme/",
        "/\\evil.example/",
        "/t/other/marketplace/ai-credits/",
        "/accounts/logout/",
        "javascript:alert(1)",
        # Dot segments leave the tenant's prefix once the browser resolves them.
        "/t/acme/../other/marketplace/ai-credits/",
        "/t/acme/../../accounts/logout/",
        "/t/acme/%2e%2e/other/marketplace/ai-credits/",
        "/t/acme/%2E%2E/%2e%2e/admin/",
        "/t/acme/./../other/",
    ],
)
def test_c16_the_return_address_is_never_an_open_redirect(tenant, member, client_for, clock, target):
    """Another site, another tenant's page or any page outside this tenant's: the usual place."""
    _on_free(tenant)
    answer = client_for(member).post("/t/acme/billing/plans/credits-ultra/contact/", {"next": target})
    assert (answer.status_code, answer["Location"]) == (302, "/t/acme/billing/?product=ai_credits")


def test_the_csv_export_keeps_a_client_given_formula_as_text(plus, finance, client_for):
    """A client id or key comes from the API's caller: opened in a spreadsheet it must not run."""
    grant(plus, 10, source=Source.PLAN_RENEWAL, days=30)
    consume(plus, "=HYPERLINK(1)", quantity=1, client_id="@evil")
    lines = text(client_for(finance).get(PAGES["csv"])).splitlines()
    assert lines[1].endswith(",Smart Response,1,1,0,'@evil,'=HYPERLINK(1),system")


def test_c18_c24_an_admin_on_ai_free_may_subscribe_to_plus_or_register_interest(
    tenant, admin, client_for, clock
):
    """C18, C24 (FAQ 1: all profiles can register interest in both the Plus and Ultra plans): on AI
    Free the admin's Plus card offers Subscribe Now and Register interest; the interest is recorded
    once and the card then says Request received beside Subscribe Now (C09, C17 unchanged)."""
    from plans.factories import SubscriptionFactory, plan
    from plans.models import Lead

    ends = START + timedelta(days=90)
    SubscriptionFactory(
        tenant=tenant,
        plan=plan("credits-free"),
        gateway_subscription_id="",
        current_period_end=ends,
        ends_at=ends,
    )
    browser = client_for(admin)
    card = text(browser.get(PAGES["ai_credits"]))
    plus = card[
        card.index('data-testid="plan-credits-plus"') : card.index('data-testid="plan-credits-ultra"')
    ]
    assert 'data-testid="subscribe-credits-plus"' in plus
    assert "Subscribe Now" in plus
    assert (
        '<button type="submit" class="secondary" data-testid="interest-credits-plus">Register interest</button>'
        in plus
    )
    assert 'hx-target="#plan-interest-credits-plus"' in plus

    answer = browser.post(
        "/t/acme/billing/plans/credits-plus/contact/", {"next": PAGES["ai_credits"]}, HTTP_HX_REQUEST="true"
    )
    assert answer.status_code == 200
    assert "Request received" in answer.content.decode()
    assert list(Lead.objects.filter(tenant=tenant).values_list("plan__code", "kind")) == [
        ("credits-plus", "interest")
    ]
    card = text(browser.get(PAGES["ai_credits"]))
    plus = card[
        card.index('data-testid="plan-credits-plus"') : card.index('data-testid="plan-credits-ultra"')
    ]
    assert 'data-testid="subscribe-credits-plus"' in plus
    assert 'data-testid="request-received"' in plus
    assert 'data-testid="interest-credits-plus"' not in plus


def test_c18_an_admin_on_plus_is_not_offered_interest_in_plus(used, admin, client_for):
    """Plus is the current plan: nothing to register interest in."""
    card = text(client_for(admin).get(PAGES["ai_credits"]))
    plus = card[
        card.index('data-testid="plan-credits-plus"') : card.index('data-testid="plan-credits-ultra"')
    ]
    assert "plan-interest-credits-plus" not in plus
    assert 'data-testid="current-plan"' in plus
