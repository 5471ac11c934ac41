"""The Plans & Licenses page (L01 to L22): the header, the Manage Licenses table with its search,
filters, order and pages, the row actions and the Assign AI license picker (htmx and plain forms),
the flags and prompts, the CSV export, roles, and a query count that does not grow with clients."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from credits import services as credit_services
from credits.factories import grant, on_plus
from licensing.factories import ClientFactory, licensed
from licensing.models import Client
from plans.factories import plan
from plans.models import Subscription
from tenants.models import AuditEvent

pytestmark = pytest.mark.django_db

PAGE = "/t/acme/licenses/"
HTMX = {"HTTP_HX_REQUEST": "true"}


def text(response) -> str:
    """The page as words: tags dropped, whitespace folded."""
    return " ".join(re.sub(r"<[^>]+>", " ", response.content.decode()).split())


def by_testid(response, name: str) -> list[str]:
    """The text of every element with data-testid=name (elements without nested ones of the same tag)."""
    body = response.content.decode()
    found = re.findall(rf'<(\w+)[^>]*data-testid="{name}"[^>]*>(.*?)</\1>', body, re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", inner).split()) for _, inner in found]


def names(response) -> list[str]:
    return by_testid(response, "client-name")


# --- the header (L01 to L06) -------------------------------------------------------------------------


def test_l01_to_l06_the_header_shows_plan_billing_date_licenses_ticket_credits_and_unlimited_ai(
    essentials, admin, client_for
):
    """L01, L02 (plan type), L03 (next billing date), L04 (AI and Chat used of their totals), L05 and
    L21 (ticket credits used and their refresh date), L06 (Unlimited AI access)."""
    licensed(essentials, 4)
    licensed(essentials, 1, kind="chat")
    ClientFactory(tenant=essentials, external_id="walk-in")
    from licensing.services import ticket_qualify

    for i in range(3):
        ticket_qualify(tenant=essentials, ticket_id=f"t{i}", client_id="walk-in")

    page = client_for(admin).get(PAGE)

    assert page.status_code == 200
    assert by_testid(page, "plan-type") == ["AI Essentials"]
    assert by_testid(page, "next-billing-date") == ["1 Jul 2022"]
    assert by_testid(page, "ai-licenses") == ["4 of 10 used"]
    assert by_testid(page, "chat-licenses") == ["1 of 10 used"]
    assert by_testid(page, "ticket-credits") == ["3 of 60 used"]
    assert by_testid(page, "ticket-refresh") == ["Refresh on 1 Jul 2022"]
    assert by_testid(page, "unlimited-ai") == ["Disabled"]


def test_l22_a_canceled_plan_near_its_totals_is_not_told_of_a_next_billing_cycle(
    tenant, clock, admin, client_for
):
    """L22, L18: a canceled plan has no next billing cycle: the prompt near the totals does not
    suggest upgrading "before your next billing cycle" (the plan cards say to resume it first)."""
    from licensing.factories import on_helpdesk

    sub = on_helpdesk(tenant)
    Subscription.objects.filter(pk=sub.pk).update(
        state=Subscription.State.CANCELED, canceled_at=timezone.now(), ends_at=sub.current_period_end
    )
    licensed(tenant, 9)

    prompt = by_testid(client_for(admin).get(PAGE), "upgrade-prompt")[0]
    assert prompt.startswith("You are close to your plan's limits: AI licenses at 90% or more.")
    assert "next billing cycle" not in prompt


@pytest.mark.parametrize(
    ("state", "fields", "shown"),
    [
        (
            "past_due",
            {"grace_until": "2022-06-08"},
            "Once the failed payment is settled (grace period until 8 Jun 2022)",
        ),
        ("suspended", {}, "Once the failed payment is settled"),
        (
            "canceled",
            {"ends_at": "2022-07-01", "canceled_at": "2022-06-01"},
            "None: the plan ends on 1 Jul 2022",
        ),
    ],
)
def test_l03_the_next_billing_date_says_why_there_is_none(
    tenant, clock, admin, client_for, state, fields, shown
):
    """L03 (next billing date), S26, S28: a plan whose payment failed, or that is canceled, has no next
    billing date; the header says when there will be one (or that there will be none), not a dash."""
    from licensing.factories import on_helpdesk

    sub = on_helpdesk(tenant)
    dates = {k: datetime.fromisoformat(v).replace(tzinfo=UTC) for k, v in fields.items()}
    Subscription.objects.filter(pk=sub.pk).update(state=state, **dates)

    assert by_testid(client_for(admin).get(PAGE), "next-billing-date") == [shown]


def test_l05_ticket_credits_staff_gave_show_beside_the_cycles_and_keep_the_prompt_honest(
    essentials, admin, client_for, django_user_model
):
    """L05, L22: the header counts the cycle's 60; 100 ticket credits a staff member added are spent
    after them, so the header says they are there (the API's `ticket_credits_remaining` counts them),
    and with the cycle's all used the prompt does not say every ticket credit is used."""
    from licensing.services import ticket_qualify

    staff = django_user_model.objects.create_user(email="cs@allowance.test", password="x", is_staff=True)
    credit_services.credits_adjust(
        tenant=essentials, unit="ticket_credit", amount=100_000, reason="goodwill", actor=staff
    )
    ClientFactory(tenant=essentials, external_id="walk-in")
    for i in range(60):
        ticket_qualify(tenant=essentials, ticket_id=f"t{i}", client_id="walk-in")

    page = client_for(admin).get(PAGE)
    assert by_testid(page, "ticket-credits") == ["60 of 60 used"]
    assert by_testid(page, "ticket-extra") == ["Plus 100 extra ticket credits, used after this cycle's"]
    prompt = by_testid(page, "upgrade-prompt")[0]
    assert "every one of your ticket credits is used" not in prompt
    assert prompt.startswith("You are close to your plan's limits: ticket credits at 90% or more.")

    ticket_qualify(tenant=essentials, ticket_id="t-extra", client_id="walk-in")
    assert by_testid(client_for(admin).get(PAGE), "ticket-extra") == [
        "Plus 99 extra ticket credits, used after this cycle's"
    ]


def test_l05_l18_a_canceled_plan_shows_no_refresh_date_but_when_it_expires(tenant, clock, admin, client_for):
    """L05, L18, L21: a canceled plan ends with its cycle, so no ticket-credit refresh follows; the
    header says when the plan expires instead of a refresh that will not happen."""
    from licensing.factories import on_helpdesk

    ends = timezone.now() + timedelta(days=30)
    on_helpdesk(tenant, state=Subscription.State.CANCELED, canceled_at=timezone.now(), ends_at=ends)

    page = client_for(admin).get(PAGE)

    assert by_testid(page, "badge") == ["Canceled subscription"]
    assert by_testid(page, "ticket-refresh") == ["No refresh: your plan expires on 1 Jul 2022"]


def test_l06_ai_pro_shows_unlimited_ai_access_enabled(pro, member, client_for):
    page = client_for(member).get(PAGE)
    assert (by_testid(page, "plan-type"), by_testid(page, "unlimited-ai")) == (["AI Pro"], ["Enabled"])
    assert by_testid(page, "ticket-credits") == ["0 of 150 used"]


def test_without_a_helpdesk_plan_the_page_offers_the_plans(tenant, admin, client_for, clock):
    page = client_for(admin).get(PAGE)
    assert by_testid(page, "plan-type") == ["No Helpdesk AI plan"]
    offers = re.findall(r'data-testid="offer-([\w-]+)" data-action="(\w+)"', page.content.decode())
    assert offers == [("helpdesk-essentials", "subscribe"), ("helpdesk-pro", "subscribe")]


# --- the table (L07 to L11) ---------------------------------------------------------------------------


def test_l07_to_l10_each_row_shows_name_status_types_licenses_and_ai_credits_used(
    essentials, admin, client_for
):
    """L07 (every client with its license status), L08 (name, status, company and agreement type),
    L09 (AI and Chat license), L10 (AI credits used, net of refunds), L19 (who holds what)."""
    ClientFactory(
        tenant=essentials,
        external_id="contoso",
        name="Contoso",
        company_type="Customer",
        agreement_type="Managed services",
        ai_license_since=timezone.now(),
    )
    ClientFactory(
        tenant=essentials,
        external_id="fabrikam",
        name="Fabrikam",
        status="inactive",
        company_type="",
        agreement_type="",
    )
    on_plus(essentials)
    grant(essentials, 100)
    for key, quantity in (("a", 3), ("b", 2)):
        credit_services.credits_consume(
            tenant=essentials,
            feature="smart_response",
            quantity=quantity,
            idempotency_key=key,
            client_id="contoso",
        )
    credit_services.credits_refund(tenant=essentials, idempotency_key="b")

    page = client_for(admin).get(PAGE)

    rows = re.findall(r'<tr id="client-\d+".*?</tr>', page.content.decode(), re.S)
    cells = [
        [
            " ".join(re.sub(r"<[^>]+>", " ", td).split())
            for td in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        for row in rows
    ]
    assert [c[:7] for c in cells] == [
        ["Contoso contoso", "Active", "Customer", "Managed services", "AI license", "No", "3 credits"],
        ["Fabrikam fabrikam", "Inactive", "—", "—", "No", "No", "0 credits"],
    ]


def test_l08_to_l10_the_column_headers_use_the_spec_labels(essentials, admin, client_for):
    """L08 (Client name, Status, Company type, Agreement type), L09 (AI license, Chat license), L10
    (AI credits used): the table's column headers say what the spec's row lists, word for word."""
    ClientFactory(tenant=essentials, name="Contoso")

    head = re.search(r"<thead>(.*?)</thead>", client_for(admin).get(PAGE).content.decode(), re.S).group(1)
    headers = [
        " ".join(re.sub(r"<[^>]+>|[▲▼]", " ", th).split())
        for th in re.findall(r"<th[^>]*>(.*?)</th>", head, re.S)
    ]
    assert headers[:7] == [
        "Client name",
        "Status",
        "Company type",
        "Agreement type",
        "AI license",
        "Chat license",
        "AI credits used",
    ]


def test_l11_search_and_filters_narrow_the_table_and_htmx_gets_the_table_alone(essentials, admin, client_for):
    """L11 (the bar above the table), L19 (review who holds a license: the license filter)."""
    ClientFactory(
        tenant=essentials, name="Contoso Health", company_type="Customer", agreement_type="Break-fix"
    )
    ClientFactory(tenant=essentials, name="Contoso Retail", company_type="Prospect", agreement_type="Managed")
    licensed(essentials, 1, name="Northwind", company_type="Customer", agreement_type="Managed")
    ClientFactory(tenant=essentials, name="Old Corp", status="inactive")
    client = client_for(admin)

    assert names(client.get(PAGE, {"q": "contoso"})) == ["Contoso Health", "Contoso Retail"]
    assert names(client.get(PAGE, {"q": "CONTOSO", "company_type": "Prospect"})) == ["Contoso Retail"]
    assert names(client.get(PAGE, {"agreement_type": "Managed"})) == ["Contoso Retail", "Northwind"]
    assert names(client.get(PAGE, {"status": "inactive"})) == ["Old Corp"]
    assert names(client.get(PAGE, {"license": "ai"})) == ["Northwind"]
    assert names(client.get(PAGE, {"license": "no_ai", "status": "active"})) == [
        "Contoso Health",
        "Contoso Retail",
    ]
    fragment = client.get(PAGE, {"q": "retail"}, HTTP_HX_TARGET="clients", **HTMX)
    assert fragment.content.decode().lstrip().startswith('<section id="clients"')
    assert names(fragment) == ["Contoso Retail"]
    assert "license-header" not in fragment.content.decode()
    assert by_testid(client.get(PAGE, {"q": "nothing like it"}), "no-match") == [
        "No client matches these filters. Show all clients"
    ]


def test_an_invalid_filter_value_filters_nothing_and_is_no_error(essentials, admin, client_for):
    ClientFactory.create_batch(2, tenant=essentials)
    page = client_for(admin).get(PAGE, {"license": "gold", "status": "x", "sort": "nope", "page": "abc"})
    assert page.status_code == 200
    assert len(names(page)) == 2


def test_l11_a_search_with_control_characters_is_refused_in_words(essentials, admin, client_for):
    """L11: the search holds to the one text rule (tenants.text): a bidirectional override is
    refused with its message, filters nothing, and is no error (a NUL never gets this far: the
    middleware answers it, tests/test_bad_input.py)."""
    ClientFactory.create_batch(2, tenant=essentials)
    page = client_for(admin).get(PAGE, {"q": "Con\u202etoso"})
    assert page.status_code == 200
    assert "Remove the control characters." in page.content.decode()
    assert len(names(page)) == 2


def test_sortable_columns_in_both_directions(essentials, admin, client_for):
    ClientFactory(tenant=essentials, name="Beta", status="inactive", agreement_type="B")
    licensed(essentials, 1, name="Alpha", agreement_type="C")
    ClientFactory(tenant=essentials, name="Gamma", agreement_type="A")
    client = client_for(admin)

    assert names(client.get(PAGE)) == ["Alpha", "Beta", "Gamma"]
    assert names(client.get(PAGE, {"sort": "-name"})) == ["Gamma", "Beta", "Alpha"]
    assert names(client.get(PAGE, {"sort": "agreement_type"})) == ["Gamma", "Beta", "Alpha"]
    assert names(client.get(PAGE, {"sort": "-ai"})) == ["Alpha", "Gamma", "Beta"]
    assert names(client.get(PAGE, {"sort": "status"})) == ["Alpha", "Gamma", "Beta"]
    page = client.get(PAGE, {"sort": "name", "q": "a"})
    assert 'href="?q=a&amp;sort=-name"' in page.content.decode()  # clicking again reverses, filters kept


def test_l07_the_orders_of_never_empty_columns_are_the_ones_their_indexes_give(essentials):
    """L07 for 10,000 clients: by name (the default) or another column that is never empty, the
    query asks PostgreSQL's plain order, which the (tenant, name, id) index gives without sorting
    every client; only the license dates (which may be empty) say where the empty ones go."""
    from licensing.selectors import ClientFilters, clients

    def order(sort: str) -> str:
        return str(clients(tenant=essentials, filters=ClientFilters(sort=sort)).query).split("ORDER BY")[1]

    assert order("name").strip() == '"licensing_client"."name" ASC, "licensing_client"."id" ASC'
    assert order("-name").strip() == '"licensing_client"."name" DESC, "licensing_client"."id" DESC'
    assert "NULLS" not in order("status") + order("-agreement_type")
    assert "NULLS FIRST" in order("ai")
    assert "NULLS LAST" in order("-chat")


def test_l12_each_rows_actions_name_its_own_client(essentials, admin, client_for):
    """L12: the row actions' URLs are built once per page and given each row's client, also when
    the tenant's slug holds the digits that stand for the client while they are built."""
    from django.urls import reverse

    from licensing.views import _MARK

    essentials.slug = f"msp{_MARK}"
    essentials.save(update_fields=["slug"])
    first, second = (
        ClientFactory(tenant=essentials, name="Alpha"),
        ClientFactory(tenant=essentials, name="Beta"),
    )
    page = client_for(admin).get(f"/t/{essentials.slug}/licenses/").content.decode()
    for client in (first, second):
        row = page.split(f'id="client-{client.pk}"')[1].split("</tr>")[0]
        for kind in ("ai", "chat"):
            assert f'hx-post="{reverse("license_change", args=[essentials.slug, client.pk, kind])}"' in row
        edit = reverse("client_edit", args=[essentials.slug, client.pk])
        assert f'href="{edit}?next=/t/{essentials.slug}/licenses/"' in row


def test_sorting_by_ai_credits_used(essentials, admin, client_for):
    for ext in ("low", "high", "none"):
        ClientFactory(tenant=essentials, external_id=ext, name=ext.title())
    on_plus(essentials)
    grant(essentials, 100)
    for key, who, n in (("a", "low", 1), ("b", "high", 5)):
        credit_services.credits_consume(
            tenant=essentials, feature="smart_response", quantity=n, idempotency_key=key, client_id=who
        )
    client = client_for(admin)
    assert names(client.get(PAGE, {"sort": "-credits"})) == ["High", "Low", "None"]
    assert names(client.get(PAGE, {"sort": "credits"})) == ["None", "Low", "High"]


def test_pagination_keeps_the_filters(essentials, admin, client_for):
    for i in range(120):
        ClientFactory(tenant=essentials, name=f"Client {i:03d}", company_type="Customer")
    client = client_for(admin)

    first = client.get(PAGE, {"company_type": "Customer"})
    third = client.get(PAGE, {"company_type": "Customer", "page": 3})

    assert (len(names(first)), names(first)[0], by_testid(first, "client-count")) == (
        50,
        "Client 000",
        ["120 clients match the filters"],
    )
    assert 'href="?company_type=Customer&page=2"' in first.content.decode()
    assert (len(names(third)), names(third)[0]) == (20, "Client 100")


@pytest.mark.parametrize("n", [10, 1000])
def test_the_page_costs_the_same_queries_at_10_and_1000_clients(
    essentials, admin, client_for, django_assert_num_queries, n
):
    """The page's query count does not grow with the number of clients (the sidebar, session and
    membership, the entitlements, the clients' aggregate, the ticket credits, the filter choices,
    the table's count and rows, the rows' AI credits, the sidebar's credits summary, the tenant
    switcher, and the session's save)."""
    ClientFactory.create_batch(n, tenant=essentials, company_type="Customer")
    Client.objects.filter(
        tenant=essentials, pk__in=Client.objects.filter(tenant=essentials).values("pk")[:5]
    ).update(ai_license_since=timezone.now())
    client = client_for(admin)
    client.get(PAGE)  # warm the session
    with django_assert_num_queries(12):
        assert client.get(PAGE).status_code == 200
    with django_assert_num_queries(12):
        assert (
            client.get(PAGE, {"q": "Client", "license": "ai", "sort": "-credits", "page": 2}).status_code
            == 200
        )
    with django_assert_num_queries(9):  # the table alone, and the licenses used (the rows' Add items)
        assert client.get(PAGE, {"q": "Client"}, HTTP_HX_TARGET="clients", **HTMX).status_code == 200


# --- row actions (L12 to L14) -------------------------------------------------------------------------


def test_l13_l14_add_ai_license_from_the_row_with_htmx_updates_the_row_and_the_header_at_once(
    essentials, admin, client_for
):
    contoso = ClientFactory(tenant=essentials, name="Contoso")
    url = f"{PAGE}clients/{contoso.pk}/licenses/ai/"

    response = client_for(admin).post(url, {"action": "add", "next": f"{PAGE}?q=con"}, **HTMX)

    assert response.status_code == 200
    body = response.content.decode()
    row = re.search(
        rf'<template>\s*<tr id="client-{contoso.pk}"[^>]*hx-swap-oob="true".*?</tr>\s*</template>', body, re.S
    )
    assert row is not None
    assert "Remove AI license" in row.group(0)
    assert by_testid(response, "ai-licenses") == ["1 of 10 used"]
    assert (
        '<section id="license-header" class="card" aria-labelledby="plan-title" data-testid="license-header" hx-swap-oob="true">'
        in body
    )
    assert 'value="/t/acme/licenses/?q=con"' in row.group(0)  # the next action returns to the same filters
    assert "Contoso now has an AI license." in text(response)
    assert Client.objects.get(pk=contoso.pk).ai_license

    removed = client_for(admin).post(url, {"action": "remove"}, **HTMX)
    assert by_testid(removed, "ai-licenses") == ["0 of 10 used"]
    assert "The AI license of Contoso is removed." in text(removed)


def test_add_chat_license_as_a_plain_form_redirects_back_to_the_filters(essentials, admin, client_for):
    contoso = ClientFactory(tenant=essentials, name="Contoso")
    client = client_for(admin)

    response = client.post(
        f"{PAGE}clients/{contoso.pk}/licenses/chat/", {"action": "add", "next": f"{PAGE}?q=con"}
    )

    assert (response.status_code, response["Location"]) == (302, f"{PAGE}?q=con")
    assert Client.objects.get(pk=contoso.pk).chat_license
    assert "Contoso now has a Chat license." in text(client.get(response["Location"]))


def test_next_never_leaves_the_page(essentials, admin, client_for):
    contoso = ClientFactory(tenant=essentials)
    for target in (
        "https://evil.example/",
        "/t/globex/licenses/",
        "//evil.example/t/acme/licenses/",
        # starts with the page, but the browser resolves the dot segments out of it
        f"{PAGE}../../../admin/",
        f"{PAGE}%2e%2e/%2E%2E/%2e%2e/admin/",
        f"{PAGE}..\\..\\admin/",
    ):
        response = client_for(admin).post(
            f"{PAGE}clients/{contoso.pk}/licenses/chat/", {"action": "remove", "next": target}
        )
        assert response["Location"] == PAGE


def test_l04_l22_a_refused_add_says_why_in_the_page_and_changes_nothing(essentials, admin, client_for):
    licensed(essentials, 10)
    late = ClientFactory(tenant=essentials, name="Late")

    response = client_for(admin).post(f"{PAGE}clients/{late.pk}/licenses/ai/", {"action": "add"}, **HTMX)

    assert "All 10 AI licenses of your AI Essentials plan are assigned." in text(response)
    assert by_testid(response, "ai-licenses") == ["10 of 10 used"]
    assert not Client.objects.get(pk=late.pk).ai_license


def test_an_unknown_license_kind_or_client_is_a_404(essentials, admin, client_for, other_tenant):
    contoso = ClientFactory(tenant=essentials)
    theirs = ClientFactory(tenant=other_tenant)
    client = client_for(admin)
    assert client.post(f"{PAGE}clients/{contoso.pk}/licenses/voice/", {"action": "add"}).status_code == 404
    assert client.post(f"{PAGE}clients/{theirs.pk}/licenses/ai/", {"action": "add"}).status_code == 404
    assert client.post(f"{PAGE}clients/{2**63}/licenses/ai/", {"action": "add"}).status_code == 404


def test_l12_the_assign_ai_license_picker_lists_active_unlicensed_clients_and_assigns_several(
    essentials, admin, client_for
):
    a, b = ClientFactory(tenant=essentials, name="Alpha"), ClientFactory(tenant=essentials, name="Bravo")
    ClientFactory(tenant=essentials, name="Charlie", status="inactive")
    licensed(essentials, 1, name="Delta")
    client = client_for(admin)

    dialog = client.get(f"{PAGE}assign/", {"next": f"{PAGE}?q=a"}, HTTP_HX_TARGET="dialog-body", **HTMX)
    assert re.findall(r'<label class="choice">.*?> (\w+) <', dialog.content.decode()) == ["Alpha", "Bravo"]
    assert by_testid(dialog, "licenses-left")[0].startswith("9 of 10 AI licenses left.")
    searched = client.get(f"{PAGE}assign/", {"q": "brav"}, HTTP_HX_TARGET="assign-candidates", **HTMX)
    assert searched.content.decode().lstrip().startswith('<fieldset id="assign-candidates"')
    assert "Bravo" in text(searched)
    assert "Alpha" not in text(searched)

    done = client.post(
        f"{PAGE}assign/",
        {"clients": [a.pk, b.pk], "next": f"{PAGE}?q=a"},
        HTTP_HX_TARGET="dialog-body",
        **HTMX,
    )

    assert by_testid(done, "ai-licenses") == ["3 of 10 used"]
    assert '<section id="clients"' in done.content.decode()
    assert "AI license assigned to Alpha, Bravo." in text(done)
    assert sorted(Client.objects.filter(ai_license_since__isnull=False).values_list("name", flat=True)) == [
        "Alpha",
        "Bravo",
        "Delta",
    ]


def test_the_picker_refuses_more_than_is_left_and_says_so_in_the_dialog(essentials, admin, client_for):
    licensed(essentials, 9)
    picked = ClientFactory.create_batch(2, tenant=essentials)

    response = client_for(admin).post(
        f"{PAGE}assign/", {"clients": [c.pk for c in picked]}, HTTP_HX_TARGET="dialog-body", **HTMX
    )

    assert by_testid(response, "assign-error") == [
        "Only 1 of your 10 AI licenses is left: pick at most 1 client, or upgrade your plan."
    ]
    assert Client.objects.filter(ai_license_since__isnull=False).count() == 9
    # The picks stay ticked, so one can be unticked and the rest sent again.
    page = response.content.decode()
    for client in picked:
        assert re.search(rf'value="{client.pk}" checked data-testid="pick-{client.external_id}"', page)
    nothing = client_for(admin).post(f"{PAGE}assign/", {}, HTTP_HX_TARGET="dialog-body", **HTMX)
    assert by_testid(nothing, "assign-error") == ["Pick at least one client."]
    forged = client_for(admin).post(
        f"{PAGE}assign/", {"clients": ["1; drop"]}, HTTP_HX_TARGET="dialog-body", **HTMX
    )
    assert by_testid(forged, "assign-error") == ["Pick clients from the list."]
    assert (response.status_code, nothing.status_code, forged.status_code) == (
        200,
        200,
        200,
    )  # htmx swaps 2xx only


def test_the_picker_without_javascript_answers_its_refusals_with_their_status(essentials, admin, client_for):
    """The plain form (no htmx): a refusal is the page with its error, answered 402 (no licenses
    left, as the API's license_limit_reached) or 422 (nothing or a forged pick), not 200."""
    licensed(essentials, 9)
    picked = ClientFactory.create_batch(2, tenant=essentials)
    client = client_for(admin)

    over = client.post(f"{PAGE}assign/", {"clients": [c.pk for c in picked]})
    assert over.status_code == 402
    assert by_testid(over, "assign-error") == [
        "Only 1 of your 10 AI licenses is left: pick at most 1 client, or upgrade your plan."
    ]
    assert client.post(f"{PAGE}assign/", {}).status_code == 422
    assert client.post(f"{PAGE}assign/", {"clients": ["1; drop"]}).status_code == 422
    assert Client.objects.filter(ai_license_since__isnull=False).count() == 9


# --- flags and prompts (L20 to L22) and the downgrade overage ------------------------------------------


def test_l20_inactive_clients_holding_licenses_are_flagged_with_a_one_click_removal(
    essentials, admin, client_for
):
    licensed(essentials, 2, status="inactive", name="Gone")
    licensed(essentials, 1, name="Here")
    client = client_for(admin)

    page = client.get(PAGE)
    assert by_testid(page, "inactive-flag")[0].startswith("2 inactive clients still hold 2 licenses.")
    assert by_testid(page, "flag") == ["Holds licenses", "Holds licenses"]
    assert names(client.get(PAGE, {"license": "flagged"})) == ["Gone", "Gone"]

    done = client.post(f"{PAGE}release-inactive/", {"next": PAGE}, **HTMX)

    assert by_testid(done, "ai-licenses") == ["1 of 10 used"]
    assert '<div id="license-flags" hx-swap-oob="true">' in done.content.decode()
    assert by_testid(done, "inactive-flag") == []
    assert "2 licenses removed from inactive clients." in text(done)
    assert AuditEvent.objects.filter(tenant=essentials, action="license.removed").count() == 2


def test_l20_an_inactive_clients_menu_offers_no_add_it_would_refuse(essentials, admin, client_for):
    """An inactive client gets no license (409 client_inactive): its row menu shows Add disabled,
    saying why, instead of a button that always fails; a license it holds can still be removed."""
    ClientFactory(tenant=essentials, name="Gone", status="inactive")
    body = client_for(admin).get(PAGE).content.decode()
    row = re.search(r'<tr id="client-\d+"[^>]*>.*?</tr>', body, re.S).group(0)  # type: ignore[union-attr]

    assert re.search(
        r'<button type="button" class="link" disabled data-testid="ai-action" title="Gone is inactive: '
        r'make it active \(Edit client\) before assigning it an AI license.">Add AI license</button>',
        row,
    )
    assert 'disabled data-testid="chat-action"' in row
    assert 'value="add"' not in row
    assert re.search(r'data-testid="chat-reason">Gone is inactive: make it active \(Edit client\)', row)

    licensed(essentials, 1, status="inactive", name="Holder")
    page = client_for(admin).get(PAGE, {"license": "flagged"})
    assert by_testid(page, "ai-action") == ["Remove AI license"]


def test_l22_at_90_percent_the_header_suggests_upgrading_to_ai_pro(essentials, admin, member, client_for):
    licensed(essentials, 8)
    assert by_testid(client_for(admin).get(PAGE), "upgrade-prompt") == []
    licensed(essentials, 1)

    page = client_for(admin).get(PAGE)
    prompt = by_testid(page, "upgrade-prompt")[0]
    assert prompt.startswith(
        "You are close to your plan's limits: AI licenses at 90% or more. Consider upgrading before your next "
        "billing cycle on 1 Jul 2022."
    )
    offers = re.findall(r'data-testid="offer-([\w-]+)" data-action="(\w+)"', page.content.decode())
    assert offers == [
        ("helpdesk-pro", "change")
    ]  # the plan-offer rule decides (no gateway subscription id here)
    members = client_for(member).get(PAGE)
    assert re.findall(r'data-testid="offer-([\w-]+)" data-action="(\w+)"', members.content.decode()) == [
        ("helpdesk-pro", "interest")
    ]
    assert "Ask your account administrator to subscribe." in text(members)


def test_l22_ticket_credits_near_their_total_prompt_too(essentials, admin, client_for):
    ClientFactory(tenant=essentials, external_id="walk-in")
    from licensing.services import ticket_qualify

    for i in range(54):
        ticket_qualify(tenant=essentials, ticket_id=f"t{i}", client_id="walk-in")
    prompt = by_testid(client_for(admin).get(PAGE), "upgrade-prompt")[0]
    assert prompt.startswith("You are close to your plan's limits: ticket credits at 90% or more.")


def test_a_downgrade_overage_is_shown_plainly_until_it_is_resolved(pro, admin, client_for):
    holders = licensed(pro, 12)
    Subscription.objects.filter(tenant=pro, product__code="helpdesk_ai").update(
        plan=plan("helpdesk-essentials")
    )
    client = client_for(admin)

    assert by_testid(client.get(PAGE), "overage-ai") == [
        "12 AI licenses are assigned, but your plan includes 10. The clients that hold them keep them; no new AI "
        "license can be assigned until you remove 2 or upgrade your plan."
    ]
    for holder in holders[:2]:
        client.post(f"{PAGE}clients/{holder.pk}/licenses/ai/", {"action": "remove"})
    assert by_testid(client.get(PAGE), "overage-ai") == []


# --- roles --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["member", "finance"])
def test_members_and_finance_see_the_page_read_only(essentials, request, client_for, role):
    user = request.getfixturevalue(role)
    contoso = ClientFactory(tenant=essentials, name="Contoso")
    client = client_for(user)

    page = client.get(PAGE)

    assert page.status_code == 200
    assert names(page) == ["Contoso"]
    body = page.content.decode()
    for admin_only in (
        "row-actions",
        "assign-ai-license",
        "add-client",
        "import-clients",
        "release-inactive",
    ):
        assert f'data-testid="{admin_only}"' not in body, admin_only
    for url in (
        f"{PAGE}clients/{contoso.pk}/licenses/ai/",
        f"{PAGE}assign/",
        f"{PAGE}release-inactive/",
        f"{PAGE}clients/new/",
        f"{PAGE}clients/{contoso.pk}/edit/",
        f"{PAGE}import/",
    ):
        assert client.post(url, {"action": "add", "clients": [contoso.pk]}).status_code == 403, url
    assert not Client.objects.get(pk=contoso.pk).ai_license
    assert client.get(f"{PAGE}export.csv").status_code == 200


def test_outsiders_get_404(essentials, outsider, client_for):
    contoso = ClientFactory(tenant=essentials)
    client = client_for(outsider)
    assert client.get(PAGE).status_code == 404
    assert client.post(f"{PAGE}clients/{contoso.pk}/licenses/ai/", {"action": "add"}).status_code == 404


# --- CSV export ---------------------------------------------------------------------------------------


def test_the_csv_export_is_the_filtered_table_on_every_page(essentials, admin, client_for):
    for i in range(60):
        ClientFactory(tenant=essentials, name=f"Customer {i:02d}", company_type="Customer")
    licensed(essentials, 1, name="=cmd|' /C calc'!A0", external_id="evil", company_type="Customer")
    ClientFactory(tenant=essentials, name="Prospect", company_type="Prospect")

    response = client_for(admin).get(f"{PAGE}export.csv", {"company_type": "Customer", "sort": "-name"})

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="licenses-acme-2022-06-01.csv"')
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == [
        "client_id",
        "name",
        "status",
        "company_type",
        "agreement_type",
        "ai_license",
        "chat_license",
        "ai_credits_used (2022-06-01 to 2022-07-01)",
    ]
    assert len(rows) == 62
    assert rows[1][1] == "Customer 59"
    assert rows[-1][:7] == [
        "evil",
        "'=cmd|' /C calc'!A0",
        "active",
        "Customer",
        "Managed services",
        "yes",
        "no",
    ]


def test_the_period_of_ai_credits_used_is_the_billing_period(essentials, admin, client_for, clock):
    ClientFactory(tenant=essentials, external_id="contoso", name="Contoso")
    on_plus(essentials, start=timezone.now() - timedelta(days=40))
    grant(essentials, 100, valid_from=timezone.now() - timedelta(days=40), days=80)
    credit_services.credits_consume(
        tenant=essentials,
        feature="smart_response",
        quantity=7,
        idempotency_key="before",
        client_id="contoso",
        now=timezone.now() - timedelta(days=2),
    )
    credit_services.credits_consume(
        tenant=essentials, feature="smart_response", quantity=2, idempotency_key="now", client_id="contoso"
    )
    assert by_testid(client_for(admin).get(PAGE), "ai-credits-used") == ["2 credits"]


# --- Add client / Edit client -------------------------------------------------------------------------


def test_add_client_in_the_dialog_then_a_duplicate_id_is_refused_on_its_field(essentials, admin, client_for):
    client = client_for(admin)
    dialog = client.get(f"{PAGE}clients/new/", {"next": f"{PAGE}?q=c"}, HTTP_HX_TARGET="dialog-body", **HTMX)
    assert (
        dialog.content.decode()
        .lstrip()
        .startswith('<form method="post" action="/t/acme/licenses/clients/new/"')
    )

    fields = {
        "external_id": " 1001 ",
        "name": " Contoso  Ltd ",
        "status": "active",
        "company_type": "Customer",
        "next": f"{PAGE}?q=c",
    }
    created = client.post(f"{PAGE}clients/new/", fields)
    again = client.post(f"{PAGE}clients/new/", fields | {"name": "Other"})

    assert (created.status_code, created["Location"]) == (302, f"{PAGE}?q=c")
    assert list(Client.objects.values_list("external_id", "name", "company_type", "agreement_type")) == [
        ("1001", "Contoso Ltd", "Customer", "")
    ]
    assert again.status_code == 422
    assert "A client with the id 1001 already exists." in text(again)
    assert AuditEvent.objects.filter(tenant=essentials, action="client.created").count() == 1


def test_edit_client_changes_its_fields_but_never_its_id(essentials, admin, client_for):
    contoso = ClientFactory(tenant=essentials, external_id="1001", name="Contoso")
    client = client_for(admin)

    done = client.post(
        f"{PAGE}clients/{contoso.pk}/edit/",
        {
            "external_id": "hijack",
            "name": "Contoso Group",
            "status": "inactive",
            "agreement_type": "Break-fix",
        },
    )

    assert done.status_code == 302
    contoso.refresh_from_db()
    assert (contoso.external_id, contoso.name, contoso.status, contoso.agreement_type) == (
        "1001",
        "Contoso Group",
        "inactive",
        "Break-fix",
    )
    event = AuditEvent.objects.get(tenant=essentials, action="client.updated")
    assert event.data == {"fields": "name, status, company type, agreement type"}
    bad = client.post(f"{PAGE}clients/{contoso.pk}/edit/", {"name": "", "status": "asleep"})
    assert bad.status_code == 422
    assert "This field is required." in text(bad)


def test_staff_see_clients_tickets_and_imports_read_only_in_the_admin(essentials, client_for):
    from tenants.factories import UserFactory

    staff = UserFactory(email="staff@allowance.test", is_staff=True, is_superuser=True)
    ClientFactory(tenant=essentials, name="Contoso")
    client = client_for(staff)
    for path in ("/admin/licensing/client/", "/admin/licensing/ticket/", "/admin/licensing/clientimport/"):
        assert client.get(path).status_code == 200, path
    assert "Contoso" in client.get("/admin/licensing/client/").content.decode()
    assert client.get("/admin/licensing/client/add/").status_code == 403


def test_l12_without_a_helpdesk_plan_assign_ai_license_is_not_offered_and_says_a_plan_is_needed(
    tenant, admin, client_for, clock
):
    """L12: with no Helpdesk AI plan there are no licenses to assign: the page offers no Assign AI
    license button (it could only be refused) and says plainly that a plan is needed, with the way
    to the plans; the picker, opened by its URL, says the same and has nothing to submit."""
    ClientFactory(tenant=tenant, external_id="contoso", name="Contoso")
    browser = client_for(admin)
    page = browser.get(PAGE)
    assert 'data-testid="assign-ai-license"' not in page.content.decode()
    assert by_testid(page, "assign-refused") == [
        "AI and Chat licenses come with a Helpdesk AI plan: subscribe to AI Essentials or AI Pro first, "
        "then assign them to your clients. See the Helpdesk AI plans"
    ]
    assert 'href="/t/acme/billing/?product=helpdesk_ai" data-testid="assign-plans"' in page.content.decode()
    # Clients can still be added and imported ahead of a plan: they are the partner's records.
    assert by_testid(page, "add-client") == ["Add client"]

    for dialog in (browser.get("/t/acme/licenses/assign/"), browser.get("/t/acme/licenses/assign/", **HTMX)):
        body = dialog.content.decode()
        assert dialog.status_code == 200
        assert "0 of 0 AI licenses left" not in body
        assert 'data-testid="assign-submit"' not in body
        assert by_testid(dialog, "assign-refused")[0].startswith(
            "AI and Chat licenses come with a Helpdesk AI plan"
        )
        assert 'href="/t/acme/billing/?product=helpdesk_ai" data-testid="assign-plans"' in body


def test_l12_without_a_plan_a_rows_add_items_say_why_and_a_held_license_can_still_be_removed(
    tenant, admin, client_for, clock
):
    """A row's Add AI license / Add Chat license could only be refused without a Helpdesk AI plan:
    they are shown disabled with the reason, as an inactive client's are; Remove stays for a license
    a client still holds (a plan that ended), on the page and in a row sent back after an action."""
    ClientFactory(tenant=tenant, external_id="contoso", name="Contoso")
    ClientFactory(tenant=tenant, external_id="fabrikam", name="Fabrikam", ai_license_since=timezone.now())
    browser = client_for(admin)
    page = browser.get(PAGE).content.decode()
    refused = (
        'disabled data-testid="{}" title="AI and Chat licenses come with a Helpdesk AI plan: subscribe to '
        'AI Essentials or AI Pro first, then assign them to your clients.">Add {} license</button>'
    )
    assert page.count(refused.format("ai-action", "AI")) == 1  # Contoso
    assert page.count(refused.format("chat-action", "Chat")) == 2  # both
    assert page.count('data-testid="ai-action">Remove AI license</button>') == 1  # Fabrikam
    fabrikam = Client.objects.get(tenant=tenant, external_id="fabrikam")
    removed = browser.post(
        f"/t/acme/licenses/clients/{fabrikam.pk}/licenses/ai/", {"action": "remove"}, **HTMX
    )
    assert removed.status_code == 200
    assert refused.format("ai-action", "AI") in removed.content.decode()
    assert Client.objects.get(pk=fabrikam.pk).ai_license_since is None


def test_l04_l13_at_its_plans_total_a_rows_add_item_is_disabled_with_the_reason(
    essentials, admin, client_for
):
    """10 of 10 AI licenses used: a row's Add AI license is shown disabled with the message the click
    would get (no failure after clicking), in the page, the table alone and a row sent back after an
    action; Add Chat license stays offered until the Chat licenses are used up too."""
    licensed(essentials, 10, kind="ai", name="Holder")
    contoso = ClientFactory(tenant=essentials, external_id="contoso", name="Contoso")
    browser = client_for(admin)
    full_ai = (
        'disabled data-testid="ai-action" title="All 10 AI licenses of your AI Essentials plan are '
        'assigned. Remove one from another client or upgrade your plan.">Add AI license</button>'
    )
    full_chat = full_ai.replace("ai-action", "chat-action").replace("AI license", "Chat license")
    full_chat = full_chat.replace("10 AI licenses", "10 Chat licenses")

    def row(body: str) -> str:
        found = re.search(rf'<tr id="client-{contoso.pk}"[^>]*>.*?</tr>', body, re.S)
        assert found is not None
        return found.group(0)

    page = row(browser.get(PAGE).content.decode())
    assert full_ai in page
    # The reason in words under the disabled item, not only as a tooltip (a disabled button takes
    # no focus: the keyboard and screen readers never reach its title).
    assert re.search(
        r'Add AI license</button><span class="muted small menu-reason" data-testid="ai-reason">All 10 AI '
        r"licenses of your AI Essentials plan are assigned\. Remove one from another client or upgrade your "
        r"plan\.</span>",
        page,
    )
    assert 'data-testid="chat-reason"' not in page  # Add Chat license is offered
    assert 'value="add" formaction' in page  # Add Chat license: 0 of 10 used
    table = browser.get(PAGE, {"q": "Contoso"}, HTTP_HX_TARGET="clients", **HTMX).content.decode()
    assert full_ai in row(table)

    licensed(essentials, 9, kind="chat", name="Chatter")
    added = browser.post(
        f"/t/acme/licenses/clients/{contoso.pk}/licenses/chat/", {"action": "add"}, **HTMX
    ).content.decode()
    assert Client.objects.get(pk=contoso.pk).chat_license_since is not None
    assert full_ai in row(added)
    assert 'data-testid="chat-action">Remove Chat license</button>' in row(added)  # it holds one
    other = ClientFactory(tenant=essentials, external_id="other", name="Other")
    body = browser.get(PAGE).content.decode()
    other_row = re.search(rf'<tr id="client-{other.pk}"[^>]*>.*?</tr>', body, re.S)
    assert other_row is not None
    assert full_chat in other_row.group(0)
    assert 'value="add"' not in other_row.group(0)


def test_l12_on_a_plan_assign_ai_license_is_offered_with_the_licenses_left(essentials, admin, client_for):
    page = client_for(admin).get(PAGE)
    assert by_testid(page, "assign-ai-license") == ["Assign AI license"]
    assert 'data-testid="assign-refused"' not in page.content.decode()
    dialog = client_for(admin).get("/t/acme/licenses/assign/", **HTMX)
    assert by_testid(dialog, "licenses-left")[0].startswith("10 of 10 AI licenses left.")
    assert 'data-testid="assign-submit"' in dialog.content.decode()


def test_l10_c23_ai_statistics_top_clients_show_the_clients_name_with_its_id(
    tenant, other_tenant, admin, client_for, clock, django_assert_num_queries
):
    """L08, L10, C23: AI Statistics' Top clients names each client as this page does (its name, the
    id as secondary text); an id that no client of this tenant has (another tenant's) is shown as it
    is; the names cost no query (the statistics page's pinned count, credits/tests/test_pages.py)."""
    from credits.tests.test_pages import QUERIES

    on_plus(tenant)
    grant(tenant, 100)
    for key, client_id, quantity in (("a", "4104", 3), ("b", "walk-in", 2)):
        credit_services.credits_consume(
            tenant=tenant,
            feature="smart_response",
            quantity=quantity,
            idempotency_key=key,
            client_id=client_id,
        )
    ClientFactory(tenant=tenant, external_id="4104", name="Contoso Dental")
    ClientFactory(tenant=other_tenant, external_id="walk-in", name="Globex's own client")
    browser = client_for(admin)
    stats = "/t/acme/statistics/ai-credits/"
    browser.get(stats)
    with django_assert_num_queries(QUERIES["statistics"]):
        response = browser.get(stats)
    body = response.content.decode()
    cells = [
        " ".join(re.sub(r"<[^>]+>", " ", cell).split())
        for cell in re.findall(r'<td class="wrap-anywhere" data-testid="top-client">(.*?)</td>', body, re.S)
    ]
    assert cells == ["Contoso Dental 4104", "walk-in"]
    assert '<strong>Contoso Dental</strong><div class="muted small mono">4104</div>' in body


def test_l12_l22_with_every_ai_license_assigned_the_picker_says_so_and_the_prompt_says_reached(
    essentials, admin, client_for
):
    """L12, L13, L22: at 10 of 10 AI licenses the picker has nothing to submit and says why (the
    message the rows' disabled Add AI license carries); the upgrade prompt says the AI licenses are
    all used, not that the plan is "close to" its limits."""
    licensed(essentials, 10)
    ClientFactory(tenant=essentials, external_id="walk-in", name="Walk-in")

    dialog = client_for(admin).get("/t/acme/licenses/assign/", **HTMX)
    refusal = by_testid(dialog, "assign-refused")
    assert refusal
    assert refusal[0].startswith("All 10 AI licenses of your AI Essentials plan are assigned.")
    assert 'data-testid="assign-submit"' not in dialog.content.decode()
    assert 'data-testid="pick-walk-in"' not in dialog.content.decode()

    prompt = by_testid(client_for(admin).get(PAGE), "upgrade-prompt")[0]
    assert prompt.startswith("You have reached your plan's limits: every one of your AI licenses is used.")
    assert "close to" not in prompt
