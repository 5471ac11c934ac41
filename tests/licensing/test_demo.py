"""`seed_demo` gives Northwind a few hundred client companies on AI Essentials, licenses near the
plan's totals (two held by inactive clients), ticket credits partly used and AI credits used per
client, made through the real services (issue 10: "Done when")."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from licensing.models import Client, ClientImport, Ticket
from licensing.selectors import header
from tenants.models import AuditEvent, Tenant

pytestmark = pytest.mark.django_db


def test_northwind_is_a_partner_with_clients_licenses_and_ticket_credits_in_use(settings, client):
    settings.DEBUG = True
    call_command("seed_demo", stdout=None)
    northwind = Tenant.objects.get(slug="northwind")

    top = header(tenant=northwind)

    assert (top.ent.plan_name, top.ent.state) == ("AI Essentials", "active")
    assert top.clients == 300
    assert (top.ai.used, top.ai.total, top.chat.used, top.chat.total) == (9, 10, 6, 10)
    assert (top.flagged_clients, top.flagged_licenses) == (2, 4)
    assert (top.ticket_used, top.ticket_total) == (23, 60)
    assert top.near_limits == ["AI licenses"]
    assert Client.objects.filter(tenant=northwind, status="inactive").count() > 20
    assert Ticket.objects.filter(tenant=northwind, via="license").count() == 7
    assert ClientImport.objects.get(tenant=northwind).status == "applied"
    assert AuditEvent.objects.filter(tenant=northwind, action="clients.imported").count() == 1

    client.login(username="admin@northwind.test", password="allowance-demo")
    page = client.get("/t/northwind/licenses/").content.decode()
    assert 'data-testid="upgrade-prompt"' in page
    assert 'data-testid="inactive-flag"' in page

    call_command("seed_demo", stdout=None)  # again: nothing new
    assert Client.objects.filter(tenant=northwind).count() == 300
    assert Ticket.objects.filter(tenant=northwind).count() == 30
