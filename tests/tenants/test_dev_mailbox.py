"""The dev mailbox (C10 in `make run`): with DEBUG on and the console mailer, a signed-in user reads
the security code the purchase dialog emailed them at /t/<slug>/dev/mailbox/ — only their own mail,
only about this tenant (or about no tenant); nobody else's. With DEBUG off the page does not exist."""

from __future__ import annotations

import re

import pytest
from django.core import mail

from config.settings import mail_backend
from tenants import security_codes
from tenants.factories import MembershipFactory
from tenants.models import Role
from tenants.notifications import notify

pytestmark = pytest.mark.django_db

CONSOLE = "django.core.mail.backends.console.EmailBackend"
DEV = "tenants.dev_mailbox.DevMailboxBackend"


@pytest.fixture
def dev_mail(settings):
    """`make run`'s mail: DEBUG on and the settings' choice of backend for the console mailer."""
    settings.DEBUG = True
    settings.MAILERS = {"default": {"BACKEND": mail_backend(debug=True, configured=CONSOLE)}}


def send_code(user, tenant, capture) -> None:
    with capture(execute=True):
        security_codes.security_code_send(
            user=user, tenant=tenant, purpose="subscribe:credits-plus", action="subscribe to AI Plus"
        )
    assert mail.outbox == []  # not the test's locmem mailer: the dev mailbox's


def code_in(text: str) -> str:
    found = re.search(r"\b(\d{6})\b", text)
    assert found is not None, text
    return found.group(1)


def mailbox(client, slug: str):
    return client.get(f"/t/{slug}/dev/mailbox/")


def test_make_run_uses_the_dev_mailbox_backend_only_with_debug_and_the_console():
    assert mail_backend(debug=True, configured=CONSOLE) == DEV
    assert mail_backend(debug=False, configured=CONSOLE) == CONSOLE
    smtp = "django.core.mail.backends.smtp.EmailBackend"
    assert mail_backend(debug=True, configured=smtp) == smtp


def test_c10_the_signed_in_user_reads_their_own_security_code_in_this_tenant(
    dev_mail, tenant, admin, client_for, django_capture_on_commit_callbacks, capsys
):
    send_code(admin, tenant, django_capture_on_commit_callbacks)
    # The console gets it too (the backend is the console mailer plus the copy).
    printed = capsys.readouterr().out
    assert "Your Allowance security code" in printed

    page = mailbox(client_for(admin), tenant.slug)

    assert page.status_code == 200
    body = page.content.decode()
    assert body.count('data-testid="dev-mail"') == 1
    assert "Your Allowance security code" in body
    assert code_in(body.split('data-testid="dev-mail-body"', 1)[1]) == code_in(printed)


def test_another_member_of_the_tenant_sees_none_of_the_admins_mail(
    dev_mail, tenant, admin, member, client_for, django_capture_on_commit_callbacks
):
    send_code(admin, tenant, django_capture_on_commit_callbacks)

    body = mailbox(client_for(member), tenant.slug).content.decode()

    assert 'data-testid="dev-mailbox-empty"' in body
    assert "security code" not in body


def test_another_tenants_admin_sees_none_of_it_and_cannot_open_this_tenants_mailbox(
    dev_mail, tenant, admin, outsider, other_tenant, client_for, django_capture_on_commit_callbacks
):
    send_code(admin, tenant, django_capture_on_commit_callbacks)
    client = client_for(outsider)

    assert mailbox(client, tenant.slug).status_code == 404
    own = mailbox(client, other_tenant.slug).content.decode()
    assert 'data-testid="dev-mailbox-empty"' in own
    assert "security code" not in own


def test_the_same_user_sees_a_tenants_mail_only_in_that_tenant_and_account_mail_in_both(
    dev_mail, tenant, admin, other_tenant, client_for, django_capture_on_commit_callbacks
):
    MembershipFactory(tenant=other_tenant, user=admin, role=Role.ADMIN)
    send_code(admin, tenant, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):  # about the account, no tenant
        notify(
            key="password-reset:test",
            to=admin.email,
            template="password_reset",
            context={"user": admin, "link": "http://testserver/reset/x/"},
        )
    client = client_for(admin)

    here = mailbox(client, tenant.slug).content.decode()
    there = mailbox(client, other_tenant.slug).content.decode()

    assert here.count('data-testid="dev-mail"') == 2
    assert "security code" in here
    assert there.count('data-testid="dev-mail"') == 1
    assert "security code" not in there


def test_the_page_does_not_exist_with_debug_off(
    dev_mail, settings, tenant, admin, client_for, django_capture_on_commit_callbacks
):
    send_code(admin, tenant, django_capture_on_commit_callbacks)
    settings.DEBUG = False

    assert mailbox(client_for(admin), tenant.slug).status_code == 404
