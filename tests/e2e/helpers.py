"""What the browser journeys share."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from licensing.factories import ClientFactory, on_helpdesk
from tenants.factories import PASSWORD, MembershipFactory, TenantFactory, UserFactory
from tenants.models import Role, Tenant


def log_in(page: Page, email: str) -> None:
    """Sign in on the login page as `email` (the factories' password) and wait for the tenant's pages."""
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("tenant-switcher")).to_be_visible()


def msp_partner(name: str, slug: str, *, admin_email: str, clients_before: int = 0) -> Tenant:
    """An MSP partner on AI Essentials with an administrator (`admin_email`), `clients_before`
    numbered clients, then Fabrikam Dental and Tailspin Travel (the clients the journeys look for)."""
    tenant = TenantFactory(name=name, slug=slug)
    MembershipFactory(tenant=tenant, user=UserFactory(email=admin_email), role=Role.ADMIN)
    on_helpdesk(tenant)
    for i in range(clients_before):
        ClientFactory(tenant=tenant, name=f"Client {i:02d}")
    ClientFactory(tenant=tenant, name="Fabrikam Dental", external_id="fabrikam")
    ClientFactory(tenant=tenant, name="Tailspin Travel", external_id="tailspin")
    return tenant
