"""Security headers (issue 6): a Content-Security-Policy that allows our own origin only, a
Permissions-Policy that switches off the browser features no page uses, and `Cache-Control:
no-store` on the pages that show billing documents or a new API key's secret. Page templates carry
no inline script, handler or style, so the policy needs no exception."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client
from django.urls import URLResolver, get_resolver, reverse

from billing_portal.factories import InvoiceFactory, InvoiceLineFactory
from config.settings import content_security_policy

BASE_DIR = Path(__file__).resolve().parent.parent
STRIPE_PAGES = ["https://checkout.stripe.com", "https://billing.stripe.com"]
OUR_ORIGIN_ONLY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'self'; frame-ancestors 'none'; form-action 'self'"
)
PERMISSIONS_POLICY = (
    "accelerometer=(), autoplay=(), camera=(), display-capture=(), geolocation=(), gyroscope=(), "
    "magnetometer=(), microphone=(), midi=(), payment=(), usb=(), xr-spatial-tracking=()"
)


@pytest.fixture
def invoice(tenant):
    invoice = InvoiceFactory(tenant=tenant, number="ACME-0001")
    InvoiceLineFactory(invoice=invoice)
    return invoice


@pytest.mark.parametrize("gateway", ["local", "stripe"])
def test_every_answer_carries_the_content_security_policy(settings, admin, client_for, gateway):
    settings.SECURE_CSP = content_security_policy(gateway=gateway, hosted_origins=STRIPE_PAGES)
    expected = OUR_ORIGIN_ONLY + (
        " https://checkout.stripe.com https://billing.stripe.com" if gateway == "stripe" else ""
    )
    client = client_for(admin)

    for url in ("/t/acme/", "/t/acme/billing/", "/accounts/login/", "/no/such/page/", "/api/v1/docs"):
        response = client.get(url)
        assert response["Content-Security-Policy"] == expected, url
    assert Client().get("/accounts/login/")["Content-Security-Policy"] == expected


def test_every_answer_carries_the_permissions_policy(admin, client_for):
    client = client_for(admin)

    for response in (
        client.get("/t/acme/"),
        client.get("/healthz"),
        Client().get("/api/v1/tenant"),  # a 401 in the API's shape
        Client().get("/accounts/login/?x=%00"),  # refused at the door
    ):
        assert response["Permissions-Policy"] == PERMISSIONS_POLICY


def _no_store(response) -> bool:
    return "no-store" in [d.strip() for d in response.get("Cache-Control", "").split(",")]


def test_invoice_detail_pdf_and_csv_are_never_stored(finance, client_for, invoice):
    client = client_for(finance)

    for url in (
        f"/t/acme/invoices/{invoice.pk}/",
        f"/t/acme/invoices/{invoice.pk}/pdf/",
        "/t/acme/invoices/export.csv",
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        assert _no_store(response), url
        assert "private" in response["Cache-Control"], url


def _downloads(resolver=None, prefix: str = "") -> list[tuple[str, str]]:
    """(route, url name) of every download the URLconf serves: a CSV export or a PDF."""
    found: list[tuple[str, str]] = []
    for entry in (resolver or get_resolver()).url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            found += _downloads(entry, route)
        elif route.endswith(".csv") or route.endswith("pdf/"):
            found.append((route, entry.name or ""))
    return found


def test_every_csv_export_and_download_is_never_stored(admin, client_for, invoice):
    """Every CSV export (AI Statistics C04, licenses, sessions, invoices) and the invoice PDF answer
    `Cache-Control: no-store` (private, no-cache, must-revalidate), as README says: found by walking
    the URLconf, so a new export is covered without being listed."""
    downloads = _downloads()
    assert {name for _, name in downloads} >= {
        "ai_statistics_csv",
        "licenses_csv",
        "sessions_csv",
        "invoice_csv",
        "invoice_pdf",
    }
    values = {"slug": "acme", "invoice_id": invoice.pk}
    client = client_for(admin)
    for route, name in downloads:
        params = re.findall(r"<(?:\w+:)?(\w+)>", route)
        url = reverse(name, kwargs={p: values[p] for p in params})
        response = client.get(url)
        assert response.status_code == 200, url
        directives = {d.strip() for d in response.get("Cache-Control", "").split(",")}
        assert {"no-store", "no-cache", "must-revalidate", "private"} <= directives, (url, directives)


def test_the_api_keys_page_and_a_new_keys_secret_are_never_stored(admin, client_for):
    client = client_for(admin)

    page = client.get("/t/acme/api-keys/")
    issued = client.post("/t/acme/api-keys/", {"name": "CI"})

    assert (page.status_code, issued.status_code) == (200, 200)
    assert b"alw_" in issued.content  # the secret, shown once
    assert _no_store(page)
    assert _no_store(issued)


def test_ordinary_pages_may_be_cached_by_the_browser(admin, client_for, invoice):
    """no-store is for billing documents and secrets, not every page (back/forward stays fast)."""
    client = client_for(admin)

    for url in ("/t/acme/", "/t/acme/invoices/", "/t/acme/billing/"):
        assert not _no_store(client.get(url)), url


# Inline behaviour the policy forbids: a <script> with a body, an on*= handler, htmx's hx-on, an
# inline style attribute, a <style> element. Emails are not pages (and must inline their styles).
FORBIDDEN = {
    "inline script": re.compile(r"<script(?![^>]*\bsrc=)[^>]*>\s*\S", re.I),
    "event handler attribute": re.compile(r"\son[a-z]+\s*=", re.I),
    "hx-on attribute": re.compile(r"\shx-on", re.I),
    "style attribute": re.compile(r"\sstyle\s*=", re.I),
    "style element": re.compile(r"<style[\s>]", re.I),
}


def _without_comments(source: str) -> str:
    source = re.sub(r"\{#.*?#\}", "", source, flags=re.S)
    return re.sub(r"\{% comment %\}.*?\{% endcomment %\}", "", source, flags=re.S)


def _page_templates() -> list[Path]:
    roots = [BASE_DIR / "templates", *BASE_DIR.glob("*/templates")]
    return sorted(
        p for root in roots for p in root.rglob("*.html") if "emails" not in p.relative_to(root).parts
    )


def test_page_templates_hold_no_inline_script_handler_or_style():
    templates = _page_templates()
    assert len(templates) > 20
    found = [
        f"{path.relative_to(BASE_DIR)}: {what}"
        for path in templates
        for what, pattern in FORBIDDEN.items()
        if pattern.search(_without_comments(path.read_text()))
    ]
    assert found == []
