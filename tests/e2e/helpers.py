"""What the browser journeys share."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tenants.factories import PASSWORD


def log_in(page: Page, email: str) -> None:
    """Sign in on the login page as `email` (the factories' password) and wait for the tenant's pages."""
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("tenant-switcher")).to_be_visible()
