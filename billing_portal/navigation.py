"""The billing portal's sidebar entries (registered from BillingPortalConfig.ready)."""

from django.conf import settings

from tenants.access import ALL_ROLES, BILLING_READERS
from tenants.navigation import NavItem
from tenants.navigation import register as register_items


def billing_tab_enabled() -> bool:
    return settings.BILLING_TAB_ENABLED  # billing may happen outside the portal on a deployment (S03)


def register() -> None:
    register_items(
        NavItem("Billing", "billing", ALL_ROLES, order=10, icon="card", shown=billing_tab_enabled),
        NavItem("Invoices", "invoices", BILLING_READERS, order=70, icon="doc"),
    )
