"""A downgrade below the licenses assigned keeps them and blocks new ones (issue 10). The partner
admin "must never be surprised by the totals": the plan-change dialog says so before Update
subscription, the change says it again as it is made, and while a downgrade is scheduled (an
Upcoming subscription) the Plans & Licenses page says what it will do, and on which day."""

from __future__ import annotations

import re

import pytest
from django.contrib.messages import get_messages

from licensing.factories import licensed
from plans.models import ScheduledChange
from tests.subscriptions.helpers import subscribe

pytestmark = pytest.mark.django_db

DIALOG = "/t/{slug}/billing/plans/helpdesk-essentials/change/"
PAGE = "/t/{slug}/licenses/"
WARNING = (
    "AI Essentials includes 10 AI licenses (12 are assigned). The clients that hold them keep them, but no "
    "new AI license can be assigned until you remove 2."
)


def by_testid(response, name: str) -> list[str]:
    body = response.content.decode()
    found = re.findall(rf'<(\w+)[^>]*data-testid="{name}"[^>]*>(.*?)</\1>', body, re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", inner).split()) for _, inner in found]


def test_a_downgrade_below_the_assigned_licenses_is_said_in_the_dialog_as_it_is_scheduled_and_on_the_page(
    org, clock, capture, client_for
):
    tenant = org.tenant
    subscribe(tenant=tenant, actor=org.founder, plan_code="helpdesk-pro", capture=capture)
    licensed(tenant, 12)
    client = client_for(org.founder)

    dialog = client.get(DIALOG.format(slug=tenant.slug), HTTP_HX_REQUEST="true")
    assert by_testid(dialog, "license-overage-warning") == [WARNING]

    with capture(execute=True):
        done = client.post(DIALOG.format(slug=tenant.slug), {"when": "period_end"})
    assert done.status_code == 302, done.content.decode()[:500]
    flashes = [(m.level_tag, m.message) for m in get_messages(done.wsgi_request)]
    assert flashes[-1] == ("warning", WARNING)

    change = ScheduledChange.objects.get(tenant=tenant)
    page = client.get(PAGE.format(slug=tenant.slug))
    assert by_testid(page, "coming-overage") == [
        f"On {change.effective_at:%-d %b %Y} your plan changes to AI Essentials, which includes 10 AI licenses "
        "(12 are assigned). The clients that hold them keep them, but no new AI license can be assigned until "
        "you remove 2."
    ]
    assert by_testid(page, "overage-ai") == []  # not yet: AI Pro's 25 are in force


def test_a_downgrade_that_fits_the_assigned_licenses_says_nothing(org, clock, capture, client_for):
    tenant = org.tenant
    subscribe(tenant=tenant, actor=org.founder, plan_code="helpdesk-pro", capture=capture)
    licensed(tenant, 10)
    licensed(tenant, 10, kind="chat")
    client = client_for(org.founder)

    dialog = client.get(DIALOG.format(slug=tenant.slug), HTTP_HX_REQUEST="true")
    assert by_testid(dialog, "license-overage-warning") == []
    with capture(execute=True):
        client.post(DIALOG.format(slug=tenant.slug), {"when": "period_end"})
    assert ScheduledChange.objects.filter(tenant=tenant).exists()
    assert by_testid(client.get(PAGE.format(slug=tenant.slug)), "coming-overage") == []


def test_both_kinds_beyond_the_new_totals_are_named_together(org, clock, capture, client_for):
    tenant = org.tenant
    subscribe(tenant=tenant, actor=org.founder, plan_code="helpdesk-pro", capture=capture)
    licensed(tenant, 11)
    licensed(tenant, 13, kind="chat")

    dialog = client_for(org.founder).get(DIALOG.format(slug=tenant.slug), HTTP_HX_REQUEST="true")
    assert by_testid(dialog, "license-overage-warning") == [
        "AI Essentials includes 10 AI licenses (11 are assigned) and 10 Chat licenses (13 are assigned). The "
        "clients that hold them keep them, but no new AI or Chat license can be assigned until you remove 1 AI "
        "and 3 Chat."
    ]
