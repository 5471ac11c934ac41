"""AI and Chat licenses: assignment against the plan's totals, removal, the downgrade overage, the
inactive clients that hold licenses, and the audit trail (L04, L13, L14, L20, L22)."""

from __future__ import annotations

import pytest

from licensing import services
from licensing.factories import ClientFactory, licensed, on_helpdesk
from licensing.models import Client
from licensing.selectors import header
from plans.factories import plan
from plans.models import Subscription
from tenants.errors import BusinessError
from tenants.models import AuditEvent

pytestmark = pytest.mark.django_db


def refused(call, **kwargs) -> BusinessError:
    with pytest.raises(BusinessError) as caught:
        call(**kwargs)
    return caught.value


def held(tenant, field: str = "ai_license_since") -> list[str]:
    return sorted(
        Client.objects.filter(tenant=tenant, **{f"{field}__isnull": False}).values_list("name", flat=True)
    )


def test_l13_l14_add_ai_license_takes_effect_at_once_and_is_audited(essentials, admin):
    client = ClientFactory(tenant=essentials, name="Contoso")

    services.license_assign(tenant=essentials, client=client, kind="ai", actor=admin)

    client.refresh_from_db()
    assert (client.ai_license, client.chat_license) == (True, False)
    event = AuditEvent.objects.get(tenant=essentials, action="license.assigned")
    assert (event.actor_user, event.target_label, event.data) == (admin, "Contoso", {"kind": "AI"})
    assert (header(tenant=essentials).ai.used, header(tenant=essentials).chat.used) == (1, 0)


def test_l13_add_chat_license_and_remove_both(essentials, admin):
    client = ClientFactory(tenant=essentials, name="Contoso")
    services.license_assign(tenant=essentials, client=client, kind="chat", actor=admin)
    services.license_assign(tenant=essentials, client=client, kind="ai", actor=admin)

    services.license_remove(tenant=essentials, client=client, kind="ai", actor=admin)

    client.refresh_from_db()
    assert (client.ai_license, client.chat_license) == (False, True)
    services.license_remove(tenant=essentials, client=client, kind="chat", actor=admin)
    client.refresh_from_db()
    assert (client.ai_license, client.chat_license) == (False, False)
    assert list(
        AuditEvent.objects.filter(tenant=essentials, action__startswith="license.")
        .order_by("pk")
        .values_list("action", "data__kind")
    ) == [
        ("license.assigned", "Chat"),
        ("license.assigned", "AI"),
        ("license.removed", "AI"),
        ("license.removed", "Chat"),
    ]


def test_assigning_twice_or_removing_twice_changes_nothing(essentials, admin):
    client = ClientFactory(tenant=essentials)
    services.license_assign(tenant=essentials, client=client, kind="ai", actor=admin)
    since = Client.objects.get(pk=client.pk).ai_license_since

    services.license_assign(tenant=essentials, client=client, kind="ai", actor=admin)
    services.license_remove(tenant=essentials, client=client, kind="chat", actor=admin)

    assert Client.objects.get(pk=client.pk).ai_license_since == since
    assert AuditEvent.objects.filter(tenant=essentials, action__startswith="license.").count() == 1


def test_l04_the_eleventh_ai_license_of_ai_essentials_is_refused_and_changes_nothing(essentials, admin):
    licensed(essentials, 10)
    eleventh = ClientFactory(tenant=essentials, name="Eleventh")

    error = refused(services.license_assign, tenant=essentials, client=eleventh, kind="ai", actor=admin)

    assert (error.code, error.status) == ("license_limit_reached", 402)
    assert error.message == (
        "All 10 AI licenses of your AI Essentials plan are assigned. Remove one from another client or "
        "upgrade your plan."
    )
    assert Client.objects.get(pk=eleventh.pk).ai_license_since is None
    assert not AuditEvent.objects.filter(tenant=essentials, action="license.assigned").exists()
    # Chat licenses are counted apart: the same client may still get one.
    services.license_assign(tenant=essentials, client=eleventh, kind="chat", actor=admin)
    assert held(essentials, "chat_license_since") == ["Eleventh"]


def test_removing_a_license_frees_it_for_another_client(essentials, admin):
    first, *_ = licensed(essentials, 10)
    waiting = ClientFactory(tenant=essentials, name="Waiting")
    services.license_remove(tenant=essentials, client=first, kind="ai", actor=admin)

    services.license_assign(tenant=essentials, client=waiting, kind="ai", actor=admin)

    assert header(tenant=essentials).ai.used == 10
    assert "Waiting" in held(essentials)


def test_an_inactive_client_cannot_be_given_a_license(essentials, admin):
    client = ClientFactory(tenant=essentials, name="Dormant", status=Client.Status.INACTIVE)

    error = refused(services.license_assign, tenant=essentials, client=client, kind="ai", actor=admin)

    assert (error.code, error.status) == ("client_inactive", 409)
    assert error.message == "Dormant is inactive: make it active before assigning it an AI license."


def test_without_a_helpdesk_plan_no_license_can_be_assigned(tenant, admin, clock):
    client = ClientFactory(tenant=tenant)

    error = refused(services.license_assign, tenant=tenant, client=client, kind="ai", actor=admin)

    assert (error.code, error.status) == ("no_subscription", 402)
    assert error.message == "There is no subscription for this product. Subscribe to a plan to continue."


def test_an_ended_plan_refuses_new_licenses_with_the_specs_message(tenant, admin, clock):
    on_helpdesk(tenant, state=Subscription.State.EXPIRED)
    client = ClientFactory(tenant=tenant)

    error = refused(services.license_assign, tenant=tenant, client=client, kind="chat", actor=admin)

    assert (error.code, error.status, error.message) == (
        "subscription_ended",
        402,
        "Your subscription has ended. Please upgrade your plan to continue.",
    )


def test_unknown_kind_is_bad_input(essentials, admin):
    client = ClientFactory(tenant=essentials)
    error = refused(services.license_assign, tenant=essentials, client=client, kind="voice", actor=admin)
    assert (error.code, error.status, error.message) == ("invalid_request", 422, "kind: Use ai or chat.")


def test_the_picker_assigns_several_clients_or_none(essentials, admin):
    """L12: "Assign AI license" for several clients: all of them, or none with how many are left."""
    licensed(essentials, 7)
    picked = ClientFactory.create_batch(4, tenant=essentials)

    error = refused(
        services.licenses_assign, tenant=essentials, client_ids=[c.pk for c in picked], kind="ai", actor=admin
    )

    assert (error.code, error.status) == ("license_limit_reached", 402)
    assert (
        error.message
        == "Only 3 of your 10 AI licenses are left: pick at most 3 clients, or upgrade your plan."
    )
    assert header(tenant=essentials).ai.used == 7
    services.licenses_assign(tenant=essentials, client_ids=[c.pk for c in picked[:3]], kind="ai", actor=admin)
    assert header(tenant=essentials).ai.used == 10


def test_the_picker_counts_clients_that_hold_the_license_already_as_nothing_to_do(essentials, admin):
    licensed(essentials, 9)
    holder = licensed(essentials, 1)[0]
    # All ten are used; choosing a holder again asks for no new license.
    services.licenses_assign(tenant=essentials, client_ids=[holder.pk], kind="ai", actor=admin)
    assert header(tenant=essentials).ai.used == 10


def test_a_downgrade_keeps_existing_licenses_blocks_new_ones_and_shows_the_overage(pro, admin):
    """AI Pro (25) → AI Essentials (10) with 12 AI licenses assigned: the 12 stay, the 13th is
    refused with the overage in the message, and the header shows 2 over until 2 are removed."""
    holders = licensed(pro, 12)
    Subscription.objects.filter(tenant=pro, product__code="helpdesk_ai").update(
        plan=plan("helpdesk-essentials")
    )
    newcomer = ClientFactory(tenant=pro)

    error = refused(services.license_assign, tenant=pro, client=newcomer, kind="ai", actor=admin)

    assert error.message == (
        "Your AI Essentials plan includes 10 AI licenses and 12 are assigned: remove 2 before assigning new "
        "ones, or upgrade your plan."
    )
    top = header(tenant=pro)
    assert (top.ai.total, top.ai.used, top.ai.over, top.ai.left) == (10, 12, 2, 0)
    assert [s.kind for s in top.overages] == ["ai"]
    assert len(held(pro)) == 12
    services.license_remove(tenant=pro, client=holders[0], kind="ai", actor=admin)
    services.license_remove(tenant=pro, client=holders[1], kind="ai", actor=admin)
    assert header(tenant=pro).overages == []
    error = refused(services.license_assign, tenant=pro, client=newcomer, kind="ai", actor=admin)
    assert error.code == "license_limit_reached"  # 10 of 10: still full


def test_l20_inactive_clients_holding_licenses_are_flagged_and_released_in_one_click(essentials, admin):
    ClientFactory(
        tenant=essentials, name="Gone", status=Client.Status.INACTIVE, ai_license_since="2022-05-01T00:00Z"
    )
    ClientFactory(
        tenant=essentials,
        name="Gone too",
        status=Client.Status.INACTIVE,
        ai_license_since="2022-05-01T00:00Z",
        chat_license_since="2022-05-01T00:00Z",
    )
    licensed(essentials, 2)
    top = header(tenant=essentials)
    assert (top.flagged_clients, top.flagged_licenses, top.ai.used, top.chat.used) == (2, 3, 4, 1)

    assert services.licenses_release_inactive(tenant=essentials, actor=admin) == 3

    top = header(tenant=essentials)
    assert (top.flagged_clients, top.flagged_licenses, top.ai.used, top.chat.used) == (0, 0, 2, 0)
    assert sorted(
        AuditEvent.objects.filter(tenant=essentials, action="license.removed").values_list(
            "target_label", "data__kind", "data__reason"
        )
    ) == [
        ("Gone", "AI", "inactive client"),
        ("Gone too", "AI", "inactive client"),
        ("Gone too", "Chat", "inactive client"),
    ]
    assert services.licenses_release_inactive(tenant=essentials, actor=admin) == 0


def test_l22_the_header_says_what_is_near_its_total(essentials, admin):
    licensed(essentials, 8)
    assert header(tenant=essentials).near_limits == []
    licensed(essentials, 1)
    assert header(tenant=essentials).near_limits == ["AI licenses"]
    licensed(essentials, 9, kind="chat")
    assert header(tenant=essentials).near_limits == ["AI licenses", "Chat licenses"]


def test_another_tenants_client_cannot_be_licensed(essentials, other_tenant, admin):
    stranger = ClientFactory(tenant=other_tenant)
    error = refused(services.license_assign, tenant=essentials, client=stranger, kind="ai", actor=admin)
    assert (error.code, error.status) == ("not_found", 404)
    assert Client.objects.get(pk=stranger.pk).ai_license_since is None
