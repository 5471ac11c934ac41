"""The team: invitations (sent, accepted, refused, replaced, expired), role changes, removals, and the
rule that a tenant always keeps at least one admin."""

from __future__ import annotations

import threading
from datetime import timedelta
from unittest import mock

import pytest
import time_machine
from django.core import mail
from django.db import connection
from django.test import Client
from django.utils import timezone

from tenants import services
from tenants.errors import BusinessError
from tenants.factories import InvitationFactory, MembershipFactory, UserFactory
from tenants.models import ActorType, AuditEvent, Invitation, Membership, Notification, Role, User
from tenants.services import _sha256
from tenants.tasks import expire_invitations

from .helpers import db_rows, link_in, logged_in_user_id, messages_of

LAST_ADMIN = "A tenant needs at least one admin. Make someone else an admin first."
STRONG = "plum-orchard-telescope"


@pytest.fixture
def send_mail(django_capture_on_commit_callbacks):
    """Run the on-commit callbacks (the email task) of whatever happens inside the block."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def _invite(client: Client, email: str, role: str, send_mail) -> str:
    """Invite through the Team page; returns the accept path from the email."""
    with send_mail():
        response = client.post("/t/acme/team/invitations/", {"email": email, "role": role})
    assert response.status_code == 302, response.content
    return link_in(mail.outbox[-1])


def _membership(tenant, user) -> Membership:
    return Membership.objects.get(tenant=tenant, user=user)


# --- inviting ------------------------------------------------------------------------------


def test_invitation_is_emailed_once_with_its_link_through_the_notification_log(
    tenant, admin, client_for, send_mail
):
    client = client_for(admin)
    with send_mail():
        response = client.post(
            "/t/acme/team/invitations/", {"email": "Pat@Elsewhere.test", "role": "finance"}
        )

    assert response.status_code == 302
    assert response["Location"] == "/t/acme/team/"
    assert messages_of(response) == ["Invitation sent to Pat@Elsewhere.test."]

    invitation = Invitation.objects.get()
    assert (
        invitation.tenant,
        invitation.email,
        invitation.role,
        invitation.status,
        invitation.invited_by,
    ) == (
        tenant,
        "pat@elsewhere.test",
        Role.FINANCE,
        Invitation.Status.PENDING,
        admin,
    )
    assert invitation.expires_at - invitation.created_at == timedelta(days=7)

    assert len(mail.outbox) == 1
    email = mail.outbox[0]
    assert email.to == ["pat@elsewhere.test"]
    assert email.subject == "You're invited to join Acme Corp on Allowance"
    assert "invited you to join Acme Corp on Allowance as Finance." in email.body
    path = link_in(email)
    assert path.startswith("/invitations/")
    token = path.removeprefix("/invitations/").rstrip("/")
    assert invitation.token_hash == _sha256(token)  # only the hash is stored

    note = Notification.objects.get()
    assert (note.key, note.tenant, note.to_email, note.template, note.status, note.attempts) == (
        f"invitation:{invitation.pk}",
        tenant,
        "pat@elsewhere.test",
        "invitation",
        Notification.Status.SENT,
        1,
    )
    assert list(AuditEvent.objects.values_list("action", "actor_user", "target_id", "data")) == [
        ("invitation.sent", admin.pk, str(invitation.pk), {"role": "finance"})
    ]


def test_team_page_lists_members_and_pending_invitations(tenant, admin, member, client_for):
    InvitationFactory(tenant=tenant, email="pat@elsewhere.test", invited_by=admin)
    InvitationFactory(tenant=tenant, email="gone@elsewhere.test", status=Invitation.Status.REVOKED)
    InvitationFactory(
        tenant=tenant, email="late@elsewhere.test", expires_at=timezone.now() - timedelta(seconds=1)
    )

    response = client_for(admin).get("/t/acme/team/")

    assert response.status_code == 200
    assert [m.user.email for m in response.context["members"]] == ["admin@acme.test", "member@acme.test"]
    assert [i.email for i in response.context["invitations"]] == ["pat@elsewhere.test"]
    assert response.content.count(b'data-testid="invitation-row"') == 1


def test_new_invitation_to_the_same_email_replaces_the_pending_one(tenant, admin, client_for, send_mail):
    client = client_for(admin)
    first_path = _invite(client, "pat@elsewhere.test", "member", send_mail)
    second_path = _invite(client, "PAT@elsewhere.test", "admin", send_mail)

    first, second = Invitation.objects.order_by("pk")
    assert (first.status, second.status) == (Invitation.Status.REVOKED, Invitation.Status.PENDING)
    assert second.role == Role.ADMIN
    assert len(mail.outbox) == 2

    old = Client().get(first_path)
    assert old.status_code == 410
    assert old.context["error"].message == "This invitation was withdrawn. Ask for a new one."
    assert Client().get(second_path).status_code == 200


def test_inviting_an_existing_member_is_refused(tenant, admin, member, client_for, send_mail):
    client = client_for(admin)
    before = db_rows()

    with send_mail():
        response = client.post("/t/acme/team/invitations/", {"email": "MEMBER@acme.test", "role": "admin"})

    assert response.status_code == 400
    assert response.context["invite_form"].errors == {
        "email": ["member@acme.test is already a member of Acme Corp."]
    }
    assert db_rows() == before
    assert mail.outbox == []


def test_invitation_with_an_invalid_email_is_refused(tenant, admin, client_for):
    client = client_for(admin)
    before = db_rows()

    response = client.post("/t/acme/team/invitations/", {"email": "not-an-email", "role": "member"})

    assert response.status_code == 400
    assert response.context["invite_form"].errors == {"email": ["Enter a valid email address."]}
    assert db_rows() == before


@pytest.mark.parametrize(
    ("email", "error"),
    [
        ("x" * 300 + "@example.com", "Ensure this value has at most 254 characters (it has 312)."),
        ("member@acme.test\u200b", "Remove the control characters."),
        ("a@b.c\u202e", "Remove the control characters."),
    ],
)
def test_invitation_to_an_email_too_long_or_with_invisible_characters_is_refused(
    tenant, admin, client_for, email, error
):
    """Longer than the column was a 500 on PostgreSQL; a zero-width or bidi character made an
    address that looks like a member's get past the "already a member" check."""
    client = client_for(admin)
    before = db_rows()

    response = client.post("/t/acme/team/invitations/", {"email": email, "role": "member"})

    assert response.status_code == 400
    assert error in response.context["invite_form"].errors["email"]
    assert db_rows() == before


def test_inviting_through_htmx_answers_the_team_fragment_with_the_new_row(
    tenant, admin, client_for, send_mail
):
    with send_mail():
        response = client_for(admin).post(
            "/t/acme/team/invitations/",
            {"email": "pat@elsewhere.test", "role": "member"},
            headers={"HX-Request": "true"},
        )

    assert response.status_code == 200
    content = response.content.decode()
    assert content.lstrip().startswith('<div id="team"')
    assert "<html" not in content
    assert content.count('data-testid="invitation-row"') == 1
    assert "Invitation sent to pat@elsewhere.test." in content  # the out-of-band flash
    assert len(mail.outbox) == 1


# --- accepting ------------------------------------------------------------------------------


def test_new_user_accepts_by_choosing_a_password_and_is_logged_in(tenant, admin, client_for, send_mail):
    path = _invite(client_for(admin), "pat@elsewhere.test", "finance", send_mail)
    visitor = Client()

    page = visitor.get(path)
    assert page.status_code == 200
    assert b"Set password and join" in page.content

    response = visitor.post(path, {"full_name": "Pat Doe", "password": STRONG})

    assert response.status_code == 302
    assert response["Location"] == "/t/acme/"
    assert messages_of(response) == ["You joined Acme Corp as Finance."]
    pat = User.objects.get(email="pat@elsewhere.test")
    assert pat.full_name == "Pat Doe"
    assert pat.check_password(STRONG)
    assert _membership(tenant, pat).role == Role.FINANCE
    assert logged_in_user_id(visitor) == str(pat.pk)
    invitation = Invitation.objects.get()
    assert (invitation.status, invitation.accepted_by) == (Invitation.Status.ACCEPTED, pat)
    assert invitation.accepted_at is not None
    event = AuditEvent.objects.get(action="invitation.accepted")
    assert (event.actor_user, event.data) == (pat, {"role": "finance", "new_member": True})
    assert visitor.get("/t/acme/").status_code == 200


def test_new_user_with_a_weak_password_is_refused_and_the_invitation_stays_open(
    tenant, admin, client_for, send_mail
):
    path = _invite(client_for(admin), "pat@elsewhere.test", "member", send_mail)

    response = Client().post(path, {"password": "1234567890"})

    assert response.status_code == 400
    assert response.context["form"].non_field_errors() == [
        "This password is too common. This password is entirely numeric."
    ]
    assert not User.objects.filter(email="pat@elsewhere.test").exists()
    assert Invitation.objects.get().status == Invitation.Status.PENDING


def test_logged_in_invitee_accepts_with_their_account(
    tenant, admin, outsider, other_tenant, client_for, send_mail
):
    path = _invite(client_for(admin), "outsider@globex.test", "member", send_mail)
    client = client_for(outsider)

    assert b"Accept and join" in client.get(path).content
    response = client.post(path)

    assert response.status_code == 302
    assert response["Location"] == "/t/acme/"
    assert _membership(tenant, outsider).role == Role.MEMBER
    assert _membership(other_tenant, outsider).role == Role.ADMIN  # untouched
    assert Invitation.objects.get().status == Invitation.Status.ACCEPTED
    assert AuditEvent.objects.get(action="invitation.accepted").data == {"role": "member", "new_member": True}


def test_invitee_with_an_account_must_log_in_to_accept(tenant, admin, outsider, client_for, send_mail):
    path = _invite(client_for(admin), "outsider@globex.test", "member", send_mail)
    visitor = Client()

    page = visitor.get(path)
    assert page.status_code == 200
    assert b"You already have an account." in page.content
    visitor.post(path, {"password": STRONG})

    assert not Membership.objects.filter(tenant=tenant, user=outsider).exists()
    assert not outsider.__class__.objects.get(pk=outsider.pk).check_password(STRONG)
    assert Invitation.objects.get().status == Invitation.Status.PENDING


def test_invitation_for_someone_else_is_refused_to_the_logged_in_user(
    tenant, admin, outsider, client_for, send_mail
):
    path = _invite(client_for(admin), "pat@elsewhere.test", "admin", send_mail)
    client = client_for(outsider)

    page = client.get(path)
    assert page.status_code == 403
    assert (
        b"You are logged in as outsider@globex.test. This invitation is for pat@elsewhere.test"
        in page.content
    )
    response = client.post(path)

    assert response.status_code == 403
    assert messages_of(response) == [
        "This invitation is for pat@elsewhere.test. Log out and accept it with that account."
    ]
    assert not Membership.objects.filter(tenant=tenant, user=outsider).exists()
    assert Invitation.objects.get().status == Invitation.Status.PENDING


def test_expired_invitation_is_refused(tenant, admin, client_for, send_mail):
    path = _invite(client_for(admin), "pat@elsewhere.test", "member", send_mail)
    expires_at = Invitation.objects.get().expires_at

    with time_machine.travel(expires_at - timedelta(seconds=1), tick=False):
        assert Client().get(path).status_code == 200
    with time_machine.travel(expires_at, tick=False):
        page = Client().get(path)
        response = Client().post(path, {"password": STRONG})

    for r in (page, response):
        assert r.status_code == 410
        assert r.context["error"].message == "This invitation has expired. Ask for a new one."
        assert b"This invitation has expired. Ask for a new one." in r.content
    assert not User.objects.filter(email="pat@elsewhere.test").exists()
    assert Invitation.objects.get().status == Invitation.Status.PENDING  # the sweeper marks it


def test_accepted_invitation_cannot_be_used_again(tenant, admin, client_for, send_mail):
    path = _invite(client_for(admin), "pat@elsewhere.test", "member", send_mail)
    assert Client().post(path, {"password": STRONG}).status_code == 302

    response = Client().post(path, {"password": "another-long-password"})

    assert response.status_code == 410
    assert response.context["error"].message == "This invitation has already been used. Log in instead."
    assert Membership.objects.filter(tenant=tenant, user__email="pat@elsewhere.test").count() == 1
    assert User.objects.get(email="pat@elsewhere.test").check_password(STRONG)
    assert AuditEvent.objects.filter(action="invitation.accepted").count() == 1


def test_revoked_invitation_is_refused(tenant, admin, client_for, send_mail):
    client = client_for(admin)
    path = _invite(client, "pat@elsewhere.test", "member", send_mail)
    invitation = Invitation.objects.get()

    revoke = client.post(f"/t/acme/team/invitations/{invitation.pk}/revoke/")
    assert revoke.status_code == 302
    assert messages_of(revoke) == ["Invitation to pat@elsewhere.test withdrawn."]
    response = Client().post(path, {"password": STRONG})

    assert response.status_code == 410
    assert response.context["error"].message == "This invitation was withdrawn. Ask for a new one."
    assert Invitation.objects.get().status == Invitation.Status.REVOKED
    assert not User.objects.filter(email="pat@elsewhere.test").exists()
    assert list(
        AuditEvent.objects.filter(action="invitation.revoked").values_list("actor_user", "target_id")
    ) == [(admin.pk, str(invitation.pk))]


def test_revoking_an_accepted_invitation_changes_nothing(tenant, admin, client_for, send_mail):
    client = client_for(admin)
    path = _invite(client, "pat@elsewhere.test", "member", send_mail)
    Client().post(path, {"password": STRONG})
    invitation = Invitation.objects.get()

    response = client.post(f"/t/acme/team/invitations/{invitation.pk}/revoke/")

    assert response.status_code == 302
    assert messages_of(response) == ["The invitation to pat@elsewhere.test was no longer pending."]
    assert Invitation.objects.get().status == Invitation.Status.ACCEPTED
    assert not AuditEvent.objects.filter(action="invitation.revoked").exists()


def test_unknown_invitation_token_is_404(db):
    response = Client().get("/invitations/not-a-real-token/")

    assert response.status_code == 404
    assert response.context["error"].message == "This invitation link is not valid."


# --- roles and removal -------------------------------------------------------------------------


def test_admin_changes_a_members_role(tenant, admin, member, client_for):
    membership = _membership(tenant, member)

    response = client_for(admin).post(f"/t/acme/team/members/{membership.pk}/role/", {"role": "finance"})

    assert response.status_code == 302
    assert response["Location"] == "/t/acme/team/"
    assert messages_of(response) == ["member@acme.test is now finance."]
    assert _membership(tenant, member).role == Role.FINANCE
    event = AuditEvent.objects.get()
    assert (event.action, event.actor_user, event.target_label, event.data) == (
        "member.role_changed",
        admin,
        "member@acme.test",
        {"from": "member", "to": "finance"},
    )


def test_unknown_role_is_refused(tenant, admin, member, client_for):
    membership = _membership(tenant, member)
    client = client_for(admin)
    before = db_rows()

    response = client.post(f"/t/acme/team/members/{membership.pk}/role/", {"role": "owner"})

    assert response.status_code == 302
    assert messages_of(response) == ["Choose a role: admin, member or finance."]
    assert db_rows() == before


def test_admin_removes_a_member_who_then_loses_access(tenant, admin, member, client_for):
    membership = _membership(tenant, member)

    response = client_for(admin).post(f"/t/acme/team/members/{membership.pk}/remove/")

    assert response.status_code == 302
    assert response["Location"] == "/t/acme/team/"
    assert messages_of(response) == ["member@acme.test was removed from Acme Corp."]
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert User.objects.filter(pk=member.pk).exists()  # the person stays; only the membership goes
    assert list(AuditEvent.objects.values_list("action", "actor_user", "target_label")) == [
        ("member.removed", admin.pk, "member@acme.test")
    ]
    assert client_for(member).get("/t/acme/").status_code == 404


def test_the_only_admin_cannot_demote_themselves(tenant, admin, member, client_for):
    client = client_for(admin)
    membership = _membership(tenant, admin)
    before = db_rows()

    response = client.post(f"/t/acme/team/members/{membership.pk}/role/", {"role": "member"})

    assert response.status_code == 302
    assert response["Location"] == "/t/acme/team/"
    assert messages_of(response) == [LAST_ADMIN]
    assert db_rows() == before


def test_the_only_admin_cannot_remove_themselves(tenant, admin, member, client_for):
    client = client_for(admin)
    membership = _membership(tenant, admin)
    before = db_rows()

    response = client.post(f"/t/acme/team/members/{membership.pk}/remove/")

    assert response.status_code == 302
    assert response["Location"] == "/t/acme/team/"
    assert messages_of(response) == [LAST_ADMIN]
    assert db_rows() == before


def test_last_admin_refusal_through_htmx_shows_the_message_in_the_fragment(tenant, admin, client_for):
    membership = _membership(tenant, admin)

    response = client_for(admin).post(
        f"/t/acme/team/members/{membership.pk}/remove/", headers={"HX-Request": "true"}
    )

    assert response.status_code == 200
    assert LAST_ADMIN in response.content.decode()
    assert Membership.objects.filter(pk=membership.pk).exists()


@pytest.mark.parametrize(
    "change",
    [
        lambda tenant, m, actor: services.membership_change_role(
            tenant=tenant, membership=m, role=Role.FINANCE, actor=actor
        ),
        lambda tenant, m, actor: services.membership_remove(tenant=tenant, membership=m, actor=actor),
    ],
    ids=["demote", "remove"],
)
def test_last_admin_is_a_409_business_error_in_the_services(tenant, admin, change):
    membership = _membership(tenant, admin)
    before = db_rows()

    with pytest.raises(BusinessError) as refused:
        change(tenant, membership, admin)

    assert (refused.value.code, refused.value.status, refused.value.message) == (
        "last_admin",
        409,
        LAST_ADMIN,
    )
    assert db_rows() == before


def test_team_page_marks_the_last_admin(tenant, admin, member, client_for):
    content = client_for(admin).get("/t/acme/team/").content.decode()

    assert content.count("Last admin") == 1
    assert 'disabled title="The last admin cannot be demoted"' in content


def test_with_two_admins_one_can_step_down_and_lands_on_the_overview(tenant, admin, client_for):
    second = MembershipFactory(tenant=tenant, role=Role.ADMIN, user=UserFactory(email="second@acme.test"))
    membership = _membership(tenant, admin)

    response = client_for(admin).post(f"/t/acme/team/members/{membership.pk}/role/", {"role": "member"})

    assert response.status_code == 302
    assert response["Location"] == "/t/acme/"  # no longer allowed on the Team page
    assert _membership(tenant, admin).role == Role.MEMBER
    assert Membership.objects.get(pk=second.pk).role == Role.ADMIN
    # ...and the remaining admin is now the last one.
    with pytest.raises(BusinessError):
        services.membership_change_role(tenant=tenant, membership=second, role=Role.MEMBER, actor=second.user)


def test_with_two_admins_one_can_remove_the_other(tenant, admin, client_for):
    second = MembershipFactory(tenant=tenant, role=Role.ADMIN, user=UserFactory(email="second@acme.test"))

    response = client_for(admin).post(f"/t/acme/team/members/{second.pk}/remove/")

    assert response.status_code == 302
    assert list(Membership.objects.filter(tenant=tenant).values_list("user__email", "role")) == [
        ("admin@acme.test", "admin")
    ]


def test_admin_removing_themselves_goes_home(tenant, admin, client_for):
    MembershipFactory(tenant=tenant, role=Role.ADMIN, user=UserFactory(email="second@acme.test"))
    membership = _membership(tenant, admin)

    response = client_for(admin).post(f"/t/acme/team/members/{membership.pk}/remove/")

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert not Membership.objects.filter(pk=membership.pk).exists()


# --- the expiry sweeper ------------------------------------------------------------------------


def test_sweeper_marks_due_invitations_expired_and_audits_them(tenant, admin):
    now = timezone.now()
    due = InvitationFactory(tenant=tenant, email="due@x.test", expires_at=now - timedelta(minutes=1))
    exactly_due = InvitationFactory(tenant=tenant, email="exact@x.test", expires_at=now)
    open_ = InvitationFactory(tenant=tenant, email="open@x.test", expires_at=now + timedelta(minutes=1))
    accepted = InvitationFactory(
        tenant=tenant,
        email="done@x.test",
        status=Invitation.Status.ACCEPTED,
        expires_at=now - timedelta(days=1),
    )
    revoked = InvitationFactory(
        tenant=tenant,
        email="gone@x.test",
        status=Invitation.Status.REVOKED,
        expires_at=now - timedelta(days=1),
    )

    assert services.invitations_expire_due(now=now) == 2
    assert services.invitations_expire_due(now=now) == 0  # safe to run twice

    status = dict(Invitation.objects.values_list("pk", "status"))
    assert status == {
        due.pk: "expired",
        exactly_due.pk: "expired",
        open_.pk: "pending",
        accepted.pk: "accepted",
        revoked.pk: "revoked",
    }
    events = AuditEvent.objects.filter(action="invitation.expired").order_by("target_id")
    assert sorted((e.target_id, e.actor_type, e.actor_label, e.actor_user_id) for e in events) == sorted(
        [
            (str(due.pk), ActorType.SYSTEM, "system", None),
            (str(exactly_due.pk), ActorType.SYSTEM, "system", None),
        ]
    )


def test_expire_task_sweeps_at_the_current_time(tenant, admin, client_for, send_mail):
    path = _invite(client_for(admin), "pat@elsewhere.test", "member", send_mail)
    invitation = Invitation.objects.get()

    with time_machine.travel(invitation.expires_at - timedelta(seconds=1), tick=False):
        assert expire_invitations() == 0
    with time_machine.travel(invitation.expires_at + timedelta(seconds=1), tick=False):
        assert expire_invitations() == 1

    assert Invitation.objects.get().status == Invitation.Status.EXPIRED
    response = Client().get(path)
    assert response.status_code == 410
    assert response.context["error"].message == "This invitation has expired. Ask for a new one."


# --- concurrency -------------------------------------------------------------------------------


def _slow_audit():
    """Hold the winner's transaction open a little (in its last step) so the rival really
    arrives while it runs."""
    real = services.audit

    def slow(**kwargs):
        event = real(**kwargs)
        threading.Event().wait(0.3)
        return event

    return mock.patch.object(services, "audit", side_effect=slow)


def _race(*calls):
    """Run the callables at the same moment in threads; returns what each returned or raised."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i, call):
        try:
            barrier.wait()
            results[i] = call()
        except Exception as exc:
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("who", ["new_user", "signed_in_user"])
def test_two_simultaneous_accepts_of_one_invitation_make_one_membership(who, tenant, admin, outsider):
    email = "pat@elsewhere.test" if who == "new_user" else outsider.email
    token = services.invitation_create(tenant=tenant, email=email, role=Role.MEMBER, actor=admin).token

    def accept():
        if who == "new_user":
            return services.invitation_accept(token=token, password=STRONG)
        return services.invitation_accept(token=token, user=outsider)

    with _slow_audit():
        results = _race(accept, accept)

    won = [r for r in results if isinstance(r, tuple)]
    lost = [r for r in results if not isinstance(r, tuple)]
    assert len(won) == 1, results
    assert len(lost) == 1, results
    assert isinstance(lost[0], BusinessError), results
    assert lost[0].code == "invitation_used"
    assert Membership.objects.filter(tenant=tenant, user__email=email).count() == 1
    assert User.objects.filter(email=email).count() == 1
    assert AuditEvent.objects.filter(action="invitation.accepted").count() == 1
    assert Invitation.objects.get().status == Invitation.Status.ACCEPTED


@pytest.mark.django_db(transaction=True)
def test_two_admins_demoting_each_other_at_once_leave_one_admin(tenant, admin):
    second = MembershipFactory(tenant=tenant, role=Role.ADMIN, user=UserFactory(email="second@acme.test"))
    first = _membership(tenant, admin)

    with _slow_audit():
        results = _race(
            lambda: services.membership_change_role(
                tenant=tenant, membership=second, role=Role.MEMBER, actor=admin
            ),
            lambda: services.membership_change_role(
                tenant=tenant, membership=first, role=Role.MEMBER, actor=second.user
            ),
        )

    refused = [r for r in results if isinstance(r, BusinessError)]
    assert len(refused) == 1, results
    assert refused[0].code == "last_admin"
    assert Membership.objects.filter(tenant=tenant, role=Role.ADMIN).count() == 1
    assert AuditEvent.objects.filter(action="member.role_changed").count() == 1
