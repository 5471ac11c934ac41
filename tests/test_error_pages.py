"""Error pages in the product's layout (issue 6): 400, 403, 404 and 500 say why and offer a way back;
the 500 page (and the 400 and expired-form pages) render without a request or the database; a 403
is logged as one line, without a traceback."""

from __future__ import annotations

import logging
import re

import pytest
from django.core.exceptions import PermissionDenied
from django.template.loader import render_to_string
from django.test import Client
from django.urls import path

from billing_portal.factories import InvoiceFactory
from config import urls as project_urls


def _boom(request):
    raise RuntimeError("a bug")


def _refuse(request):
    raise PermissionDenied


# A URLconf for the 500 and a bare 403: the project's own, plus two views that fail.
urlpatterns = [path("boom/", _boom), path("refuse/", _refuse), *project_urls.urlpatterns]


def _card(response) -> dict[str, str]:
    """The error card: status, heading, reason, and the way back (its label and address)."""
    body = response.content.decode()
    assert 'class="topbar"' in body, "not in the product's layout"
    assert '<link rel="stylesheet" href="/static/css/app.css">' in body
    found = re.search(
        r'<p class="error-status" aria-hidden="true">(\d+)</p>\s*<h1>(.*?)</h1>\s*'
        r'<p data-testid="error-reason">(.*?)</p>\s*'
        r'<p><a class="button" href="(.*?)" data-testid="error-back">(.*?)</a></p>',
        body,
        re.S,
    )
    assert found, body
    status, heading, reason, href, label = found.groups()
    return {"status": status, "heading": heading, "reason": reason, "href": href, "back": label}


def test_403_from_a_tenant_page_says_the_role_does_not_allow_it_and_leads_to_the_overview(member, client_for):
    response = client_for(member).get("/t/acme/team/")

    assert response.status_code == 403
    assert _card(response) == {
        "status": "403",
        "heading": "You can\u2019t do this here",
        "reason": "Your role does not allow this.",
        "href": "/t/acme/",
        "back": "Back to Acme Corp\u2019s Overview",
    }
    # The member's own navigation, as on any page of the tenant (Team is not in it: admins only).
    sidebar = re.search(r'<nav class="sidebar".*?</nav>', response.content.decode(), re.S)
    assert sidebar
    links = re.findall(r'<li><a href="([^"]+)"', sidebar.group())
    assert links[0] == "/t/acme/"
    assert "/t/acme/team/" not in links


@pytest.mark.urls("tests.test_error_pages")
def test_403_without_a_reason_or_a_tenant_has_a_general_reason_and_leads_home(member, client_for):
    response = client_for(member).get("/refuse/")

    assert response.status_code == 403
    assert _card(response) == {
        "status": "403",
        "heading": "You can\u2019t do this here",
        "reason": "You do not have permission to do this.",
        "href": "/",
        "back": "Go to your organization",
    }


def test_404_of_a_member_leads_back_to_the_tenants_overview(finance, client_for):
    response = client_for(finance).get("/t/acme/invoices/987654321/")

    assert response.status_code == 404
    assert _card(response) == {
        "status": "404",
        "heading": "Page not found",
        "reason": "This page does not exist, or it is not one you can see. Check the address, or go back.",
        "href": "/t/acme/",
        "back": "Back to Acme Corp\u2019s Overview",
    }


def test_404_of_another_tenants_page_reveals_nothing_and_leads_to_the_users_own(outsider, client_for, tenant):
    invoice = InvoiceFactory(tenant=tenant, number="ACME-SECRET-1")

    response = client_for(outsider).get(f"/t/acme/invoices/{invoice.pk}/")

    assert response.status_code == 404
    card = _card(response)
    assert (card["href"], card["back"]) == ("/", "Go to your organization")
    body = response.content.decode()
    assert "Acme" not in body
    assert "ACME-SECRET-1" not in body


def test_404_when_signed_out_leads_to_the_login_page(db):
    response = Client().get("/no/such/page/")

    assert response.status_code == 404
    assert (_card(response)["href"], _card(response)["back"]) == ("/accounts/login/", "Log in")


def test_400_for_a_nul_character_says_so(db):
    response = Client().get("/accounts/login/?next=%00")

    assert response.status_code == 400
    assert _card(response) == {
        "status": "400",
        "heading": "Bad request",
        "reason": "The request contains a NUL character, which no field, path or header may hold.",
        "href": "/",
        "back": "Go to Allowance",
    }


def test_400_for_a_form_without_its_multipart_boundary_says_so_without_a_traceback(db, caplog):
    with caplog.at_level(logging.INFO):
        response = Client().post("/accounts/login/", "username=a", content_type="multipart/form-data")

    assert response.status_code == 400
    assert _card(response)["reason"] == "The form could not be read. Go back to the page and send it again."
    assert not [r for r in caplog.records if r.exc_info or "multipart" in r.getMessage().lower()]


def test_400_that_django_answers_itself_uses_the_same_page(db):
    response = Client().get("/accounts/login/", HTTP_HOST="evil.example")  # not in ALLOWED_HOSTS

    assert response.status_code == 400
    assert _card(response)["reason"] == "The request could not be understood. Go back and try again."


@pytest.mark.urls("tests.test_error_pages")
def test_500_renders_the_layout_with_an_apology_and_a_way_home(db):
    client = Client(raise_request_exception=False)

    response = client.get("/boom/")

    assert response.status_code == 500
    assert _card(response) == {
        "status": "500",
        "heading": "Something went wrong",
        "reason": "Something went wrong on our side and it has been logged. Nothing you did caused it; "
        "try again in a moment.",
        "href": "/",
        "back": "Go to Allowance",
    }


@pytest.mark.parametrize("template", ["500.html", "400.html", "403_csrf.html"])
def test_the_standalone_error_pages_need_no_request_and_no_database(template):
    """Django renders 500.html with no context at all, when the database may be what failed. This
    test has no database access: a query would raise."""
    html = render_to_string(template)

    assert 'class="topbar"' in html
    assert 'data-testid="error-reason"' in html
    assert 'href="/"' in html


def test_an_expired_form_is_a_styled_403(admin):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin, backend="django.contrib.auth.backends.ModelBackend")

    response = client.post("/t/acme/api-keys/", {"name": "no token"})

    assert response.status_code == 403
    card = _card(response)
    assert (card["heading"], card["href"]) == ("This form has expired", "/")
    assert card["reason"].startswith("The page was open too long")


def test_a_403_is_logged_as_one_warning_without_a_traceback(member, client_for, caplog):
    with caplog.at_level(logging.WARNING, logger="django.request"):
        response = client_for(member).get("/t/acme/team/")

    assert response.status_code == 403
    [record] = [r for r in caplog.records if r.name == "django.request"]
    assert record.levelname == "WARNING"
    assert (
        record.getMessage() == "Forbidden (Permission denied): /t/acme/team/ (Your role does not allow this.)"
    )
    assert record.exc_info is None
    assert record.exc_text is None


@pytest.mark.urls("tests.test_error_pages")
def test_a_500_keeps_its_traceback_in_the_log(db, caplog):
    with caplog.at_level(logging.ERROR, logger="django.request"):
        Client(raise_request_exception=False).get("/boom/")

    [record] = [r for r in caplog.records if r.name == "django.request"]
    assert record.levelname == "ERROR"
    assert record.exc_info is not None
    assert record.exc_info[0] is RuntimeError


def _refused_start(tenant, admin) -> tuple[int, str]:
    """A session start refused for a billing reason (no AI Agents subscription): a 402."""
    from tenants.services import api_key_create

    secret = api_key_create(tenant=tenant, name="runtime", actor=admin).secret
    response = Client().post(
        "/api/v1/sessions",
        data='{"conversation_id": "c-1", "direction": "inbound"}',
        content_type="application/json",
        headers={"authorization": f"Bearer {secret}"},
    )
    return response.status_code, response.json()["error"]["code"]


def test_a_402_is_not_a_warning(tenant, admin, caplog):
    with caplog.at_level(logging.WARNING, logger="django.request"):
        answer = _refused_start(tenant, admin)

    assert answer == (402, "subscription_ended")
    assert [r for r in caplog.records if r.name == "django.request"] == []


def test_a_402_is_logged_at_info(tenant, admin, caplog):
    with caplog.at_level(logging.INFO, logger="django.request"):
        answer = _refused_start(tenant, admin)

    assert answer == (402, "subscription_ended")
    [record] = [r for r in caplog.records if r.name == "django.request"]
    assert (record.levelname, record.getMessage()) == ("INFO", "Payment Required: /api/v1/sessions")


def test_other_4xx_answers_of_the_api_stay_warnings(db, caplog):
    with caplog.at_level(logging.WARNING, logger="django.request"):
        response = Client().get("/api/v1/entitlements")

    assert response.status_code == 401
    [record] = [r for r in caplog.records if r.name == "django.request"]
    assert (record.levelname, record.getMessage()) == ("WARNING", "Unauthorized: /api/v1/entitlements")


@pytest.mark.parametrize(("log_level", "written"), [("WARNING", False), ("INFO", True)])
def test_a_402_is_written_only_where_log_level_lets_info_through(log_level, written):
    """LOG_LEVEL is the root logger's level; Django's "django" logger is at INFO whatever it says."""
    from config.log_filters import PaymentRequiredAtInfo

    root = logging.getLogger()
    before = root.level
    root.setLevel(log_level)
    try:
        record = logging.LogRecord(
            "django.request", logging.WARNING, "", 0, "Payment Required: %s", ("/x",), None
        )
        record.status_code = 402
        kept = PaymentRequiredAtInfo().filter(record)
        other = logging.LogRecord("django.request", logging.WARNING, "", 0, "Not Found: %s", ("/x",), None)
        other.status_code = 404
    finally:
        root.setLevel(before)

    assert (kept, record.levelname) == (written, "INFO")
    assert PaymentRequiredAtInfo().filter(other) is True
    assert other.levelname == "WARNING"


@pytest.mark.parametrize(
    ("method", "url", "allow"),
    [("get", "/t/acme/billing/cancel/", "POST"), ("post", "/t/acme/dev/mailbox/", "GET")],
)
def test_405_on_a_page_says_which_method_in_the_products_layout(
    admin, client_for, settings, method, url, allow
):
    settings.DEBUG = True  # the dev mailbox exists only then
    response = getattr(client_for(admin), method)(url)

    assert response.status_code == 405
    assert response["Allow"] == allow
    card = _card(response)
    assert (card["status"], card["heading"]) == ("405", "This page does not do that")
    assert card["reason"] == f"This address answers {allow} only: use the buttons and links on the page."
