"""Accounts: sign-up, log in and out, password reset through the notification log, the tenant
switcher, login throttling, and creating another organization."""

from __future__ import annotations

import pytest
from django.core import mail
from django.test import Client

from tenants import services
from tenants.errors import BusinessError
from tenants.factories import PASSWORD, MembershipFactory
from tenants.models import ActorType, Membership, Notification, Role, Tenant, User

from .helpers import db_rows, link_in, logged_in_user_id, messages_of, tenant_events

STRONG = "plum-orchard-telescope"
NEW_PASSWORD = "quiet-lantern-harbour"


@pytest.fixture
def send_mail(django_capture_on_commit_callbacks):
    return lambda: django_capture_on_commit_callbacks(execute=True)


# --- sign-up -----------------------------------------------------------------------------------


def test_signup_creates_user_tenant_admin_membership_and_audit_events_and_logs_in(db):
    client = Client()

    response = client.post(
        "/accounts/signup/",
        {"full_name": "Jo Rivera", "email": "Jo@NewCo.test", "password": STRONG, "organization": "New Co"},
    )

    assert response.status_code == 302
    assert response["Location"] == "/t/new-co/"
    assert messages_of(response) == ["Welcome to Allowance. New Co is ready."]
    user = User.objects.get()
    assert (user.email, user.full_name) == ("jo@newco.test", "Jo Rivera")
    assert user.check_password(STRONG)
    tenant = Tenant.objects.get()
    assert (tenant.name, tenant.slug) == ("New Co", "new-co")
    assert list(Membership.objects.values_list("user", "tenant", "role")) == [(user.pk, tenant.pk, "admin")]
    assert list(tenant_events().values_list("tenant", "action", "actor_type", "actor_user", "data")) == [
        (tenant.pk, "tenant.created", ActorType.USER, user.pk, {}),
        (tenant.pk, "member.added", ActorType.USER, user.pk, {"role": "admin"}),
    ]
    assert logged_in_user_id(client) == str(user.pk)
    assert client.get("/t/new-co/team/").status_code == 200


def test_signup_with_a_taken_email_is_refused_whatever_its_case(admin):
    before = db_rows()

    response = Client().post(
        "/accounts/signup/",
        {"email": "ADMIN@Acme.TEST", "password": STRONG, "organization": "Impostor Inc"},
    )

    assert response.status_code == 400
    assert response.context["form"].errors == {
        "email": ["An account with this email already exists. Log in instead."]
    }
    assert db_rows() == before


def test_signup_with_an_email_longer_than_the_column_is_a_form_error_not_a_500(db):
    """The form's EmailField takes 320 characters, the column 254 (a DataError on PostgreSQL)."""
    long = "x" * 300 + "@example.com"

    response = Client().post(
        "/accounts/signup/", {"email": long, "password": STRONG, "organization": "New Co"}
    )

    assert response.status_code == 400
    assert response.context["form"].errors["email"] == [
        "Ensure this value has at most 254 characters (it has 312)."
    ]
    assert not User.objects.exists()


def test_signup_with_a_weak_password_is_refused(db):
    response = Client().post(
        "/accounts/signup/", {"email": "jo@newco.test", "password": "1234567890", "organization": "New Co"}
    )

    assert response.status_code == 400
    assert response.context["form"].errors == {
        "password": ["This password is too common. This password is entirely numeric."]
    }
    assert not User.objects.exists()
    assert not Tenant.objects.exists()


def test_signup_with_a_password_like_the_email_is_refused(db):
    response = Client().post(
        "/accounts/signup/",
        {"email": "jorivera@newco.test", "password": "jorivera@newco", "organization": "New Co"},
    )

    assert response.status_code == 400
    assert response.context["form"].errors == {"password": ["The password is too similar to the email."]}
    assert not User.objects.exists()


def test_signed_in_user_is_sent_home_from_signup(admin, client_for):
    response = client_for(admin).get("/accounts/signup/")

    assert response.status_code == 302
    assert response["Location"] == "/"


# --- log in, log out ---------------------------------------------------------------------------


def test_login_with_email_in_any_case_and_password(admin):
    client = Client()

    response = client.post("/accounts/login/", {"username": "Admin@ACME.test", "password": PASSWORD})

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert logged_in_user_id(client) == str(admin.pk)
    assert client.get("/")["Location"] == "/t/acme/"


def test_login_with_a_wrong_password_is_refused(admin):
    client = Client()

    response = client.post(
        "/accounts/login/", {"username": "admin@acme.test", "password": "not-the-password"}
    )

    assert response.status_code == 200
    assert response.context["form"].non_field_errors() == [
        "Please enter a correct email and password. Note that both fields may be case-sensitive."
    ]
    assert logged_in_user_id(client) is None


def test_logout_is_a_post(admin, client_for):
    client = client_for(admin)

    assert client.get("/accounts/logout/").status_code == 405
    assert logged_in_user_id(client) == str(admin.pk)

    response = client.post("/accounts/logout/")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/"
    assert logged_in_user_id(client) is None
    assert client.get("/t/acme/").status_code == 302


# --- password reset ----------------------------------------------------------------------------


def _request_reset(client: Client, email: str, send_mail):
    with send_mail():
        return client.post("/accounts/password/reset/", {"email": email})


def _follow_reset_link(client: Client, path: str, password: str):
    """Open the emailed link (Django moves the token into the session) and choose `password`."""
    opened = client.get(path)
    assert opened.status_code == 302
    form_page = opened["Location"]
    assert client.get(form_page).context["validlink"] is True
    return client.post(form_page, {"new_password1": password, "new_password2": password})


def test_password_reset_emails_a_link_through_the_notification_log_that_sets_a_new_password(admin, send_mail):
    client = Client()

    response = _request_reset(client, "ADMIN@acme.test", send_mail)

    assert response.status_code == 302
    assert response["Location"] == "/accounts/password/reset/sent/"
    assert len(mail.outbox) == 1
    email = mail.outbox[0]
    assert email.to == ["admin@acme.test"]
    assert email.subject == "Reset your password on Allowance"
    note = Notification.objects.get()
    assert note.key.startswith(f"password-reset:{admin.pk}:")
    assert (note.template, note.to_email, note.tenant, note.status, note.body_text) == (
        "password_reset",
        "admin@acme.test",
        None,
        Notification.Status.SENT,
        "",
    )

    done = _follow_reset_link(client, link_in(email), NEW_PASSWORD)

    assert done.status_code == 302
    assert done["Location"] == "/accounts/password/reset/done/"
    admin.refresh_from_db()
    assert admin.check_password(NEW_PASSWORD)
    assert logged_in_user_id(client) == str(admin.pk)  # post_reset_login


def test_password_reset_link_works_once(admin, send_mail):
    _request_reset(Client(), "admin@acme.test", send_mail)
    path = link_in(mail.outbox[0])
    _follow_reset_link(Client(), path, NEW_PASSWORD)

    again = Client().get(path, follow=True)

    assert again.context["validlink"] is False
    assert b"This link is not valid any more" in again.content
    admin.refresh_from_db()
    assert admin.check_password(NEW_PASSWORD)


def test_password_reset_for_an_unknown_email_sends_nothing_but_looks_the_same(admin, send_mail):
    known = _request_reset(Client(), "admin@acme.test", send_mail)
    mail.outbox.clear()
    Notification.objects.all().delete()

    unknown = _request_reset(Client(), "nobody@acme.test", send_mail)

    assert (unknown.status_code, unknown["Location"]) == (known.status_code, known["Location"])
    assert mail.outbox == []
    assert not Notification.objects.exists()
    page = Client().get(unknown["Location"])
    assert b"Check your email" in page.content


def test_password_reset_matches_an_address_as_django_does_not_one_that_only_upper_cases_alike(db, send_mail):
    """CVE-2019-19844, as Django's own form guards it: "x@\\u0131nitech.test" (a dotless i) upper-cases
    as "x@initech.test" does, so the database's case-insensitive match finds that user; Unicode's
    case-insensitive comparison does not, and no reset is sent for it."""
    User.objects.create_user("x@initech.test", password="Correct-horse-battery-42")

    _request_reset(Client(), "x@\u0131nitech.test", send_mail)
    assert mail.outbox == []
    _request_reset(Client(), "X@INITECH.test", send_mail)
    assert [m.to for m in mail.outbox] == [["x@initech.test"]]


def test_password_reset_reaches_a_user_who_never_chose_a_password(db, send_mail):
    ops = User.objects.create_user("ops@acme.test")  # as create_tenant makes them
    assert not ops.has_usable_password()
    client = Client()

    _request_reset(client, "ops@acme.test", send_mail)
    assert [m.to for m in mail.outbox] == [["ops@acme.test"]]
    _follow_reset_link(client, link_in(mail.outbox[0]), NEW_PASSWORD)

    ops.refresh_from_db()
    assert ops.check_password(NEW_PASSWORD)


def test_password_reset_is_not_sent_to_a_deactivated_user(admin, send_mail):
    User.objects.filter(pk=admin.pk).update(is_active=False)

    _request_reset(Client(), "admin@acme.test", send_mail)

    assert mail.outbox == []


# --- the tenant switcher and home --------------------------------------------------------------


def test_user_in_two_tenants_sees_both_in_the_switcher_and_home_goes_to_the_last_used(
    tenant, other_tenant, admin, client_for
):
    MembershipFactory(tenant=other_tenant, user=admin, role=Role.FINANCE)
    client = client_for(admin)

    page = client.get("/t/acme/").content.decode()
    switcher = page[page.index('data-testid="tenant-switcher"') :]
    assert '<a href="/t/acme/" aria-current="true">Acme Corp <span class="badge">Admin</span></a>' in switcher
    assert '<a href="/t/globex/" >Globex Secret Holdings <span class="badge">Finance</span></a>' in switcher

    assert client.get("/t/globex/").status_code == 200
    assert client.get("/")["Location"] == "/t/globex/"
    assert client.get("/t/acme/").status_code == 200
    assert client.get("/")["Location"] == "/t/acme/"


def test_switcher_lists_only_the_users_own_tenants(tenant, admin, outsider, client_for):
    content = client_for(admin).get("/t/acme/").content.decode()

    assert "Globex" not in content


def test_home_without_a_last_tenant_goes_to_the_first_by_name(tenant, other_tenant, outsider, client_for):
    MembershipFactory(tenant=tenant, user=outsider, role=Role.MEMBER)

    response = client_for(outsider).get("/")

    assert response["Location"] == "/t/acme/"  # "Acme Corp" sorts before "Globex Secret Holdings"


def test_home_of_a_user_without_tenants_offers_to_create_one(db, client_for):
    loner = User.objects.create_user("loner@x.test", STRONG)

    response = client_for(loner).get("/")

    assert response.status_code == 200
    assert b"You are not in an organization" in response.content
    assert b'href="/organizations/new/"' in response.content


def test_home_of_an_anonymous_visitor_is_the_login_page(db):
    response = Client().get("/")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/"


# --- login throttling --------------------------------------------------------------------------


def _login(ip: str, username: str, password: str):
    return Client(REMOTE_ADDR=ip).post("/accounts/login/", {"username": username, "password": password})


@pytest.fixture
def throttled(settings):
    settings.AXES_ENABLED = True


def test_five_failures_lock_that_email_out_from_that_ip_only(throttled, admin):
    for _ in range(4):
        assert _login("10.0.0.1", "admin@acme.test", "wrong-password").status_code == 200
    fifth = _login("10.0.0.1", "admin@acme.test", "wrong-password")
    assert fifth.status_code == 429

    locked = _login("10.0.0.1", "admin@acme.test", PASSWORD)
    assert locked.status_code == 429
    assert b"Too many failed attempts" in locked.content

    # The owner on another network still gets in: an attacker cannot lock arbitrary users out.
    elsewhere = _login("10.0.0.2", "admin@acme.test", PASSWORD)
    assert elsewhere.status_code == 302
    assert elsewhere["Location"] == "/"


def test_lockout_of_one_email_does_not_lock_another_from_the_same_ip(throttled, admin, member):
    for _ in range(5):
        _login("10.0.0.1", "admin@acme.test", "wrong-password")

    assert _login("10.0.0.1", "member@acme.test", PASSWORD).status_code == 302


def test_changing_the_case_of_the_email_does_not_escape_the_lockout(throttled, admin):
    for username in (
        "admin@acme.test",
        "Admin@acme.test",
        "ADMIN@acme.test",
        "admin@ACME.test",
        "aDmin@acme.test",
    ):
        _login("10.0.0.1", username, "wrong-password")

    assert _login("10.0.0.1", "Admin@Acme.Test", PASSWORD).status_code == 429


def test_four_failures_then_success_reset_the_count(throttled, admin):
    for _ in range(4):
        _login("10.0.0.1", "admin@acme.test", "wrong-password")
    assert _login("10.0.0.1", "admin@acme.test", PASSWORD).status_code == 302

    for _ in range(4):
        assert _login("10.0.0.1", "admin@acme.test", "wrong-password").status_code == 200
    assert _login("10.0.0.1", "admin@acme.test", PASSWORD).status_code == 302


def test_a_forged_forwarded_for_header_does_not_escape_the_lockout(throttled, admin):
    for n in range(5):
        Client(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}").post(
            "/accounts/login/", {"username": "admin@acme.test", "password": "wrong-password"}
        )

    assert _login("10.0.0.1", "admin@acme.test", PASSWORD).status_code == 429


def test_behind_a_proxy_each_client_is_throttled_on_its_own_address(throttled, settings, admin):
    """With AXES_PROXY_COUNT=1 the proxy's address is the same for everyone: the client's address is
    the last X-Forwarded-For hop, so one client's lockout does not lock the owner out elsewhere."""
    settings.AXES_IPWARE_PROXY_COUNT = 1

    def via_proxy(client_ip: str, password: str):
        return Client(REMOTE_ADDR="10.9.9.9", HTTP_X_FORWARDED_FOR=f"203.0.113.77, {client_ip}").post(
            "/accounts/login/", {"username": "admin@acme.test", "password": password}
        )

    for _ in range(5):
        via_proxy("198.51.100.1", "wrong-password")
    assert via_proxy("198.51.100.1", PASSWORD).status_code == 429
    assert via_proxy("198.51.100.2", PASSWORD).status_code == 302


# --- another organization ----------------------------------------------------------------------


def test_an_organization_name_over_120_characters_is_refused_not_cut(tenant, admin, client_for):
    """Found by an outsider probe: 5,000 characters made an organization named by the first 120; the
    sign-up form refuses the same name."""
    client = client_for(admin)
    before = Tenant.objects.count()

    response = client.post("/organizations/new/", {"name": "x" * 121})

    assert response.status_code == 200
    assert "Organization name: at most 120 characters." in response.content.decode()
    assert Tenant.objects.count() == before
    assert client.post("/organizations/new/", {"name": "y" * 120}).status_code == 302


def test_signed_in_user_creates_a_second_organization_as_its_admin(tenant, admin, client_for):
    client = client_for(admin)
    assert client.get("/organizations/new/").status_code == 200

    response = client.post("/organizations/new/", {"name": "  Second Org  "})

    assert response.status_code == 302
    assert response["Location"] == "/t/second-org/"
    assert messages_of(response) == ["Second Org is ready."]
    second = Tenant.objects.get(slug="second-org")
    assert second.name == "Second Org"
    assert list(
        Membership.objects.filter(user=admin).order_by("tenant__name").values_list("tenant__slug", "role")
    ) == [
        ("acme", "admin"),
        ("second-org", "admin"),
    ]
    assert list(tenant_events().filter(tenant=second).values_list("action", "actor_user")) == [
        ("tenant.created", admin.pk),
        ("member.added", admin.pk),
    ]
    assert b"Second Org" in client.get("/t/acme/").content  # now in the switcher


def test_organization_name_with_a_taken_slug_gets_a_numbered_one(tenant, admin, client_for):
    response = client_for(admin).post("/organizations/new/", {"name": "Acme"})

    assert response["Location"] == "/t/acme-2/"


def test_organization_without_a_name_is_refused(tenant, admin, client_for):
    client = client_for(admin)
    before = db_rows()

    response = client.post("/organizations/new/", {"name": "   "})

    assert response.status_code == 200
    assert messages_of(response) == ["Give your organization a name."]
    assert db_rows() == before


def test_an_organization_name_with_a_control_character_is_refused(tenant, admin, client_for):
    """No control characters in a name (tenants.text): "Acme\u202eexe.fdp" would show reversed."""
    client = client_for(admin)
    before = db_rows()

    response = client.post("/organizations/new/", {"name": "Acme\u202eexe.fdp"})
    assert messages_of(response) == ["Organization name: Remove the control characters."]
    response = Client().post(
        "/accounts/signup/", {"email": "jo@newco.test", "password": STRONG, "organization": "New\u2066Co"}
    )
    assert response.context["form"].errors == {"organization": ["Remove the control characters."]}
    assert db_rows() == before


def test_a_signup_whose_organization_name_is_refused_saves_no_user(db):
    """A refused name leaves nothing behind: no user without an organization."""
    for organization in ("   ", "New\x85Co"):
        with pytest.raises(BusinessError):
            services.user_signup(email="jo@newco.test", password=STRONG, organization=organization)
    assert not User.objects.exists()
    assert not Tenant.objects.exists()


def test_anonymous_visitor_cannot_create_an_organization(db):
    response = Client().post("/organizations/new/", {"name": "Ghost Org"})

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/organizations/new/"
    assert not Tenant.objects.exists()
