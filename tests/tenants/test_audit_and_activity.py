"""The audit log (written by services, for users, API keys and the system) and the Activity page
(filters, pagination); and that the admin pages' query counts do not grow with their rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tenants import services
from tenants.audit import SYSTEM, Actor, audit
from tenants.factories import ApiKeyFactory, InvitationFactory, MembershipFactory, UserFactory
from tenants.models import ActorType, AuditEvent, Membership, Role

from .helpers import query_count

# --- who the log says did it -------------------------------------------------------------------


def test_change_by_a_signed_in_user_is_logged_as_that_user(tenant, admin, member):
    membership = Membership.objects.get(tenant=tenant, user=member)

    services.membership_change_role(tenant=tenant, membership=membership, role=Role.FINANCE, actor=admin)

    event = AuditEvent.objects.get()
    assert (
        event.tenant,
        event.actor_type,
        event.actor_user,
        event.actor_api_key,
        event.actor_label,
        event.action,
        event.target_type,
        event.target_id,
        event.target_label,
        event.data,
    ) == (
        tenant,
        ActorType.USER,
        admin,
        None,
        "admin@acme.test",
        "member.role_changed",
        "membership",
        str(membership.pk),
        "member@acme.test",
        {"from": "member", "to": "finance"},
    )


def test_change_by_an_api_key_is_logged_as_that_key(tenant, admin):
    integration = services.api_key_create(tenant=tenant, name="Provisioner", actor=admin).api_key

    made = services.api_key_create(tenant=tenant, name="Child key", actor=Actor.of(integration)).api_key

    event = AuditEvent.objects.get(target_id=str(made.pk))
    assert (event.actor_type, event.actor_user, event.actor_api_key, event.actor_label, event.action) == (
        ActorType.API_KEY,
        None,
        integration,
        f"API key Provisioner ({integration.prefix})",
        "api_key.created",
    )
    assert made.created_by is None


def test_change_by_the_system_is_logged_as_system(tenant):
    key = services.api_key_create(tenant=tenant, name="Seeded", actor=SYSTEM).api_key

    event = AuditEvent.objects.get()
    assert (event.actor_type, event.actor_user, event.actor_api_key, event.actor_label, event.target_id) == (
        ActorType.SYSTEM,
        None,
        None,
        "system",
        str(key.pk),
    )


def test_actor_label_outlives_the_deleted_user(tenant, admin, member):
    services.membership_remove(
        tenant=tenant, membership=Membership.objects.get(tenant=tenant, user=member), actor=admin
    )

    admin.delete()

    event = AuditEvent.objects.get()
    assert (event.actor_user, event.actor_label, event.target_label) == (
        None,
        "admin@acme.test",
        "member@acme.test",
    )


# --- the Activity page -------------------------------------------------------------------------


def _at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


def _event(tenant, action: str, who: str, when: datetime, **kwargs) -> AuditEvent:
    return AuditEvent.objects.create(
        tenant=tenant,
        actor_type=kwargs.pop("actor_type", ActorType.USER),
        actor_label=who,
        action=action,
        created_at=when,
        **kwargs,
    )


@pytest.fixture
def log(tenant, other_tenant):
    _event(tenant, "member.added", "admin@acme.test", _at(1), target_label="pat@x.test")
    _event(tenant, "invitation.sent", "admin@acme.test", _at(2), data={"role": "member"})
    _event(tenant, "member.role_changed", "second@acme.test", _at(3, 0))
    _event(tenant, "api_key.created", "system", _at(3, 23), actor_type=ActorType.SYSTEM)
    _event(tenant, "member.removed", "second@acme.test", _at(5))
    _event(other_tenant, "member.added", "outsider@globex.test", _at(2))


def _actions(response) -> list[str]:
    return [e.action for e in response.context["page"].object_list]


def test_activity_lists_the_tenants_events_newest_first(tenant, admin, log, client_for):
    response = client_for(admin).get("/t/acme/activity/")

    assert response.status_code == 200
    assert _actions(response) == [
        "member.removed",
        "api_key.created",
        "member.role_changed",
        "invitation.sent",
        "member.added",
    ]
    content = response.content.decode()
    assert content.count('data-testid="event-row"') == 5
    assert "outsider@globex.test" not in content
    assert "role: Member" in content
    # Sentences, not action codes; a sentence its data cannot fill falls back to the readable name.
    assert 'data-testid="event-sentence" title="api_key.created">System created the API key …</td>' in content
    assert 'title="invitation.sent">admin@acme.test invited … as Member</td>' in content
    assert 'title="member.added">admin@acme.test: Member added (pat@x.test)</td>' in content
    assert response.context["actions"] == [
        "api_key.created",
        "invitation.sent",
        "member.added",
        "member.removed",
        "member.role_changed",
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"action": "member.added"}, ["member.added"]),
        ({"action": "member."}, ["member.removed", "member.role_changed", "member.added"]),
        ({"actor": "SECOND@"}, ["member.removed", "member.role_changed"]),
        ({"since": "2026-03-03"}, ["member.removed", "api_key.created", "member.role_changed"]),
        ({"until": "2026-03-02"}, ["invitation.sent", "member.added"]),
        # A day range covers whole days: 00:00 and 23:00 on the 3rd are both in.
        ({"since": "2026-03-03", "until": "2026-03-03"}, ["api_key.created", "member.role_changed"]),
        ({"action": "member.", "actor": "admin", "until": "2026-03-04"}, ["member.added"]),
        ({"action": "nothing.like.this"}, []),
    ],
)
def test_activity_filters(tenant, admin, log, client_for, query, expected):
    response = client_for(admin).get("/t/acme/activity/", query)

    assert response.status_code == 200
    assert _actions(response) == expected
    if not expected:
        assert b"No activity matches." in response.content


def test_activity_ignores_an_invalid_date_instead_of_failing(tenant, admin, log, client_for):
    response = client_for(admin).get("/t/acme/activity/", {"since": "not-a-date", "action": "member.added"})

    assert response.status_code == 200
    assert len(_actions(response)) == 5  # an invalid form means no filter at all


def test_activity_is_paginated_by_50_keeping_the_filters(tenant, admin, client_for):
    start = _at(1)
    for n in range(120):
        _event(tenant, "member.added", "admin@acme.test", start + timedelta(minutes=n), target_label=f"u{n}")
    _event(tenant, "invitation.sent", "admin@acme.test", start)
    client = client_for(admin)

    first = client.get("/t/acme/activity/", {"action": "member.added"})
    last = client.get("/t/acme/activity/", {"action": "member.added", "page": "3"})

    assert [e.target_label for e in first.context["page"].object_list] == [
        f"u{n}" for n in range(119, 69, -1)
    ]
    assert [e.target_label for e in last.context["page"].object_list] == [f"u{n}" for n in range(19, -1, -1)]
    assert b"Page 1 of 3" in first.content
    assert 'href="?action=member.added&page=2">Older →'.encode() in first.content
    assert '<a href="?action=member.added&page=2">← Newer</a>'.encode() in last.content
    assert b"Older" not in last.content
    beyond = client.get("/t/acme/activity/", {"action": "member.added", "page": "99"})
    assert beyond.context["page"].number == 3


def test_activity_through_htmx_answers_the_events_fragment(tenant, admin, log, client_for):
    response = client_for(admin).get(
        "/t/acme/activity/", {"action": "member.removed"}, headers={"HX-Request": "true"}
    )

    content = response.content.decode()
    assert content.lstrip().startswith('<div id="events"')
    assert "<html" not in content
    assert content.count('data-testid="event-row"') == 1


# --- query counts do not grow with rows --------------------------------------------------------


def _add_events(tenant, n: int) -> None:
    for _ in range(n):
        user = UserFactory()
        key = ApiKeyFactory(tenant=tenant, created_by=user)
        audit(tenant=tenant, actor=user, action="member.added", target=user, data={"role": "member"})
        audit(tenant=tenant, actor=key, action="api_key.used", target=key)


def _add_team(tenant, inviter_count: int) -> None:
    for _ in range(inviter_count):
        user = UserFactory()
        MembershipFactory(tenant=tenant, user=user, role=Role.MEMBER)
        InvitationFactory(tenant=tenant, invited_by=user)


def _add_keys(tenant, n: int) -> None:
    for i in range(n):
        key = ApiKeyFactory(tenant=tenant, created_by=UserFactory())
        if i % 2:
            key.revoked_at = key.created_at
            key.last_used_at = key.created_at
            key.save()


@pytest.mark.parametrize(
    ("path", "add_rows"),
    [
        ("/t/acme/activity/", _add_events),
        ("/t/acme/team/", _add_team),
        ("/t/acme/api-keys/", _add_keys),
    ],
    ids=["activity", "team", "api-keys"],
)
def test_page_query_count_does_not_grow_with_its_rows(tenant, admin, client_for, path, add_rows):
    client = client_for(admin)
    add_rows(tenant, 3)
    client.get(path)  # warm up: the first request of a session writes it

    def load():
        assert client.get(path).status_code == 200

    with_few = query_count(load)
    add_rows(tenant, 27)
    with_many = query_count(load)

    assert with_many == with_few
    assert with_few <= 12


def test_activity_reads_figures_and_days_as_the_pages_do(tenant, admin, client_for):
    """The Activity page writes quantities with thousands separators and days as "28 Feb 2027",
    as every other page does (the audit data keeps its plain values)."""
    from credits.models import Source
    from credits.services import credits_grant

    credits_grant(
        tenant=tenant,
        source=Source.STAFF_ADJUSTMENT,
        amount=2_000_000,
        expires_at=datetime(2027, 2, 28, tzinfo=UTC),
        note="Goodwill",
    )
    audit(
        tenant=tenant, actor=SYSTEM, action="plan.changed", data={"ends": "2027-02-28", "amount": "12500.5"}
    )

    page = client_for(admin).get(f"/t/{tenant.slug}/activity/").content.decode()

    assert "System granted 2,000 AI credits (Staff adjustment)" in page
    assert "amount: 2,000" in page
    assert "ends: 28 Feb 2027, amount: 12,500.5" in page
