"""Who may use the admin-only pages of a tenant: admins yes; members and finance 403; outsiders 404;
anonymous visitors to the login page. A refused request changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from django.core import mail
from django.test import Client

from tenants.factories import ApiKeyFactory, InvitationFactory
from tenants.models import ApiKey, Invitation, Membership, Role

from .helpers import db_rows


@dataclass(frozen=True)
class Targets:
    invitation: Invitation
    key: ApiKey
    membership: Membership  # the member persona's membership


@dataclass(frozen=True)
class Endpoint:
    id: str
    method: str
    url: str  # formatted with slug, invitation, key, membership
    data: dict | None
    admin_status: int
    admin_location: str | None  # where an admin is redirected after a successful POST
    effect: Callable[[Targets], bool]  # true once an admin's request has done its job

    def path(self, slug: str, t: Targets) -> str:
        return self.url.format(
            slug=slug, invitation=t.invitation.pk, key=t.key.pk, membership=t.membership.pk
        )

    def call(self, client: Client, slug: str, t: Targets):
        path = self.path(slug, t)
        return client.get(path) if self.method == "get" else client.post(path, self.data or {})


def _nothing(t: Targets) -> bool:
    return True


ADMIN_ONLY = [
    Endpoint("team", "get", "/t/{slug}/team/", None, 200, None, _nothing),
    Endpoint(
        "invitation-create",
        "post",
        "/t/{slug}/team/invitations/",
        {"email": "new@elsewhere.test", "role": "admin"},
        302,
        "/t/acme/team/",
        lambda t: (
            Invitation.objects.filter(
                tenant=t.invitation.tenant, email="new@elsewhere.test", role=Role.ADMIN, status="pending"
            ).count()
            == 1
        ),
    ),
    Endpoint(
        "invitation-revoke",
        "post",
        "/t/{slug}/team/invitations/{invitation}/revoke/",
        {},
        302,
        "/t/acme/team/",
        lambda t: Invitation.objects.get(pk=t.invitation.pk).status == Invitation.Status.REVOKED,
    ),
    Endpoint(
        "member-change-role",
        "post",
        "/t/{slug}/team/members/{membership}/role/",
        {"role": "admin"},
        302,
        "/t/acme/team/",
        lambda t: Membership.objects.get(pk=t.membership.pk).role == Role.ADMIN,
    ),
    Endpoint(
        "member-remove",
        "post",
        "/t/{slug}/team/members/{membership}/remove/",
        {},
        302,
        "/t/acme/team/",
        lambda t: not Membership.objects.filter(pk=t.membership.pk).exists(),
    ),
    Endpoint("api-keys", "get", "/t/{slug}/api-keys/", None, 200, None, _nothing),
    Endpoint(
        "api-key-create",
        "post",
        "/t/{slug}/api-keys/",
        {"name": "Stolen"},
        200,
        None,
        lambda t: ApiKey.objects.filter(tenant=t.key.tenant, name="Stolen").count() == 1,
    ),
    Endpoint(
        "api-key-revoke",
        "post",
        "/t/{slug}/api-keys/{key}/revoke/",
        {},
        302,
        "/t/acme/api-keys/",
        lambda t: ApiKey.objects.get(pk=t.key.pk).revoked_at is not None,
    ),
    Endpoint("activity", "get", "/t/{slug}/activity/", None, 200, None, _nothing),
]
WITH_IDS = [e for e in ADMIN_ONLY if "{" in e.url.replace("{slug}", "")]


@pytest.fixture
def targets(tenant, admin, member) -> Targets:
    return Targets(
        invitation=InvitationFactory(tenant=tenant, email="pat@elsewhere.test", invited_by=admin),
        key=ApiKeyFactory(tenant=tenant, created_by=admin),
        membership=Membership.objects.get(tenant=tenant, user=member),
    )


@pytest.mark.parametrize("endpoint", ADMIN_ONLY, ids=lambda e: e.id)
@pytest.mark.parametrize("role", ["member", "finance"])
def test_member_and_finance_are_refused_403_and_nothing_changes(
    request, role, endpoint, tenant, targets, client_for, django_capture_on_commit_callbacks
):
    client = client_for(request.getfixturevalue(role))  # logging in writes last_login: before the snapshot
    before = db_rows()

    with django_capture_on_commit_callbacks(execute=True):
        response = endpoint.call(client, tenant.slug, targets)

    assert response.status_code == 403
    assert db_rows() == before
    assert mail.outbox == []


@pytest.mark.parametrize("endpoint", ADMIN_ONLY, ids=lambda e: e.id)
def test_anonymous_visitors_are_sent_to_login_and_nothing_changes(endpoint, tenant, targets, client):
    before = db_rows()

    response = endpoint.call(client, tenant.slug, targets)

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=" + quote(endpoint.path(tenant.slug, targets))
    assert db_rows() == before


@pytest.mark.parametrize("endpoint", ADMIN_ONLY, ids=lambda e: e.id)
def test_non_member_gets_404_and_nothing_changes(endpoint, tenant, targets, outsider, client_for):
    client = client_for(outsider)  # logging in writes last_login: before the snapshot
    before = db_rows()

    response = endpoint.call(client, tenant.slug, targets)

    assert response.status_code == 404
    assert b"Acme" not in response.content
    assert db_rows() == before


@pytest.mark.parametrize("endpoint", WITH_IDS, ids=lambda e: e.id)
def test_admin_of_another_tenant_cannot_reach_these_rows_through_their_own_tenant(
    endpoint, tenant, other_tenant, targets, outsider, client_for
):
    client = client_for(outsider)
    before = db_rows()

    response = endpoint.call(client, other_tenant.slug, targets)

    assert response.status_code == 404
    assert db_rows() == before


@pytest.mark.parametrize("endpoint", ADMIN_ONLY, ids=lambda e: e.id)
def test_admin_can_use_every_admin_only_page(endpoint, tenant, admin, targets, client_for):
    response = endpoint.call(client_for(admin), tenant.slug, targets)

    assert response.status_code == endpoint.admin_status
    if endpoint.admin_location:
        assert response["Location"] == endpoint.admin_location
    assert endpoint.effect(targets)


@pytest.mark.parametrize("role", ["member", "finance"])
def test_member_and_finance_see_the_overview_without_links_to_admin_pages(request, role, tenant, client_for):
    response = client_for(request.getfixturevalue(role)).get("/t/acme/")

    assert response.status_code == 200
    for path in ("/t/acme/team/", "/t/acme/api-keys/", "/t/acme/activity/"):
        assert f'href="{path}"'.encode() not in response.content


def test_admin_sees_links_to_the_admin_pages(tenant, admin, client_for):
    response = client_for(admin).get("/t/acme/")

    assert response.status_code == 200
    for path in ("/t/acme/team/", "/t/acme/api-keys/", "/t/acme/activity/"):
        assert f'href="{path}"'.encode() in response.content


def test_anonymous_overview_redirects_to_login(tenant, client):
    response = client.get("/t/acme/")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/t/acme/"


def test_unknown_tenant_is_404_like_a_foreign_one(admin, client_for):
    assert client_for(admin).get("/t/no-such-tenant/").status_code == 404


@pytest.mark.django_db
def test_navigation_highlights_the_section_of_a_detail_page(admin, tenant, client_for):
    """The longest matching nav URL is active: an invoice's page highlights Invoices, not Overview."""
    from billing_portal.factories import InvoiceFactory

    invoice = InvoiceFactory(tenant=tenant)
    client = client_for(admin)
    page = client.get(f"/t/{tenant.slug}/invoices/{invoice.pk}/").content.decode()
    assert f'<a href="/t/{tenant.slug}/invoices/" aria-current="page"' in page
    assert f'<a href="/t/{tenant.slug}/" aria-current="page"' not in page
    page = client.get(f"/t/{tenant.slug}/").content.decode()
    assert f'<a href="/t/{tenant.slug}/" aria-current="page"' in page
