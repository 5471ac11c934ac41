"""Operator commands: `create_tenant` (JSON on the last line, a working API key, the admin emailed a
set-password link) and `seed_demo` (idempotent, DEBUG only)."""

from __future__ import annotations

import importlib
import json
from io import StringIO

import pytest
from django.core import mail
from django.core.management import CommandError, call_command, get_commands
from django.test import Client

from tenants.factories import PASSWORD
from tenants.models import ActorType, ApiKey, Membership, Notification, Role, Tenant, User

from .helpers import db_rows, link_in, logged_in_user_id, tenant_events

# Wherever the app that owns `seed_demo` is, its module gives the demo data's constants.
seed_demo = importlib.import_module(f"{get_commands()['seed_demo']}.management.commands.seed_demo")
DEMO_PASSWORD, DEMO_TENANTS, demo_api_key = (
    seed_demo.DEMO_PASSWORD,
    seed_demo.DEMO_TENANTS,
    seed_demo.demo_api_key,
)


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    """Run a management command, executing its on-commit callbacks (emails); returns its stdout."""

    def run_command(*args, **options) -> str:
        out = StringIO()
        with django_capture_on_commit_callbacks(execute=True):
            call_command(*args, stdout=out, **options)
        return out.getvalue()

    return run_command


def _last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def _whoami(secret: str):
    return Client().get("/api/v1/tenant", headers={"Authorization": f"Bearer {secret}"})


# --- create_tenant -----------------------------------------------------------------------------


def test_create_tenant_with_api_key_prints_json_with_a_working_key(db, run):
    output = run("create_tenant", "Acme Widgets", "--admin-email", "A@AcmeWidgets.test", "--api-key")

    result = _last_json(output)
    assert set(result) == {"tenant", "api_key"}
    assert result["tenant"] == "acme-widgets"
    assert result["api_key"].startswith("alw_")
    assert output.splitlines()[0] == "Created Acme Widgets (acme-widgets) with admin a@acmewidgets.test."

    response = _whoami(result["api_key"])
    assert response.status_code == 200
    assert response.json()["tenant"] == {"slug": "acme-widgets", "name": "Acme Widgets"}

    tenant = Tenant.objects.get()
    admin = User.objects.get()
    assert admin.email == "a@acmewidgets.test"
    assert not admin.has_usable_password()
    assert list(Membership.objects.values_list("tenant", "user", "role")) == [(tenant.pk, admin.pk, "admin")]
    key = ApiKey.objects.get()
    assert (key.tenant, key.name, key.created_by) == (tenant, "Default key", None)
    assert list(tenant_events().values_list("action", "actor_type", "actor_label")) == [
        ("tenant.created", ActorType.SYSTEM, "system"),
        ("member.added", ActorType.SYSTEM, "system"),
        ("api_key.created", ActorType.SYSTEM, "system"),
    ]


def test_create_tenant_emails_the_new_admin_a_link_to_choose_a_password(db, run):
    run("create_tenant", "Acme Widgets", "--admin-email", "a@acmewidgets.test")

    assert len(mail.outbox) == 1
    email = mail.outbox[0]
    assert email.to == ["a@acmewidgets.test"]
    assert email.subject == "Your Allowance organization Acme Widgets is ready"
    note = Notification.objects.get()
    tenant, admin = Tenant.objects.get(), User.objects.get()
    assert (note.key, note.template, note.tenant, note.status) == (
        f"welcome-admin:{tenant.pk}:{admin.pk}",
        "welcome_admin",
        tenant,
        Notification.Status.SENT,
    )

    client = Client()
    opened = client.get(link_in(email))
    assert opened.status_code == 302
    done = client.post(
        opened["Location"],
        {"new_password1": "quiet-lantern-harbour", "new_password2": "quiet-lantern-harbour"},
    )

    assert done.status_code == 302
    admin.refresh_from_db()
    assert admin.check_password("quiet-lantern-harbour")
    assert logged_in_user_id(client) == str(admin.pk)
    assert client.get("/t/acme-widgets/team/").status_code == 200


def test_create_tenant_without_api_key_prints_null(db, run):
    output = run("create_tenant", "Acme Widgets", "--admin-email", "a@acmewidgets.test")

    assert _last_json(output) == {"tenant": "acme-widgets", "api_key": None}
    assert not ApiKey.objects.exists()


def test_create_tenant_for_an_existing_user_keeps_their_password_and_sends_no_email(tenant, admin, run):
    output = run("create_tenant", "Acme Labs", "--admin-email", "ADMIN@acme.test")

    assert _last_json(output) == {"tenant": "acme-labs", "api_key": None}
    admin.refresh_from_db()
    assert admin.check_password(PASSWORD)
    assert list(
        Membership.objects.filter(user=admin).order_by("tenant__slug").values_list("tenant__slug", "role")
    ) == [
        ("acme", "admin"),
        ("acme-labs", "admin"),
    ]
    assert mail.outbox == []


def test_create_tenant_with_an_unknown_plan_errors_clearly_and_creates_nothing(db, run):
    before = db_rows()

    with pytest.raises(CommandError) as error:
        run("create_tenant", "Acme Widgets", "--admin-email", "a@acmewidgets.test", "--plan", "no-such-plan")

    assert str(error.value).startswith("No plan 'no-such-plan'. Plans: ")
    assert db_rows() == before
    assert mail.outbox == []


def test_create_tenant_without_a_name_creates_no_user_either(db, run):
    with pytest.raises(CommandError) as error:
        run("create_tenant", "   ", "--admin-email", "a@acmewidgets.test")

    assert str(error.value) == "Give your organization a name."
    assert not User.objects.exists()
    assert not Tenant.objects.exists()
    assert mail.outbox == []


def test_create_tenant_requires_the_admin_email(db):
    with pytest.raises(CommandError, match="--admin-email"):
        call_command("create_tenant", "Acme Widgets", stdout=StringIO())


# --- seed_demo ---------------------------------------------------------------------------------


def _counts() -> dict[str, int]:
    return {
        "tenants": Tenant.objects.count(),
        "users": User.objects.count(),
        "memberships": Membership.objects.count(),
        "api_keys": ApiKey.objects.count(),
    }


SEEDED = {
    "tenants": len(DEMO_TENANTS),
    "users": 3 * len(DEMO_TENANTS) + 1,  # admin, member and finance of each, and one staff user
    "memberships": 3 * len(DEMO_TENANTS),
    "api_keys": len(DEMO_TENANTS),
}


# The demo buys plans through the local gateway, whose webhooks apply after each commit: real
# commits are needed.
@pytest.mark.django_db(transaction=True)
def test_seed_demo_is_idempotent_and_gives_every_tenant_an_admin_a_member_and_finance(db, settings, run):
    settings.DEBUG = True

    output = run("seed_demo")
    first = _counts()
    run("seed_demo")

    assert f"Every demo password is {DEMO_PASSWORD!r}." in output
    assert _counts() == first == SEEDED
    for slug, name, *_ in DEMO_TENANTS:
        tenant = Tenant.objects.get(slug=slug)
        assert tenant.name == name
        assert sorted(tenant.memberships.values_list("role", flat=True)) == ["admin", "finance", "member"]
    staff = User.objects.get(email="staff@allowance.test")
    assert (staff.is_staff, staff.is_superuser) == (True, True)
    assert not Membership.objects.filter(user=staff).exists()


def test_seed_demo_refuses_without_debug(db, settings, run):
    settings.DEBUG = False

    with pytest.raises(CommandError) as error:
        run("seed_demo")

    assert str(error.value) == (
        "seed_demo creates known passwords and keys: it runs only with DEBUG=true (or --force)."
    )
    assert _counts() == {"tenants": 0, "users": 0, "memberships": 0, "api_keys": 0}


# The demo buys plans through the local gateway, whose webhooks apply after each commit: real
# commits are needed.
@pytest.mark.django_db(transaction=True)
def test_seed_demo_with_force_runs_without_debug_and_its_keys_and_passwords_work(db, settings, run):
    settings.DEBUG = False

    run("seed_demo", "--force")

    assert _counts() == SEEDED
    for slug, name, *_ in DEMO_TENANTS:
        response = _whoami(demo_api_key(slug))
        assert response.status_code == 200
        assert response.json()["tenant"] == {"slug": slug, "name": name}
    first_slug = DEMO_TENANTS[0][0]
    admin = Membership.objects.get(tenant__slug=first_slug, role=Role.ADMIN).user
    client = Client()
    response = client.post("/accounts/login/", {"username": admin.email, "password": DEMO_PASSWORD})
    assert response.status_code == 302
    assert client.get("/")["Location"] == f"/t/{first_slug}/"
