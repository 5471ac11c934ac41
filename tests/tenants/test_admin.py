"""The Django admin for platform staff: every tenants changelist opens and searches; tenant users who
are not staff are sent to the admin login."""

from __future__ import annotations

import pytest
from django.test import Client

from tenants import services
from tenants.factories import ApiKeyFactory, InvitationFactory, UserFactory
from tenants.models import ApiKey, AuditEvent, Invitation, Membership, Notification, Tenant, User
from tenants.notifications import notify

CHANGELISTS = ["tenant", "user", "membership", "invitation", "apikey", "auditevent", "notification"]


@pytest.fixture
def staff(db) -> User:
    return UserFactory(email="staff@platform.test", is_staff=True, is_superuser=True)


@pytest.fixture
def rows(tenant, admin, member, outsider, other_tenant):
    InvitationFactory(tenant=tenant, email="pat@invitee.test", invited_by=admin)
    InvitationFactory(tenant=other_tenant, email="sam@invitee.test")
    ApiKeyFactory(tenant=tenant, name="Acme sync")
    ApiKeyFactory(tenant=other_tenant, name="Globex sync")
    services.membership_change_role(
        tenant=tenant, membership=Membership.objects.get(user=member), role="finance", actor=admin
    )
    notify(
        key="welcome:pat",
        tenant=tenant,
        to="pat@invitee.test",
        template="password_reset",
        context={"user": member, "link": "http://127.0.0.1:8000/x/"},
    )


@pytest.mark.parametrize(
    ("model", "query", "expected"),
    [
        ("tenant", "acme", ["Acme Corp"]),
        ("tenant", "member@acme.test", ["Acme Corp"]),  # by a member's email, once despite two matches
        ("tenant", "acme.test", ["Acme Corp"]),
        ("user", "acme.test", ["admin@acme.test", "member@acme.test"]),
        ("membership", "globex", ["outsider@globex.test in Globex Secret Holdings (admin)"]),
        ("invitation", "pat@", ["pat@invitee.test → Acme Corp (pending)"]),
        ("apikey", "globex", ["Globex sync"]),
        ("auditevent", "member.role", ["member.role_changed"]),
        ("notification", "pat@invitee", ["welcome:pat"]),
    ],
)
def test_staff_searches_every_changelist(staff, rows, client_for, model, query, expected):
    response = client_for(staff).get(f"/admin/tenants/{model}/", {"q": query})

    assert response.status_code == 200
    found = list(response.context["cl"].result_list)
    labels = {
        "user": lambda o: o.email,
        "apikey": lambda o: o.name,
        "auditevent": lambda o: o.action,
        "notification": lambda o: o.key,
        "tenant": lambda o: o.name,
    }.get(model, str)
    assert sorted(labels(o) for o in found) == expected


@pytest.mark.parametrize("model", CHANGELISTS)
def test_staff_opens_every_changelist_unfiltered(staff, rows, model, client_for):
    response = client_for(staff).get(f"/admin/tenants/{model}/")

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("model", "get_row"),
    [
        ("tenant", lambda: Tenant.objects.get(slug="acme")),
        ("user", lambda: User.objects.get(email="admin@acme.test")),
        ("membership", lambda: Membership.objects.first()),
        ("invitation", lambda: Invitation.objects.first()),
        ("apikey", lambda: ApiKey.objects.first()),
        ("auditevent", lambda: AuditEvent.objects.first()),
        ("notification", lambda: Notification.objects.first()),
    ],
)
def test_staff_opens_every_change_page(staff, rows, client_for, model, get_row):
    response = client_for(staff).get(f"/admin/tenants/{model}/{get_row().pk}/change/")

    assert response.status_code == 200


def test_staff_opens_the_add_user_page(staff, client_for):
    assert client_for(staff).get("/admin/tenants/user/add/").status_code == 200


def test_audit_log_is_read_only_in_the_admin(staff, rows, client_for):
    event = AuditEvent.objects.first()
    client = client_for(staff)

    assert client.get("/admin/tenants/auditevent/add/").status_code == 403
    assert client.post(f"/admin/tenants/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_staff_can_neither_move_nor_unrevoke_a_key_nor_change_a_membership_by_hand(
    staff, tenant, admin, other_tenant, client_for
):
    """An outsider probe moved a revoked key to another tenant and made it work again, and left a
    tenant without an admin, all unaudited: those rows change through the services only. Keys are
    revoked through an audited action."""
    client = client_for(staff)
    key = services.api_key_create(tenant=tenant, name="Acme sync", actor=admin).api_key
    services.api_key_revoke(tenant=tenant, api_key=key, actor=admin)
    membership = Membership.objects.get(user=admin)

    moved = client.post(
        f"/admin/tenants/apikey/{key.pk}/change/",
        {"tenant": other_tenant.pk, "name": "x", "revoked_at_0": "", "revoked_at_1": "", "_save": "Save"},
    )
    demoted = client.post(
        f"/admin/tenants/membership/{membership.pk}/change/",
        {"user": admin.pk, "tenant": tenant.pk, "role": "member", "_save": "Save"},
    )

    assert (moved.status_code, demoted.status_code) == (403, 403)
    key.refresh_from_db()
    membership.refresh_from_db()
    assert (key.tenant_id, key.revoked_at is not None, membership.role) == (tenant.pk, True, "admin")
    live = services.api_key_create(tenant=tenant, name="Live", actor=admin).api_key
    done = client.post("/admin/tenants/apikey/", {"action": "revoke", "_selected_action": [live.pk]})
    assert done.status_code == 302
    live.refresh_from_db()
    assert live.revoked_at is not None
    assert AuditEvent.objects.filter(action="api_key.revoked", actor_label=staff.email).count() == 1


@pytest.mark.parametrize("model", CHANGELISTS)
def test_tenant_admin_who_is_not_staff_is_sent_to_the_admin_login(admin, client_for, model):
    response = client_for(admin).get(f"/admin/tenants/{model}/", {"q": "acme"})

    assert response.status_code == 302
    assert response["Location"].startswith(f"/admin/login/?next=/admin/tenants/{model}/")


def test_anonymous_visitor_is_sent_to_the_admin_login(db):
    response = Client().get("/admin/tenants/tenant/")

    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/admin/tenants/tenant/"


def test_staff_adds_a_user_whose_email_is_stored_lower_case(staff, client_for):
    response = client_for(staff).post(
        "/admin/tenants/user/add/",
        {
            "email": " Pat@Elsewhere.TEST ",
            "password1": "plum-orchard-telescope",
            "password2": "plum-orchard-telescope",
            "usable_password": "true",
        },
    )

    assert response.status_code == 302
    pat = User.objects.get(email="pat@elsewhere.test")
    assert response["Location"] == f"/admin/tenants/user/{pat.pk}/change/"
    assert pat.check_password("plum-orchard-telescope")


def test_staff_cannot_add_a_case_variant_of_a_taken_email(staff, admin, client_for):
    response = client_for(staff).post(
        "/admin/tenants/user/add/",
        {
            "email": "ADMIN@acme.test",
            "password1": "plum-orchard-telescope",
            "password2": "plum-orchard-telescope",
            "usable_password": "true",
        },
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"email": ["User with this Email already exists."]}
    assert User.objects.filter(email__iexact="admin@acme.test").count() == 1


def test_staff_editing_a_user_keeps_the_email_lower_case(staff, member, client_for):
    client = client_for(staff)
    page = client.get(f"/admin/tenants/user/{member.pk}/change/")
    data = {k: v for k, v in page.context["adminform"].form.initial.items() if v is not None}
    data.update(
        email="Member@ACME.test", full_name="Mem Ber", date_joined_0="2026-01-01", date_joined_1="10:00"
    )
    data.pop("date_joined", None)
    data.pop("last_login", None)
    data.pop("groups", None)
    data.pop("user_permissions", None)

    response = client.post(f"/admin/tenants/user/{member.pk}/change/", data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    member.refresh_from_db()
    assert (member.email, member.full_name) == ("member@acme.test", "Mem Ber")
