"""Every plan-offer link and form on every page that shows plan cards goes somewhere: the Billing tab
of each product, the AI Credits page and Plans & Licenses, for each product's standings and for an
admin and a member. A card's Subscribe on Plans & Licenses once linked to the AI Credits page's
Subscribe Now dialog, which sells AI Credits plans only (a 404 for AI Essentials and AI Pro).
Covers S14, S15, S16, S18 (the Billing tab's cards), C09, C16, C18 (AI Credits), L22 (Plans &
Licenses' upgrade cards)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

from plans import services as plan_services
from plans.factories import SubscriptionFactory, plan
from plans.models import Subscription
from tenants.models import Tenant

pytestmark = pytest.mark.django_db

PAGES = (
    "/t/acme/billing/?product=ai_agents",
    "/t/acme/billing/?product=ai_credits",
    "/t/acme/billing/?product=helpdesk_ai",
    "/t/acme/marketplace/ai-credits/",
    "/t/acme/licenses/",
)


def _paid(code: str) -> Callable[[Tenant], object]:
    return lambda tenant: SubscriptionFactory(tenant=tenant, plan=plan(code))


def _canceled(code: str) -> Callable[[Tenant], object]:
    return lambda tenant: SubscriptionFactory(
        tenant=tenant,
        plan=plan(code),
        state=Subscription.State.CANCELED,
        ends_at=timezone.now() + timedelta(days=30),
    )


STANDINGS: dict[str, Callable[[Tenant], object]] = {
    "no plan": lambda tenant: None,
    "agents trial": lambda tenant: plan_services.trial_start(tenant=tenant, plan=plan("agents-trial")),
    "agents paid": _paid("agents-starter"),
    "agents canceled": _canceled("agents-growth"),
    "ai free": _paid("credits-free"),
    "ai plus": _paid("credits-plus"),
    "helpdesk essentials": _paid("helpdesk-essentials"),
    "helpdesk canceled": _canceled("helpdesk-essentials"),
}

CARD = re.compile(r'data-testid="offer-[\w-]+".*?</article>', re.S)
LINK = re.compile(r'<a [^>]*?href="([^"]+)"')
FORM = re.compile(r'<form [^>]*?method="post" action="([^"]+)"[^>]*>(.*?)</form>', re.S)
HIDDEN = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)"')


def offer_targets(body: str) -> tuple[set[str], set[tuple[str, tuple[tuple[str, str], ...]]]]:
    """The links (GET) and the forms (POST, with their hidden fields) on the page's plan cards."""
    links, forms = set(), set()
    for card in CARD.findall(body):
        links.update(LINK.findall(card))
        for action, inner in FORM.findall(card):
            fields = tuple((k, v) for k, v in HIDDEN.findall(inner) if k != "csrfmiddlewaretoken")
            forms.add((action, fields))
    return links, forms


@pytest.mark.parametrize("standing", sorted(STANDINGS))
@pytest.mark.parametrize("persona", ["admin", "member"])
def test_every_plan_offer_link_on_every_page_opens_what_it_offers(
    standing, persona, tenant, request, client_for
):
    """S15, S18, C09, C18, L22: each card's link opens a page or dialog (never a 404), each card's
    form is answered by its view (a redirect to the checkout or back, never a 404)."""
    STANDINGS[standing](tenant)
    browser = client_for(request.getfixturevalue(persona))
    followed = 0
    for page in PAGES:
        response = browser.get(page)
        assert response.status_code == 200, page
        links, forms = offer_targets(response.content.decode())
        for url in sorted(links):
            answer = browser.get(url)
            assert answer.status_code in (200, 302), f"{page}: {url} answered {answer.status_code}"
            followed += 1
        for action, fields in sorted(forms):
            answer = browser.post(action, dict(fields))
            assert answer.status_code in (200, 302), f"{page}: POST {action} answered {answer.status_code}"
            followed += 1
    assert followed  # every standing shows some card with an action on some page


def test_l22_plans_and_licenses_subscribe_opens_the_helpdesk_checkout(tenant, admin, client_for):
    """L22, S15: with no Helpdesk AI plan, AI Essentials' Subscribe posts to the Billing tab's
    checkout (a new tab), not to the AI Credits page's Subscribe Now dialog."""
    body = client_for(admin).get("/t/acme/licenses/").content.decode()
    assert "/ai-credits/plans/helpdesk-" not in body
    _links, forms = offer_targets(body)
    assert {action for action, _ in forms} >= {
        "/t/acme/billing/plans/helpdesk-essentials/subscribe/",
        "/t/acme/billing/plans/helpdesk-pro/subscribe/",
    }
    answer = client_for(admin).post("/t/acme/billing/plans/helpdesk-essentials/subscribe/")
    assert answer.status_code == 302
    assert "/dev/billing/checkout/" in answer["Location"]
